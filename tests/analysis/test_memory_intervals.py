"""Intervals around the replayed memory: split-conformal bounds from held-out residuals, stored with the
residuals in the device's memory fit, and the MIG pick taken from their upper end."""

import json
import math

import pytest

import costmodel
from costmodel._errors import ModelLoadError
from costmodel.analysis import memreplay
from costmodel.analysis.memreplay import (
    MEMORY_FIT,
    bounds_for,
    conformal_bounds,
    fit_intervals,
    interval_group,
    load_memory_fit,
    memory_intervals,
    replay_memory,
    row_group,
    write_memory_fit,
)
from costmodel.datasets import default_root


def test_conformal_bounds_take_the_finite_sample_ranks():
    v = [i / 100 for i in range(100)]  # 0.00 .. 0.99, shuffled order does not matter
    lo, hi = conformal_bounds(list(reversed(v)), 0.9)
    assert (lo, hi) == (0.04, 0.95)  # ranks ceil(101 * 0.95) = 96 from each end
    # few rows: the extremes
    assert conformal_bounds([0.3, -0.2, 0.1], 0.9) == (-0.2, 0.3)
    assert conformal_bounds([0.02] * 5, 0.5) == (0.02, 0.02)
    for bad in ([], [float("nan")]):
        with pytest.raises(ValueError, match="finite residuals"):
            conformal_bounds(bad)
    with pytest.raises(ValueError, match="coverage"):
        conformal_bounds([0.1], 1.0)


def _records(group, family, values):
    return [{"group": group, "family": family, "log_ratio": v} for v in values]


def test_small_groups_use_the_pooled_bounds():
    recs = _records("vision infer fp32", "a", [i / 1000 for i in range(-20, 20)]) + _records(
        "transformer decode", "b", [0.2, 0.3, -0.1])
    cal = fit_intervals(recs)
    assert set(cal["groups"]) == {"all", "vision infer fp32"}  # decode has 3 rows: below MIN_GROUP_ROWS
    lo, hi, used, rows = bounds_for(cal, "transformer decode")
    # 43 pooled rows: the 42nd smallest and the 2nd, so one decode row reaches past the bound
    assert (used, rows) == ("all", 43) and (lo, hi) == (-0.02, 0.2)
    lo, hi, used, rows = bounds_for(cal, "vision infer fp32")
    assert (used, rows) == ("vision infer fp32", 40) and (lo, hi) == (-0.019, 0.018)  # ranks 2 and 39 of 40
    assert bounds_for(cal, "vision train bf16")[2] == "all"


def test_groups_name_the_workload():
    assert interval_group("vision", "inference", "fp16") == "vision infer fp16"
    assert interval_group("vision", "training", "fp32") == "vision train fp32"
    assert interval_group("transformer", "inference", "fp16", "decode") == "transformer decode"
    assert interval_group("transformer", "inference", "fp32") == "transformer forward"
    assert interval_group("transformer", "training", "bf16") == "transformer training"
    assert row_group({"mode": "train", "dtype": "fp32", "spec": {}}) == "vision train fp32"
    assert row_group({"mode": "prefill", "dtype": "fp16", "model_type": "llama"}) == "transformer prefill"


@pytest.mark.parametrize("mutate, needle", [
    (lambda iv: iv["groups"]["all"].update(hi=0.5), "bounds for 'all' are not"),
    (lambda iv: iv["residuals"].pop(), "bounds for 'all' are not"),
    (lambda iv: iv.update(coverage=1.5), "coverage must be a number in \\(0, 1\\)"),
    (lambda iv: iv["residuals"][0].pop("log_ratio"), "residuals are damaged"),
    (lambda iv: iv["groups"].pop("vision infer fp32"), "groups .* are not the ones"),
])
def test_damaged_intervals_are_refused(tmp_path, mutate, needle):
    rows = [{"spec": {"name": "a"}, "peak_reserved_mb": 105.0, "replayed_reserved_mb": 100.0}]
    cal = fit_intervals(_records("vision infer fp32", "a", [i / 1000 for i in range(-20, 20)]))
    p = write_memory_fit(tmp_path / MEMORY_FIT, 0.05, rows, device="X", fitted_by="test", intervals=cal)
    assert load_memory_fit(p)["intervals"]["groups"] == json.loads(json.dumps(cal["groups"]))
    blob = json.loads(p.read_text())
    mutate(blob["intervals"])
    p.write_text(json.dumps(blob))
    with pytest.raises(ModelLoadError, match=needle):
        load_memory_fit(p)


def test_the_shipped_intervals_are_held_out_residuals_of_every_packaged_row():
    cal = memory_intervals("h200")
    assert cal is not None and cal["coverage"] == 0.9 and cal["held_out"] == "family"
    assert len(cal["residuals"]) == 548  # every packaged row with NVML memory, vision and transformer
    assert {"vision infer fp32", "vision train fp32", "transformer decode"} <= set(cal["groups"])
    for g, b in cal["groups"].items():
        assert b["lo"] < 0 < b["hi"], g  # the replay misses both ways in every group
    walk = memory_intervals("h200", "liveness-fallback")
    assert len(walk["residuals"]) == 528  # the decode rows have no graph to walk
    assert "transformer decode" not in walk["groups"]
    fit = load_memory_fit(default_root() / "h200" / MEMORY_FIT)
    assert len(fit["rows"]) == 57  # the training allowance's rows are kept beside them


def test_a_replay_carries_its_groups_interval_and_a_device_without_rows_borrows_it():
    cal = memory_intervals("h200")
    out = replay_memory("torchvision:resnet18", "h200", batch=8)
    lo, hi, _, rows = bounds_for(cal, "vision infer fp32")
    assert out.interval_mb == pytest.approx((out.memory_mb * math.exp(lo), out.memory_mb * math.exp(hi)))
    assert out.interval["group"] == "vision infer fp32" and out.interval["rows"] == rows
    train = replay_memory("torchvision:resnet18", "h200", batch=8, mode="training")
    assert train.interval["group"] == "vision train fp32"
    other = replay_memory("torchvision:resnet18", "a100-80gb", batch=8)
    assert other.interval["device_rows"] == "h200" and "has no rows of its own" in other.interval["note"]


def test_the_mig_pick_holds_the_intervals_upper_end(monkeypatch):
    plain = costmodel.estimate("torchvision:resnet18", batch=8, device="h200")
    assert plain.mig_profile == "1g.18gb" and plain.memory_mb_interval[1] < 18_000
    assert not any(a.startswith("MIG slice:") for a in plain.assumptions)
    # an interval whose upper end passes the smallest slice moves the pick, and the estimate says why
    wide = json.loads(json.dumps(memory_intervals("h200")))
    wide["groups"]["vision infer fp32"]["hi"] = math.log(20_000 / plain.memory_mb)
    monkeypatch.setattr(memreplay, "memory_intervals", lambda device, path="replay": wide)
    est = costmodel.estimate("torchvision:resnet18", batch=8, device="h200")
    assert est.memory_mb == pytest.approx(plain.memory_mb)
    assert est.memory_mb_interval[1] == pytest.approx(20_000)
    assert est.mig_profile == "1g.35gb"
    assert any(a.startswith("MIG slice: 1g.35gb holds the upper end") for a in est.assumptions)


def test_a_transformers_mig_pick_holds_the_intervals_upper_end_too(monkeypatch):
    plain = costmodel.estimate_llm("gpt2", batch=1, seq=64, mode="prefill", device="h200")
    assert plain.mig_profile == "1g.18gb" and plain.memory_mb_interval[1] < 16_000
    wide = json.loads(json.dumps(memory_intervals("h200")))
    wide["groups"]["transformer prefill"]["hi"] = math.log(20_000 / plain.memory_mb)
    monkeypatch.setattr(memreplay, "memory_intervals", lambda device, path="replay": wide)
    memreplay._CACHE.clear()
    est = costmodel.estimate_llm("gpt2", batch=1, seq=64, mode="prefill", device="h200")
    assert est.memory_mb == pytest.approx(plain.memory_mb) and est.memory_mb_interval[1] == pytest.approx(20_000)
    # the pick, the slice the estimate was asked about and the assumption agree (the finishing step had
    # picked again from the point estimate alone)
    assert est.mig_profile == "1g.35gb" and est.details["mig"]["profile"] == "1g.35gb"
    assert any(a.startswith("MIG slice: 1g.35gb holds the upper end") for a in est.assumptions)


def test_a_graph_alone_gets_the_walks_own_interval():
    g = costmodel.to_graph("torchvision:resnet18", batch=2)
    est = costmodel.estimate(g, batch=2, device="h200", predictor="timeline")
    mem = est.details["memory"]
    assert mem["path"] == "liveness-fallback"
    walk = memory_intervals("h200", "liveness-fallback")
    replay = memory_intervals("h200")
    assert walk["groups"] != replay["groups"]  # calibrated on the walk's own residuals
    lo, hi, used, rows = bounds_for(walk, "vision infer fp32")
    assert mem["interval"]["group"] == used and mem["interval"]["rows"] == rows
    assert "of the graph walk" in mem["interval"]["note"]
    assert est.memory_mb_interval == pytest.approx((est.memory_mb * math.exp(lo), est.memory_mb * math.exp(hi)))
    with pytest.raises(ValueError, match="path must be one of replay, liveness-fallback"):
        memory_intervals("h200", "predictor")


def test_the_walks_intervals_are_checked_too(tmp_path):
    rows = [{"spec": {"name": "a"}, "peak_reserved_mb": 105.0, "replayed_reserved_mb": 100.0}]
    cal = fit_intervals(_records("vision infer fp32", "a", [i / 1000 for i in range(-20, 20)]))
    p = write_memory_fit(tmp_path / MEMORY_FIT, 0.05, rows, device="X", fitted_by="test", intervals=cal,
                         walk_intervals=cal)
    blob = json.loads(p.read_text())
    assert blob["walk_intervals"]["groups"] == blob["intervals"]["groups"]
    blob["walk_intervals"]["groups"]["all"]["lo"] = -1.0
    p.write_text(json.dumps(blob))
    with pytest.raises(ModelLoadError, match="walk_intervals: intervals' bounds for 'all'"):
        load_memory_fit(p)
