"""A device derived from the CUDA properties of a GPU the database does not list: checked against the
datasheet entries of the boards it does list."""

import functools
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import costmodel
from costmodel import InvalidInputError, UnknownDeviceError
from costmodel.devices import ARCHITECTURES, cuda_device, device_from_cuda_properties, get_device, load_measured_profile


@functools.cache
def _bench():
    """benchmarks/cuda_devices.py: what CUDA reports for listed boards (the scripts are not a package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "cuda_devices.py"
    spec = importlib.util.spec_from_file_location("cuda_devices", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _props(entry: str, **over):
    return _bench().reported_properties(entry, **over)


@pytest.mark.parametrize("entry", sorted(_bench().REPORTED))
def test_derived_figures_agree_with_the_datasheet_entries(entry):
    """Peaks within 3 % of each listed board's datasheet figures (the GeForce boards' halved fp16/bf16 and
    TF32 included), bandwidth within 3 %, memory and L2 as reported. Not in the table: the L40, whose
    fp32-accumulate tensor rate is half its architecture's like a GeForce board's (the rule would give
    twice its datasheet figure), and the B200 and H100 NVL, whose reported clocks are not at hand; their
    database entries are what a lookup by name returns."""
    dev, derived = get_device(entry), device_from_cuda_properties(_props(entry), power_limit_w=get_device(entry).tdp_w)
    for dt, want in dev.peak_tflops.as_dict().items():
        got = derived.peak_tflops.get(dt)
        if want is None:
            assert got is None, (entry, dt)
        else:
            assert got == pytest.approx(want, rel=0.03), (entry, dt, got, want)
    assert derived.memory_bandwidth_gbps == pytest.approx(dev.memory_bandwidth_gbps, rel=0.03)
    assert (derived.sm_count, derived.memory_mb, derived.l2_cache_mb) == (dev.sm_count, dev.memory_mb, dev.l2_cache_mb)
    assert derived.compute_capability == dev.compute_capability and derived.tdp_w == dev.tdp_w
    assert derived.source == "cuda-properties" and derived.name == _bench().REPORTED[entry][0]
    assert any("derived from its CUDA properties" in a for a in derived.assumptions)


def test_the_benchmark_table():
    """benchmarks/cuda_devices.py's rows: every held board within 3 %, the L40 the one miss it prints."""
    rows = {r["device"]: r for r in _bench().ratios()}
    assert set(rows) == {*_bench().REPORTED, *_bench().MISSED, "H200-SXM5-141GB"}
    for r in rows.values():
        vals = [v for k, v in r.items() if k in ("fp32", "tf32", "fp16", "bf16", "int8", "bandwidth") and v]
        assert all(abs(v - 1) <= 0.03 for v in vals) != r["missed"], r
    assert rows["L40"]["fp16"] == pytest.approx(2.0, rel=0.01) and rows["L40"]["fp32"] == pytest.approx(1.0, rel=0.01)


def test_a_measured_h200_s_properties_give_its_datasheet_figures():
    """The H200's properties as its measuring run recorded them (``prop_*`` in the packaged hardware.json)."""
    data = json.loads((Path(costmodel.__file__).parent / "data" / "h200" / "hardware.json").read_text())
    d, h200 = device_from_cuda_properties(data), get_device("h200")
    assert d.peak_flops("bf16") == pytest.approx(h200.peak_flops("bf16"), rel=0.01)
    assert d.peak_flops("fp32") == pytest.approx(h200.peak_flops("fp32"), rel=0.01)
    assert d.memory_bandwidth_gbps == pytest.approx(h200.memory_bandwidth_gbps, rel=0.01)
    assert d.tdp_w == data["power_limit_w"] and d.memory_mb == data["prop_total_memory"] / 2**20
    assert not any("power limit unknown" in a for a in d.assumptions)


def test_an_unlisted_board():
    """A GeForce RTX 3060 (GA106): its own memory and SMs, half-rate fp16 with fp32 accumulation, power from
    the GeForce reference board when NVML is not read, and an estimate that says what it derived."""
    p = SimpleNamespace(name="NVIDIA GeForce RTX 3060", major=8, minor=6, multi_processor_count=28,
                        total_memory=12 * 2**30, L2_cache_size=3 * 2**20, clock_rate=1777000,
                        memory_clock_rate=7501000, memory_bus_width=192)
    d = device_from_cuda_properties(p)
    assert d.peak_tflops.fp32 == pytest.approx(28 * 256 * 1.777e-3, rel=1e-3)  # 12.7 TFLOP/s
    assert d.peak_tflops.fp16 == pytest.approx(28 * 512 * 1.777e-3, rel=1e-3)  # GeForce: half of 1,024
    assert d.peak_tflops.tf32 == pytest.approx(d.peak_tflops.fp16 / 2, rel=1e-3)
    assert d.memory_bandwidth_gbps == pytest.approx(360.0, rel=1e-3) and d.memory_mb == 12 * 1024
    ref = get_device("RTX-3090")
    assert d.tdp_w == pytest.approx(ref.tdp_w * d.peak_tflops.fp32 / ref.peak_tflops.fp32, abs=0.1)
    assert any("power limit unknown: RTX-3090's" in a for a in d.assumptions)
    assert device_from_cuda_properties(p, power_limit_w=170).tdp_w == 170
    e = costmodel.estimate("resnet18", batch=8, device=d, predictor="analytic")
    assert e.device == "NVIDIA GeForce RTX 3060" and e.latency_ms > 0
    assert any("derived from its CUDA properties" in a for a in e.assumptions)
    slower = costmodel.estimate("resnet18", batch=8, device="RTX-3090", predictor="analytic")
    assert e.latency_ms > slower.latency_ms  # a third of the 3090's SMs, two fifths of its bandwidth


def test_compute_capabilities_without_rates_of_their_own():
    base = vars(_props("A10"))
    orin = device_from_cuda_properties({**base, "name": "Orin", "minor": 7}, power_limit_w=60)
    assert orin.peak_tflops.fp16 == device_from_cuda_properties({**base, "name": "Orin"}, power_limit_w=60).peak_tflops.fp16
    assert any("8.7 has no rates of its own here: costed with 8.6's" in a for a in orin.assumptions)
    with pytest.raises(InvalidInputError, match=r"compute capability 6\.1: figures are derived for Volta \(7\.0\)"):
        device_from_cuda_properties({**base, "major": 6, "minor": 1})
    assert (12, 0) in ARCHITECTURES and min(ARCHITECTURES) == (7, 0)


def test_bad_properties_are_refused_naming_what_is_wrong():
    base = vars(_props("A10"))
    with pytest.raises(InvalidInputError, match="missing: clock_rate, memory_bus_width"):
        device_from_cuda_properties({k: v for k, v in base.items() if k not in ("clock_rate", "memory_bus_width")})
    with pytest.raises(InvalidInputError, match="'multi_processor_count': expected a positive integer, got 0"):
        device_from_cuda_properties({**base, "multi_processor_count": 0})
    with pytest.raises(InvalidInputError, match="expected the device's name"):
        device_from_cuda_properties({**base, "name": " "})
    with pytest.raises(InvalidInputError, match="power_limit_w must be a positive number of watts, got -5"):
        device_from_cuda_properties(base, power_limit_w=-5)


def test_a_measured_profile_of_an_unlisted_gpu(tmp_path):
    """``costmodel collect``'s hardware.json of a GPU the database does not list: its CUDA properties give the
    base the measurement refines; without them the error says what to do."""
    p = vars(_props("A10", name="NVIDIA A10G", multi_processor_count=80, clock_rate=1710000))
    data = {f"prop_{k}": v for k, v in p.items()}
    data.update(name="NVIDIA A10G", power_limit_w=300.0, peak_matmul={"fp16": {"tflops": 70.0}},
                bandwidth={"copy_1024mb_gbps": 520.0})
    f = tmp_path / "hardware.json"
    f.write_text(json.dumps(data))
    d = load_measured_profile(f)
    assert (d.name, d.source, d.sm_count, d.tdp_w) == ("NVIDIA A10G", "measured", 80, 300.0)
    assert d.peak_tflops.fp16 == 70.0 and d.memory_bandwidth_gbps == 520.0
    assert d.peak_tflops.fp32 == pytest.approx(80 * 256 * 1.71e-3, rel=1e-3)  # derived, not measured
    f.write_text(json.dumps({"name": "NVIDIA A10G", "peak_matmul": {}, "bandwidth": {}}))
    with pytest.raises(UnknownDeviceError, match="no prop_\\* CUDA properties to derive it from; pass base="):
        load_measured_profile(f)


def test_cuda_names_the_gpu_this_process_sees(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "CUDA:0"):
        with pytest.raises(InvalidInputError, match="is the GPU this process sees, and it sees none"):
            get_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    names = {0: "NVIDIA H200", 1: "NVIDIA GeForce RTX 3090 Ti"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: names[i])
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: _props("RTX-3090", name=names[i], multi_processor_count=84, clock_rate=1860000))
    assert get_device("cuda") is get_device("h200") and cuda_device(0) is get_device("h200")
    ti = get_device("cuda:1")
    assert (ti.name, ti.sm_count, ti.source) == ("NVIDIA GeForce RTX 3090 Ti", 84, "cuda-properties")
    with pytest.raises(InvalidInputError, match=r"'cuda:2': this process sees 2 CUDA device\(s\), cuda:0 to cuda:1"):
        get_device("cuda:2")
