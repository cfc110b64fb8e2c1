"""The timeline predictor: operator table, fit through the composition, host profiles, artifacts."""

import json
import math

import numpy as np
import pytest

import costmodel
from costmodel import CostGraph
from costmodel.devices import get_device
from costmodel.frontends import zoo_graph
from costmodel.measure.host import calibrate
from costmodel.training import mape
from costmodel.predictors._artifact import record_checksums
from costmodel.predictors._optable import FEATURE_NAMES, HOST_CLASSES, PHASES, module_calls, op_table
from costmodel.predictors._timeline import TimelineConfig, TimelinePredictor


@pytest.fixture(scope="module")
def r18():
    return zoo_graph("resnet18", batch=8, method="trace")


def test_op_table_follows_the_roofline(r18):
    dev = get_device("h200")
    t = op_table(r18, dev, mode="inference")
    ops = [n for n in r18.nodes if not n.is_view]
    # one row per executed operator plus the module-call row
    assert t.x.shape == (len(ops) + 1, len(FEATURE_NAMES))
    for n, b in zip(ops, t.bound_s):
        if n.kind == "conv":
            assert b >= n.flops / dev.peak_flops("tf32") - 1e-15
        assert b >= (n.bytes_read + n.bytes_written) / dev.bandwidth_bytes_s - 1e-15
    train = op_table(r18, dev, mode="training", optimizer="adam")
    phases = np.bincount(train.phase, minlength=3)
    assert phases[1] > len(ops) and phases[2] == 1  # backward kernels (two per conv/linear), one optimizer row
    opt = int(np.flatnonzero(train.phase == 2)[0])
    assert train.bound_s[opt] == pytest.approx(7 * r18.meta["weights_bytes"] / dev.bandwidth_bytes_s, rel=0.01)
    assert not t.synchronous and op_table(r18, get_device("cpu"), mode="inference").synchronous
    # the optimizer's host cost counts the 62 parameter tensors it updates; a graph built without the
    # count falls back to the operands, which add the 40 batch-norm buffers and miss the classifier's
    # weight (read through a ``t()`` view)
    assert r18.meta["trainable_tensors"] == 62 and train.host_count[opt] == 62
    old = CostGraph(r18.nodes, r18.edges, r18.inputs, {k: v for k, v in r18.meta.items() if k != "trainable_tensors"})
    fallback = op_table(old, dev, mode="training", optimizer="adam")
    assert fallback.host_count[opt] == sum(sum(n.param_inputs) for n in r18.nodes if not n.is_view) == 62 + 40 - 1
    # resnet18 calls 6 stem/head modules, 4 layers, 8 blocks of 7 calls (the block, two convs, two norms,
    # its ReLU twice) and 3 downsamples (a Sequential, a conv and a norm each)
    assert module_calls(zoo_graph("resnet18", batch=1, method="export")) == 6 + 4 + 7 * 8 + 3 * 3


@pytest.fixture(scope="module")
def fitted(coverage_split):
    data, train, _, test = coverage_split
    pred = TimelinePredictor(TimelineConfig(epochs=150, hidden=16))
    pred.fit_graphs([data.graph(i) for i in train], [data[i] for i in train])
    pred.trained_rows = list(train)
    return pred, data, test


def test_fit_through_the_timeline_beats_the_roofline_on_unseen_rows(fitted):
    pred, data, test = fitted
    rows = [data[i] for i in test]
    est = [pred.predict(data.graph(i), data[i].device, mode=data[i].mode) for i in test]
    analytic = costmodel.get_predictor("analytic")
    base = [analytic.predict(data.graph(i), data[i].device, mode=data[i].mode) for i in test]
    y = [r.latency_ms for r in rows]
    err, err_analytic = mape(y, [e.latency_ms for e in est]), mape(y, [e.latency_ms for e in base])
    assert err < 0.75 * err_analytic, (err, err_analytic)
    ok = [k for k, r in enumerate(rows) if r.energy_j > 0]
    assert mape([rows[k].energy_j for k in ok], [est[k].energy_j for k in ok]) < mape(
        [rows[k].energy_j for k in ok], [base[k].energy_j for k in ok])
    for e in est:
        ops = e.details["ops"]
        assert math.isfinite(e.latency_ms) and e.latency_ms > 0 and e.energy_j > 0
        assert e.latency_ms == pytest.approx(max(ops["host_ms"], ops["device_ms"]) + pred.params.sync_us / 1e3,
                                             rel=1e-6)
        # a lone call waits for both lanes' start-up: never faster than the steady state
        assert ops["single_call_ms"] >= e.latency_ms * (1 - 1e-9)
        assert ops["top"] and all(0.05 <= o["efficiency"] <= 1 for o in ops["top"])


def test_host_multipliers_are_bounded_and_leave_the_call_rows_alone(fitted, r18):
    from costmodel.predictors._optable import _HOST_INDEX
    from costmodel.predictors._timeline import HOST_RANGE

    pred, data, _ = fitted
    t = op_table(r18, get_device("h200"), mode="training")
    m = pred._host_multiplier(t)
    assert m.shape == t.host_class.shape
    raw = m * np.asarray(pred.params.host_norm)[t.host_class]  # the network's own factor, before normalization
    assert np.all(raw >= math.exp(-HOST_RANGE) - 1e-12) and np.all(raw <= math.exp(HOST_RANGE) + 1e-12)
    fixed = np.isin(t.host_class, [_HOST_INDEX[c] for c in ("optimizer_tensor", "module", "call")])
    assert fixed.any() and np.all(m[fixed] == 1.0)
    # the fit moved the multipliers off 1 (a network that learned nothing would leave them there)
    assert np.ptp(m[~fixed]) > 0.05
    # normalized: over the training operators each class's typical multiplier is 1, so host_us is the
    # class's typical cost (what a host profile measures)
    logs, weights, classes = [], [], []
    for i in pred.trained_rows:
        ti = op_table(data.graph(i), get_device(data[i].device), mode=data[i].mode)
        logs.append(np.log(pred._host_multiplier(ti)))
        weights.append(ti.host_count)
        classes.append(ti.host_class)
    logs, weights, classes = map(np.concatenate, (logs, weights, classes))
    for k in np.unique(classes[~np.isin(classes, [_HOST_INDEX[c] for c in ("optimizer_tensor", "module", "call")])]):
        sel = (classes == k) & (weights > 0)
        assert abs(np.average(logs[sel], weights=weights[sel])) < 1e-4, HOST_CLASSES[k]
    # the host lane of the estimate is the multiplied sum
    host, _ = pred._host_vector()
    e = pred.predict(r18, "h200", mode="training")
    expect = (host[t.host_class] * t.host_count * m).sum() + host[_HOST_INDEX["call"]]
    assert e.details["ops"]["host_ms"] == pytest.approx(expect / 1e3, rel=1e-9)


@pytest.fixture(scope="module")
def with_intervals(coverage_split):
    data, train, _, test = coverage_split
    pred = TimelinePredictor(TimelineConfig(epochs=100, hidden=16))
    graphs, rows = [data.graph(i) for i in train], [data[i] for i in train]
    pred.fit_graphs(graphs, rows)
    pred.fit_intervals(graphs, rows, [r.family for r in rows])
    return pred, data, test


def test_held_out_family_intervals_cover_rows_never_seen(with_intervals, tmp_path):
    pred, data, test = with_intervals
    iv = pred.params.intervals
    assert iv["coverage"] == 0.9 and sum(iv["rows"].values()) > 0
    held, n = 0, 0
    for i in test:
        e = pred.predict(data.graph(i), data[i].device, mode=data[i].mode)
        lo, hi = e.latency_ms_interval
        assert lo < e.latency_ms < hi and e.details["interval_coverage"] == 0.9
        held += lo <= data[i].latency_ms <= hi
        n += 1
    # rows of the test third: neither fitted nor used for the residuals
    assert held / n >= 0.75, (held, n)
    # the intervals survive a save and load; a device without rows gets none
    pred.save(tmp_path / "tl")
    back = TimelinePredictor.load(tmp_path / "tl")
    g = data.graph(test[0])
    assert back.predict(g, "h200").latency_ms_interval == pytest.approx(pred.predict(g, "h200").latency_ms_interval)
    assert back.predict(g, "a100").latency_ms_interval is None


def test_intervals_need_a_fit_and_groups(fitted):
    pred, data, test = fitted
    with pytest.raises(costmodel.InvalidInputError, match="one graph and one group per row"):
        pred.fit_intervals([data.graph(test[0])], [data[test[0]]], ["a", "b"])
    with pytest.raises(costmodel.InvalidInputError, match="at least 2 groups"):
        pred.fit_intervals([data.graph(test[0])], [data[test[0]]], ["a"])
    with pytest.raises(costmodel.InvalidInputError, match="fit the timeline predictor"):
        TimelinePredictor().fit_intervals([], [], [])


def test_latency_grows_with_the_batch(fitted):
    pred = fitted[0]
    lat = [pred.predict(zoo_graph("resnet18", batch=b, method="trace"), "h200").latency_ms for b in (1, 16, 256)]
    # flat while the host sets the pace, then growing with the work
    assert lat[0] <= lat[1] < lat[2]


def test_round_trip_and_a_host_profile(tmp_path, fitted, r18):
    pred = fitted[0]
    pred.save(tmp_path / "tl")
    back = costmodel.load_predictor(tmp_path / "tl")
    a, b = pred.predict(r18, "h200"), back.predict(r18, "h200")
    assert a.latency_ms == pytest.approx(b.latency_ms, rel=1e-5) and a.energy_j == pytest.approx(b.energy_j, rel=1e-5)
    # a much faster host shortens a host-bound workload and is named in the estimate
    prof = calibrate(budget_s=0.5, device="cpu")
    prof.dispatch_us = {k: 0.01 for k in prof.dispatch_us}
    fast = back.with_host(prof)
    g1 = zoo_graph("resnet18", batch=1, method="trace")
    e_fast, e_base = fast.predict(g1, "h200"), back.predict(g1, "h200")
    assert e_fast.latency_ms < e_base.latency_ms
    assert any("host profile" in s for s in e_fast.assumptions)
    assert back.host_profile is None  # with_host copies
    # a profile calibrated without CUDA has no kernel launch in its costs: a GPU estimate says so; one that
    # lacks a class says which
    note = next(s for s in e_fast.assumptions if "host profile" in s)
    assert prof.synchronous and "calibrated without CUDA" in note and "H200" in note
    del prof.dispatch_us["conv"]
    note = next(s for s in back.with_host(prof).predict(g1, "h200").assumptions if "host profile" in s)
    assert "no dispatch cost for conv, which take" in note


@pytest.mark.parametrize("damage, match", [
    ("shape", "shape"), ("nan", "non-finite"), ("missing", "lacks tensor"), ("features", "feature names"),
    ("host", "host_us"), ("version", "format_version"), ("std", "std"),
    ("host_shape", "tensor h0 has shape"), ("host_missing", "lacks tensor h4"), ("intervals", "params.intervals"),
    ("box", "params.lo must not exceed"), ("box_missing", "params.hi must be"),
    ("decode", "params.decode_step_us"), ("phase_w", "params.energy_phase_w"), ("phase_neg", "params.energy_phase_w"),
    ("phases", "energy phases"),
])
def test_damaged_artifacts_are_refused(tmp_path, fitted, damage, match):
    from safetensors.numpy import load_file, save_file

    d = tmp_path / "tl"
    fitted[0].save(d)
    cfg = json.loads((d / "config.json").read_text())
    w = load_file(str(d / "weights.safetensors"))
    if damage == "shape":
        w["w0"] = w["w0"][:, :-1].copy()
    elif damage == "nan":
        w["w2"][0, 0] = np.nan
    elif damage == "missing":
        del w["w4"]
    elif damage == "features":
        cfg["feature_names"] = cfg["feature_names"][::-1]
    elif damage == "host":
        cfg["params"]["host_us"] = cfg["params"]["host_us"][:-1]
    elif damage == "version":
        cfg["format_version"] = 99
    elif damage == "std":
        cfg["params"]["std"][0] = 0.0
    elif damage == "host_shape":
        w["h0"] = w["h0"][:-1].copy()
    elif damage == "host_missing":
        del w["h4"]
    elif damage == "intervals":
        cfg["params"]["intervals"] = {"coverage": 1.5, "log_halfwidth": {}}
    elif damage == "box":
        cfg["params"]["lo"][3] = cfg["params"]["hi"][3] + 1.0
    elif damage == "box_missing":
        del cfg["params"]["hi"]
    elif damage == "decode":
        cfg["params"]["decode_step_us"] = -5.0
    elif damage == "phase_w":
        cfg["params"]["energy_phase_w"] = [1.0]
    elif damage == "phase_neg":
        cfg["params"]["energy_phase_w"] = [-1.0, 0.0]
    elif damage == "phases":
        cfg["energy_phases"] = ["optimizer", "backward"]
    (d / "config.json").write_text(json.dumps(cfg))
    save_file(w, str(d / "weights.safetensors"))
    # checksums consistent with the damage: the structural checks themselves must catch it
    record_checksums(d / "config.json", ["weights.safetensors"])
    with pytest.raises(costmodel.ArtifactError, match=match):
        TimelinePredictor.load(d)


def test_flipped_weight_bytes_fail_the_checksum(tmp_path, fitted):
    d = tmp_path / "tl"
    fitted[0].save(d)
    raw = bytearray((d / "weights.safetensors").read_bytes())
    raw[-3] ^= 0x01  # a finite float stays finite: only the checksum can tell
    (d / "weights.safetensors").write_bytes(bytes(raw))
    with pytest.raises(costmodel.ArtifactError, match="checksum"):
        TimelinePredictor.load(d)


def test_truncated_weights_are_refused(tmp_path, fitted):
    d = tmp_path / "tl"
    fitted[0].save(d)
    raw = (d / "weights.safetensors").read_bytes()
    (d / "weights.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(costmodel.ArtifactError, match="weights.safetensors"):
        TimelinePredictor.load(d)


def test_an_unfitted_predictor_says_so(r18):
    with pytest.raises(costmodel.ModelLoadError, match="not fitted"):
        TimelinePredictor().predict(r18, "h200")
    assert len(HOST_CLASSES) == len(set(HOST_CLASSES))


def test_estimate_takes_a_host_profile(tmp_path):
    prof = calibrate(budget_s=0.5, device="cpu")
    path = prof.save(tmp_path / "host.json")
    est = costmodel.estimate("torchvision:alexnet", batch=1, device="h200", predictor="analytic", host=path)
    assert any("host profile ignored" in a for a in est.assumptions)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(costmodel.ArtifactError, match="bad.json"):
        costmodel.estimate("torchvision:alexnet", batch=1, device="h200", predictor="analytic", host=bad)


def test_cli_host_flag_errors_are_one_line(tmp_path, capsys):
    from costmodel.cli import main

    assert main(["predict", "torchvision:alexnet", "--batch", "1", "--device", "h200", "--predictor", "analytic",
                 "--host", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("costmodel: error:") and "nope.json" in err[0]


def test_the_shipped_artifact_answers_by_name(r18):
    assert TimelinePredictor.is_available()
    p = costmodel.get_predictor("timeline")
    assert p.params.trained_on["rows"] == 342 and p.params.trained_on["devices"] == ["H200-SXM5-141GB"]
    e = p.predict(r18, "h200")
    assert e.predictor == "timeline" and 0.1 < e.latency_ms < 100


def test_operator_times_add_up_to_the_lanes(r18):
    """The per-kernel times ``operator_times`` gives are the ones the lanes sum: the device times make the
    device lane, and the host costs make the host lane less what is not a kernel (the per-call cost and the
    module calls); on a CPU the host cost is per class, so there is none per kernel."""
    p = costmodel.get_predictor("timeline")
    for mode in ("inference", "training"):
        rows = p.operator_times(r18, "h200", mode=mode)
        e = p.predict(r18, "h200", mode=mode)
        assert {r["phase"] for r in rows} == ({"forward"} if mode == "inference" else set(PHASES))
        assert sum(r["device_ms"] for r in rows) == pytest.approx(e.details["ops"]["device_ms"], rel=1e-5)
        host = sum(r["host_ms"] for r in rows)
        assert 0.5 * e.details["ops"]["host_ms"] < host < e.details["ops"]["host_ms"]
    assert all(r["host_ms"] is None for r in p.operator_times(r18, "cpu"))


def test_queries_are_clipped_into_the_training_box(fitted, r18):
    pred = fitted[0]
    lo, hi = np.asarray(pred.params.lo), np.asarray(pred.params.hi)
    assert lo.shape == hi.shape == (len(FEATURE_NAMES),) and (lo <= hi).all()
    # every training row was on one GPU: its figures never varied, so they are pinned
    hw = [FEATURE_NAMES.index(n) for n in ("hw_log_peak_tflops", "hw_log_bandwidth_gbps", "hw_sm_count")]
    np.testing.assert_allclose(lo[hw], hi[hw])
    for dev in ("h100", "a100-80gb", "l4"):
        z = pred._scaled_x(op_table(r18, get_device(dev), mode="inference"))
        assert (z >= lo - 1e-9).all() and (z <= hi + 1e-9).all()
        np.testing.assert_allclose(z[:, hw], np.broadcast_to(lo[hw], z[:, hw].shape))


def test_other_gpus_follow_their_rooflines():
    """On a device-bound step the shipped model's GPUs rank as their peak rates and bandwidths do,
    and an H100 (H200's compute, 70 % of its bandwidth) lands between the two roofline ratios."""
    g = zoo_graph("resnet50", batch=128, mode="training", method="trace")
    p = costmodel.get_predictor("timeline")
    est = {d: p.predict(g, d, mode="training") for d in ("h200", "h100", "a100-80gb", "v100", "t4", "l4")}
    lat = {d: e.latency_ms for d, e in est.items()}
    assert lat["h200"] < lat["h100"] < lat["a100-80gb"] < lat["v100"] < lat["t4"], lat
    h200, h100 = get_device("h200"), get_device("h100")
    assert 0.98 <= lat["h100"] / lat["h200"] <= 1.02 * h200.bandwidth_bytes_s / h100.bandwidth_bytes_s, lat
    # the watts fitted on the H200 carry to each board by its idle power and power range, within its limit
    for d, e in est.items():
        dev = get_device(d)
        assert dev.idle_power_w < e.power_w <= dev.tdp_w * (1 + 1e-9), (d, e.power_w)
        assert any(a.startswith("power fitted on") for a in e.assumptions) == (d != "h200")
    assert est["l4"].power_w < 0.2 * est["h200"].power_w


def test_a_dtype_the_gpu_has_no_rate_for_is_named_as_its_fallback():
    """bf16 on a V100 (no bf16 tensor cores): the lane's roofline takes the fp32 peak, and says so as every
    other predictor does; a GPU with bf16 rates says nothing."""
    from costmodel.analysis import cast_graph

    g = cast_graph(zoo_graph("resnet18", batch=8, method="trace"), "bf16")
    p = costmodel.get_predictor("timeline")
    note = "bf16 tensor ops costed at the fp32 peak (V100-SXM2-16GB lists no bf16 rate)"
    assert note in p.predict(g, "v100").assumptions
    assert note in costmodel.get_predictor("analytic").predict(g, "v100").assumptions
    assert not [a for a in p.predict(g, "h200").assumptions if "tensor ops costed at" in a]


def test_fit_host_finds_the_second_host_faster(fitted):
    """The 4 check rows of the second H200 host (``benchmarks/data/h200_extend``) repeat packaged
    workloads; its launch-bound rows ran 1.4-2x faster. Refitting only the host lane on them must
    shrink it, and leave the device lane (compute-bound rows) alone."""
    import copy
    from pathlib import Path

    from costmodel.datasets import PerfDataset

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
    new = PerfDataset.load(str(root), device="h200_extend", method="trace")
    packaged = {r.model for r in PerfDataset.load().rows}
    idx = [i for i, r in enumerate(new.rows) if r.model in packaged]
    assert len(idx) == 4
    rows = [new.rows[i] for i in idx]
    graphs = [new.graph(i) for i in idx]
    pred = copy.deepcopy(fitted[0])
    before = [pred.predict(g, r.device, mode=r.mode) for g, r in zip(graphs, rows)]
    pred.fit_host(graphs, rows)
    after = [pred.predict(g, r.device, mode=r.mode) for g, r in zip(graphs, rows)]
    scale = pred.params.host_us[0] / fitted[0].params.host_us[0]
    assert 0.3 < scale < 0.95 and "rescaled" in pred.params.host_source
    for b, a in zip(before, after):
        assert a.details["ops"]["device_ms"] == pytest.approx(b.details["ops"]["device_ms"])
        assert a.details["ops"]["host_ms"] < b.details["ops"]["host_ms"]


def test_the_default_answers_for_a_gpu_without_xgboost():
    """XGBoost is an extra: only the CPU operator model needs it, so a GPU estimate must not import it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['xgboost'] = None\n"
            "import costmodel\n"
            "e = costmodel.estimate('torchvision:resnet18', batch=1, device='h200', memory='predictor')\n"
            "assert e.predictor == 'timeline' and e.latency_ms > 0, e.predictor\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


# ------------------------------------------------------------------ decode steps
_TINY_GPT2 = {"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 512, "n_positions": 256, "bos_token_id": 0,
              "eos_token_id": 0}


@pytest.fixture(scope="module")
def tiny_decode():
    from costmodel.frontends.hf import hf_graph

    return (hf_graph("gpt2", _TINY_GPT2, batch=2, seq=32, decode=True),
            hf_graph("gpt2", _TINY_GPT2, batch=2, seq=32))


def test_a_decode_step_is_marked_in_its_table(tiny_decode):
    dec, fwd = tiny_decode
    dev = get_device("h200")
    assert op_table(dec, dev, mode="inference").decode
    assert not op_table(fwd, dev, mode="inference").decode


def test_the_decode_step_cost_joins_the_host_lane(fitted, tiny_decode):
    """Without decode rows in the fit the step's loop cost is unknown: the estimate says its latency is a
    lower bound. With a fitted cost the host lane grows by exactly that much, and only for a decode step."""
    import copy

    dec, fwd = tiny_decode
    pred = fitted[0]
    assert pred.params.decode_step_us is None
    e0 = pred.predict(dec, "h200")
    assert any("lower bound" in a for a in e0.assumptions) and e0.details["ops"]["decode_step_ms"] == 0.0
    other = copy.deepcopy(pred)
    other.params.decode_step_us = 40_000.0
    e1 = other.predict(dec, "h200")
    assert e1.details["ops"]["host_ms"] == pytest.approx(e0.details["ops"]["host_ms"] + 40.0)
    assert e1.details["ops"]["decode_step_ms"] == pytest.approx(40.0)
    assert e1.latency_ms > e0.latency_ms + 30.0
    assert any("40.0 ms" in a for a in e1.assumptions)
    f0, f1 = pred.predict(fwd, "h200"), other.predict(fwd, "h200")
    assert f1.latency_ms == f0.latency_ms and f1.details["ops"]["decode_step_ms"] is None


def test_measured_decode_rows_fit_the_step_cost(coverage_split):
    """The packaged decode steps of GPT-2 take ~50-65 ms each on the measured host whatever the batch,
    far above their operators' dispatch: a fit with the GPT-2-medium rows finds a step cost of that
    order, and on GPT-2's own decode rows (never in the fit) it is much nearer than a fit without it."""
    from costmodel.datasets import PerfDataset

    data, train, _, _ = coverage_split
    llm = PerfDataset.load(kinds=("llm",))
    dec = [i for i, r in enumerate(llm.rows) if r.phase == "decode" and r.has_graph]
    fit_i = [i for i in dec if llm.rows[i].model == "gpt2-medium"]
    test_i = [i for i in dec if llm.rows[i].model == "gpt2"]
    assert len(fit_i) >= 3 and len(test_i) >= 3
    vis_g, vis_r = [data.graph(i) for i in train], [data[i] for i in train]
    cfg = TimelineConfig(epochs=120, hidden=16)
    with_dec = TimelinePredictor(cfg).fit_graphs(vis_g + [llm.graph(i) for i in fit_i],
                                                 vis_r + [llm.rows[i] for i in fit_i])
    without = TimelinePredictor(cfg).fit_graphs(vis_g, vis_r)
    assert with_dec.params.trained_on["decode_rows"] == len(fit_i)
    assert 10_000 < with_dec.params.decode_step_us < 100_000
    y = [llm.rows[i].latency_ms for i in test_i]
    err_with = mape(y, [with_dec.predict(llm.graph(i), "h200").latency_ms for i in test_i])
    err_without = mape(y, [without.predict(llm.graph(i), "h200").latency_ms for i in test_i])
    assert err_with < 0.5 * err_without, (err_with, err_without)


def test_predict_many_across_chunks_is_predict_one_at_a_time(r18):
    """More graphs than one chunk, dtypes and batches mixed, an empty graph among them: each estimate is
    the one predict gives that graph alone."""
    from costmodel.analysis._cast import cast_graph
    from costmodel.ir import CostGraph
    from costmodel.predictors._timeline import _CHUNK

    small = zoo_graph("mobilenet_v3_small", batch=2, method="trace")
    empty = CostGraph([], [], meta={"name": "empty", "dtype": "fp32", "batch": 1})
    pool = [r18, small, cast_graph(small, "fp16"), cast_graph(r18, "bf16"), empty]
    many = [pool[i % len(pool)] for i in range(_CHUNK + 7)]
    p = costmodel.get_predictor("timeline")
    for mode in ("inference", "training"):
        together = p.predict_many(many, "h200", mode=mode)
        assert len(together) == len(many)
        alone = {id(g): p.predict(g, "h200", mode=mode) for g in pool}
        for g, e in zip(many, together):
            one = alone[id(g)]
            assert e.latency_ms == pytest.approx(one.latency_ms, rel=1e-6)
            assert e.energy_j == pytest.approx(one.energy_j, rel=1e-6)
            assert e.memory_mb == one.memory_mb and e.mig_profile == one.mig_profile
            assert e.details["ops"]["bound"] == one.details["ops"]["bound"]
            # the networks run in float32 over the stacked rows of a chunk, so near-ties may swap places
            assert [t["device_ms"] for t in e.details["ops"]["top"]] == pytest.approx(
                [t["device_ms"] for t in one.details["ops"]["top"]], rel=1e-5)


def test_the_fit_loss_is_a_choice_kept_with_the_artifact(tmp_path, fitted, coverage_split):
    import dataclasses

    from costmodel import InvalidInputError

    with pytest.raises(InvalidInputError, match="unknown timeline loss 'huber'; valid: l1, l2"):
        TimelineConfig(loss="huber")
    pred = fitted[0]
    assert pred.config.loss == "l1"  # the default: the median, what a MAPE scores
    pred.save(tmp_path / "tl")
    assert costmodel.load_predictor(tmp_path / "tl").config.loss == "l1"
    # a row measured in a host's slow spell (three times its latency, twice over) pulls the squared-error
    # fit towards it; the absolute-error fit moves less on the rows it never saw
    data, train, _, test = coverage_split
    graphs, rows = [data.graph(i) for i in train], [data[i] for i in train]
    slow = max(range(len(rows)), key=lambda k: rows[k].latency_ms)
    spoilt = rows + [dataclasses.replace(rows[slow], latency_ms=3 * rows[slow].latency_ms)] * 2
    moved = {}
    for loss in ("l1", "l2"):
        cfg = TimelineConfig(epochs=150, hidden=16, loss=loss)
        clean = TimelinePredictor(cfg).fit_graphs(graphs, rows)
        dirty = TimelinePredictor(cfg).fit_graphs(graphs + [graphs[slow]] * 2, spoilt)
        a = np.array([clean.predict(data.graph(i), data[i].device, mode=data[i].mode).latency_ms for i in test])
        b = np.array([dirty.predict(data.graph(i), data[i].device, mode=data[i].mode).latency_ms for i in test])
        moved[loss] = float(np.mean(np.abs(np.log(b / a))))
    assert moved["l1"] < moved["l2"], moved


def test_a_graph_without_module_calls_says_its_host_lane_has_none():
    import copy

    from costmodel.predictors import get_predictor

    p = get_predictor("timeline")
    traced = zoo_graph("resnet18", batch=8, method="trace")  # both captures count the module calls
    assert module_calls(traced) == traced.meta["module_calls"] > 0
    counted = p.predict(traced, "h200")
    bare = copy.deepcopy(traced)  # what a Relax module gives: neither a call count nor scopes
    del bare.meta["module_calls"]
    for n in bare.nodes:
        n.scope = ""
    plain = p.predict(bare, "h200")
    note = "records no Python module calls"
    assert not any(note in a for a in counted.assumptions)
    assert any(note in a for a in plain.assumptions)
    # the same kernels, fewer host costs: only the host lane moves
    assert plain.details["ops"]["device_ms"] == pytest.approx(counted.details["ops"]["device_ms"])
    assert plain.details["ops"]["host_ms"] < counted.details["ops"]["host_ms"]


def test_a_training_graph_without_the_tensor_count_says_what_its_optimizer_counted(r18):
    import copy

    from costmodel.predictors import get_predictor

    p = get_predictor("timeline")
    counted = p.predict(r18, "h200", mode="training")
    old = copy.deepcopy(r18)  # a graph saved before the count was recorded
    del old.meta["trainable_tensors"]
    fallback = p.predict(old, "h200", mode="training")
    note = "count of the parameter tensors"
    assert not any(note in a for a in counted.assumptions)
    assert any(note in a for a in fallback.assumptions)
    assert not any(note in a for a in p.predict(old, "h200", mode="inference").assumptions)
    # the operands add resnet18's batch-norm buffers: more optimizer tensors on the host lane
    assert fallback.details["ops"]["host_ms"] > counted.details["ops"]["host_ms"]
    assert fallback.details["ops"]["device_ms"] == pytest.approx(counted.details["ops"]["device_ms"])


def test_the_host_network_is_blind_to_the_dtype(tmp_path, fitted, r18):
    from costmodel import InvalidInputError
    from costmodel.predictors._timeline_start import DEVICE_FEATURES, DTYPE_FEATURES

    pred = fitted[0]
    assert pred.config.host_blind == DTYPE_FEATURES + DEVICE_FEATURES  # the default
    cols = [FEATURE_NAMES.index(n) for n in DTYPE_FEATURES]
    assert np.all(pred._host_weights[0][:, cols] == 0)
    # the device network does see the dtype: only the host's weights were held at zero
    assert np.any(pred._weights[0][:, cols] != 0)
    t = op_table(r18, get_device("h200"), mode="inference")
    z = pred._scaled_x(t)
    swapped = z.copy()
    swapped[:, cols] = swapped[:, cols[::-1]] + 1.0  # any other dtype columns
    assert np.array_equal(pred._host_multiplier(t, z), pred._host_multiplier(t, swapped))
    assert not np.allclose(pred._device_us(t, z)[0], pred._device_us(t, swapped)[0])
    # kept with the artifact; an artifact fitted before the setting existed loads as not blind
    pred.save(tmp_path / "tl")
    assert costmodel.load_predictor(tmp_path / "tl").config.host_blind == DTYPE_FEATURES + DEVICE_FEATURES
    cfg = json.loads((tmp_path / "tl" / "config.json").read_text())
    del cfg["config"]["host_blind"]
    (tmp_path / "tl" / "config.json").write_text(json.dumps(cfg))
    record_checksums(tmp_path / "tl" / "config.json", ["weights.safetensors"])
    assert costmodel.load_predictor(tmp_path / "tl").config.host_blind == ()
    with pytest.raises(InvalidInputError, match=r"unknown feature\(s\) in host_blind: 'dtype_fp8'; valid: cat_"):
        TimelineConfig(host_blind=("dtype_fp8",))
    for bad in ("dtype_fp16", None, 3, [1]):
        with pytest.raises(InvalidInputError, match="sequence of feature names"):
            TimelineConfig(host_blind=bad)
    assert TimelineConfig(host_blind=["tensor_core"]).host_blind == ("tensor_core",)


def test_the_device_network_can_be_made_blind(tmp_path, coverage_split, r18):
    """``device_blind`` holds the efficiency network's weights on the named features at zero through the
    fit (weight decay included), is saved with the artifact, and names a bad feature."""
    from costmodel import InvalidInputError

    data, train, _, _ = coverage_split
    blind = ("log_flops", "log_bytes")
    pred = TimelinePredictor(TimelineConfig(epochs=30, hidden=16, device_blind=blind))
    pred.fit_graphs([data.graph(i) for i in train[:40]], [data[i] for i in train[:40]])
    cols = [FEATURE_NAMES.index(n) for n in blind]
    assert np.all(pred._weights[0][:, cols] == 0)
    others = [i for i in range(len(FEATURE_NAMES)) if i not in cols]
    assert np.any(pred._weights[0][:, others] != 0)
    t = op_table(r18, get_device("h200"), mode="inference")
    z = pred._scaled_x(t, True)
    moved = z.copy()
    moved[:, cols] += 1.0
    assert np.array_equal(pred._device_us(t, z)[0], pred._device_us(t, moved)[0])
    pred.save(tmp_path / "tl")
    assert costmodel.load_predictor(tmp_path / "tl").config.device_blind == blind
    assert TimelineConfig().device_blind == ()
    with pytest.raises(InvalidInputError, match=r"unknown feature\(s\) in device_blind: 'flops'; valid: cat_"):
        TimelineConfig(device_blind=("flops",))
    with pytest.raises(InvalidInputError, match="device_blind must be a sequence of feature names"):
        TimelineConfig(device_blind="log_flops")


def test_the_host_lane_is_the_same_on_every_gpu(fitted, r18):
    """The host network sees none of the GPU's features, so one graph's host lane (one host dispatching
    it) is the same whichever GPU is asked about, while the device lane follows each GPU's roofline."""
    pred = fitted[0]
    for mode in ("inference", "training"):
        ests = {d: pred.predict(r18, d, mode=mode).details["ops"] for d in ("h200", "h100", "a100-80gb", "l4", "t4")}
        hosts = {d: e["host_ms"] for d, e in ests.items()}
        assert max(hosts.values()) == pytest.approx(min(hosts.values()), rel=1e-9), hosts
        assert ests["t4"]["device_ms"] > 3 * ests["h200"]["device_ms"]
