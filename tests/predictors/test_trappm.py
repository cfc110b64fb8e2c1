"""TraPPM: unlabeled corpus, graph autoencoder pretraining, frozen-embedding regressor."""

import json

import numpy as np
import pytest

from costmodel import InvalidInputError, ModelLoadError, SchemaMismatchError
from costmodel.datasets import CORPUS_FAMILIES, GraphCorpus, PerfDataset, sample_corpus_specs
from costmodel.datasets._corpus import CorpusItem, _build_one
from costmodel.frontends import zoo_graph
from costmodel.predictors import load_predictor
from costmodel.predictors._gae import GAEConfig, GraphAutoencoder, roc_auc
from costmodel.predictors import TRAPPM_TARGETS, GNNConfig, GNNPredictor, trappm_config, TraPPMPredictor

SMALL = ("squeezenet1_1", "mnasnet0_5", "resnet18", "shufflenet_v2_x1_0")


@pytest.fixture(scope="module")
def small():
    ds = PerfDataset.load()
    return PerfDataset([r for r in ds.rows if r.model in SMALL])


@pytest.fixture(scope="module")
def gae(corpus):
    return GraphAutoencoder(GAEConfig(hidden=16, out=8, layers=2, epochs=15)).fit(corpus, progress=False)


def test_sampling_is_seeded_and_spans_families():
    a, b = sample_corpus_specs(300, seed=3), sample_corpus_specs(300, seed=3)
    assert a == b and a != sample_corpus_specs(300, seed=4)
    fams = {i.spec["family"] for i in a}
    assert {"resnet", "vit", "mobilenet", "convnext", "swin"} <= fams
    assert {i.mode for i in a} == {"inference", "training"} and {i.batch for i in a} == {1, 8, 32}
    # parametric variants differ in structure, not only in batch
    resnets = {json.dumps(i.spec, sort_keys=True) for i in a if i.spec["family"] == "resnet"}
    assert len(resnets) > 20
    with pytest.raises(InvalidInputError, match="unknown corpus families"):
        sample_corpus_specs(5, families=["resnet", "lenet"])
    with pytest.raises(InvalidInputError, match="positive"):
        sample_corpus_specs(0)
    assert set(CORPUS_FAMILIES) >= {"resnet", "vit", "densenet", "poolformer"}


def test_sampled_variants_build():
    # one variant of each parametric family builds into a real graph
    items = sample_corpus_specs(80, seed=0)
    for fam in ("resnet", "vit", "mobilenet", "convnext", "swin"):
        it = next(i for i in items if i.spec["family"] == fam)
        out = _build_one(CorpusItem(it.spec, 1, "inference"))
        assert not isinstance(out, str), out
        x, ei = out
        assert x.shape[0] > 10 and ei.shape[0] == 2 and ei.max() < x.shape[0]


def test_failed_variant_is_reported_not_raised():
    out = _build_one(CorpusItem({"src": "tv", "name": "no_such_net", "family": "x"}, 1, "inference"))
    assert isinstance(out, str) and "no_such_net" in out


def test_corpus_build_caches_shards(monkeypatch):
    import costmodel.datasets._corpus as C

    calls = []
    real = C._build_one

    def counting(item):
        calls.append(item)
        return real(item)

    monkeypatch.setattr(C, "_build_one", counting)
    monkeypatch.setattr(C, "SHARD", 2)
    a = GraphCorpus.build(3, seed=11, families=["mobilenet"], workers=1, progress=False)
    assert len(a) + len(a.failed) == 3 and len(calls) == 3
    b = GraphCorpus.build(3, seed=11, families=["mobilenet"], workers=1, progress=False)
    assert len(calls) == 3  # every shard came from the cache
    assert [x.shape for x in a.x] == [x.shape for x in b.x]
    assert all(np.array_equal(x, y) for x, y in zip(a.x, b.x))
    assert all(np.array_equal(x, y) for x, y in zip(a.edge_index, b.edge_index))
    assert a.items == b.items


def test_roc_auc():
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5


def test_gae_trains_and_round_trips(corpus, gae, tmp_path):
    loss = gae.history["loss"]
    # dropout makes single epochs noisy (three epochs once ended above the first): compare the ends
    assert len(loss) == 15 and np.mean(loss[-3:]) < np.mean(loss[:3]), loss
    ev = gae.evaluate(corpus, range(len(corpus)))
    assert 0 <= ev["auc"] <= 1 and ev["bce"] > 0
    e = gae.embed(corpus.x[0], corpus.edge_index[0])
    assert e.shape == (8,) and np.isfinite(e).all()
    many = gae.embed_many(list(zip(corpus.x, corpus.edge_index)))
    assert many.shape == (len(corpus), 8)
    np.testing.assert_allclose(many[0], e, rtol=1e-5, atol=1e-6)
    gae.save(tmp_path / "g")
    back = GraphAutoencoder.load(tmp_path / "g")
    np.testing.assert_allclose(back.embed(corpus.x[0], corpus.edge_index[0]), e, rtol=1e-6)
    # a different node-feature layout is refused
    cfg = json.loads((tmp_path / "g" / "gae.json").read_text())
    cfg["node_features"] = cfg["node_features"][:-1]
    (tmp_path / "g" / "gae.json").write_text(json.dumps(cfg))
    with pytest.raises(SchemaMismatchError, match="pretrained on different node features"):
        GraphAutoencoder.load(tmp_path / "g")
    with pytest.raises(ModelLoadError, match="no graph autoencoder"):
        GraphAutoencoder.load(tmp_path)


def test_untrained_encoder_is_the_random_init_ablation(corpus):
    r = GraphAutoencoder(GAEConfig(hidden=16, out=8, layers=2, epochs=0)).fit(corpus, progress=False)
    assert r.history["loss"] == [] and r.embed(corpus.x[0], corpus.edge_index[0]).shape == (8,)
    with pytest.raises(ModelLoadError, match="not trained"):
        GraphAutoencoder().embed(corpus.x[0], corpus.edge_index[0])
    with pytest.raises(InvalidInputError, match="dropout"):
        GAEConfig(dropout=1.5)


def test_trappm_fit_predict_roundtrip(small, gae, tmp_path):
    p = TraPPMPredictor(trappm_config(epochs=3, hidden=16), gae).fit(small, progress=False)
    assert p.targets == TRAPPM_TARGETS
    g = small.graph(0)
    e = p.predict(g, "h200", mode="training")
    assert e.predictor == "trappm"
    assert e.energy_j == pytest.approx(e.power_w * e.latency_ms / 1e3)  # energy follows from power x time
    p.save(tmp_path / "t")
    names = sorted(f.name for f in (tmp_path / "t").iterdir())
    assert names == ["config.json", "gae.json", "gae.safetensors", "weights.safetensors"]
    q = load_predictor(tmp_path / "t")
    assert isinstance(q, TraPPMPredictor)
    # an artifact folder is accepted wherever a predictor name is
    from costmodel.predictors import get_predictor

    assert isinstance(get_predictor(str(tmp_path / "t")), TraPPMPredictor)
    assert q.predict(g, "h200", mode="training").to_dict() == e.to_dict()
    # the embedding is part of the feature schema
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert cfg["schema"]["static_features"][-8:] == [f"gae_{i}" for i in range(8)]
    assert cfg["targets"] == list(TRAPPM_TARGETS)


def test_trappm_without_encoder_is_refused(small):
    with pytest.raises(ModelLoadError, match="pretrained graph autoencoder"):
        TraPPMPredictor(trappm_config(epochs=1)).fit(small, progress=False)


def test_power_target_and_intervals(small):
    p = GNNPredictor(GNNConfig(epochs=3, hidden=16, targets=("latency_ms", "memory_mb", "power_w")))
    p.fit_calibrated(small, calibration_fraction=0.4, progress=False)
    e = p.predict(small.graph(0), "h200")
    assert e.details["power_w_interval"] is not None and e.latency_ms_interval is not None
    assert e.energy_j_interval is None  # energy is derived, not predicted with its own interval


def test_trappm_intervals_cover_held_out_rows(coverage_split, coverage_features):
    """TraPPM (the shipped pretrained encoder, a small regressor) fit on one third of 150 measured rows and
    calibrated on another: on the last third, never seen, the share of latency, memory and power
    measurements inside the intervals is the nominal level within three standard deviations."""
    from _coverage import expected_coverage, measured_coverage

    from costmodel.predictors import ARTIFACTS_DIR

    data, train, cal, test = coverage_split
    p = TraPPMPredictor(trappm_config(epochs=10, hidden=16), GraphAutoencoder.load(ARTIFACTS_DIR / "trappm"))
    rows = sorted(coverage_features)
    feats = dict(zip(rows, p.with_embeddings([coverage_features[i] for i in rows])))
    p.fit(data, train, cached=feats, progress=False)
    for level in (0.5, 0.9):
        p.calibrate(data, cal, coverage=level, cached=feats)
        cov = measured_coverage(p, data, test, [feats[i] for i in test])
        mean, sd = expected_coverage(len(cal), len(test), level)
        assert np.all(np.abs(cov - mean) <= 3 * sd), (level, cov, mean, sd)


@pytest.mark.parametrize("kw, msg", [
    (dict(targets=("memory_mb",)), "must include latency_ms"),
    (dict(targets=("latency_ms", "speed")), "distinct names"),
    (dict(pool="attention"), "pool must be one of"),
    (dict(loss="l1"), "loss must be one of"),
])
def test_config_validation(kw, msg):
    with pytest.raises(InvalidInputError, match=msg):
        GNNConfig(**kw)


def test_nnlqp_style_baseline_trains(small):
    from costmodel.predictors import NNLQP

    p = GNNPredictor(GNNConfig(epochs=3, hidden=16, **NNLQP)).fit(small, progress=False)
    e = p.predict(small.graph(0), "h200")
    assert np.isfinite([e.latency_ms, e.memory_mb, e.energy_j]).all() and e.latency_ms > 0


def test_shipped_trappm_and_encoder_artifacts():
    from costmodel.predictors import ARTIFACTS_DIR, get_predictor

    gae = GraphAutoencoder.load(ARTIFACTS_DIR / "trappm")
    assert gae.history["train_graphs"] > 2000
    p = get_predictor("trappm")
    assert isinstance(p, TraPPMPredictor) and p.meta["trained_rows"] == 342
    g = zoo_graph("resnet18", batch=32, mode="training", method="trace")
    e = p.predict(g, "h200", mode="training")
    assert e.predictor == "trappm" and e.latency_ms_interval is not None
    # the shipped regressor's encoder is the shipped pretrained one
    x = np.ones((3, len(gae.node_mean)), np.float32)
    ei = np.asarray([[0, 1], [1, 2]])
    np.testing.assert_allclose(p.encoder.embed(x, ei), gae.embed(x, ei), rtol=1e-6)


def test_shipped_autoencoder_predicts_links_of_unseen_graphs(heldout_graphs):
    """Recompute the shipped encoder's link-prediction ROC-AUC on graphs outside its pretraining corpus:
    clearly above an untrained encoder of the same architecture and normalization, and equal to the
    held-out AUC stored at pretraining time within three bootstrap standard errors (over graphs)."""
    import torch
    from torch_geometric.data import Batch

    from costmodel.features import NODE_FEATURE_NAMES
    from costmodel.predictors._gae import _build_encoder
    from costmodel.predictors import ARTIFACTS_DIR

    gae = GraphAutoencoder.load(ARTIFACTS_DIR / "trappm")
    idx = range(len(heldout_graphs.x))
    shipped = gae.evaluate(heldout_graphs, idx)
    torch.manual_seed(gae.config.seed)
    untrained = GraphAutoencoder(gae.config, gae.node_mean, gae.node_std)
    untrained.encoder = _build_encoder(gae.config, len(NODE_FEATURE_NAMES)).eval()
    base = untrained.evaluate(heldout_graphs, idx)
    assert shipped["auc"] > base["auc"] + 0.2 and shipped["bce"] < base["bce"], (shipped, base)
    # per-graph scores, resampled over graphs: the sampling error of a pooled AUC on this many graphs
    torch.manual_seed(0)
    scores = []
    with torch.no_grad():
        for i in idx:
            b = Batch.from_data_list([gae._data(heldout_graphs.x[i], heldout_graphs.edge_index[i])])
            _, pos, neg = gae._loss(gae.encoder(b.x, b.edge_index), b.edge_index, b.batch, return_scores=True)
            scores.append((pos, neg))
    rng = np.random.default_rng(0)
    boot = [roc_auc(np.concatenate([scores[j][0] for j in s]), np.concatenate([scores[j][1] for j in s]))
            for s in rng.integers(0, len(scores), (100, len(scores)))]
    stored = json.loads((ARTIFACTS_DIR / "trappm" / "gae.json").read_text())["history"]["heldout_auc"]
    assert abs(shipped["auc"] - stored) <= 3 * np.std(boot), (shipped["auc"], stored, np.std(boot))
