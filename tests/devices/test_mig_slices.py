"""A MIG slice is a device of its own: the names CUDA and users give it, its figures, the MIG pick
against what an instance holds, and estimates on a slice."""

from __future__ import annotations

import json

import pytest

import costmodel
from costmodel import InvalidInputError
from costmodel.devices import (
    base_device,
    find_profile,
    get_device,
    list_devices,
    mig_parent,
    slice_device,
    split_mig_name,
)
from costmodel.estimate import recommend_mig


@pytest.mark.parametrize("name, expected", [
    # what torch.cuda.get_device_name() / NVML report inside a GPU instance
    ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "A100-SXM4-40GB MIG 1g.5gb"),
    ("NVIDIA A100-SXM4-80GB MIG 3g.40gb", "A100-SXM4-80GB MIG 3g.40gb"),
    ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "H100-SXM5-80GB MIG 1g.10gb"),
    ("NVIDIA H200 MIG 1g.18gb", "H200-SXM5-141GB MIG 1g.18gb"),
    # what a user types
    ("h200 1g.18gb", "H200-SXM5-141GB MIG 1g.18gb"),
    ("h200:2g.35gb", "H200-SXM5-141GB MIG 2g.35gb"),
    ("h200/3g.71gb", "H200-SXM5-141GB MIG 3g.71gb"),
    ("H200 MIG 1g.18gb+me", "H200-SXM5-141GB MIG 1g.18gb"),  # media extensions: the same slice
    ("a100 3g.39gb", "A100-SXM4-80GB MIG 3g.40gb"),  # a driver's renamed profile: same slices, nearest memory
    ("a100 1g.5gb", "A100-SXM4-40GB MIG 1g.5gb"),  # 'a100' fits several cards: the one with the profile
    ("h200-mig-1g.18gb", "H200-SXM5-141GB MIG 1g.18gb"),
    ("h200 1g.18gb+me.all", "H200-SXM5-141GB MIG 1g.18gb"),  # newer drivers' variant names
    ("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb", "A100-SXM4-40GB MIG 1c.3g.20gb"),  # a compute instance
    ("h200 3c.3g.71gb", "H200-SXM5-141GB MIG 3g.71gb"),  # all of its GPU instance's compute slices
])
def test_a_slice_resolves_from_the_names_it_goes_by(name, expected):
    assert get_device(name).name == expected


def test_split_names_and_whole_devices():
    assert split_mig_name("NVIDIA H200 MIG 1g.18gb") == ("NVIDIA H200", "1g.18gb")
    assert split_mig_name("h100") is None and split_mig_name("A100-SXM4-80GB") is None
    sl = get_device("h200 1g.18gb")
    assert mig_parent(sl).name == "H200-SXM5-141GB" and base_device(sl).name == "H200-SXM5-141GB"
    assert mig_parent(get_device("h200")) is None and base_device(get_device("t4")).name == "T4"
    assert get_device(sl) is sl  # a Device passes through


def test_bad_slices_are_refused_with_the_choices():
    with pytest.raises(InvalidInputError, match=r"T4 has no MIG profiles.*GPUs with MIG: .*H200-SXM5-141GB"):
        get_device("t4 1g.5gb")
    with pytest.raises(InvalidInputError, match=r"no MIG profile '2g.18gb'; its profiles are 1g.18gb, 1g.35gb"):
        get_device("h200 2g.18gb")
    with pytest.raises(InvalidInputError, match="already a MIG slice"):
        slice_device(get_device("h200 1g.18gb"), "1g.18gb")
    with pytest.raises(InvalidInputError, match="not a MIG profile of H200"):
        slice_device("h200", get_device("h100").mig_profiles[0])
    with pytest.raises(costmodel.UnknownDeviceError):
        get_device("h300 1g.18gb")


def test_a_slice_has_its_instance_s_sms_and_its_memory_slices_share():
    dev = get_device("h200")
    small, wide = slice_device(dev, "1g.18gb"), slice_device(dev, "1g.35gb")
    # both have one compute slice, yet the listing gives the 1g.35gb instance 26 SMs against 16
    assert (small.sm_count, wide.sm_count) == (16, 26)
    assert small.peak_flops("bf16") == pytest.approx(dev.peak_flops("bf16") * 16 / 132)
    assert small.vector_tflops_fp32 == pytest.approx(dev.vector_tflops_fp32 * 16 / 132)
    assert small.memory_bandwidth_gbps == pytest.approx(dev.memory_bandwidth_gbps / 8)
    assert wide.memory_bandwidth_gbps == pytest.approx(dev.memory_bandwidth_gbps / 4)
    assert small.l2_cache_mb == pytest.approx(dev.l2_cache_mb / 8)
    assert small.memory_mb == 16 * 1024  # the instance's 16.00 GiB, not the name's 18 GB
    assert small.tdp_w == pytest.approx(dev.tdp_w * 16 / 132)
    assert small.idle_power_w == pytest.approx(dev.idle_power_w * 16 / 132)
    assert small.mig_profiles == () and small.kernel_launch_overhead_us == dev.kernel_launch_overhead_us
    assert any("MIG slice 1g.18gb of H200-SXM5-141GB: 16 SMs (listed)" in s for s in small.sources)
    assert "16 SMs" in small.assumptions[0] and "no row measured a slice" in small.assumptions[0]
    # without a listing: SMs in proportion to the compute slices of the whole-GPU instance
    b200 = get_device("b200")
    assert slice_device(b200, "3g.90gb").sm_count == round(148 * 3 / 7)
    # MIG leaves an A100 98 of its 108 SMs: even the whole-GPU instance is smaller than the GPU
    assert slice_device("a100-80gb", "7g.80gb").sm_count == 98


def test_every_listed_instance_is_within_its_name_and_consistent():
    """The data: an instance holds at most its name's memory, profiles of equal memory slices hold the same
    memory (every published listing says so), and more compute slices never mean fewer SMs."""
    checked = 0
    for dev in list_devices():
        by_share: dict[float, set] = {}
        for p in dev.mig_profiles:
            assert p.capacity_mb <= p.memory_mb
            if p.instance_memory_gib:
                by_share.setdefault(p.memory_fraction, set()).add(p.instance_memory_gib)
                checked += 1
        assert all(len(v) == 1 for v in by_share.values()), (dev.name, by_share)
        sms = sorted((p.compute_fraction, p.sm_count) for p in dev.mig_profiles if p.sm_count)
        assert all(a[1] <= b[1] for a, b in zip(sms, sms[1:]) if b[0] > a[0]), (dev.name, sms)
    assert checked >= 25


def test_bad_instance_figures_are_refused():
    dev = get_device("h200")
    prof = {"name": "1g.18gb", "memory_gb": 18.0, "memory_fraction": 0.125, "compute_fraction": 1 / 7,
            "max_instances": 7}
    assert dev.with_overrides(mig_profiles=[prof]).mig_profiles[0].capacity_mb == 18 * 1024  # optional fields
    for bad in ({"sm_count": 0}, {"sm_count": 1.5}, {"instance_memory_gib": 19.0}, {"instance_memory_gib": -1},
                {"sms": 16}):
        with pytest.raises(InvalidInputError, match="mig_profiles"):
            dev.with_overrides(mig_profiles=[{**prof, **bad}])


def test_the_mig_pick_compares_against_what_an_instance_holds():
    # 17 GiB fits the name '1g.18gb' but not the 16.00 GiB its instance holds
    assert recommend_mig("h200", 17 * 1024).name == "1g.35gb"
    assert recommend_mig("h200", 15 * 1024).name == "1g.18gb"
    # among profiles of equal memory the one with fewer compute slices comes first
    assert recommend_mig("a100-40gb", 9000).name == "1g.10gb"
    assert costmodel.largest_batch("torchvision:resnet18", device="h200", mig="1g.18gb", input_shape=(3, 32, 32),
                                   limit=8)["limit_mb"] == 16 * 1024


@pytest.mark.parametrize("device, memory_mb, picked, sms", [
    # each listed instance holds less than its name: the names' GB picked a slice too small
    ("h100-pcie", 10_100, "1g.20gb", 14),   # a 1g.10gb holds 9,984 MiB, on 14 of the 114 SMs (not 16)
    ("h100-nvl", 11_500, "1g.24gb", 26),    # a 1g.12gb holds 10.75 GiB
    ("a30", 5_990, "2g.12gb", 28),          # a 1g.6gb holds 5.81 GiB
])
def test_listed_instances_of_the_h100_pcie_h100_nvl_and_a30(device, memory_mb, picked, sms):
    p = recommend_mig(device, memory_mb)
    assert (p.name, p.sm_count) == (picked, sms)
    assert p.capacity_mb >= memory_mb


@pytest.fixture(scope="module")
def resnet_on_h200():
    return {b: costmodel.estimate("torchvision:resnet50", batch=b, device="h200", predictor="timeline")
            for b in (1, 128)}


def test_an_estimate_on_a_slice(resnet_on_h200):
    whole = resnet_on_h200
    part = {b: costmodel.estimate("torchvision:resnet50", batch=b, device="NVIDIA H200 MIG 1g.18gb",
                                  predictor="timeline") for b in (1, 128)}
    # a compute-bound call slows by about the slice's share of SMs and bandwidth (1/8); a host-bound one not
    assert 5 < part[128].latency_ms / whole[128].latency_ms < 9
    assert part[1].latency_ms == pytest.approx(whole[1].latency_ms, rel=0.1)
    # the same process memory, with the H200's fitted overheads (no "no rows for" fallback)
    assert part[128].memory_mb == pytest.approx(whole[128].memory_mb, rel=1e-6)
    assert not any("no rows for" in a for a in part[128].assumptions)
    assert part[128].fits_device and part[128].mig_profile is None
    assert part[128].latency_ms_interval is None  # the H200's residuals say nothing of a slice
    assert any("a MIG slice (1g.18gb" in a for a in part[128].assumptions)
    assert part[128].power_w < whole[128].power_w
    assert "the device is the slice 1g.18gb" in part[128].table()


def test_the_whole_gpu_s_estimate_carries_the_latency_on_its_pick(resnet_on_h200):
    est = resnet_on_h200[128]
    info = est.details["mig"]
    assert info["profile"] == est.mig_profile == "1g.18gb"
    assert info["memory_mb"] == 16 * 1024 and info["nominal_memory_mb"] == 18 * 1024 and info["sm_count"] == 16
    there = costmodel.estimate("torchvision:resnet50", batch=128, device=f"h200 {est.mig_profile}",
                               predictor="timeline")
    assert info["latency_ms"] == pytest.approx(there.latency_ms, rel=1e-6)
    assert info["energy_j"] == pytest.approx(there.energy_j, rel=1e-6) and info["slice_predictor"] == "timeline"
    assert "1g.18gb (16.00 GiB, 16 SMs, " in est.table() and " ms there)" in est.table()


def test_find_profile_is_exact_first():
    dev = get_device("h200")
    assert find_profile(dev, "1G.35GB").name == "1g.35gb"
    assert find_profile(dev, "3g.70gb").name == "3g.71gb"  # a name from an older guide


def test_the_cli_lists_and_costs_slices(capsys):
    from costmodel.cli import main

    assert main(["devices", "--mig", "h200"]) == 0
    out = capsys.readouterr().out
    # 7g.141gb: its listed 139.75 GiB, below both the name's 141 and the board's 143,155.94 MiB
    assert "1g.18gb" in out and "16.00" in out and "139.75" in out and "139.80" not in out and "141.00" not in out
    assert main(["devices", "--mig", "h100-nvl"]) == 0
    out = capsys.readouterr().out
    # 7g.94gb: no listing, and the name's 94 GiB is more than the board reports (95,330.5 MiB)
    assert "93.10+" in out and "94.00" not in out
    assert main(["devices", "--mig", "h200", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["profile"] for r in rows][:2] == ["1g.18gb", "1g.35gb"] and rows[0]["sm_count"] == 16
    assert main(["predict", "torchvision:resnet18", "-b", "1", "--device", "NVIDIA H200 MIG 1g.18gb",
                 "--input", "3,32,32", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["device"] == "H200-SXM5-141GB MIG 1g.18gb" and got["mig_profile"] is None


def test_a_transformer_s_estimate_carries_the_latency_on_its_pick():
    whole = costmodel.estimate_llm("gpt2", batch=8, seq=512, device="h200", mode="prefill")
    info = whole.details["mig"]
    assert info["profile"] == whole.mig_profile and info["memory_mb"] <= info["nominal_memory_mb"]
    there = costmodel.estimate_llm("gpt2", batch=8, seq=512, device=f"NVIDIA H200 MIG {whole.mig_profile}",
                                   mode="prefill")
    assert info["latency_ms"] == pytest.approx(there.latency_ms, rel=1e-6)
    assert info["tokens_s"] == pytest.approx(there.tokens_s, rel=1e-6)
    assert there.latency_ms > 3 * whole.latency_ms  # a prefill of 4,096 tokens is device-bound
    assert "ms there)" in whole.table() and "the device is the slice" in there.table()


def test_the_largest_transformer_batch_on_a_slice_carries_its_latency_there():
    fit = costmodel.largest_llm_batch("gpt2", seq=128, device="h200", mode="prefill", mig="1g.18gb", limit=16)
    b = fit["latency_batch"]
    assert b == (fit["upper_batch"] or fit["batch"]) == 16 and fit["capped"]
    there = costmodel.estimate_llm("gpt2", batch=b, seq=128, device="h200 1g.18gb", mode="prefill")
    assert fit["latency_device"] == "H200-SXM5-141GB MIG 1g.18gb"
    assert fit["latency_ms"] == pytest.approx(there.latency_ms, rel=1e-6)


def test_a_compute_instance_has_its_share_of_the_sms_and_the_whole_instance_s_memory():
    gi, ci = get_device("h200 3g.71gb"), get_device("NVIDIA H200 MIG 1c.3g.71gb")
    assert ci.sm_count == 20 and ci.peak_flops("bf16") == pytest.approx(gi.peak_flops("bf16") / 3)
    assert (ci.memory_mb, ci.memory_bandwidth_gbps, ci.l2_cache_mb) == (gi.memory_mb, gi.memory_bandwidth_gbps,
                                                                        gi.l2_cache_mb)
    assert "costed as if this one ran alone" in ci.assumptions[-1] and mig_parent(ci).name == "H200-SXM5-141GB"
    with pytest.raises(InvalidInputError, match=r"1 to 3 of its compute slices; got 4c.3g.71gb"):
        get_device("h200 4c.3g.71gb")


def test_a_latency_target_picks_the_smallest_slice_that_meets_it(resnet_on_h200):
    whole = resnet_on_h200[128]
    est = costmodel.estimate("torchvision:resnet50", batch=128, device="h200", predictor="timeline",
                             latency_slo_ms=3 * whole.latency_ms)
    info = est.details["mig"]
    assert info["slo_met"] and info["memory_pick"] == "1g.18gb" and info["latency_ms"] <= 3 * whole.latency_ms
    # every slice tried before it (smaller, or as large with fewer compute slices) was slower than the target
    order = [p.name for p in sorted(get_device("h200").mig_profiles, key=lambda p: (p.capacity_mb,
                                                                                    p.compute_fraction))]
    tried = info["tried"]
    assert list(tried) == order[:len(tried)] and list(tried)[-1] == est.mig_profile
    assert all(ms > 3 * whole.latency_ms for name, ms in tried.items() if name != est.mig_profile)
    there = costmodel.estimate("torchvision:resnet50", batch=128, device=f"h200 {est.mig_profile}",
                               predictor="timeline")
    assert info["latency_ms"] == pytest.approx(there.latency_ms, rel=1e-6)
    assert "the smallest within" in est.table()
    # a target no slice meets: no pick, and the fastest slice named
    none = costmodel.estimate("torchvision:resnet50", batch=128, device="h200", predictor="timeline",
                              latency_slo_ms=0.5 * whole.latency_ms)
    assert none.mig_profile is None and none.details["mig"]["slo_met"] is False
    assert none.details["mig"]["profile"] == "7g.141gb" and "none within" in none.table()
    assert any("none that holds the memory answers within" in a for a in none.assumptions)
    with pytest.raises(InvalidInputError, match="expected latency_slo_ms to be a finite number > 0, got -1"):
        costmodel.estimate("torchvision:resnet18", batch=1, device="h200", latency_slo_ms=-1)
    t4 = costmodel.estimate("torchvision:resnet18", batch=1, device="t4", predictor="timeline", latency_slo_ms=10)
    assert any("T4 has no MIG profiles, so it picks no slice" in a for a in t4.assumptions)
    llm = costmodel.estimate_llm("gpt2", batch=8, seq=512, device="h200", mode="prefill", latency_slo_ms=1e6)
    assert llm.details["mig"]["slo_met"] and llm.mig_profile == llm.details["mig"]["memory_pick"]


def test_a_slice_costs_its_share_of_its_gpu_s_price():
    from costmodel.economics import instances, mig_slice_share, price_per_gpu_hour_usd

    whole = price_per_gpu_hour_usd("h200")
    # the share is the larger of the compute and the memory fractions: four 1g.35gb fit, not seven
    assert price_per_gpu_hour_usd("h200 1g.18gb") == pytest.approx(whole / 7)
    assert price_per_gpu_hour_usd("NVIDIA H200 MIG 1g.35gb") == pytest.approx(whole / 4)
    assert price_per_gpu_hour_usd("h200 4g.71gb") == pytest.approx(whole * 4 / 7)
    assert mig_slice_share("h200") is None and mig_slice_share("h200 1c.3g.71gb")[2] == pytest.approx(0.5)
    rows = instances("h200 1g.18gb")
    assert rows and all(r["mig_slice"] == "1g.18gb" for r in rows)
    assert [r["instance"] for r in rows] == [r["instance"] for r in instances("h200")]
    from costmodel.economics import training_cost

    report = training_cost("torchvision:resnet18", device="h200 1g.18gb", steps=10, batch=8,
                           input_shape=(3, 32, 32))
    assert "the MIG slice's share of a GPU" in report.table() and "on one MIG slice" in report.table()
    llm = costmodel.estimate_llm("gpt2", batch=8, seq=128, device="h200 1g.18gb", mode="prefill")
    assert llm.price_per_gpu_hour_usd == pytest.approx(whole / 7)
    assert any("cloud cost: the MIG slice's share" in a for a in llm.assumptions)


def test_the_h200_whole_gpu_instance_holds_its_listed_memory():
    # `nvidia-smi mig -lgip` on an H200 lists 7g.141gb with 132 SMs and 139.75 GiB (143,104 MiB), a little
    # below the 143,155.94 MiB the board reports: a workload between the two fits no slice
    h200 = get_device("h200")
    full = find_profile(h200, "7g.141gb")
    assert full.capacity_listed and not full.capacity_capped and full.sm_count == 132
    assert full.capacity_mb == 139.75 * 1024 < h200.capacity_mb
    assert recommend_mig(h200, 143104.0).name == "7g.141gb"
    assert recommend_mig(h200, 143130.0) is None
    assert slice_device(h200, "7g.141gb").memory_mb == 139.75 * 1024
