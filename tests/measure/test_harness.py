"""The C++ roofline harness (costmodel._roofline) and costmodel.measure.harness.

Measurements use quick=True (well under a second of benchmarking on a small
machine); assertions are loose on values, strict on structure, since shared
CI machines are noisy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings

import pytest

from costmodel._errors import CostModelError, InvalidInputError, UnknownDeviceError
from costmodel.devices.profile import PROFILE_SCHEMA_VERSION
from costmodel.measure import harness as rl

EXT = rl._extension(required=False)
needs_ext = pytest.mark.skipif(
    EXT is None,
    reason=f"the C++ harness costmodel._roofline is not built ({rl._EXT_ERROR}); build it with `pip install .`",
)
CUDA = rl.cuda_status()
NO_GPU = not CUDA.get("available")


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


@pytest.fixture(scope="module")
def cpu_profile():
    if EXT is None:
        pytest.skip(f"the C++ harness costmodel._roofline is not built ({rl._EXT_ERROR})")
    return rl.measure("cpu", quick=True, progress=False)


# --------------------------------------------------------------------------
# the extension
# --------------------------------------------------------------------------


@needs_ext
def test_extension_imports_and_describes_itself():
    assert EXT.HARNESS_VERSION == 1
    isas = EXT.cpu_isas()
    assert isas and isas[-1] == "scalar"
    assert set(isas) <= {"avx512", "avx2", "scalar"}
    assert isinstance(EXT.cuda_compiled, bool)
    assert rl.available()


def _nvcc_present() -> bool:
    return bool(shutil.which("nvcc") or os.environ.get("CUDACXX") or os.path.exists("/usr/local/cuda/bin/nvcc"))


@needs_ext
@pytest.mark.skipif(not _nvcc_present(), reason="no nvcc on this machine: the extension is built CPU-only")
@pytest.mark.skipif(os.environ.get("COSTMODEL_CUDA", "").upper() == "OFF", reason="built with COSTMODEL_CUDA=OFF")
def test_cuda_compiled_when_nvcc_present():
    assert EXT.cuda_compiled is True
    assert EXT.cuda_architectures  # e.g. "75-real,80-real,90-real,90-virtual"


@needs_ext
def test_harness_object_reports_threads_and_pinning():
    h = EXT.CpuHarness(1, True)
    assert h.threads == 1
    assert isinstance(h.pinned, bool)
    assert len(h.cpus) == 1
    if h.pinned:
        assert h.cpus[0] >= 0 and h.pin_error == ""
    else:
        assert h.pin_error
    r = h.peak_flops("fp64", "scalar", 0, 2, 0.002)
    assert r["isa"] == "scalar" and r["threads"] == 1 and r["gflops"]["median"] > 0
    with pytest.raises(ValueError, match="isa"):
        h.peak_flops("fp32", "sse9", 0, 1, 0.001)
    s = h.stream(64 * 1024, 0, 2, 0.0002)
    assert set(s["kernels"]) == {"copy", "scale", "add", "triad"}
    n = s["elements_per_thread"]
    assert s["kernels"]["copy"]["bytes_per_pass"] == 2 * 8 * n
    assert s["kernels"]["triad"]["bytes_per_pass"] == 3 * 8 * n
    assert s["footprint_bytes"] == 3 * 8 * n
    h.release()


# --------------------------------------------------------------------------
# CPU measurement
# --------------------------------------------------------------------------


@needs_ext
def test_cpu_peaks(cpu_profile):
    p = cpu_profile
    assert p.kind == "cpu" and p.name
    assert p.isa in EXT.cpu_isas()
    assert p.threads >= 1 and isinstance(p.pinned, bool)
    for dt in ("fp64", "fp32"):
        assert p.peak_gflops[dt] > 0
        sp = p.peak_spread[dt]
        assert sp["min"] <= p.peak_gflops[dt] <= sp["max"]
        assert sp["q1"] <= sp["q3"]
    if p.theoretical_peak_gflops is not None:
        assert p.theoretical_peak_gflops["fp64"] > 0
        assert "ESTIMATE" in p.theoretical_basis
    assert p.elapsed_s > 0 and p.timestamp[:2] == "20"


@needs_ext
def test_cpu_sweep_sizes_and_stream_counting(cpu_profile):
    p = cpu_profile
    kernels = {pt.kernel for pt in p.bandwidth}
    assert kernels == {"copy", "scale", "add", "triad"}
    triad = p.sweep("triad")
    sizes = [pt.bytes for pt in triad]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert sizes[0] <= max(8 * 1024, 24 * 64 * p.threads)
    assert sizes[-1] <= p.settings["max_bytes"]
    assert len(sizes) >= 8
    for k in kernels:
        assert [pt.bytes for pt in p.sweep(k)] == sizes
    for pt in p.bandwidth:
        assert 0 < pt.gbps_min <= pt.gbps <= pt.gbps_max
        assert pt.gbps_q1 <= pt.gbps_q3
        assert pt.spread == (pt.gbps_min, pt.gbps_max)


@needs_ext
def test_cpu_plateaus_located(cpu_profile):
    p = cpu_profile
    names = [pl.level for pl in p.plateaus]
    assert names[-1] == "DRAM" and names[0] == "L1"
    assert set(p.levels) == set(names)
    assert p.levels["L1"] is not None and p.levels["L1"] > 0
    llc = max((c["aggregate_bytes"] for c in p.caches), default=0)
    if llc and p.settings["max_bytes"] >= 4 * llc:
        assert p.levels["DRAM"] is not None
        # the innermost cache beats memory by a wide margin on any machine
        assert p.levels["L1"] > 1.5 * p.levels["DRAM"]
    for pl in p.plateaus:
        if pl.gbps is not None:
            assert pl.gbps_min <= pl.gbps <= pl.gbps_max
            assert pl.from_bytes <= pl.to_bytes and pl.points >= 1


def test_locate_plateaus_on_a_synthetic_curve():
    KiB, MiB = 1024, 1024**2
    caps = [("L1", 64 * KiB), ("L2", 2 * MiB), ("L3", 32 * MiB)]

    def bw(size):
        return 500.0 if size <= 32 * KiB else 200.0 if size <= MiB else 150.0 if size <= 16 * MiB else 20.0

    sizes = [4 * KiB * 2**k for k in range(17)]  # 4 KiB .. 256 MiB
    out = rl.locate_plateaus([(s, bw(s)) for s in sizes], caps)
    got = {p.level: p for p in out}
    assert [p.level for p in out] == ["L1", "L2", "L3", "DRAM"]
    assert got["L1"].gbps == 500.0 and got["L1"].boundary_detected and got["L1"].to_bytes == 32 * KiB
    assert got["L2"].gbps == 200.0 and got["L2"].from_bytes == 64 * KiB and got["L2"].to_bytes == MiB
    assert got["L3"].gbps == 150.0 and got["L3"].boundary_detected
    assert got["DRAM"].gbps == 20.0 and got["DRAM"].from_bytes == 128 * MiB
    # a sweep that stops inside the caches has no DRAM plateau
    short = rl.locate_plateaus([(s, bw(s)) for s in sizes if s <= 4 * MiB], caps)
    assert short[-1].level == "DRAM" and short[-1].gbps is None
    # noisy steps below 10 % are not boundaries: the region falls back to the capacity
    flat = rl.locate_plateaus([(s, 100.0 * (1 + 0.05 * (i % 2))) for i, s in enumerate(sizes)], caps)
    assert not any(p.boundary_detected for p in flat[:3])
    assert flat[0].to_bytes <= 32 * KiB


def test_cache_hierarchy_and_theoretical_peak_shapes():
    caches = rl.cache_hierarchy()
    for c in caches:
        assert c["type"] != "Instruction"
        assert c["aggregate_bytes"] == c["size_bytes"] * c["instances"]
    assert [c["level"] for c in caches] == sorted(c["level"] for c in caches)
    theo, basis = rl.theoretical_cpu_peak("avx2")
    if theo is not None:
        assert theo["fp32"] == 2 * theo["fp64"] > 0 and "ESTIMATE" in basis


# --------------------------------------------------------------------------
# JSON and the device database
# --------------------------------------------------------------------------


@needs_ext
def test_json_roundtrip(cpu_profile, tmp_path):
    text = cpu_profile.to_json()
    data = json.loads(text)  # plain JSON
    assert data["kind"] == "cpu" and data["schema_version"] == PROFILE_SCHEMA_VERSION
    assert rl.MachineProfile.from_json(text) == cpu_profile
    path = cpu_profile.save(tmp_path / "machine.json")
    assert rl.MachineProfile.load(path) == cpu_profile

    with pytest.raises(InvalidInputError, match="schema_version"):
        rl.MachineProfile.from_json(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(InvalidInputError, match="'bogus'"):
        rl.MachineProfile.from_json(json.dumps({**data, "bogus": 1}))
    with pytest.raises(InvalidInputError, match="unparsable"):
        rl.MachineProfile.from_json("{not json")
    with pytest.raises(InvalidInputError, match="no such file"):
        rl.MachineProfile.load(tmp_path / "missing.json")


@needs_ext
def test_to_device_feeds_the_analytic_predictor(cpu_profile):
    torch = pytest.importorskip("torch")
    import costmodel
    from costmodel.devices import Device, get_device
    from costmodel.predictors import get_predictor

    # a quick sweep stops below 4 x a very large last-level cache: then to_device warns
    expect = pytest.warns(UserWarning, match="upper bound") if cpu_profile.levels["DRAM"] is None else _no_warning()
    with expect:
        dev = cpu_profile.to_device()
    assert isinstance(dev, Device)
    assert dev.name == "cpu" and dev.source == "measured"
    assert dev.peak_tflops.fp32 == pytest.approx(cpu_profile.peak_gflops["fp32"] / 1e3)
    assert dev.peak_tflops.fp64 == pytest.approx(cpu_profile.peak_gflops["fp64"] / 1e3)
    assert dev.vector_tflops_fp32 == pytest.approx(cpu_profile.peak_gflops["fp32"] / 1e3)
    if cpu_profile.levels["DRAM"] is not None:
        assert dev.memory_bandwidth_gbps == pytest.approx(cpu_profile.levels["DRAM"])
    assert "measured by costmodel.measure.harness.measure on " + cpu_profile.timestamp[:10] in dev.sources[-1]
    assert dev.sources[:-1] == get_device("cpu").sources
    if cpu_profile.memory_total_bytes:
        assert dev.capacity_mb == dev.memory_mb == cpu_profile.memory_total_bytes / 2**20

    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024))
    est = costmodel.estimate(model, batch=128, input_shape=(1024,), device=dev, predictor="analytic")
    assert est.device == "cpu" and est.predictor == "analytic"
    # compute-bound at the measured peak: latency >= FLOPs / measured fp32 peak
    assert est.latency_ms / 1e3 >= 0.99 * est.flops / dev.peak_flops("fp32")
    nominal = costmodel.estimate(model, batch=128, input_shape=(1024,), device="cpu", predictor="analytic")
    assert est.latency_ms != nominal.latency_ms

    from costmodel.frontends import to_graph

    graph = to_graph(model, batch=128, input_shape=(1024,))
    direct = get_predictor("analytic").predict(graph, dev)
    assert direct.latency_ms == pytest.approx(est.latency_ms)

    with pytest.raises(UnknownDeviceError, match="no-such-gpu"):
        cpu_profile.to_device(base="no-such-gpu")


# --------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"device": "tpu"}, "'tpu'"),
        ({"device": "cuda:x"}, "'cuda:x'"),
        ({"device": 3}, "3"),
        ({"quick": "yes"}, "'yes'"),
        ({"progress": 1}, "1"),
        ({"max_bytes": 100}, "100"),
        ({"max_bytes": -5}, "-5"),
        ({"max_bytes": 1.5e6}, "1500000.0"),
        ({"threads": 0}, "0"),
        ({"threads": 10**6}, "1000000"),
        ({"threads": True}, "True"),
        ({"device": "cuda", "threads": 2}, "threads"),
    ],
)
def test_bad_arguments_raise_invalid_input(kwargs, needle):
    with pytest.raises(InvalidInputError) as info:
        rl.measure(**{"progress": False, **kwargs})
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


@needs_ext
@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda h: h.peak_flops("fp32", "auto", 0, 0, 0.001), "reps must be >= 1, got 0"),
        (lambda h: h.peak_flops("fp32", "auto", -3, 1, 0.001), "warmup must be >= 0, got -3"),
        # a negative or NaN sample time used to spin for hours (a negative trip count cast to unsigned)
        (lambda h: h.peak_flops("fp32", "auto", 0, 1, -1.0), "min_time must be a finite number of seconds >= 0, got -1"),
        (lambda h: h.peak_flops("fp64", "auto", 0, 1, float("nan")), "got nan"),
        (lambda h: h.peak_flops("fp16", "auto", 0, 1, 0.001), "dtype must be one of fp64, fp32, got 'fp16'"),
        (lambda h: h.stream(65536, 0, 0, 0.001), "reps must be >= 1, got 0"),
        (lambda h: h.stream(65536, 0, 1, float("inf")), "got inf"),
        # a footprint of 0 used to measure one cache line per thread without a word
        (lambda h: h.stream(0), "footprint_bytes must be >= 1 byte, got 0"),
        (lambda h: h.stream(-4096), "footprint_bytes must be >= 1 byte, got -4096"),
        (lambda h: h.stream(1 << 62), "at most the physical memory"),
        (lambda h: h.reserve(0), "max_bytes must be >= 1 byte, got 0"),
        (lambda h: h.reserve(-1), "max_bytes must be >= 1 byte, got -1"),
        (lambda h: h.reserve(1 << 62), f"got {1 << 62}"),
    ],
)
def test_raw_cpu_harness_names_bad_arguments(call, needle):
    h = EXT.CpuHarness(1, True)
    with pytest.raises(ValueError) as info:
        call(h)
    assert needle in str(info.value)


@needs_ext
@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: EXT.cuda_peak_flops("fp8", 0, 1, 0.001, 0), "dtype must be one of fp64, fp32, fp16, got 'fp8'"),
        (lambda: EXT.cuda_peak_flops("fp32", 0, 0, 0.001, 0), "reps must be >= 1, got 0"),
        (lambda: EXT.cuda_copy_bandwidth(1 << 20, -1, 1, 0), "warmup must be >= 0, got -1"),
        (lambda: EXT.cuda_read_sweep([16384], False, 0, 1, -1.0, 0), "min_time must be a finite number"),
        (lambda: EXT.cuda_copy_bandwidth(0, 0, 1, 0), "buffer_bytes must be >= 1 byte, got 0"),
        (lambda: EXT.cuda_copy_bandwidth(-8, 0, 1, 0), "buffer_bytes must be >= 1 byte, got -8"),
        (lambda: EXT.cuda_read_sweep([16384, 0], False, 0, 1, 0.001, 0), "sizes[1] must be >= 1 byte, got 0"),
    ],
)
def test_raw_cuda_entry_points_name_bad_arguments_with_or_without_a_gpu(call, needle):
    with pytest.raises(ValueError) as info:
        call()
    assert needle in str(info.value)


@needs_ext
def test_raw_cpu_harness_threads_zero_means_all_and_negative_raises():
    assert EXT.CpuHarness(0, False).threads == len(rl._allowed_cpus())
    assert EXT.CpuHarness().threads == len(rl._allowed_cpus())
    # a negative count used to mean "all CPUs" too
    for bad in (-1, -7):
        with pytest.raises(ValueError, match=f"threads must be >= 0 .*got {bad}"):
            EXT.CpuHarness(bad, True)


@needs_ext
def test_raw_stream_below_one_line_still_measures_one_line():
    r = EXT.CpuHarness(1, False).stream(1, 0, 1, 0.0)  # documented: at least one cache line per array
    assert r["elements_per_thread"] == 8 and r["footprint_bytes"] == 3 * 8 * 8


def test_device_error_lists_choices():
    with pytest.raises(InvalidInputError, match="'cpu', 'cuda'"):
        rl.measure("gpu", progress=False)


@needs_ext
def test_sweep_rejects_unknown_kernel(cpu_profile):
    with pytest.raises(InvalidInputError, match="'bogus'"):
        cpu_profile.sweep("bogus")


@needs_ext
def test_threads_and_small_max_bytes(capsys):
    p = rl.measure("cpu", quick=True, threads=1, max_bytes=1024 * 1024, progress=True)
    assert p.threads == 1
    assert p.settings["max_bytes"] == 1024 * 1024
    assert p.sweep("triad")[-1].bytes <= 1024 * 1024
    assert p.levels["L1"] is not None
    assert p.levels["DRAM"] is None  # 1 MiB never leaves the caches
    assert "[roofline]" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="upper bound"):
        dev = p.to_device()
    assert dev.memory_bandwidth_gbps == pytest.approx(p.sweep("triad")[-1].gbps)


def test_missing_extension_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(rl, "_EXT", None)
    monkeypatch.setattr(rl, "_EXT_ERROR", "ModuleNotFoundError: No module named 'costmodel._roofline'")
    assert not rl.available()
    with pytest.raises(rl.RooflineUnavailableError, match=r"pip install \.") as info:
        rl.measure("cpu", quick=True, progress=False)
    assert isinstance(info.value, CostModelError) and isinstance(info.value, ImportError)
    assert rl.cuda_status()["available"] is False
    # the rest of the library does not need the extension
    from costmodel.devices import get_device

    assert get_device("cpu").name == "cpu"


# --------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------


@needs_ext
@pytest.mark.skipif(not NO_GPU, reason="a CUDA device is present: see test_cuda_measure_on_a_gpu")
def test_cuda_without_a_gpu_is_a_clear_no_device_result():
    status = rl.cuda_status()
    assert status["available"] is False
    assert status["reason"].startswith("no CUDA device")
    assert status["compiled"] is EXT.cuda_compiled
    raw = EXT.cuda_peak_flops("fp32", 0, 1, 0.001, 0)
    assert raw["available"] is False and raw["reason"].startswith("no CUDA device")
    assert EXT.cuda_read_sweep([16384], False, 0, 1, 0.001, 0)["points"] == []
    assert EXT.cuda_copy_bandwidth(1 << 20, 0, 1, 0)["available"] is False
    with pytest.raises(rl.NoCudaDeviceError, match="^no CUDA device") as info:
        rl.measure("cuda", quick=True, progress=False)
    assert isinstance(info.value, CostModelError)
    if EXT.cuda_compiled:  # the CUDA runtime's own words are passed on
        assert "cuda" in str(info.value).lower() and "(" in str(info.value)


@needs_ext
@pytest.mark.skipif(NO_GPU, reason=f"no CUDA device here ({CUDA.get('reason')})")
def test_cuda_measure_on_a_gpu():
    p = rl.measure("cuda", quick=True, progress=False)
    assert p.kind == "cuda" and p.isa.startswith("sm_") and p.pinned is None
    for dt in ("fp64", "fp32", "fp16"):
        assert p.peak_gflops[dt] > 0
    assert p.peak_gflops["fp16"] > p.peak_gflops["fp32"]
    for lvl in ("L1", "L2", "DRAM"):
        assert p.levels[lvl] and p.levels[lvl] > 0
    assert p.levels["L1"] > p.levels["DRAM"]
    assert rl.MachineProfile.from_json(p.to_json()) == p
    try:
        dev = p.to_device()
    except UnknownDeviceError:
        pytest.skip(f"{p.name!r} is not in the device database")
    assert dev.source == "measured"
    assert dev.memory_bandwidth_gbps == pytest.approx(p.levels["DRAM"])


def _h200_like_profile(name: str = "NVIDIA H200") -> rl.MachineProfile:
    """A CUDA profile with figures of the kind an H200 gives (no GPU needed)."""
    info = {"available": True, "name": name, "compute_capability": "9.0", "sm_count": 132,
            "l2_bytes": 60 * 2**20, "total_memory_bytes": 150109880320}
    pts = (rl.BandwidthPoint(2**30, "copy", 3904.1, 3864.4, 3939.2, 3890.0, 3920.0),)
    spread = {"min": 1.0, "max": 2.0, "q1": 1.2, "q3": 1.8}
    return rl.MachineProfile(
        kind="cuda", name=name, isa="sm_90", threads=270336, pinned=None,
        peak_gflops={"fp64": 33398.6, "fp32": 64210.7, "fp16": 127863.8},
        peak_spread={k: spread for k in ("fp64", "fp32", "fp16")}, bandwidth=pts,
        levels={"L1": 31360.6, "L2": 9821.4, "DRAM": 3904.1}, plateaus=(), theoretical_peak_gflops=None,
        theoretical_basis="", caches=(), memory_total_bytes=150109880320, elapsed_s=1.3,
        timestamp="2026-11-26T10:04:41+00:00", extra={"device": info},
    )


def test_cuda_profile_to_device_keeps_tensor_core_peaks():
    from costmodel.devices import get_device

    prof = _h200_like_profile()
    assert rl.MachineProfile.from_json(prof.to_json()) == prof
    dev = prof.to_device()
    sheet = get_device("h200")
    assert dev.name == sheet.name and dev.source == "measured"
    assert dev.peak_tflops.fp32 == pytest.approx(64.2107)
    assert dev.vector_tflops_fp32 == pytest.approx(64.2107)
    assert dev.peak_tflops.bf16 == sheet.peak_tflops.bf16  # tensor cores: not measured
    assert dev.peak_tflops.fp64 == sheet.peak_tflops.fp64
    assert dev.memory_bandwidth_gbps == pytest.approx(3904.1)
    assert dev.sm_count == 132 and dev.l2_cache_mb == pytest.approx(60.0)
    # memory_gb is the database's binary GB: memory_mb is the measured capacity in MiB exactly
    assert dev.memory_gb == 150109880320 / 2**30 and dev.memory_mb == 150109880320 / 2**20
    assert dev.reported_memory_mib == 150109880320 / 2**20 == dev.capacity_mb
    assert prof.levels_gbps is prof.levels and prof.levels_gbps["DRAM"] == pytest.approx(3904.1)
    assert "levels_gbps" not in prof.to_dict()  # the JSON layout is unchanged: old files still load
    assert "measured by costmodel.measure.harness.measure on 2026-11-26" in dev.sources[-1]
    with pytest.raises(UnknownDeviceError, match="pass base="):
        _h200_like_profile("Imaginary GPU 9000").to_device()
    assert _h200_like_profile("Imaginary GPU 9000").to_device(base="h100").name == get_device("h100").name
