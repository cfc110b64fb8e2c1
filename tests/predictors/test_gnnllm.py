"""GraphMAE pretraining and the GNN + causal-LM predictor (tiny sizes, random-weight LM)."""

import numpy as np
import pytest

from costmodel import InvalidInputError, SchemaMismatchError
from costmodel.datasets import PerfDataset
from costmodel.predictors import get_predictor, load_predictor
from costmodel.predictors._gnnllm import GNNLLMConfig, GNNLLMPredictor, lora_parameter_count
from costmodel.predictors._prompts import SUMMARY_PROMPT, graph_summary, prompt_text
from costmodel.predictors._graphmae import GraphMAE, GraphMAEConfig, sce_loss

TINY_LM = dict(gnn_hidden=16, gnn_layers=2, lm_hidden=32, lm_heads=2, lm_layers=1, head_hidden=16, batch_size=8)
ROWS = ("squeezenet1_1", "resnet18")


@pytest.fixture(scope="module")
def mae(corpus):
    return GraphMAE(GraphMAEConfig(hidden=16, layers=2, epochs=12, batch_size=2, lr=3e-3)).fit(
        corpus, [0, 1, 2, 3], progress=False)


@pytest.fixture(scope="module")
def rows():
    ds = PerfDataset.load()
    picked = [r for r in ds.rows if r.model in ROWS][:10]
    return PerfDataset(picked, method="trace")


@pytest.fixture(scope="module")
def trained(rows, mae):
    cfg = GNNLLMConfig(**TINY_LM, epochs=4, summary_epochs=2)
    return GNNLLMPredictor(cfg).fit(rows, encoder=mae, progress=False)


# ------------------------------------------------------------------ GraphMAE
def test_graphmae_loss_decreases_and_beats_untrained(mae, corpus):
    loss = mae.history["loss"]
    assert len(loss) == 12 and np.mean(loss[-3:]) < np.mean(loss[:3])
    ev = mae.evaluate(corpus, [4, 5])
    assert ev["graphs"] == 2 and ev["sce"] < ev["sce_untrained"]


def test_sce_loss_is_zero_for_parallel_vectors():
    import torch

    x = torch.randn(5, 7)
    assert float(sce_loss(3 * x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(sce_loss(-x, x, gamma=2.0)) == pytest.approx(4.0, rel=1e-5)


def test_graphmae_config_validates():
    with pytest.raises(InvalidInputError, match="mask_rate"):
        GraphMAEConfig(mask_rate=1.0)
    with pytest.raises(InvalidInputError, match="gamma"):
        GraphMAEConfig(gamma=0.5)
    with pytest.raises(InvalidInputError, match="replace_rate"):
        GraphMAEConfig(replace_rate=1.0)


def test_graphmae_random_substitution_trains(corpus):
    m = GraphMAE(GraphMAEConfig(hidden=16, layers=2, epochs=6, batch_size=2, lr=3e-3, replace_rate=0.5)).fit(
        corpus, [0, 1, 2, 3], progress=False)
    loss = m.history["loss"]
    assert np.isfinite(loss).all() and loss[-1] < loss[0]


def test_graphmae_save_load_round_trip_and_schema(mae, corpus, tmp_path):
    import json

    a = mae.embed_many([(corpus.x[i], corpus.edge_index[i]) for i in range(len(corpus))])
    assert a.shape == (len(corpus), 16) and np.isfinite(a).all()
    mae.save(tmp_path)
    b = GraphMAE.load(tmp_path).embed_many([(corpus.x[i], corpus.edge_index[i]) for i in range(len(corpus))])
    np.testing.assert_array_equal(a, b)
    d = json.loads((tmp_path / "graphmae.json").read_text())
    d["node_features"] = d["node_features"][:-1]
    (tmp_path / "graphmae.json").write_text(json.dumps(d))
    with pytest.raises(SchemaMismatchError):
        GraphMAE.load(tmp_path)
    with pytest.raises(SchemaMismatchError):
        mae.embed_many([(corpus.x[0][:, :-1], corpus.edge_index[0])])


# ---------------------------------------------------------------- graph token
def test_lm_loss_gradient_reaches_the_gin(rows, mae):
    import copy

    p = GNNLLMPredictor(GNNLLMConfig(**TINY_LM))
    p.encoder = copy.deepcopy(mae)
    p._build(p.encoder)
    items = [p.features(rows.graph(i), rows[i].device, rows[i].mode) for i in range(3)]
    prompt = p.tok.encode(SUMMARY_PROMPT)
    answers = [p.tok.encode(graph_summary(rows.graph(i))) for i in range(3)]
    assert all(p.tok.raw.token_to_id("[UNK]") not in a for a in answers)
    p.net.train()
    out, _ = p.net.lm_forward(p._graph_batch(items), [prompt] * 3, answers)
    out.loss.backward()
    grads = [q.grad for q in p.net.gin.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    # the frozen base LM gets no gradient; LoRA does
    lm = p.net.lm
    assert all(q.grad is None for n, q in lm.named_parameters() if "lora_" not in n)
    assert any(q.grad is not None and float(q.grad.abs().sum()) > 0 for n, q in lm.named_parameters() if "lora_B" in n)


def test_lora_parameter_count_matches_peft(mae):
    p = GNNLLMPredictor(GNNLLMConfig(**dict(TINY_LM, lora_r=8)))
    p._build(mae)
    lm = p.net.lm
    trainable, total = lm.get_nb_trainable_parameters()
    n = lora_parameter_count(lm)
    H = 32
    assert n == trainable == 8 * (H + 3 * H) * 1  # c_attn: H -> 3H, one layer
    assert n < 0.05 * total
    counts = p.trainable_parameters()
    assert counts["lora"] == n and counts["lm_frozen"] > 20 * n


def test_prompt_and_summary_text(rows):
    g = rows.graph(0)
    s = graph_summary(g)
    assert s.startswith(f"nodes {g.num_nodes} edges {g.num_edges}") and "flops" in s
    p = GNNLLMPredictor(GNNLLMConfig(**TINY_LM))
    _, est = p.features(g, rows[0].device, rows[0].mode)
    t = prompt_text(est)
    assert "H200" in t and "memory_bandwidth_gbps" in t and f"batch {rows[0].batch}" in t


def test_config_validates():
    with pytest.raises(InvalidInputError, match="backbone"):
        GNNLLMConfig(backbone="bert")
    with pytest.raises(InvalidInputError, match="local model directory"):
        GNNLLMConfig(lm="/no/such/model")


# ------------------------------------------------------------------ predictor
def test_fit_predict_save_load(trained, rows, tmp_path):
    assert "gnn-llm" in __import__("costmodel.predictors", fromlist=["x"]).available_predictors()
    assert trained.meta["pretrained_encoder"] and len(trained.meta["summary_loss"]) == 2
    gs = [rows.graph(i) for i in range(len(rows))]
    est = trained.predict_many(gs, "h200")
    lat = np.asarray([e.latency_ms for e in est])
    assert np.isfinite(lat).all() and (lat > 0).all()
    assert est[0].predictor == "gnn-llm" and est[0].memory_mb > 0
    trained.save(tmp_path)
    back = load_predictor(tmp_path)
    assert isinstance(back, GNNLLMPredictor)
    np.testing.assert_allclose([e.latency_ms for e in back.predict_many(gs, "h200")], lat, rtol=1e-6)


def test_none_baseline_round_trip(rows, mae, tmp_path):
    p = GNNLLMPredictor(GNNLLMConfig(**dict(TINY_LM, backbone="none"), epochs=3)).fit(rows, encoder=mae,
                                                                                     progress=False)
    g = rows.graph(0)
    a = p.predict(g, "h200").latency_ms
    p.save(tmp_path)
    assert load_predictor(tmp_path).predict(g, "h200").latency_ms == pytest.approx(a, rel=1e-6)


def test_not_the_default_predictor():
    assert get_predictor(None).name != "gnn-llm"


# ------------------------------------------------------- physics footing
@pytest.mark.parametrize("backbone", ["lm", "none"])
def test_residual_zero_head_predicts_the_analytic_estimate(rows, mae, backbone):
    import torch

    cfg = GNNLLMConfig(**dict(TINY_LM, backbone=backbone), epochs=1, summary_epochs=0)
    p = GNNLLMPredictor(cfg).fit(rows, encoder=mae, progress=False)
    assert len(p.norm.static_mean) == len(p._static_names) == len(p.features(rows.graph(0), "h200",
                                                                             rows[0].mode)[0].static)
    with torch.no_grad():
        p.net.head[-1].weight.zero_()
        p.net.head[-1].bias.zero_()
    p.norm.y_mean, p.norm.y_std = [0.0], [1.0]
    items = [p.features(rows.graph(i), rows[i].device, rows[i].mode) for i in range(len(rows))]
    analytic = np.asarray([e.latency_ms for _, e in items])
    np.testing.assert_allclose(p._predict_features(items)[:, 0], analytic, rtol=1e-6)
    # without the residual the same zero head predicts exp(0) = 1 ms
    q = GNNLLMPredictor(GNNLLMConfig(**dict(TINY_LM, backbone=backbone), epochs=1, summary_epochs=0,
                                     residual=False)).fit(rows, encoder=mae, progress=False)
    with torch.no_grad():
        q.net.head[-1].weight.zero_()
        q.net.head[-1].bias.zero_()
    q.norm.y_mean, q.norm.y_std = [0.0], [1.0]
    np.testing.assert_allclose(q._predict_features(items)[:, 0], 1.0)


def test_static_normalization_and_flags_saved_as_json(trained, tmp_path):
    import json

    trained.save(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["config"]["residual"] is True and cfg["config"]["use_static"] is True
    assert len(cfg["norm"]["static_mean"]) == len(cfg["schema"]["static_features"]) > 0
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pt"))


# --------------------------------------------------------------- few-shot
def test_init_from_copies_everything_then_fine_tunes(trained, rows):
    from dataclasses import replace

    items = [trained.features(rows.graph(i), rows[i].device, rows[i].mode) for i in range(len(rows))]
    base = trained._predict_features(items)
    same = GNNLLMPredictor(replace(trained.config, epochs=0)).fit(rows, [0, 1, 2, 3], init_from=trained,
                                                                   progress=False)
    np.testing.assert_allclose(same._predict_features(items), base, rtol=1e-6)
    assert "summary_loss" not in same.meta and same.meta["fine_tuned_from"]["trained_rows"] == len(rows)
    tuned = GNNLLMPredictor(replace(trained.config, epochs=3, lr=5e-4)).fit(rows, [0, 1, 2, 3, 4, 5],
                                                                            init_from=trained, progress=False)
    assert not np.allclose(tuned._predict_features(items), base)
    np.testing.assert_allclose(trained._predict_features(items), base)  # the source is left untouched
    with pytest.raises(InvalidInputError, match="architecture"):
        GNNLLMPredictor(replace(trained.config, head_hidden=8)).fit(rows, init_from=trained, progress=False)


def test_adapt_a_gnn_llm_artifact_to_the_cpu(trained, tmp_path):
    from pathlib import Path

    from costmodel.training import adapt, load_rows

    trained.save(tmp_path / "src")
    cpu = load_rows(Path(__file__).resolve().parents[2] / "costmodel" / "data" / "cpu" / "vision.jsonl",
                    device="cpu").subset(list(range(12)))
    res = adapt(str(tmp_path / "src"), cpu, shots=8, epochs=3, progress=False)
    assert isinstance(res.predictor, GNNLLMPredictor) and res.predictor.meta["adapted_from"] == "gnn-llm"
    assert len(res.test_rows) == 4 and np.isfinite(res.after["mape"])
    res.predictor.save(tmp_path / "cpu")
    g = cpu.graph(res.test_rows[0])
    a = res.predictor.predict(g, "cpu").latency_ms
    assert load_predictor(tmp_path / "cpu").predict(g, "cpu").latency_ms == pytest.approx(a, rel=1e-5)


# ------------------------------------------------------------ shipped artifact
def test_shipped_artifact_loads_by_name_and_fits_its_training_rows():
    p = get_predictor("gnn-llm")
    assert p.net is not None and p.meta["pretrained_encoder"] and p.meta["trained_rows"] == 342
    assert p.config.lm is None and p.config.summary_epochs > 0 and "summary_loss" in p.meta
    assert p.intervals["coverage"] == 0.9
    ds = PerfDataset.load()
    picked = [i for i, r in enumerate(ds.rows) if r.model == "resnet18"][:4]
    for i in picked:
        e = p.predict(ds.graph(i), "h200", mode=ds[i].mode)
        assert e.latency_ms == pytest.approx(ds[i].latency_ms, rel=0.3)
        assert e.latency_ms_interval is not None


def test_intervals_cover_held_out_rows(coverage_split, coverage_features):
    """A small GNN + LM fit on one third of 150 measured rows and calibrated on another: on the last third,
    never seen, the share of measurements inside its intervals is the nominal level within three standard
    deviations (the sampling error of a calibration and a test set of this size)."""
    from _coverage import expected_coverage, measured_coverage

    data, train, cal, test = coverage_split
    p = GNNLLMPredictor(GNNLLMConfig(**TINY_LM, epochs=4, summary_epochs=0)).fit(
        data, train, cached=coverage_features, progress=False)
    items = [coverage_features[i] for i in test]
    for level in (0.5, 0.9):
        p.calibrate(data, cal, coverage=level, cached=coverage_features)
        cov = measured_coverage(p, data, test, items)
        mean, sd = expected_coverage(len(cal), len(test), level)
        assert np.all(np.abs(cov - mean) <= 3 * sd), (level, cov, mean, sd)


def test_shipped_graphmae_reconstructs_unseen_graphs(heldout_graphs):
    """Recompute the shipped GraphMAE's masked-feature reconstruction error on graphs outside its
    pretraining corpus: far below an untrained encoder's, and the stored held-out error within three
    standard errors of the per-graph mean."""
    import json

    from costmodel.predictors import ARTIFACTS_DIR

    mae = GraphMAE.load(ARTIFACTS_DIR / "graphmae")
    idx = list(range(len(heldout_graphs.x)))
    ev = mae.evaluate(heldout_graphs, idx)
    assert ev["sce"] < 0.5 * ev["sce_untrained"], ev
    per = np.asarray([mae.reconstruction_error(heldout_graphs, [i], seed=i) for i in idx])
    stored = json.loads((ARTIFACTS_DIR / "graphmae" / "graphmae.json").read_text())["history"]["heldout_sce"]
    se = per.std(ddof=1) / np.sqrt(len(per))
    assert abs(per.mean() - stored) <= 3 * se, (per.mean(), stored, se)


def test_adapt_the_shipped_gnn_llm_by_name(tmp_path, capsys):
    import json
    from pathlib import Path

    from costmodel.cli import main

    rows = Path(__file__).resolve().parents[2] / "costmodel" / "data" / "cpu" / "vision.jsonl"
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(rows.read_text().splitlines()[:8]) + "\n")
    code = main(["adapt", "--device", "cpu", "--data", str(data), "--shots", "6", "--epochs", "2",
                 "--predictor", "gnn-llm", "-o", str(tmp_path / "a"), "--json"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["predictor"] == "gnn-llm" and rep["shots"] == 6 and rep["held_out"] == 2
    assert load_predictor(tmp_path / "a").meta["adapted_from"] == "gnn-llm"
