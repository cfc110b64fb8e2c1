"""Learned predictors: fit, save -> load -> predict round trips, schema checks."""

import json

import numpy as np
import pytest

import costmodel
from costmodel import ModelLoadError, SchemaMismatchError
from costmodel.datasets import PerfDataset
from costmodel.predictors import ARTIFACTS_DIR, DIPPMPredictor, get_predictor, GNNConfig, GNNPredictor, load_predictor
from costmodel.predictors import XGBStaticPredictor

SMALL = ("squeezenet1_1", "mnasnet0_5", "resnet18", "shufflenet_v2_x1_0")


@pytest.fixture(scope="module")
def small():
    ds = PerfDataset.load()
    return PerfDataset([r for r in ds.rows if r.model in SMALL])


def _cfg(**kw):
    return GNNConfig(epochs=3, hidden=16, **kw)


@pytest.mark.parametrize("conv", ["sage", "gcn", "gat", "gin", "none"])
def test_fit_predict_every_conv(small, conv):
    p = GNNPredictor(_cfg(conv=conv)).fit(small, progress=False)
    ests = p.predict_many([small.graph(i) for i in range(4)], "h200")
    assert len(ests) == 4
    for e, r in zip(ests, small.rows[:4]):
        assert e.predictor == "gnn"
        assert np.isfinite([e.latency_ms, e.memory_mb, e.energy_j]).all()
        assert e.latency_ms > 0 and e.memory_mb > 0 and e.energy_j > 0
        assert e.batch == r.batch


def test_roundtrip_and_reproducible(small, tmp_path):
    p = DIPPMPredictor(_cfg(conv="sage")).fit(small, progress=False)
    q = DIPPMPredictor(_cfg(conv="sage")).fit(small, progress=False)
    g = small.graph(0)
    a, b = p.predict(g, "h200"), q.predict(g, "h200")
    assert a.latency_ms == pytest.approx(b.latency_ms, rel=1e-5)  # same seed, same model
    p.save(tmp_path / "m")
    files = sorted(f.name for f in (tmp_path / "m").iterdir())
    assert files == ["config.json", "weights.safetensors"]
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["meta"]["trained_rows"] == len(small) and len(cfg["meta"]["data_hash"]) == 16
    r = load_predictor(tmp_path / "m")
    assert isinstance(r, DIPPMPredictor)
    assert r.predict(g, "h200").to_dict() == a.to_dict()


def test_schema_mismatch_refused(small, tmp_path):
    p = GNNPredictor(_cfg()).fit(small, progress=False)
    p.save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["schema"]["fingerprint"] = "0000000000000000"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(SchemaMismatchError, match="feature schema"):
        GNNPredictor.load(tmp_path / "m")


def test_untrained_and_missing():
    with pytest.raises(ModelLoadError, match="not trained"):
        GNNPredictor(_cfg()).predict(costmodel.to_graph("torchvision:resnet18", batch=1), "h200")
    with pytest.raises(ModelLoadError, match="missing config.json"):
        GNNPredictor.load("/nonexistent/path")


def test_xgb_roundtrip(small, tmp_path):
    p = XGBStaticPredictor(params={"n_estimators": 20}).fit(small, progress=False)
    g = small.graph(3)
    e = p.predict(g, "h200")
    assert e.predictor == "xgb-static" and e.latency_ms > 0
    p.save(tmp_path / "x")
    q = load_predictor(tmp_path / "x")
    assert q.predict(g, "h200").to_dict() == e.to_dict()


def test_shipped_default_is_learned():
    assert DIPPMPredictor.is_available(), "the DIPPM artifact must ship with the package"
    est = costmodel.estimate("torchvision:resnet18", batch=8, device="h200")
    assert est.predictor == "timeline"  # the best measured on unseen families (benchmarks/timeline.py)
    assert costmodel.estimate("torchvision:resnet18", batch=8, device="h200", predictor="dippm").predictor == "dippm"
    assert "analytic" in est.details
    assert get_predictor("analytic").name == "analytic"
    assert costmodel.estimate("torchvision:resnet18", batch=8, device="h200", predictor="analytic").predictor == "analytic"


def test_shipped_artifact_meta():
    cfg = json.loads((ARTIFACTS_DIR / "dippm" / "config.json").read_text())
    assert cfg["predictor"] == "dippm" and cfg["meta"]["trained_rows"] == 342
    assert cfg["schema"]["version"] >= 1


def test_conformal_intervals(small, tmp_path):
    p = GNNPredictor(_cfg()).fit_calibrated(small, calibration_fraction=0.3, coverage=0.8, progress=False)
    assert p.intervals["coverage"] == 0.8 and p.intervals["calibration_rows"] == round(0.3 * len(small))
    e = p.predict(small.graph(0), "h200")
    for t, q in zip(("latency_ms", "memory_mb", "energy_j"), p.intervals["log_halfwidth"]):
        assert q > 0 and getattr(e, f"{t}_interval") is not None  # how well they cover: the test below
    assert e.details["interval_coverage"] == 0.8
    assert e.details["extrapolated_device"] is False
    on_t4 = p.predict(small.graph(0), "t4")
    assert on_t4.details["extrapolated_device"] is True
    # the widths are the rows' device's residuals: another device gets no latency or energy interval
    assert on_t4.latency_ms_interval is None and on_t4.energy_j_interval is None
    assert on_t4.memory_mb_interval is not None and any("no latency, energy or power interval on T4" in a
                                                        for a in on_t4.assumptions)
    p.save(tmp_path / "m")
    assert GNNPredictor.load(tmp_path / "m").intervals == p.intervals


def test_conformal_intervals_cover_held_out_rows(coverage_split, coverage_features):
    """Fit on one third of 150 measured rows, calibrate on another: on the last third, rows the model never
    saw, the share of measurements inside the intervals is the nominal level within sampling error
    (three standard deviations of a calibration of this size and a test set of this size)."""
    from _coverage import expected_coverage, measured_coverage

    data, train, cal, test = coverage_split
    p = GNNPredictor(GNNConfig(epochs=20, hidden=32)).fit(data, train, cached=coverage_features, progress=False)
    items = [coverage_features[i] for i in test]
    for level in (0.5, 0.9):  # a low level too: intervals that are merely wide would cover far more than half
        p.calibrate(data, cal, coverage=level, cached=coverage_features)
        cov = measured_coverage(p, data, test, items)
        mean, sd = expected_coverage(len(cal), len(test), level)
        assert np.all(np.abs(cov - mean) <= 3 * sd), (level, cov, mean, sd)


def test_xgb_static_trains_without_scikit_learn(small, monkeypatch):
    """XGBoost's native API fits the trees: scikit-learn is not a dependency."""
    import builtins

    import xgboost.sklearn as xgb_sklearn
    real = builtins.__import__

    def no_sklearn(name, *args, **kw):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("scikit-learn is not installed")
        return real(name, *args, **kw)

    monkeypatch.setattr(xgb_sklearn, "SKLEARN_INSTALLED", False)  # the wrapper refuses, as without scikit-learn
    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    p = XGBStaticPredictor(params={"n_estimators": 5}).fit(small, progress=False)
    assert len(p.models) == 3 and all(m.num_boosted_rounds() == 5 for m in p.models)
    assert p.predict(small.graph(0), "h200").latency_ms > 0


def test_xgb_static_shipped_model_is_unchanged():
    """The shipped trees load through xgboost.Booster and predict what the numpy evaluator of the same
    JSON computes (the format and the model did not change)."""
    from costmodel.predictors import TreeEnsemble

    p = load_predictor(ARTIFACTS_DIR / "xgb-static")
    g = costmodel.to_graph("torchvision:resnet18", batch=8, method="trace")
    f, _ = p.features(g, "h200", "inference")
    for t, m in zip(p.targets, p.models):
        trees = TreeEnsemble.load(ARTIFACTS_DIR / "xgb-static" / f"{t}.json")
        np.testing.assert_allclose(m.inplace_predict(f.static[None]), trees.predict(f.static[None]), rtol=1e-5)


def test_missing_labels_and_fine_tuning():
    cpu = PerfDataset.load(device="cpu")
    sub = PerfDataset([r for r in cpu.rows if r.model in SMALL])
    assert len(sub) >= 6
    src = GNNPredictor(_cfg()).fit(sub, progress=False)  # memory/energy are NaN: masked out
    e = src.predict(sub.graph(0), "cpu")
    assert np.isfinite(e.latency_ms) and e.latency_ms > 0
    ft = GNNPredictor(_cfg(seed=1)).fit(sub, [0, 1, 2, 3], progress=False, init_from=src)
    assert ft.norm.y_mean == src.norm.y_mean  # starts from the source's normalization
    with pytest.raises(costmodel.InvalidInputError, match="same architecture"):
        GNNPredictor(GNNConfig(epochs=1, hidden=32)).fit(sub, [0, 1, 2, 3], progress=False, init_from=src)


def test_shipped_artifacts_say_how_to_get_them(monkeypatch, tmp_path):
    from costmodel.predictors import _artifacts, GNNLLMPredictor, TraPPMPredictor

    monkeypatch.setattr(GNNLLMPredictor, "_requires", ("torch_geometric", "no_such_module_here"))
    assert not GNNLLMPredictor.is_available()
    with pytest.raises(ModelLoadError, match=r"needs no_such_module_here: pip install 'costmodel\[gnnllm\]'"):
        get_predictor("gnn-llm")
    monkeypatch.setattr(_artifacts, "ARTIFACTS_DIR", tmp_path)
    assert not TraPPMPredictor.is_available()
    with pytest.raises(ModelLoadError, match="no shipped trappm artifact.*costmodel train --predictor trappm"):
        get_predictor("trappm")


@pytest.mark.parametrize("name", ["timeline", "analytic", "dippm", "trappm", "xgb-static"])
def test_a_model_name_where_a_built_graph_belongs_is_a_named_error(name):
    from costmodel import InvalidInputError, get_predictor

    p = get_predictor(name)
    with pytest.raises(InvalidInputError, match=r"predict_many: item 0 is a str .*costmodel.to_graph"):
        p.predict_many(["torchvision:resnet18"], "h200")
    with pytest.raises(InvalidInputError, match=r"predict_many takes a list of built graphs .*got a str"):
        p.predict_many("torchvision:resnet18", "h200")
    with pytest.raises(InvalidInputError, match=r"predict: its graph is a str"):
        p.predict("torchvision:resnet18", "h200")


@pytest.mark.parametrize("name", ["timeline", "analytic", "dippm", "trappm", "xgb-static"])
def test_predict_many_of_nothing_and_of_a_graph_without_work(name):
    from costmodel import CostGraph, InvalidGraphError

    p = get_predictor(name)
    assert p.predict_many([], "h100") == []  # the graph regressors raised on an empty list
    g = costmodel.to_graph("torchvision:resnet18", batch=2, input_shape=(3, 32, 32), method="trace")
    empty = CostGraph(nodes=[], edges=[], meta={"name": "empty", "batch": 2})
    if name in ("timeline", "analytic"):  # the call alone: what a NAS candidate of identities costs
        assert len(p.predict_many([g, empty], "h100")) == 2
        return
    # the graph regressors have nothing to read: named, where they gave a bare "math domain error"
    with pytest.raises(InvalidGraphError, match=r"predict_many: item 1: graph 'empty' has no operators"):
        p.predict_many([g, empty], "h100")


@pytest.mark.parametrize("name", ["timeline", "analytic", "dippm", "trappm", "xgb-static"])
@pytest.mark.parametrize("field, value", [("flops", float("nan")), ("flops", -5.0), ("bytes_read", float("inf"))])
def test_a_node_without_a_finite_cost_is_named_with_its_item(name, field, value):
    import copy

    from costmodel import InvalidGraphError

    p = get_predictor(name)
    g = costmodel.to_graph("torchvision:squeezenet1_1", batch=1, input_shape=(3, 32, 32), method="trace")
    bad = copy.deepcopy(g)  # a graph file edited by hand: NaN or negative work gave NaN, or lower, costs
    setattr(bad.nodes[0], field, value)
    graphs = [g] * 65 + [bad] if name == "timeline" else [g, g, bad]  # the timeline: past its first chunk
    with pytest.raises(InvalidGraphError, match=rf"predict_many: item {len(graphs) - 1}: node 0 \(.*\) of graph "
                                                r"'torchvision:squeezenet1_1' has .* must be a finite number >= 0"):
        p.predict_many(graphs, "h100")
    with pytest.raises(InvalidGraphError, match=r"^node 0 .* must be a finite number >= 0"):
        p.predict(bad, "h100")


@pytest.mark.parametrize("name", ["timeline", "analytic", "trappm"])
def test_a_graph_is_costed_in_the_mode_it_was_captured_in(name):
    p = get_predictor(name)
    gt = costmodel.to_graph("torchvision:resnet18", batch=2, input_shape=(3, 32, 32), method="trace", mode="training")
    gi = costmodel.to_graph("torchvision:resnet18", batch=2, input_shape=(3, 32, 32), method="trace")
    # estimate() used to cost a training capture as inference unless told, with no word
    est = costmodel.estimate(gt, batch=2, device="h200", predictor=name)
    assert est.mode == "training" and est.latency_ms == pytest.approx(p.predict(gt, "h200").latency_ms)
    assert not any("captured for" in a for a in est.assumptions)
    assert costmodel.estimate(gi, batch=2, device="h200", predictor=name).mode == "inference"
    # another mode costs the capture's operators, and says so
    other = costmodel.estimate(gt, batch=2, device="h200", predictor=name, mode="inference")
    assert other.mode == "inference"
    assert any("captured for training and is costed as inference" in a for a in other.assumptions)
    many = p.predict_many([gt, gi], "h200", mode="training")
    assert [any("captured for inference" in a for a in e.assumptions) for e in many] == [False, True]


@pytest.mark.parametrize("name", ["trappm", "dippm", "xgb-static"])
def test_interval_ends_stay_inside_physics(name):
    # a memory interval's lower end fell below the weights and the framework's context (resnet18 fp32 on a
    # T4), an energy interval's upper end above the power limit over the longest latency (xgb-static fp16)
    from costmodel.devices import get_device

    p = get_predictor(name)
    for device, dtype, batch in (("t4", "fp32", 1), ("t4", "fp16", 8), ("h200", "fp16", 8)):
        dev = get_device(device)
        g = costmodel.to_graph("torchvision:resnet18", batch=batch, method="trace", dtype=dtype)
        e = p.predict(g, device)
        floor = e.details["memory_breakdown_mb"]["weights_mb"] + dev.framework_overhead_mb
        assert e.memory_mb_interval[0] >= floor - 1e-6
        if e.energy_j_interval is not None:
            lat_lo, lat_hi = e.latency_ms_interval
            assert dev.idle_power_w * lat_lo / 1e3 - 1e-9 <= e.energy_j_interval[0]
            assert e.energy_j_interval[1] <= dev.tdp_w * lat_hi / 1e3 + 1e-9
