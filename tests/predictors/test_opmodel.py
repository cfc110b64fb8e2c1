"""The operator model: features, implicit GEMMs, the efficiency regressor, host costs, files."""

import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import costmodel
from costmodel.frontends import from_torch
from costmodel.ir import OP_KINDS, Node
from costmodel.predictors._opmodel import (
    FEATURE_NAMES,
    HOST_TERMS,
    Composition,
    DeviceFigures,
    HostCosts,
    OpEfficiencyModel,
    OpTimeline,
    _gemm,
    bound_s,
    compose,
    has_backward,
    MMAP_THRESHOLD_BYTES,
    labelled_ops,
    load_op_dataset,
    op_features,
    optimizer_fresh_mb,
    profiled_with_fused_paths,
    run_labels,
)

FIGS = DeviceFigures(name="test-cpu", gflops=100.0, gbps=20.0, cache_mb=8.0, cores=4)


def _col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def _net(c: int = 8, hidden: int = 10) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, c, 3, padding=1), torch.nn.BatchNorm2d(c), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(c * 16 * 16, hidden),
    ).eval()


def _graph(c: int = 8, batch: int = 1, hidden: int = 10):
    return from_torch(_net(c, hidden), torch.empty(batch, 3, 16, 16), method="trace")


@pytest.fixture(scope="module")
def graph():
    return _graph()


def _conv(groups: int) -> Node:
    """Batch 2, 8 -> 16 channels, 3x3 kernel, 10x10 output."""
    return Node(id=0, op="aten.convolution", kind="conv",
                attrs={"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": groups, "kernel": [3, 3]},
                in_shapes=[(2, 8, 10, 10), (16, 8 // groups, 3, 3), (16,)], in_dtypes=["fp32"] * 3,
                param_inputs=[False, True, True], out_shapes=[(2, 16, 10, 10)], out_dtypes=["fp32"],
                flops=2.0 * 200 * 16 * 72 / groups, bytes_read=4.0 * (1600 + 16 * 72 / groups + 16),
                bytes_written=4.0 * 3200)


# ------------------------------------------------------------------ features, GEMMs, bounds
def test_features_are_finite_for_every_node_and_phase(graph):
    assert {n.kind for n in graph.nodes} >= {"conv", "batch_norm", "relu", "matmul"}
    for n in graph.nodes:
        for phase in ("forward", "backward"):
            f = op_features(n, phase, FIGS)
            assert len(f) == len(FEATURE_NAMES), (n.op, phase)
            assert all(isinstance(v, float) and math.isfinite(v) for v in f), (n.op, phase, f)
            kinds = f[:len(OP_KINDS)]
            assert sum(kinds) == 1.0 and kinds[OP_KINDS.index(n.kind)] == 1.0
            assert f[_col("phase_backward")] == float(phase == "backward")
            gm, gn, gk = _gemm(n)
            assert f[_col("log_gemm_m")] == pytest.approx(math.log10(1 + gm) / 5)
            assert f[_col("log_gemm_k")] == pytest.approx(math.log10(1 + gk) / 5)
        assert f[_col("hw_log_gbps")] == pytest.approx(math.log10(20.0))


def test_implicit_gemm_sizes_of_convolutions_and_matmuls(graph):
    # M = batch x output pixels, N = output channels per group, K = input channels per group x kernel area
    assert _gemm(_conv(1)) == (200.0, 16.0, 72.0)
    assert _gemm(_conv(8)) == (200.0, 2.0, 9.0)
    # a batched matmul: M = all leading output dims, N = last, K from the attribute or the first operand
    mm = Node(id=0, op="aten.bmm", kind="matmul", in_shapes=[(4, 5, 7), (4, 7, 6)], out_shapes=[(4, 5, 6)],
              attrs={"k": 7})
    assert _gemm(mm) == (20.0, 6.0, 7.0)
    mm.attrs = {}
    assert _gemm(mm) == (20.0, 6.0, 7.0)
    # the traced Linear(2048 -> 10) at batch 1 (addmm: bias first, K from the attribute)
    (lin,) = [n for n in graph.nodes if n.kind == "matmul"]
    assert _gemm(lin) == (1.0, 10.0, 2048.0)
    (conv,) = [n for n in graph.nodes if n.kind == "conv"]
    assert _gemm(conv) == (256.0, 8.0, 27.0)
    relu = next(n for n in graph.nodes if n.kind == "relu")
    assert _gemm(relu) == (0.0, 0.0, 0.0)


def test_bounds_follow_the_roofline_and_double_in_backward():
    figs = DeviceFigures(name="t", gflops=100.0, gbps=20.0, tensor_gflops={"fp16": 1000.0})
    conv = _conv(1)
    c, m = bound_s(conv, "forward", figs, "fp32")
    assert c == pytest.approx(conv.flops / 100e9, rel=1e-12)
    assert m == pytest.approx((conv.bytes_read + conv.bytes_written) / 20e9, rel=1e-12)
    cb, mb = bound_s(conv, "backward", figs, "fp32")
    assert cb == pytest.approx(2 * c, rel=1e-12) and mb == pytest.approx(2 * m, rel=1e-12)
    # a tensor-core dtype runs the GEMM at the tensor rate; an elementwise op stays on the scalar rate
    assert bound_s(conv, "forward", figs, "fp16")[0] == pytest.approx(conv.flops / 1000e9, rel=1e-12)
    relu = Node(id=1, op="aten.relu", kind="relu", in_shapes=[(2, 16, 10, 10)], out_shapes=[(2, 16, 10, 10)],
                flops=3200.0, bytes_read=12800.0, bytes_written=12800.0)
    assert bound_s(relu, "forward", figs, "fp16")[0] == pytest.approx(3200 / 100e9, rel=1e-12)
    assert has_backward(relu) and not has_backward(Node(id=2, op="aten.view", kind="reshape", is_view=True))


# ------------------------------------------------------------------ the efficiency regressor
_KINDS = ("conv", "matmul", "relu", "add")
_BASE_EFF = np.array([0.8, 0.6, 0.3, 0.15])


def _synthetic(n: int, seed: int):
    """Operators whose time is bound / efficiency, the efficiency set by the kind and the ``log_bytes`` column."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, len(FEATURE_NAMES)), np.float32)
    k = rng.integers(0, len(_KINDS), n)
    X[np.arange(n), [_col(f"kind_{_KINDS[j]}") for j in k]] = 1.0
    for c in ("log_flops", "log_bytes", "log_out_numel"):
        X[:, _col(c)] = rng.uniform(0, 1, n)
    bound = 10 ** rng.uniform(0, 3, n)
    X[:, _col("log_bound_us")] = np.log10(1 + bound)
    eff = _BASE_EFF[k] * np.exp(0.5 * X[:, _col("log_bytes")])
    return X, bound, bound / eff


@pytest.fixture(scope="module")
def trained():
    X, B, Y = _synthetic(800, seed=0)
    # operators with no work: their time is the floor (median of these)
    X0 = np.zeros((5, len(FEATURE_NAMES)), np.float32)
    X = np.concatenate([X, X0])
    B = np.concatenate([B, np.zeros(5)])
    Y = np.concatenate([Y, [2.0, 3.0, 3.0, 4.0, 9.0]])
    t = np.log(Y[:800] / B[:800])
    return {be: OpEfficiencyModel(be).fit(X, B, Y) for be in ("xgb", "mlp")}, (t.min(), t.max())


@pytest.mark.parametrize("backend", ["xgb", "mlp"])
def test_the_efficiency_model_recovers_held_out_times(trained, backend):
    models, (tmin, tmax) = trained
    m = models[backend]
    X, B, Y = _synthetic(200, seed=1)
    err = np.abs(m.predict_us(X, B) / Y - 1)
    assert np.median(err) < 0.10 and np.percentile(err, 90) < 0.25, (np.median(err), np.percentile(err, 90))
    # a constant guess (the mean efficiency) is far off: the model did learn the kind
    const = np.abs(B * np.exp(np.mean(np.log(Y / B))) / Y - 1)
    assert np.median(const) > 0.3
    assert m.floor_us == 3.0
    assert np.array_equal(m.predict_us(X[:3], [0.0, 0.0, 1e-4]), [3.0, 3.0, 3.0])
    assert m.t_range == pytest.approx((tmin, tmax), rel=1e-12)


def test_predictions_are_clipped_to_the_training_log_ratios(trained):
    models, (tmin, tmax) = trained
    m = models["mlp"]
    # log_bytes far outside its training range [0, 1]: the network extrapolates below the fastest operator seen
    X, B, _ = _synthetic(20, seed=2)
    X[:, _col("log_bytes")] = 40.0
    raw = m.log_ratio(X)
    assert (raw < tmin - 1.0).all(), raw
    np.testing.assert_allclose(m.predict_us(X, B), B * np.exp(tmin), rtol=1e-12)
    # and the other side: a narrower range clips the in-range predictions too
    X, B, _ = _synthetic(50, seed=3)
    m2 = OpEfficiencyModel.from_dict(m.to_dict())
    m2.t_range = (0.5, 0.6)
    r = m2.predict_us(X, B) / B
    assert np.all((r >= math.exp(0.5) * (1 - 1e-12)) & (r <= math.exp(0.6) * (1 + 1e-12)))
    assert np.isclose(r, math.exp(0.5)).any() and np.isclose(r, math.exp(0.6)).any()


@pytest.mark.parametrize("backend", ["xgb", "mlp"])
def test_the_efficiency_model_round_trips_through_json(trained, backend):
    m = trained[0][backend]
    back = OpEfficiencyModel.from_dict(json.loads(json.dumps(m.to_dict())))
    X, B, _ = _synthetic(100, seed=4)
    B[:5] = 0.0
    assert back.backend == backend and back.floor_us == m.floor_us and back.t_range == m.t_range
    assert np.array_equal(back.predict_us(X, B), m.predict_us(X, B))


def _damage_mlp(d: dict, how: str) -> None:
    if how == "format":
        d["format"] = "something-else"
    elif how == "version":
        d["format_version"] = 99
    elif how == "features":
        d["feature_names"] = d["feature_names"][::-1]
    elif how == "backend":
        d["backend"] = "forest"
    elif how == "weights":
        d["weights"] = d["weights"][:-1]  # the output layer's bias is gone
    elif how == "weights_two":
        d["weights"] = d["weights"][:-2]  # the whole output layer is gone
    elif how == "weights_row":
        d["weights"][2] = d["weights"][2][:-1]  # a hidden layer lost one unit
    elif how == "mean":
        d["mean"] = d["mean"][:-1]
    elif how == "floor":
        del d["floor_us"]


@pytest.mark.parametrize("how, match", [
    ("format", "not a costmodel.op-model"), ("version", "format_version"), ("features", "feature names"),
    ("backend", "backend 'forest'"), ("weights", "bad model content"), ("weights_two", "bad model content"),
    ("weights_row", "bad model content"), ("mean", "bad model content"), ("floor", "bad model content"),
])
def test_damaged_operator_models_are_refused(trained, how, match):
    d = json.loads(json.dumps(trained[0]["mlp"].to_dict()))
    _damage_mlp(d, how)
    with pytest.raises(costmodel.ArtifactError, match=match):
        OpEfficiencyModel.from_dict(d, where="ops.json")
    assert issubclass(costmodel.ArtifactError, costmodel.ModelLoadError)


def test_a_damaged_booster_is_refused(trained):
    d = json.loads(json.dumps(trained[0]["xgb"].to_dict()))
    del d["booster"]
    with pytest.raises(costmodel.ArtifactError, match="bad model content"):
        OpEfficiencyModel.from_dict(d)
    with pytest.raises(costmodel.ArtifactError, match="not a"):
        OpEfficiencyModel.from_dict([1, 2, 3])


# ------------------------------------------------------------------ host costs
def _comp(counts, optimizer_us: float = 0.0, fresh_mb: float = 0.0) -> Composition:
    empty = np.zeros(0)
    return Composition(np.zeros((0, len(FEATURE_NAMES)), np.float32), empty, empty, empty,
                       np.asarray(counts, float), optimizer_us, fresh_mb)


def test_host_costs_recover_the_per_term_costs():
    rng = np.random.default_rng(0)
    true = np.array([4.0, 0.7, 12.0, 300.0, 6.5, 1.5])
    scale, fresh = 1.8, 1200.0
    comps, dev, lat = [], [], []
    for i in range(40):
        counts = [rng.integers(5, 400), rng.integers(0, 100), rng.integers(0, 60), 1.0, rng.integers(0, 300),
                  rng.integers(0, 200)]
        # a quarter of the models hold parameter tensors above the mmap threshold
        c = _comp(counts, optimizer_us=float(rng.uniform(0, 500)), fresh_mb=float(rng.uniform(32, 400)) * (i % 4 == 0))
        d = float(rng.uniform(100, 5000))
        comps.append(c)
        dev.append(d)
        lat.append(d + c.host_counts @ true + scale * c.optimizer_us + fresh * c.optimizer_fresh_mb)
    h = HostCosts.fit(comps, dev, lat)
    assert len(h.us) == len(HOST_TERMS)
    np.testing.assert_allclose(h.us, true, rtol=1e-3)
    assert h.optimizer_scale == pytest.approx(scale, rel=1e-3)
    assert h.optimizer_fresh_us_per_mb == pytest.approx(fresh, rel=1e-3)
    assert h.latency_us(comps[0], dev[0]) == pytest.approx(lat[0], rel=1e-6)
    assert "40 rows" in h.source


def test_host_costs_are_never_negative():
    rng = np.random.default_rng(1)
    # the views' true "cost" is negative: the fit must hold it at zero, not follow it
    true = np.array([4.0, -3.0, 12.0, 300.0, 6.5, 1.5])
    comps, dev, lat = [], [], []
    for _ in range(30):
        counts = [rng.integers(5, 400), rng.integers(0, 100), rng.integers(0, 60), 1.0, rng.integers(0, 300),
                  rng.integers(0, 200)]
        c = _comp(counts)
        d = float(rng.uniform(100, 5000))
        comps.append(c)
        dev.append(d)
        lat.append(d + max(c.host_counts @ true, 50.0))
    h = HostCosts.fit(comps, dev, lat)
    assert all(v >= 0 for v in h.us) and h.optimizer_scale >= 0
    assert h.us[HOST_TERMS.index("view")] == 0.0


def test_only_parameter_tensors_above_the_mmap_threshold_count_as_fresh_optimizer_memory():
    # weights of 4096 x 2048 and 2048 x 4096 fp32: 32 MiB each, exactly the threshold (they count);
    # 2048 x 2048: 16 MiB (it does not), nor do the biases or the input
    net = torch.nn.Sequential(torch.nn.Linear(2048, 4096, bias=False), torch.nn.Linear(4096, 2048),
                              torch.nn.Linear(2048, 2048)).eval()
    g = from_torch(net, torch.empty(2, 2048), method="trace")
    assert optimizer_fresh_mb(g) == pytest.approx(64.0)
    small = _graph()
    assert optimizer_fresh_mb(small) == 0.0
    assert compose(g, FIGS, mode="training").optimizer_fresh_mb == pytest.approx(64.0)
    assert compose(g, FIGS, mode="inference").optimizer_fresh_mb == 0.0  # no step, no optimizer
    assert MMAP_THRESHOLD_BYTES == 32 * 2**20


# ------------------------------------------------------------------ joining operator rows to graphs
def test_labelled_ops_keeps_only_rows_that_match_the_graph(graph):
    conv = next(n for n in graph.nodes if n.kind == "conv")
    relu = next(n for n in graph.nodes if n.kind == "relu")
    rows = [
        {"phase": "forward", "node": conv.id, "mapped": True, "op": "aten::convolution", "device_us": 10, "cpu_us": 11},
        {"phase": "backward", "node": relu.id, "mapped": True, "op": "aten::relu", "device_us": 2.5, "cpu_us": 3},
        # the node id exists but holds another operator: the graph was built differently
        {"phase": "forward", "node": conv.id, "mapped": True, "op": "aten::relu", "device_us": 1, "cpu_us": 1},
        # the graph's spelling, not the profiler's
        {"phase": "forward", "node": relu.id, "mapped": True, "op": "aten.relu", "device_us": 1, "cpu_us": 1},
        {"phase": "forward", "node": 999, "mapped": True, "op": "aten::relu", "device_us": 1, "cpu_us": 1},
        {"phase": "forward", "node": None, "mapped": False, "op": "aten::empty_like", "device_us": 1, "cpu_us": 1},
        {"phase": "forward", "node": relu.id, "mapped": False, "op": "aten::relu", "device_us": 1, "cpu_us": 1},
        {"phase": "optimizer", "node": None, "mapped": True, "op": "optimizer", "device_us": 50, "cpu_us": 50},
        {"phase": "optimizer", "node": relu.id, "mapped": True, "op": "aten::relu", "device_us": 50, "cpu_us": 50},
    ]
    out = labelled_ops(graph, rows)
    assert len(out) == 2
    assert out[0][0] is conv and out[0][1:] == ("forward", 10.0, 11.0)
    assert out[1][0] is relu and out[1][1:] == ("backward", 2.5, 3.0)
    assert all(isinstance(v, float) for o in out for v in o[2:])


def test_a_run_whose_graph_was_built_differently_gets_no_labels(graph):
    conv = next(n for n in graph.nodes if n.kind == "conv")
    rows = [{"phase": "forward", "node": conv.id, "mapped": True, "op": "aten::convolution", "device_us": 10,
             "cpu_us": 11}]

    def run(nodes):
        return SimpleNamespace(model="m", mode="infer", batch=1, raw={"ops": {"graph_nodes": nodes}})

    assert len(run_labels(graph, run(len(graph.nodes)), rows)) == 1
    # a graph with another node count: the indices point elsewhere, so nothing is labelled, with a warning
    with pytest.warns(UserWarning, match="left unlabelled"):
        assert run_labels(graph, run(len(graph.nodes) + 3), rows) == []


def test_runs_profiled_before_the_fused_paths_are_mapped_onto_graphs_without_them():
    def row(ops):
        return SimpleNamespace(raw={"ops": ops} if ops is not None else {})

    assert not profiled_with_fused_paths(row({"graph_nodes": 90}))  # no frontend version: collected before 5
    assert not profiled_with_fused_paths(row(None))
    assert profiled_with_fused_paths(row({"graph_nodes": 90, "frontend": 5}))


# ------------------------------------------------------------------ the whole-model timeline
_EFF = {"conv": 0.7, "matmul": 0.5, "batch_norm": 0.2, "relu": 0.25}
_HOST_TRUE = np.array([6.0, 1.0, 0.0, 40.0, 4.0, 2.0])


class _Dataset:
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)


def _device_us(n, phase: str) -> float:
    b = max(bound_s(n, phase, FIGS, "fp32")) * 1e6
    return b / _EFF.get(n.kind, 0.3) if b > 1e-3 else 1.5


@pytest.fixture(scope="module")
def timeline_data():
    graphs, ops, rows = [], [], []
    for i, (c, batch, hidden) in enumerate([(4, 1, 10), (8, 2, 10), (16, 1, 20), (8, 4, 5), (32, 2, 10),
                                            (12, 3, 16), (24, 1, 8), (6, 8, 12)]):
        g = _graph(c, batch, hidden)
        mode = "training" if i % 2 else "inference"
        labelled = []
        for n in g.nodes:
            if n.is_view:
                continue
            labelled.append((n, "forward", _device_us(n, "forward"), 0.0))
            if mode == "training" and has_backward(n):
                labelled.append((n, "backward", _device_us(n, "backward"), 0.0))
        comp = compose(g, FIGS, mode=mode)
        lat_us = sum(o[2] for o in labelled) + comp.host_counts @ _HOST_TRUE + 1.0 * comp.optimizer_us
        graphs.append(g)
        ops.append(labelled)
        rows.append(SimpleNamespace(mode=mode, family=f"net{i % 3}", latency_ms=lat_us / 1e3))
    return _Dataset(rows), graphs, ops


@pytest.fixture(scope="module")
def timeline(timeline_data):
    ds, graphs, ops = timeline_data
    return OpTimeline.fit(ds, graphs, ops, FIGS)


def test_the_timeline_fits_and_round_trips(timeline, timeline_data):
    ds, graphs, ops = timeline_data
    info = {k: timeline.trained_on.get(k) for k in ("device", "runs", "operators", "families")}
    assert info == {"device": "test-cpu", "runs": 8, "operators": sum(len(o) for o in ops),
                    "families": ["net0", "net1", "net2"]}
    assert all(v >= 0 for v in timeline.host.us)
    d = json.loads(json.dumps(timeline.to_dict()))
    back = OpTimeline.from_dict(d, "cpu_ops.json")
    assert back.figs == FIGS and back.host == timeline.host and back.trained_on == timeline.trained_on
    g = _graph(10, 2, 7)  # a graph neither saw
    for mode in ("inference", "training"):
        r = timeline.predict(g, mode)
        assert back.predict(g, mode) == r
        assert r["latency_ms"] == pytest.approx(r["device_ms"] + r["host_ms"], rel=1e-9)
        assert r["host_terms_ms"].keys() == {*HOST_TERMS, "optimizer_step"} and r["top"]
        # the host terms are the whole host lane (a training step's optimizer sweep was left out of them)
        assert sum(r["host_terms_ms"].values()) == pytest.approx(r["host_ms"], rel=1e-9)
        assert (r["host_terms_ms"]["optimizer_step"] > 0) == (mode == "training")
        assert all(o["op"] == g.nodes[o["node"]].op for o in r["top"])
    # the fit reproduces its own runs' latencies
    for row, g in zip(ds.rows, graphs):
        assert timeline.predict(g, row.mode)["latency_ms"] == pytest.approx(row.latency_ms, rel=0.02)


@pytest.mark.parametrize("damage, match", [
    (lambda d: d["host"]["us"].__setitem__(0, -1.0), "host.us"),
    (lambda d: d["host"].__setitem__("us", d["host"]["us"][:-1]), "host.us"),
    (lambda d: d["host"].__setitem__("optimizer_scale", -0.5), "optimizer_scale"),
    (lambda d: d["host"].__setitem__("optimizer_fresh_us_per_mb", float("nan")), "optimizer_fresh_us_per_mb"),
    (lambda d: d["figures"].__setitem__("gflops", 0.0), "gflops"),
    (lambda d: d["figures"].__setitem__("gbps", -20.0), "gbps"),
    (lambda d: d["figures"].pop("gbps"), "figures"),
    (lambda d: d.__setitem__("host_terms", d["host_terms"][::-1]), "host terms"),
    (lambda d: d.__setitem__("format_version", 1), "format_version"),
    (lambda d: d["model"].__setitem__("format", "x"), "not a"),
])
def test_damaged_timelines_are_refused(timeline, damage, match):
    d = json.loads(json.dumps(timeline.to_dict()))
    damage(d)
    with pytest.raises(costmodel.ArtifactError, match=match):
        OpTimeline.from_dict(d, "cpu_ops.json")


# ------------------------------------------------------------------ inside the timeline predictor
def test_the_timeline_predictor_saves_and_uses_the_cpu_model(tmp_path, timeline):
    from costmodel.predictors import ARTIFACTS_DIR, TimelinePredictor

    shipped = TimelinePredictor.load(ARTIFACTS_DIR / "timeline")
    assert shipped.cpu is not None and shipped.cpu.trained_on["operators"] > 50_000  # the packaged CPU model
    plain = TimelinePredictor.load(ARTIFACTS_DIR / "timeline")
    plain.cpu = None  # the same predictor without a CPU operator model
    p = TimelinePredictor.load(ARTIFACTS_DIR / "timeline")
    p.cpu = timeline
    g = _graph(8, 2, 10)
    p.save(tmp_path / "tl")
    back = TimelinePredictor.load(tmp_path / "tl")
    assert back.cpu is not None and back.cpu.host == timeline.host
    for mode in ("inference", "training"):
        e, b = p.predict(g, "cpu", mode=mode), back.predict(g, "cpu", mode=mode)
        assert b.latency_ms == e.latency_ms == pytest.approx(timeline.predict(g, mode)["latency_ms"], rel=1e-12)
        assert b.details["ops"] == e.details["ops"] and b.details["ops"]["bound"] == "serial"
        assert any(a.startswith("CPU operator model trained on") and "test-cpu" in a for a in b.assumptions)
        assert b.latency_ms != plain.predict(g, "cpu", mode=mode).latency_ms
        # an accelerator never reaches the CPU operator model
        h, h0 = back.predict(g, "h200", mode=mode), plain.predict(g, "h200", mode=mode)
        assert h.latency_ms == h0.latency_ms and h.energy_j == h0.energy_j
        assert h.details["ops"] == h0.details["ops"] and h.assumptions == h0.assumptions
        assert not any("CPU operator model" in a for a in h.assumptions)
    # one changed digit keeps the JSON valid: only the checksum can tell
    f = tmp_path / "tl" / "cpu_ops.json"
    raw = bytearray(f.read_bytes())
    i = re.search(rb'"floor_us": (\d)', bytes(raw)).start(1)
    raw[i] = ord("7") if raw[i] != ord("7") else ord("8")
    json.loads(bytes(raw))
    f.write_bytes(bytes(raw))
    with pytest.raises(costmodel.ArtifactError, match=r"cpu_ops\.json.*checksum"):
        TimelinePredictor.load(tmp_path / "tl")


def test_a_timeline_fitted_over_other_kernel_ceilings_is_refused(tmp_path, monkeypatch):
    """The efficiency network was fitted over one set of bounds (depthwise share, norm row rates): over
    another it predicts wrong times, so loading it says so; an artifact from before they were recorded loads."""
    from costmodel.predictors import ARTIFACTS_DIR, TimelinePredictor, _optable
    from costmodel.predictors._artifact import seal

    shipped = TimelinePredictor.load(ARTIFACTS_DIR / "timeline")
    shipped.save(tmp_path / "tl")
    cfg_path = tmp_path / "tl" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["kernel_ceilings"] == json.loads(json.dumps(_optable.kernel_ceilings()))
    monkeypatch.setitem(_optable.NORM_ROW_RATES, "group_norm_elems_s", 1e9)
    with pytest.raises(costmodel.ArtifactError, match=r"kernel ceilings.*retrain it"):
        TimelinePredictor.load(tmp_path / "tl")
    monkeypatch.undo()
    TimelinePredictor.load(tmp_path / "tl")
    cfg["kernel_ceilings"]["depthwise_share"] = None
    cfg_path.write_text(json.dumps(seal(cfg)))  # sealed again: the structural check has to catch it
    with pytest.raises(costmodel.ArtifactError, match=r"kernel ceilings"):
        TimelinePredictor.load(tmp_path / "tl")
    del cfg["kernel_ceilings"]
    cfg_path.write_text(json.dumps(seal(cfg)))
    assert TimelinePredictor.load(tmp_path / "tl").params == shipped.params


def test_an_empty_folder_has_no_operator_dataset(tmp_path):
    with pytest.raises(costmodel.ModelLoadError, match=re.escape(str(tmp_path / "cpu"))):
        load_op_dataset(tmp_path)


def test_on_a_cpu_only_adam_pays_for_its_temporaries():
    from costmodel.predictors import ARTIFACTS_DIR, TimelinePredictor

    p = TimelinePredictor.load(ARTIFACTS_DIR / "timeline")
    net = torch.nn.Sequential(torch.nn.Linear(2048, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10))
    g = from_torch(net, torch.empty(2, 2048), method="trace", mode="training")
    assert optimizer_fresh_mb(g) == pytest.approx(32.0)
    adam = p.predict(g, "cpu", mode="training", optimizer="adam")
    sgd = p.predict(g, "cpu", mode="training", optimizer="sgd")
    fresh_ms = p.cpu.host.optimizer_fresh_us_per_mb * 32.0 / 1e3
    assert fresh_ms > 0
    # Adam: the fresh-page term plus 7 bytes per parameter byte; SGD: 3 bytes and no temporaries
    stream_ms = p.cpu.host.optimizer_scale * compose(g, p.cpu.figs, mode="training").optimizer_us / 1e3
    assert adam.latency_ms - sgd.latency_ms == pytest.approx(fresh_ms + stream_ms * (1 - 3 / 7), rel=1e-6)
    assert any("optimizer sgd" in a for a in sgd.assumptions)
    assert not any("optimizer adam" in a for a in adam.assumptions)
