"""Per-operator GPU labels in the timeline's fit (costmodel.predictors._timeline_ops) and their packaged data."""

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from costmodel import InvalidInputError
from costmodel.devices import get_device
from costmodel.frontends import zoo_graph
from costmodel.measure.host import load_host
from costmodel.predictors._optable import op_table
from costmodel.predictors._timeline import TimelineConfig, TimelinePredictor
from costmodel.predictors._timeline_ops import MIN_LABEL_US, OpLabels, OpRun

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "costmodel" / "data" / "h200" / "ops"


def _jsonl(p):
    return [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, "1"])
def test_op_weight_is_validated(bad):
    with pytest.raises(InvalidInputError, match="op_weight"):
        TimelineConfig(op_weight=bad)


@pytest.fixture(scope="module")
def slow_convs():
    """A resnet18 run whose convolutions took 30x their roofline bound and everything else 1.5x."""
    g = zoo_graph("resnet18", batch=8, method="trace")
    dev = get_device("h200")
    t = op_table(g, dev, mode="inference")
    by_id = {n.id: n for n in g.nodes}
    labels = []
    for nid, ph, b, k in zip(t.node, t.phase, t.bound_s, t.kernel):
        if nid < 0 or k == 0 or ph != 0:
            continue
        y = b * 1e6 * (30.0 if by_id[int(nid)].kind == "conv" else 1.5)
        if y >= MIN_LABEL_US:
            labels.append((int(nid), "forward", float(y)))
    return OpRun(g, dev, "inference", labels, "resnet", "resnet18", ("resnet18", 224, "inference", "fp32", 8))


def _conv_log_error(pred, run) -> float:
    p = {o["node"]: o["device_ms"] * 1e3 for o in pred.operator_times(run.graph, run.device, mode=run.mode)
         if o["phase"] == "forward"}
    convs = [(p[n], y) for n, _, y in run.labels if run.graph.nodes[n].kind == "conv"]
    return float(np.median([abs(math.log(a / b)) for a, b in convs]))


def test_operator_labels_pull_the_device_lane_toward_them(coverage_split, slow_convs):
    data, train, _, _ = coverage_split
    graphs, rows = [data.graph(i) for i in train], [data[i] for i in train]
    plain = TimelinePredictor(TimelineConfig(epochs=150, hidden=16)).fit_graphs(graphs, rows)
    labelled = TimelinePredictor(TimelineConfig(epochs=150, hidden=16, op_weight=3.0)).fit_graphs(
        graphs, rows, op_runs=[slow_convs])
    assert labelled.params.trained_on["op_runs"] == 1
    assert labelled.params.trained_on["op_labels"] == len(slow_convs.labels)
    assert "op_runs" not in plain.params.trained_on
    before, after = _conv_log_error(plain, slow_convs), _conv_log_error(labelled, slow_convs)
    # 30x the bound is far from what the whole-model rows alone give; the labels close most of the gap
    assert before > math.log(3.0) and after < 0.5 * before


def test_op_labels_weigh_each_run_the_same(slow_convs):
    t = op_table(slow_convs.graph, slow_convs.device, mode="inference")
    mean, std = t.x.mean(0), t.x.std(0) + 1e-3
    one = OpLabels([slow_convs], mean, std)
    two = OpLabels([slow_convs, slow_convs], mean, std)
    assert one.n == len(slow_convs.labels) and two.n == 2 * one.n and two.runs == 2
    assert float(one.w.sum()) == pytest.approx(1.0) and float(two.w.sum()) == pytest.approx(1.0)
    nowhere = OpRun(slow_convs.graph, slow_convs.device, "inference", [(10 ** 6, "forward", 5.0)], "x", "x", ())
    with pytest.raises(InvalidInputError, match="no labelled kernel"):
        OpLabels([nowhere], mean, std)


def test_packaged_gpu_operator_rows_are_training_families_only():
    """The per-operator H200 runs that can join the fit are of packaged architectures; the 13 architectures
    kept for evaluation are in benchmarks/data alone."""
    rows = _jsonl(OPS / "ops_vision.jsonl")
    packaged = _jsonl(REPO / "costmodel" / "data" / "h200" / "vision.jsonl")
    held = _jsonl(REPO / "benchmarks" / "data" / "h200_ops" / "ops_vision.jsonl")
    fams = {r["spec"]["family"] for r in packaged}
    names = {r["spec"]["name"] for r in packaged}
    assert rows and {r["spec"]["family"] for r in rows} <= fams and {r["spec"]["name"] for r in rows} <= names
    new = {r["spec"]["name"] for r in held} - names
    assert len(new) >= 10 and not new & {r["spec"]["name"] for r in rows}
    keys = {json.dumps([r["spec"], r["batch"], r["mode"], r["dtype"]]) for r in rows}
    with gzip.open(OPS / "ops.jsonl.gz", "rt") as f:
        ops = [json.loads(x) for x in f]
    assert len(ops) > 10_000 and {o["key"] for o in ops} <= keys
    for r in rows:  # every row says which host measured it, and the repairs it got
        assert r["host"]["cpu"] and r["device"] == "NVIDIA H200"
        assert r["ops"]["profiled_steps"] == 3
        assert (r["ops"].get("backward_captured") is False) == (r["mode"] == "train")
    hw = json.loads((OPS / "hardware.json").read_text())
    assert hw["roofline"]["peak_gflops_fp32"] > 0 and hw["roofline"]["bandwidth_gbps"] > 0
    assert load_host(OPS / "host.json").kernel_us is not None


def test_package_ops_repairs_the_step_count_and_flags_a_missing_backward(benchmark_module):
    po = benchmark_module("package_ops")
    row = {"mode": "train", "ops": {"profiled_steps": 6, "work_nodes_mapped": 10.0, "backward_nodes_mapped": 0.0,
                                    "unmapped_ms": 0.5, "profiled_step_ms": 4.0, "work_nodes": 20}}
    ops = [{"mapped": True, "seen": "3/6", "device_us": 7.0},
           {"mapped": False, "calls": 0.5, "cpu_us": 2.0, "device_us": 1.0}]
    r2, o2 = po.repair(row, ops, cuda=True)
    s = r2["ops"]
    assert s["profiled_steps"] == 3 and s["work_nodes_mapped"] == 20.0 and s["profiled_step_ms"] == 8.0
    assert s["work_nodes"] == 20 and s["backward_captured"] is False and len(s["repaired"]) == 2
    assert o2[0] == {"mapped": True, "seen": "3/3", "device_us": 7.0}  # a mapped row's time is a mean already
    assert o2[1]["calls"] == 1.0 and o2[1]["cpu_us"] == 4.0 and o2[1]["device_us"] == 2.0
    assert row["ops"]["profiled_steps"] == 6  # the input is left as it was
    # a run profiled right, or on a CPU, is left alone
    ok = {"mode": "infer", "ops": {"profiled_steps": 3, "backward_nodes_mapped": 0.0}}
    assert po.repair(ok, [{"mapped": True, "seen": "3/3"}], cuda=True) == (ok, [{"mapped": True, "seen": "3/3"}])
    cpu_train = {"mode": "train", "ops": {"profiled_steps": 3, "backward_nodes_mapped": 0.0}}
    assert "backward_captured" not in po.repair(cpu_train, [], cuda=False)[0]["ops"]


def test_package_ops_moves_a_cudnn_norms_kernels_to_its_node(benchmark_module):
    po = benchmark_module("package_ops")
    ops = [{"node": 0, "op": "aten::convolution", "mapped": True, "phase": "forward", "kernels": 1.0, "device_us": 9.0},
           {"node": 1, "op": "aten::empty", "mapped": True, "phase": "forward", "kernels": 1.0, "device_us": 4.0,
            "cpu_us": 30.0, "dtype": "uint8", "in_shapes": []},
           {"node": 3, "op": "aten::relu_", "mapped": True, "phase": "forward", "kernels": 1.0, "device_us": 2.0},
           {"node": 4, "op": "aten::empty", "mapped": True, "phase": "forward", "kernels": 0.0, "device_us": 0.0},
           {"node": 6, "op": "aten::empty", "mapped": True, "phase": "forward", "kernels": 1.0, "device_us": 3.0},
           {"node": 7, "op": "aten::native_batch_norm", "mapped": True, "phase": "forward", "device_us": 5.0}]
    row, out = po.repair({"mode": "infer", "ops": {"profiled_steps": 3, "work_nodes_mapped": 5.0}}, ops, cuda=True)
    twin = [o for o in out if o.get("moved_from_node") is not None]
    assert len(twin) == 1 and twin[0]["node"] == 2 and twin[0]["op"] == "aten::native_batch_norm"
    assert twin[0]["device_us"] == 4.0 and twin[0]["cpu_us"] == 30.0 and "dtype" not in twin[0]
    emptied = next(o for o in out if o["node"] == 1)
    assert emptied["device_us"] == 0.0 and emptied["moved_to_node"] == 2
    # node 6's norm (node 7) has its own row: nothing moves; nor on a CPU
    assert next(o for o in out if o["node"] == 6)["device_us"] == 3.0
    assert row["ops"]["work_nodes_mapped"] == 6.0 and "1 batch norms" in row["ops"]["repaired"][0]
    assert not any(o.get("moved_from_node") is not None for o in po.repair({"mode": "infer"}, ops, cuda=False)[1])
    assert ops[1]["device_us"] == 4.0  # the input is left as it was


@pytest.mark.parametrize("argv, match", [
    (["train", "--predictor", "dippm", "--op-weight", "0.3"], "timeline predictor only"),
    (["train", "--predictor", "timeline", "--op-weight", "-1"], "op_weight must be a finite number >= 0"),
])
def test_cli_train_op_weight_errors(argv, match, capsys, tmp_path):
    from costmodel.cli import main

    assert main([*argv, "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_the_packaged_gpu_runs_join_their_graphs():
    """Every packaged operator run rebuilds the graph it was mapped onto (same node count, same operator at
    every labelled node): a frontend change that moved node indices would silently strip the labels."""
    import warnings

    from costmodel.predictors import packaged_op_runs

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # run_labels warns (and drops the run) when a graph does not match
        runs = packaged_op_runs()
    assert len(runs) == 96 and sum(len(r.labels) for r in runs) > 15_000
    assert all(r.device.name == "H200-SXM5-141GB" and r.labels for r in runs)
    assert {r.mode for r in runs} == {"inference", "training"}
    kinds = {r.graph.nodes[n].kind for r in runs for n, _, _ in r.labels}
    assert {"conv", "matmul", "batch_norm", "layer_norm", "attention", "add"} <= kinds


def test_gpu_ops_benchmark_swaps_measured_kernels_into_the_device_lane(benchmark_module):
    """benchmarks/timeline_gpu_ops.py's composition check: with every labelled operator at its predicted
    time the hybrid device lane is the predicted one and max(host, device) + sync is the prediction;
    a label twice its prediction adds exactly the difference, and nothing else moves."""
    mod = benchmark_module("timeline_gpu_ops")
    from costmodel.predictors import get_predictor

    pred, dev = get_predictor("timeline"), get_device("h200")
    g = zoo_graph("resnet18", batch=64)
    per = mod.device_ms_by_op(pred, g, dev, "inference")
    by_id = {n.id: n for n in g.nodes}
    lab = [(by_id[n], ph, ms * 1e3, 0.0) for (n, ph), ms in per.items() if n in by_id]
    lanes = mod._lanes(pred, g, dev, "inference", lab, per)
    assert lanes["bound"] == "device" and lanes["device_measured_ms"] == pytest.approx(lanes["device_ms"])
    composed = max(lanes["host_ms"], lanes["device_measured_ms"]) + pred.params.sync_us / 1e3
    assert composed == pytest.approx(lanes["pred_ms"], rel=1e-6)
    conv = next(x for x in lab if x[0].kind == "conv")
    slower = [(n, ph, 2 * us if (n, ph) == conv[:2] else us, c) for n, ph, us, c in lab]
    lanes2 = mod._lanes(pred, g, dev, "inference", slower, per)
    assert lanes2["device_measured_ms"] - lanes["device_measured_ms"] == pytest.approx(conv[2] / 1e3)
    assert lanes2["pred_ms"] == lanes["pred_ms"]
    cover = [{"mode": "inference", "latency_ms": composed, **lanes}]
    out = mod._composition_report(cover, pred.params.sync_us / 1e3)
    assert out["all"]["n"] == 1 and out["all"]["measured_kernels"] == pytest.approx(0.0, abs=1e-6)
    assert out["device-bound"]["timeline"] == pytest.approx(0.0, abs=1e-4)


def test_op_labels_leave_out_the_products_the_measured_line_costs():
    """At batch 1 in fp32 a classifier's matmul is a skinny product, costed by the measured line
    (costmodel.predictors._skinny): a label for it would teach the network a row it never costs."""
    g = zoo_graph("resnet18", batch=1, method="trace")
    dev = get_device("h200")
    t = op_table(g, dev, mode="inference")
    assert t.stream_us is not None
    line = {int(n) for n, s, k, ph in zip(t.node, t.stream_us, t.kernel, t.phase) if np.isfinite(s) and k > 0}
    assert line, "resnet18's classifier at batch 1 is a skinny product"
    labels = [(int(n), "forward", 10.0) for n, k, ph in zip(t.node, t.kernel, t.phase) if n >= 0 and k > 0 and ph == 0]
    run = OpRun(g, dev, "inference", labels, "resnet", "resnet18", ("resnet18", 224, "inference", "fp32", 1))
    mean, std = t.x.mean(0), t.x.std(0) + 1e-3
    kept = OpLabels([run], mean, std)
    assert kept.n == len({n for n, _, _ in labels} - line) and kept.n < len(labels)
