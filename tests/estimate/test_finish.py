"""The Estimate type, its transformer form and the one finishing step every predictor uses."""

from __future__ import annotations

import json

import pytest

import costmodel
from costmodel.devices import get_device
from costmodel.estimate import Estimate, LLMEstimate, finish_estimate, recommend_mig


def _est(**kw) -> Estimate:
    base = dict(latency_ms=4.0, memory_mb=20000.0, energy_j=1.0, power_w=250.0, mig_profile=None,
                predictor="p", predictor_version="1", device="H200-SXM5-141GB", batch=8)
    return Estimate(**dict(base, **kw))


def test_finishing_derives_mig_throughput_fit_and_version():
    dev = get_device("h200")
    est = finish_estimate(_est(), dev, version="3")
    assert est.mig_profile == recommend_mig(dev, 20000.0).name
    assert est.throughput_samples_s == pytest.approx(8 / 4e-3)
    assert est.fits_device and est.predictor_version == f"3 (costmodel {costmodel.__version__})"
    assert "trained_devices" not in est.details and not est.extrapolated_device  # no meta: not learned
    # a margin moves the pick up; memory beyond the device does not fit
    wider = finish_estimate(_est(), dev, version="3", margin_mb=30000.0).mig_profile
    assert wider == recommend_mig(dev, 50000.0).name != est.mig_profile
    assert not finish_estimate(_est(memory_mb=dev.memory_mb + 1), dev, version="3").fits_device


def test_what_fits_is_what_the_board_reports_not_the_name():
    # a T4's 16 GB are 16,384 MiB by name, but with ECC on its board reports 15,360: 15,500 MB does not fit
    t4 = get_device("t4")
    assert t4.memory_mb == 16384 and t4.capacity_mb == 15360
    assert not finish_estimate(_est(memory_mb=15500.0, device=t4.name), t4, version="1").fits_device
    assert finish_estimate(_est(memory_mb=15300.0, device=t4.name), t4, version="1").fits_device
    # the H200's 141 GiB name against the 143,155.94 MiB the measured card reported (150,109,880,320 B)
    h200 = get_device("h200")
    assert h200.capacity_mb == pytest.approx(150109880320 / 2**20, abs=0.01)
    assert h200.capacity_mb < h200.memory_mb
    assert not finish_estimate(_est(memory_mb=143596.0), h200, version="1").fits_device
    # a board without a reported total keeps the nominal capacity
    v100 = get_device("v100-pcie-16gb")
    assert v100.reported_memory_mib is None and v100.capacity_mb == v100.memory_mb
    assert get_device("v100").capacity_mb == 16160.0  # PyTorch's total_memory of a V100-SXM2-16GB


def test_power_is_held_between_idle_and_the_power_limit():
    # a T4 averages at most its 70 W limit: a regression's 102 W over 35.7 ms is held there, energy with it
    t4 = get_device("t4")
    est = finish_estimate(_est(power_w=102.0, energy_j=102.0 * 0.0357, latency_ms=35.7, device=t4.name,
                               latency_ms_interval=(30.0, 40.0), energy_j_interval=(3.0, 4.5)), t4, version="1")
    assert est.power_w == 70.0 and est.energy_j == pytest.approx(70.0 * 0.0357)
    # the interval (around the 102 W) is clipped to what the board can draw: at most the limit over the slowest
    # latency, and it holds the held energy
    assert est.energy_j_interval == pytest.approx((70.0 * 0.0357, 70.0 * 0.040))
    assert any("power limit of 70 W" in a and "102 W" in a for a in est.assumptions)
    # below idle (10 W) it is held at idle; within both bounds nothing changes and nothing is said
    low = finish_estimate(_est(power_w=4.0, energy_j=0.016, device=t4.name), t4, version="1")
    assert low.power_w == 10.0 and low.energy_j == pytest.approx(0.04)
    assert any("idle power of 10 W" in a for a in low.assumptions)
    ok = finish_estimate(_est(power_w=50.0, energy_j=0.2, device=t4.name), t4, version="1")
    assert (ok.power_w, ok.energy_j) == (50.0, 0.2) and not any("power held" in a for a in ok.assumptions)


def test_every_predictor_keeps_power_within_the_board():
    from costmodel.analysis import cast_graph
    from costmodel.frontends import to_graph

    # swin_t in bf16 at batch 16 on a T4: the static trees alone put it at 102 W on this 70 W board
    t4 = get_device("t4")
    g = cast_graph(to_graph("torchvision:swin_t", batch=16, mode="inference", method="trace"), "bf16")
    for name in ("timeline", "dippm", "trappm", "xgb-static", "analytic"):
        est = costmodel.get_predictor(name).predict(g, t4, mode="inference")
        assert t4.idle_power_w <= est.power_w <= t4.tdp_w, name
        assert est.energy_j == pytest.approx(est.power_w * est.latency_ms / 1e3, rel=1e-6), name


def test_a_transformer_power_is_held_before_its_carbon_and_cost():
    # the llm-xgb trees put BERT-base's fp16 forward of 64 x 512 at 418 W on a 350 W L40S
    llm = costmodel.estimate_llm("bert-base-uncased", batch=64, seq=512, device="l40s", predictor="llm-xgb",
                                 region="france")
    assert llm.power_w == get_device("l40s").tdp_w == 350.0
    assert any(a.startswith("power held at L40S's power limit of 350 W") for a in llm.assumptions)
    assert llm.energy_j_per_call == pytest.approx(llm.power_w * llm.latency_ms / 1e3, rel=1e-6)
    assert llm.energy_j == pytest.approx(llm.energy_j_per_call / llm.batch, rel=1e-6)
    # carbon follows the held energy
    assert llm.carbon_g == pytest.approx(llm.energy_j / 3.6e6 * llm.carbon_intensity_g_per_kwh, rel=1e-6)


def test_the_unlisted_whole_gpu_instance_holds_at_most_the_board():
    nvl, h100, h200 = get_device("h100-nvl"), get_device("h100"), get_device("h200")
    full = next(p for p in nvl.mig_profiles if p.name == "7g.94gb")  # no listing; the name's 94 GiB is more
    assert full.capacity_capped and not full.capacity_listed and full.capacity_mb == nvl.capacity_mb
    assert recommend_mig(nvl, 95400.0) is None and recommend_mig(nvl, 95300.0).name == "7g.94gb"
    listed = next(p for p in h100.mig_profiles if p.name == "7g.80gb")  # the listing (79.25 GiB) is below the board
    assert listed.capacity_listed and not listed.capacity_capped and listed.capacity_mb == 79.25 * 1024
    # a JSON round trip keeps the board's total on the device, not on its profiles
    d = h200.to_dict()
    assert d["reported_memory_mib"] == h200.reported_memory_mib
    assert all("board_memory_mib" not in m for m in d["mig_profiles"])
    assert h200.with_overrides(tdp_w=600.0).capacity_mb == h200.capacity_mb
    # a new capacity drops the board's total that belonged to the old one
    assert h200.with_overrides(memory_gb=100.0).capacity_mb == 102400.0


def test_a_reported_total_above_the_nominal_capacity_is_refused():
    from costmodel._errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"reported_memory_mib.*\(0, memory_gb \* 1024 = 16384\]"):
        get_device("t4").with_overrides(reported_memory_mib=17000.0)


def test_finishing_flags_a_device_without_measured_rows():
    dev = get_device("a100-80gb")
    est = finish_estimate(_est(device=dev.name), dev, version="1",
                          meta={"devices": ["NVIDIA H200"], "library_version": "0.0.9"})
    assert est.predictor_version == "1 (costmodel 0.0.9)"
    assert est.extrapolated_device and est.details["extrapolated_device"] is True
    assert est.details["trained_devices"] == ["NVIDIA H200"]
    assert [a for a in est.assumptions if a.startswith(f"no measured rows for {dev.name}")]
    same = finish_estimate(_est(), get_device("h200"), version="1", meta={"devices": ["NVIDIA H200"]})
    assert not same.extrapolated_device and same.assumptions == []


def test_graph_estimates_serialize_as_before_and_llm_estimates_as_theirs():
    d = _est().to_dict()
    assert list(d)[:3] == ["latency_ms", "memory_mb", "energy_j"] and "tokens_s" not in d
    assert "extrapolated_device" not in d and list(d)[-1] == "assumptions"
    llm = costmodel.estimate_llm("gpt2", batch=2, seq=64, predictor="llm-xgb")
    assert isinstance(llm, LLMEstimate) and isinstance(llm, Estimate)
    d = json.loads(llm.to_json())
    assert list(d)[:4] == ["model", "device", "batch", "seq"]
    assert d["predictor"] == f"{llm.predictor} {llm.predictor_version}" and d["predictor"].startswith("llm-xgb 1 ")
    assert "extrapolated_device" in d and "extrapolated_device" not in d["details"]
    assert "predictor    llm-xgb 1 (costmodel" in llm.table()


def test_the_estimate_package_is_callable_as_the_function():
    import costmodel.estimate as pkg

    assert callable(pkg) and callable(costmodel.estimate)
    est = pkg("torchvision:resnet18", batch=1, device="h200", predictor="analytic")
    assert est.predictor == "analytic" and est.details["mig"]["profile"] == est.mig_profile


def test_a_negative_or_missing_memory_has_no_slice():
    from costmodel import InvalidInputError

    for bad in (-1, float("nan"), None):
        with pytest.raises(InvalidInputError, match="memory_mb"):
            recommend_mig("h200", bad)
    with pytest.raises(InvalidInputError, match="margin_mb"):
        recommend_mig("h200", 100.0, margin_mb=float("inf"))


def test_an_upper_end_below_the_estimate_adds_no_margin(monkeypatch):
    # a calibration whose held-out rows all measured below their replay puts the interval's upper end
    # under the estimate: the MIG pick holds the estimate itself, and nothing fails
    from costmodel.analysis import memreplay

    monkeypatch.setattr(memreplay, "bounds_for", lambda cal, group: (-0.05, -0.01, group, 50))
    est = costmodel.estimate("torchvision:resnet18", batch=8, device="h200", input_shape=(3, 64, 64))
    assert est.memory_mb_interval[1] < est.memory_mb
    assert est.mig_profile == recommend_mig("h200", est.memory_mb).name


def test_a_mig_slice_is_never_estimated_faster_than_its_gpu():
    """TraPPM reads a slice's smaller hardware features out of what it learned and put mobilenet_v3_small's
    training step on an H200 1g.18gb at 18.5 ms, under the whole GPU's 19.6 ms: held at the GPU's, said so."""
    kw = dict(batch=8, mode="training", predictor="trappm")
    whole = costmodel.estimate("torchvision:mobilenet_v3_small", device="h200", **kw)
    part = costmodel.estimate("torchvision:mobilenet_v3_small", device="h200 1g.18gb", **kw)
    assert part.latency_ms >= whole.latency_ms
    note = next(a for a in part.assumptions if "runs no faster than its GPU" in a)
    assert "trappm predictor put the slice at" in note
    assert part.energy_j == pytest.approx(part.power_w * part.latency_ms / 1e3, rel=1e-6)
    # the slice the whole GPU's estimate picks is held the same way
    assert whole.details["mig"]["latency_ms"] >= whole.latency_ms


def test_holding_a_slice_at_its_gpu_scales_its_rates():
    from costmodel.estimate import Estimate
    from costmodel.estimate._finish import no_faster_than_whole

    e = Estimate(latency_ms=10.0, memory_mb=1.0, energy_j=2.0, power_w=200.0, mig_profile=None, predictor="p",
                 predictor_version="1", device="H200 1g.18gb", batch=4, throughput_samples_s=400.0,
                 latency_ms_interval=(8.0, 12.0), energy_j_interval=(1.5, 2.5))
    held = no_faster_than_whole(e, 20.0, "H200")
    assert (held.latency_ms, held.energy_j, held.throughput_samples_s) == (20.0, 4.0, 200.0)
    assert held.latency_ms_interval == (16.0, 24.0) and held.energy_j_interval == (3.0, 5.0)
    slower = no_faster_than_whole(Estimate(latency_ms=30.0, memory_mb=1.0, energy_j=6.0, power_w=200.0,
                                           mig_profile=None, predictor="p", predictor_version="1", device="d"),
                                  20.0, "H200")
    assert slower.latency_ms == 30.0 and not slower.assumptions
