"""Tests of the device database (costmodel/devices/devices.json and its loader)."""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from costmodel._errors import InvalidInputError, UnknownDeviceError
from costmodel.devices import (
    DTYPE_KEYS,
    HARDWARE_FEATURE_NAMES,
    Device,
    DeviceDatabaseError,
    MigProfile,
    get_device,
    list_devices,
    load_measured_profile,
    measured_profile,
    normalize_device_name,
)
from costmodel.devices import _db

REPO = Path(__file__).resolve().parents[2]
H200_DIR = REPO / "costmodel" / "data" / "h200"
H200_JSON = H200_DIR / "hardware.json"
DB_JSON = REPO / "costmodel" / "devices" / "devices.json"

EXPECTED = [
    "A100-SXM4-40GB",
    "A100-SXM4-80GB",
    "H100-SXM5-80GB",
    "H200-SXM5-141GB",
    "V100-SXM2-16GB",
    "L4",
    "T4",
    "H100-PCIe-80GB",
    "A100-PCIe-80GB",
    "L40S",
    "A10",
    "RTX-4090",
    "B200-180GB",
    "A100-PCIe-40GB",
    "V100-SXM2-32GB",
    "V100-PCIe-16GB",
    "V100-PCIe-32GB",
    "A30",
    "A40",
    "RTX-A6000",
    "RTX-3090",
    "L40",
    "H100-NVL-94GB",
    "cpu",
]


# --------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------


def test_list_devices_names_and_order():
    assert [d.name for d in list_devices()] == EXPECTED
    assert all(isinstance(d, Device) for d in list_devices())


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("h100", "H100-SXM5-80GB"),
        ("H100-80GB", "H100-SXM5-80GB"),
        ("h100_sxm5_80gb", "H100-SXM5-80GB"),
        ("H100 SXM", "H100-SXM5-80GB"),
        ("h200", "H200-SXM5-141GB"),
        ("H200", "H200-SXM5-141GB"),
        ("h200-141gb", "H200-SXM5-141GB"),
        ("a100", "A100-SXM4-80GB"),
        ("A100-80GB", "A100-SXM4-80GB"),
        ("a100-40gb", "A100-SXM4-40GB"),
        ("A100_SXM4_40GB", "A100-SXM4-40GB"),
        ("v100", "V100-SXM2-16GB"),
        ("V100-16GB", "V100-SXM2-16GB"),
        ("t4", "T4"),
        ("l4", "L4"),
        ("cpu", "cpu"),
        ("CPU", "cpu"),
        # torch.cuda.get_device_name() strings
        ("NVIDIA H200", "H200-SXM5-141GB"),
        ("NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"),
        ("Tesla V100-SXM2-16GB", "V100-SXM2-16GB"),
        ("Tesla T4", "T4"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-PCIe-80GB"),
        ("NVIDIA H100 PCIe", "H100-PCIe-80GB"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA GeForce RTX 4090", "RTX-4090"),
        ("NVIDIA B200", "B200-180GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-PCIe-40GB"),
        ("Tesla V100-SXM2-32GB", "V100-SXM2-32GB"),
        ("Tesla V100-PCIE-16GB", "V100-PCIe-16GB"),
        ("Tesla V100-PCIE-32GB", "V100-PCIe-32GB"),
        ("NVIDIA A30", "A30"),
        ("NVIDIA A40", "A40"),
        ("NVIDIA RTX A6000", "RTX-A6000"),
        ("NVIDIA GeForce RTX 3090", "RTX-3090"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA H100 NVL", "H100-NVL-94GB"),
        ("l40", "L40"),
        ("a6000", "RTX-A6000"),
        ("rtx 3090", "RTX-3090"),
    ],
)
def test_name_normalization(alias, canonical):
    assert get_device(alias).name == canonical


def test_normalize_device_name():
    assert normalize_device_name("H100-SXM5_80 GB") == "h100sxm580gb"


def test_device_passes_through():
    dev = get_device("t4")
    assert get_device(dev) is dev


def test_every_canonical_name_and_alias_resolves_to_itself():
    ambiguous = set()
    for dev in list_devices():
        for n in (dev.name, *dev.aliases):
            got = get_device(n)
            if got.assumptions:  # a name that fits several devices: the same figures, plus the note
                ambiguous.add(n)
                assert got == dev and got.to_dict() == dev.to_dict() and get_device(n) is got
            else:
                assert got is dev
    # product names that several listed variants share (the V100s, the A100 PCIe cards, the H100s)
    assert ambiguous == {"a100", "a100-sxm", "a100-sxm4", "h100", "v100", "v100-sxm2", "v100-pcie", "a100-pcie"}


def test_a_name_fitting_several_devices_is_named_as_an_assumption():
    dev = get_device("a100")
    assert dev.name == "A100-SXM4-80GB"
    assert dev.assumptions == ("device name 'a100' also fits A100-SXM4-40GB, A100-PCIe-80GB, A100-PCIe-40GB; "
                               "costed as A100-SXM4-80GB",)
    assert "also fits A100-SXM4-40GB" in get_device("NVIDIA A100").assumptions[0]
    assert get_device("h100").assumptions == ("device name 'h100' also fits H100-PCIe-80GB, H100-NVL-94GB; costed as "
                                              "H100-SXM5-80GB",)
    assert get_device("v100").assumptions == ("device name 'v100' also fits V100-SXM2-32GB, V100-PCIe-16GB, "
                                              "V100-PCIe-32GB; costed as V100-SXM2-16GB",)
    assert get_device("a100-pcie").assumptions == ("device name 'a100-pcie' also fits A100-PCIe-40GB; costed as "
                                                   "A100-PCIe-80GB",)
    for exact in ("A100-SXM4-80GB", "a100-80gb", "a100-40gb", "h200", "NVIDIA H200", "h100-sxm", "t4", "v100-16gb",
                  "h100 pcie", "a100-pcie-80gb", "NVIDIA A100-PCIE-40GB", "Tesla V100-SXM2-16GB", "h100-nvl"):
        assert get_device(exact).assumptions == (), exact
    # another product whose name starts with the same letters is not a variant: L4 and L40S, A10 and A100
    for name, dev_name in (("l4", "L4"), ("L40S", "L40S"), ("l40", "L40"), ("a10", "A10"), ("NVIDIA A10", "A10"),
                           ("a30", "A30"), ("a40", "A40")):
        assert get_device(name).name == dev_name and get_device(name).assumptions == (), name
    assert "assumptions" not in dev.to_dict()  # how a name resolved is not a figure of the device


def test_peak_assumption_names_substituted_peaks():
    v100, h100 = get_device("v100"), get_device("h100")
    assert v100.peak_dtype("bf16") == "fp32"
    assert v100.peak_assumption("bf16") == "bf16 tensor ops costed at the fp32 peak (V100-SXM2-16GB lists no bf16 rate)"
    assert get_device("t4").peak_assumption("bf16").startswith("bf16 tensor ops costed at the fp32 peak")
    assert h100.peak_dtype("fp8") == "fp16"
    assert get_device("a100").peak_assumption("fp8") == ("fp8 tensor ops costed at the fp16 peak (the device database "
                                                         "has no fp8 column)")
    assert h100.peak_assumption("int4") == "int4 tensor ops costed at the int8 peak (the device database has no int4 column)"
    # a dtype the device has, and fp32 on a device without TF32 (it runs at the fp32 rate), assume nothing
    for dev, dt in ((h100, "bf16"), (h100, "fp32"), (h100, "tf32"), (v100, "tf32"), (v100, "fp16"), (h100, "int64")):
        assert dev.peak_assumption(dt) is None, (dev.name, dt)


@pytest.mark.parametrize("bad, close", [("h1000", "h100"), ("a1000", "a100"), ("h20", "h200")])
def test_unknown_device_suggests_close_names(bad, close):
    with pytest.raises(UnknownDeviceError, match=rf"got '{bad}'.*Did you mean: .*\b{close}\b") as ei:
        get_device(bad)
    for name in EXPECTED:  # the message lists every known device
        assert name in str(ei.value)


def test_unknown_device_without_close_match():
    with pytest.raises(UnknownDeviceError, match=r"expected a known device name, got 'mi300x'") as ei:
        get_device("mi300x")
    assert "Did you mean" not in str(ei.value)
    assert all(name in str(ei.value) for name in EXPECTED)
    assert isinstance(ei.value, ValueError)


def test_non_string_device_rejected():
    with pytest.raises(InvalidInputError, match="expected a device name.*got int"):
        get_device(100)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# peaks and fallbacks
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device, dtype, tflops",
    [
        ("h100", "bf16", 989.4),
        ("h100", "fp16", 989.4),
        ("h100", "tf32", 494.7),
        ("h100", "fp32", 67.0),
        ("h100", "fp64", 67.0),
        ("h100", "int8", 1979.0),
        ("h200", "bf16", 989.4),
        ("a100", "fp16", 312.0),
        ("a100", "bf16", 312.0),
        ("a100", "tf32", 156.0),
        ("a100", "fp32", 19.5),
        ("a100", "fp64", 19.5),
        ("a100", "int8", 624.0),
        ("v100", "fp16", 125.0),
        ("v100", "fp32", 15.7),
        ("v100", "fp64", 7.8),
        ("v100", "int8", 62.0),
        ("t4", "fp16", 65.0),
        ("t4", "int8", 130.0),
        ("t4", "fp32", 8.1),
        ("l4", "fp32", 30.3),
        ("l4", "tf32", 60.0),
        ("l4", "bf16", 121.0),
        ("l4", "int8", 242.5),
        ("cpu", "fp32", 1.0),
    ],
)
def test_peak_flops_dense_datasheet_values(device, dtype, tflops):
    assert get_device(device).peak_flops(dtype) == pytest.approx(tflops * 1e12, rel=1e-12)


def test_h100_bf16_exact():
    assert get_device("h100").peak_flops("bf16") == 989.4e12


@pytest.mark.parametrize(
    "device, dtype, falls_to",
    [
        ("v100", "bf16", "fp32"),  # no bf16 on Volta
        ("t4", "bf16", "fp32"),  # no bf16 on Turing
        ("v100", "tf32", "fp32"),  # no tf32 before Ampere
        ("t4", "tf32", "fp32"),
        ("cpu", "fp16", "fp32"),
        ("cpu", "bf16", "fp32"),
        ("cpu", "int8", "fp32"),  # int8 -> fp16 (null) -> fp32
        ("a100", "fp8", "fp16"),  # no fp8 tensor cores before Ada: costed as fp16
        ("h100", "int4", "int8"),
        ("t4", "uint8", "int8"),
    ],
)
def test_peak_flops_fallbacks(device, dtype, falls_to):
    dev = get_device(device)
    assert dev.peak_flops(dtype) == dev.peak_flops(falls_to)
    assert dev.peak_flops(dtype) == getattr(dev.peak_tflops, falls_to) * 1e12


def test_fp32_is_not_silently_tf32():
    # PyTorch runs fp32 matmuls without TF32 by default: fp32 stays fp32.
    a100 = get_device("a100")
    assert a100.peak_flops("fp32") == 19.5e12
    assert a100.peak_flops("tf32") == 156e12


@pytest.mark.parametrize("device", EXPECTED)
def test_vector_peaks(device):
    dev = get_device(device)
    vec = dev.vector_tflops_fp32 * 1e12
    for dt in ("fp32", "fp16", "bf16", "tf32", "int8", "int64", "bool"):
        assert dev.peak_flops(dt, tensor=False) == vec
    assert dev.peak_flops("int32") == vec  # integer pointwise never uses tensor cores
    # vector fp64 is the non-tensor FP64 rate
    assert dev.peak_flops("fp64", tensor=False) <= dev.peak_flops("fp64")
    assert dev.peak_flops("fp64", tensor=False) <= vec / 2


@pytest.mark.parametrize("device, tflops", [("a100", 9.75), ("h100", 33.5), ("v100", 7.8), ("t4", 0.25)])
def test_non_tensor_fp64(device, tflops):
    assert get_device(device).peak_flops("fp64", tensor=False) == pytest.approx(tflops * 1e12)


def test_unknown_dtype():
    with pytest.raises(InvalidInputError, match=r"expected a dtype among .*got 'float33'"):
        get_device("h100").peak_flops("float33")


def test_unsupported_dtypes_are_null():
    for name in ("v100", "t4"):
        assert get_device(name).peak_tflops.bf16 is None
        assert get_device(name).peak_tflops.tf32 is None
    cpu = get_device("cpu")
    assert cpu.compute_capability is None and cpu.mig_profiles == ()


def test_peaks_are_dense_not_sparse():
    # dense tensor peak is half the datasheet's "with sparsity" number
    h100 = get_device("h100")
    assert h100.peak_tflops.fp16 * 2 == pytest.approx(1978.8)
    assert get_device("l4").peak_tflops.fp16 * 2 == 242.0


# --------------------------------------------------------------------------
# other figures
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device, gbps, mem_gb, sms, l2, tdp",
    [
        ("a100-40gb", 1555, 40, 108, 40, 400),
        ("a100", 2039, 80, 108, 40, 400),
        ("h100", 3350, 80, 132, 50, 700),
        ("h200", 4800, 141, 132, 60, 700),
        ("v100", 900, 16, 80, 6, 300),
        ("t4", 320, 16, 40, 4, 70),
        ("l4", 300, 24, 58, 48, 72),
    ],
)
def test_memory_and_power_figures(device, gbps, mem_gb, sms, l2, tdp):
    dev = get_device(device)
    assert dev.memory_bandwidth_gbps == gbps
    assert dev.bandwidth_bytes_s == gbps * 1e9
    assert dev.memory_gb == mem_gb
    assert dev.memory_mb == mem_gb * 1024
    assert dev.sm_count == sms
    assert dev.l2_cache_mb == l2
    assert dev.tdp_w == tdp
    assert 0 < dev.idle_power_w < dev.tdp_w


def test_framework_overhead():
    for dev in list_devices():
        expected = 0.0 if dev.name == "cpu" else 1400.0
        assert dev.framework_overhead_mb == expected
        assert dev.kernel_launch_overhead_us > 0


def test_framework_overhead_matches_h200_data():
    diffs = []
    for path in H200_DIR.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            diffs.append(row["nvml_used_mb"] - row["peak_reserved_mb"])
    diffs.sort()
    median = (diffs[(len(diffs) - 1) // 2] + diffs[len(diffs) // 2]) / 2
    assert abs(median - get_device("h200").framework_overhead_mb) < 5


@pytest.mark.parametrize("device", EXPECTED)
def test_every_device_has_sources(device):
    dev = get_device(device)
    assert dev.sources and all(isinstance(s, str) and s for s in dev.sources)
    assert dev.source == "datasheet"


def test_source_citations():
    def cites(name: str, text: str) -> bool:
        return any(text in s for s in get_device(name).sources)

    assert cites("a100", "NVIDIA A100 Tensor Core GPU datasheet")
    assert cites("h100", "NVIDIA H100 Tensor Core GPU datasheet")
    assert cites("h200", "NVIDIA H200 Tensor Core GPU datasheet")
    for name in ("a100", "a100-40gb", "h100", "h200"):
        assert cites(name, "NVIDIA MIG User Guide, Supported MIG Profiles")
        assert cites(name, "idle_power_w: assumption")
    assert cites("cpu", "NOMINAL")


# --------------------------------------------------------------------------
# MIG
# --------------------------------------------------------------------------

MIG_NAMES = {
    "A100-SXM4-40GB": ["1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"],
    "A100-SXM4-80GB": ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
    "H100-SXM5-80GB": ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
    "H200-SXM5-141GB": ["1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"],
    "H100-PCIe-80GB": ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
    "A100-PCIe-80GB": ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
    "B200-180GB": ["1g.23gb", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"],
    "A100-PCIe-40GB": ["1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"],
    "A30": ["1g.6gb", "2g.12gb", "4g.24gb"],  # four compute and four memory slices
    "H100-NVL-94GB": ["1g.12gb", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"],
}


@pytest.mark.parametrize("device", EXPECTED)
def test_mig_profiles(device):
    dev = get_device(device)
    profiles = dev.mig_profiles
    assert [p.name for p in profiles] == MIG_NAMES.get(device, [])
    assert list(profiles) == sorted(profiles, key=lambda p: (p.memory_gb, p.compute_fraction))
    for p in profiles:
        assert isinstance(p, MigProfile)
        assert 0 < p.memory_fraction <= 1 and 0 < p.compute_fraction <= 1
        assert p.max_instances >= 1
        assert p.memory_mb == p.memory_gb * 1024
        # the profile's nominal GB is its fraction of the device memory
        assert p.memory_gb == pytest.approx(p.memory_fraction * dev.memory_gb, rel=0.05)
    if profiles:
        full = profiles[-1]
        assert (full.memory_fraction, full.compute_fraction, full.max_instances) == (1.0, 1.0, 1)
        total = int(full.name.split("g.")[0])  # compute slices: 7 on the A100/H100/H200/B200, 4 on the A30
        for p in profiles:
            assert p.compute_fraction == pytest.approx(int(p.name.split("g.")[0]) / total)
        # the smallest slice: one compute slice and the smallest memory slice (an eighth; a quarter on the A30)
        assert profiles[0].max_instances == total and profiles[0].memory_fraction == (1 / 8 if total == 7 else 1 / 4)


def test_mig_instance_counts():
    assert [p.max_instances for p in get_device("h200").mig_profiles] == [7, 4, 3, 2, 1, 1]


# --------------------------------------------------------------------------
# hardware features
# --------------------------------------------------------------------------


@pytest.mark.parametrize("device", EXPECTED)
def test_hardware_features_numeric_and_complete(device):
    feats = get_device(device).hardware_features()
    assert tuple(feats) == HARDWARE_FEATURE_NAMES
    assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in feats.values())
    assert {f"peak_{k}_tflops" for k in DTYPE_KEYS} <= set(feats)


def test_hardware_features_values():
    feats = get_device("h100").hardware_features()
    assert feats["peak_bf16_tflops"] == 989.4
    assert feats["memory_bandwidth_gbps"] == 3350.0
    assert feats["compute_capability"] == 9.0
    assert feats["sm_count"] == 132.0
    t4 = get_device("t4").hardware_features()
    assert t4["peak_bf16_tflops"] == 0.0 and t4["peak_tf32_tflops"] == 0.0  # unsupported -> 0
    assert t4["compute_capability"] == 7.5
    cpu = get_device("cpu").hardware_features()
    assert cpu["compute_capability"] == 0.0 and cpu["sm_count"] == 0.0


# --------------------------------------------------------------------------
# measured H200 profile
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hw() -> dict:
    return json.loads(H200_JSON.read_text())


def _check_measured(dev: Device, hw: dict) -> None:
    assert dev.source == "measured"
    assert dev.name == "H200-SXM5-141GB"
    for dt in ("fp32", "tf32", "fp16", "bf16"):
        assert getattr(dev.peak_tflops, dt) == hw["peak_matmul"][dt]["tflops"]
        assert dev.peak_flops(dt) == hw["peak_matmul"][dt]["tflops"] * 1e12
    assert dev.vector_tflops_fp32 == hw["peak_matmul"]["fp32"]["tflops"]
    assert dev.memory_bandwidth_gbps == hw["bandwidth"]["copy_4096mb_gbps"]
    assert dev.memory_mb * 2**20 == pytest.approx(hw["prop_total_memory"])
    assert dev.sm_count == hw["prop_multi_processor_count"]
    assert dev.l2_cache_mb * 2**20 == hw["prop_L2_cache_size"]
    assert dev.tdp_w == hw["power_limit_w"]
    assert dev.compute_capability == f"{hw['prop_major']}.{hw['prop_minor']}"
    # unmeasured dtypes keep the datasheet figure
    assert dev.peak_tflops.int8 == 1979.0 and dev.peak_tflops.fp64 == 67.0
    assert dev.framework_overhead_mb == pytest.approx(1401.875)
    assert dev.mig_profiles == get_device("h200").mig_profiles
    assert any("measured profile" in s for s in dev.sources)


def test_measured_profile(hw):
    _check_measured(measured_profile("h200"), hw)


def test_get_device_measured(hw):
    _check_measured(get_device("H200", measured=True), hw)


@pytest.mark.parametrize("as_str", [True, False])
def test_get_device_from_path(hw, as_str):
    _check_measured(get_device(str(H200_JSON) if as_str else H200_JSON), hw)


def test_load_measured_profile(hw):
    _check_measured(load_measured_profile(H200_JSON), hw)


def test_measured_differs_from_datasheet():
    assert get_device("h200", measured=True).peak_flops("bf16") < get_device("h200").peak_flops("bf16")


def test_no_measured_profile():
    with pytest.raises(InvalidInputError, match=r"expected a device with a measured profile \(H200-SXM5-141GB\), got 'T4'"):
        get_device("t4", measured=True)


def test_missing_profile_file(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file"):
        get_device(str(tmp_path / "nope.json"))


def test_measured_profile_with_tf32_matmul(tmp_path, hw):
    data = dict(hw, allow_tf32_matmul=True)
    path = tmp_path / "hardware.json"
    path.write_text(json.dumps(data))
    dev = load_measured_profile(path)
    # the "fp32" run measured TF32: the fp32 figures stay datasheet
    assert dev.peak_tflops.fp32 == 67.0 and dev.vector_tflops_fp32 == 67.0
    assert dev.peak_tflops.bf16 == hw["peak_matmul"]["bf16"]["tflops"]
    assert dev.framework_overhead_mb == 1400.0  # no *.jsonl beside it


def test_measured_profile_unknown_device(tmp_path, hw):
    path = tmp_path / "hardware.json"
    unlisted = dict(hw, prop_name="NVIDIA R100", name="NVIDIA R100")
    path.write_text(json.dumps(unlisted))  # its CUDA properties give the base the measurement refines
    assert (load_measured_profile(path).name, load_measured_profile(path).source) == ("NVIDIA R100", "measured")
    assert load_measured_profile(path, base="h200").name == "H200-SXM5-141GB"
    path.write_text(json.dumps({k: v for k, v in unlisted.items() if not k.startswith("prop_") or k == "prop_name"}))
    with pytest.raises(UnknownDeviceError, match="NVIDIA R100"):
        load_measured_profile(path)


def test_measured_profile_bad_fields(tmp_path, hw):
    path = tmp_path / "hardware.json"
    path.write_text(json.dumps(dict(hw, bandwidth={})))
    with pytest.raises(InvalidInputError, match="field 'bandwidth'"):
        load_measured_profile(path)
    path.write_text(json.dumps(dict(hw, power_limit_w=-1)))
    with pytest.raises(InvalidInputError, match=r"field 'power_limit_w': expected a positive number, got -1"):
        load_measured_profile(path)


# --------------------------------------------------------------------------
# overrides
# --------------------------------------------------------------------------


def test_with_overrides():
    h100 = get_device("h100")
    dev = h100.with_overrides(memory_bandwidth_gbps=3000.0, peak_tflops={"bf16": 800.0})
    assert dev.memory_bandwidth_gbps == 3000.0
    assert dev.peak_flops("bf16") == 800e12
    assert dev.peak_flops("fp16") == 989.4e12  # partial peak override merges
    assert h100.memory_bandwidth_gbps == 3350.0  # frozen original untouched
    assert hash(dev) != hash(h100)


def test_with_overrides_validates():
    h100 = get_device("h100")
    with pytest.raises(InvalidInputError, match="expected fields among .*got 'bandwith_gbps'"):
        h100.with_overrides(bandwith_gbps=1.0)
    with pytest.raises(InvalidInputError, match=r"field 'memory_gb': expected a positive number, got -1"):
        h100.with_overrides(memory_gb=-1)
    with pytest.raises(InvalidInputError, match=r"peak_tflops.fp32"):
        h100.with_overrides(peak_tflops={"fp32": None})


def test_device_is_frozen():
    with pytest.raises(Exception):
        get_device("h100").memory_gb = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------
# database validation
# --------------------------------------------------------------------------


@pytest.fixture()
def raw_db() -> dict:
    return json.loads(DB_JSON.read_text())


def test_database_file_shape(raw_db):
    assert raw_db["schema_version"] == 1 and raw_db["notes"]
    assert [d["name"] for d in raw_db["devices"]] == EXPECTED


def test_validation_missing_field(raw_db):
    bad = copy.deepcopy(raw_db)
    del bad["devices"][3]["tdp_w"]
    with pytest.raises(DeviceDatabaseError, match=r"device 'H200-SXM5-141GB' is missing field 'tdp_w'"):
        _db._parse_database(bad, "test")


def test_validation_bad_value(raw_db):
    bad = copy.deepcopy(raw_db)
    bad["devices"][0]["peak_tflops"]["fp16"] = "fast"
    with pytest.raises(DeviceDatabaseError, match=r"device 'A100-SXM4-40GB', field 'peak_tflops.fp16': expected a positive number or null, got 'fast'"):
        _db._parse_database(bad, "test")


def test_validation_unknown_field(raw_db):
    bad = copy.deepcopy(raw_db)
    bad["devices"][6]["tdpw"] = 70
    with pytest.raises(DeviceDatabaseError, match=r"device 'T4' has unknown field 'tdpw'"):
        _db._parse_database(bad, "test")


def test_validation_duplicate_alias(raw_db):
    bad = copy.deepcopy(raw_db)
    bad["devices"][2]["aliases"].append("H200")
    with pytest.raises(DeviceDatabaseError, match=re.escape("'h200' already belongs to")):
        _db._parse_database(bad, "test")


def test_validation_bad_mig_fraction(raw_db):
    bad = copy.deepcopy(raw_db)
    bad["devices"][2]["mig_profiles"][0]["compute_fraction"] = 1.5
    with pytest.raises(DeviceDatabaseError, match=re.escape("device 'H100-SXM5-80GB', field 'mig_profiles[0]'")):
        _db._parse_database(bad, "test")


def test_import_is_light():
    code = (
        "import sys, costmodel.devices as d; d.get_device('h100'); "
        "bad = [m for m in ('torch', 'numpy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})


def test_fp8_runs_at_twice_fp16_on_gpus_with_fp8_tensor_cores():
    # it was costed at the fp16 rate everywhere: half the H100's datasheet fp8 rate (1,979 dense TFLOP/s)
    h100, a100 = get_device("h100"), get_device("a100")
    assert h100.peak_flops("fp8") == pytest.approx(1978.8e12) and get_device("l4").peak_flops("fp8") == 242e12
    assert "twice the fp16 peak" in h100.peak_assumption("fp8")
    # an Ampere part has no fp8 tensor cores: the fp16 rate, as before
    assert a100.peak_flops("fp8") == a100.peak_flops("fp16") and "at the fp16 peak" in a100.peak_assumption("fp8")
    assert h100.peak_flops("fp8", tensor=False) == h100.peak_flops("fp32", tensor=False)
