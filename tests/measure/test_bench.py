"""costmodel.bench: timing, FLOP/byte counting, roofline placement, the `costmodel bench` command."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import costmodel
from costmodel import InvalidInputError, UnknownDeviceError
from costmodel.cli import main

bench = costmodel.bench  # the function, reached through the package's lazy attribute

FAST = {"warmup": 1, "repeats": 3, "min_time_s": 0.0}


def _profile(peak_fp32=50.0, dram=20.0):
    from costmodel.devices.profile import MachineProfile

    return MachineProfile(
        kind="cpu", name="test cpu", isa="avx2", threads=2, pinned=True,
        peak_gflops={"fp32": peak_fp32, "fp64": peak_fp32 / 2}, peak_spread={}, bandwidth=(),
        levels={"L1": 400.0, "L2": 200.0, "L3": 100.0, "DRAM": dram}, plateaus=(),
        theoretical_peak_gflops=None, theoretical_basis="", caches=(), memory_total_bytes=8 * 2**30,
        elapsed_s=1.0, timestamp="2026-01-01T00:00:00+00:00",
    )  # fmt: skip


def test_package_attribute_is_the_function_and_import_stays_light():
    import inspect

    assert inspect.isfunction(costmodel.bench)
    code = ("import sys, costmodel; f = costmodel.bench; import inspect; "
            "assert inspect.isfunction(f), f; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    # importing the module directly first still leaves a callable costmodel.bench
    code = "import costmodel.measure.bench as m, costmodel; assert callable(costmodel.bench); assert m.BenchResult"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_matmul_counts_flops_and_compulsory_bytes():
    m, k, n = 64, 48, 32
    a, b = torch.randn(m, k), torch.randn(k, n)
    r = bench(torch.matmul, a, b, **FAST)
    assert r.name == "torch.matmul"
    assert r.flops == 2 * m * n * k and r.flops_source == "counted"
    assert r.bytes == 4 * (m * k + k * n + m * n) and r.bytes_source == "counted"
    assert r.intensity == pytest.approx(r.flops / r.bytes)
    assert not r.tensor_cores and r.ceiling_dtype == "fp32"  # the CPU's vector units
    assert bench(torch.matmul, a, b, device="h100", **FAST).tensor_cores
    assert r.device == "cpu" and r.device_source == "datasheet" and r.timer == "perf_counter"
    assert r.time_ms_min <= r.time_ms_q1 <= r.time_ms <= r.time_ms_q3 <= r.time_ms_max
    assert r.repeats >= 3 and r.calls_per_sample >= 1
    assert r.achieved_gflops == pytest.approx(r.flops / (r.time_ms / 1e3) / 1e9)
    assert r.achieved_gbps == pytest.approx(r.bytes / (r.time_ms / 1e3) / 1e9)
    # attainable = min(peak, I x BW) of the datasheet cpu entry
    dev = costmodel.get_device("cpu")
    assert r.ceiling_gflops == pytest.approx(min(dev.peak_flops("fp32") / 1e9, r.intensity * dev.memory_bandwidth_gbps))
    assert 0 < r.fraction_of_roofline <= 1.5
    assert r.fraction_of_roofline == pytest.approx(r.achieved_gflops / r.ceiling_gflops)
    assert r.bound == ("compute" if r.intensity * dev.memory_bandwidth_gbps >= r.peak_gflops else "memory")
    d = json.loads(r.to_json())
    assert d["flops"] == r.flops and d["bound"] == r.bound
    text = r.table()
    for word in ("torch.matmul", "GFLOP/s", "GB/s", "% of attainable", "lower bound"):
        assert word in text


def test_given_flops_and_bytes_override_the_count():
    a, b = torch.randn(32, 32), torch.randn(32, 32)
    r = bench(torch.matmul, a, b, flops=1e9, bytes=1e6, **FAST)
    assert (r.flops, r.bytes, r.flops_source, r.bytes_source) == (1e9, 1e6, "given", "given")
    assert r.intensity == pytest.approx(1e3)
    assert r.achieved_gflops == pytest.approx(1e9 / (r.time_ms / 1e3) / 1e9)


def test_conv2d_and_pointwise_rules():
    x, w = torch.randn(2, 8, 16, 16), torch.randn(16, 8, 3, 3)
    r = bench(F.conv2d, x, w, padding=1, **FAST)
    assert r.flops == 2 * 2 * 16 * 16 * 16 * 8 * 3 * 3 and not r.tensor_cores  # a CPU: vector units
    assert r.bytes == 4 * (x.numel() + w.numel() + 2 * 16 * 16 * 16)
    # pointwise: one FLOP per output element, vector ceiling
    a, b = torch.randn(1000), torch.randn(1000)
    r = bench(torch.add, a, b, **FAST)
    assert r.flops == 1000 and r.flops_source == "counted" and not r.tensor_cores
    assert r.bytes == 3 * 4000 and r.bound == "memory"
    assert bench(F.relu, a, **FAST).flops == 1000
    assert bench(torch.add, a, a, **FAST).bytes == 2 * 4000  # the same tensor is read once
    # nothing counted: 0 FLOPs, memory-bound, fraction = achieved / ceiling bandwidth
    r = bench(torch.clone, a, **FAST)
    assert r.flops == 0 and r.flops_source == "unknown" and r.bound == "memory"
    assert r.fraction_of_roofline == pytest.approx(r.achieved_gbps / r.bandwidth_gbps)
    # an nn.Module's parameters are read too
    lin = torch.nn.Linear(16, 8)
    r = bench(lin, torch.randn(4, 16), **FAST)
    assert r.name == "Linear" and r.bytes == 4 * (4 * 16 + 16 * 8 + 8 + 4 * 8)
    assert r.flops >= 2 * 4 * 16 * 8


def test_ceilings_from_profile_and_explicit_device(tmp_path):
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    prof = _profile(peak_fp32=50.0, dram=20.0)
    r = bench(torch.matmul, a, b, profile=prof, **FAST)
    assert r.device_source == "measured" and r.peak_gflops == pytest.approx(50.0) and r.bandwidth_gbps == pytest.approx(20.0)
    assert r.memory_levels_gbps["L1"] == 400.0 and r.memory_levels_gbps["DRAM"] == pytest.approx(20.0)
    path = prof.save(tmp_path / "cpu.json")
    assert bench(torch.matmul, a, b, profile=str(path), **FAST).peak_gflops == pytest.approx(50.0)
    with pytest.raises(InvalidInputError, match="profile is of a cuda"):
        bench(torch.matmul, a, b, profile=dataclasses.replace(prof, kind="cuda"), **FAST)
    h = bench(torch.matmul, a, b, device="h100", **FAST)
    assert h.device == "H100-SXM5-80GB" and h.peak_gflops == pytest.approx(67e3) and h.bandwidth_gbps == 3350.0
    h = bench(torch.matmul, a.half(), b.half(), device="h100", **FAST)
    assert h.ceiling_dtype == "fp16" and h.peak_gflops == pytest.approx(989.4e3)
    r = bench(torch.add, a, b, device="h100", **FAST)
    assert r.peak_gflops == pytest.approx(67e3) and not r.tensor_cores  # vector rate


def test_the_bandwidth_is_the_cache_level_that_holds_the_bytes():
    # the same tensors every call stay in the cache that holds them: against DRAM's bandwidth a 12 MB add
    # on a 2-core machine read 319 % of its attainable rate
    caches = ({"level": 1, "type": "Data", "aggregate_bytes": 64 * 1024}, {"level": 2, "type": "Unified",
              "aggregate_bytes": 2 * 2**20}, {"level": 3, "type": "Unified", "aggregate_bytes": 32 * 2**20})
    prof = dataclasses.replace(_profile(dram=20.0), caches=caches)
    small = bench(torch.add, torch.randn(2048), torch.randn(2048), profile=prof, **FAST)  # 24 KB
    assert (small.bandwidth_level, small.bandwidth_gbps) == ("L1", pytest.approx(400.0))
    mid = bench(torch.add, torch.randn(2**20), torch.randn(2**20), profile=prof, **FAST)  # 12 MB
    assert (mid.bandwidth_level, mid.bandwidth_gbps) == ("L3", pytest.approx(100.0))
    assert "GB/s L3" in mid.table()
    big = bench(torch.add, torch.randn(2**23), torch.randn(2**23), profile=prof, **FAST)  # 96 MB
    assert (big.bandwidth_level, big.bandwidth_gbps) == ("DRAM", pytest.approx(20.0))


def test_bad_inputs_name_the_value():
    a = torch.randn(4)
    with pytest.raises(InvalidInputError, match="callable"):
        bench(42, a)
    with pytest.raises(InvalidInputError, match="repeats"):
        bench(torch.relu, a, repeats=0)
    with pytest.raises(InvalidInputError, match="flops"):
        bench(torch.relu, a, flops=-1)
    with pytest.raises(InvalidInputError, match="bytes"):
        bench(torch.relu, a, bytes=float("nan"))
    with pytest.raises(InvalidInputError, match="min_time_s"):
        bench(torch.relu, a, min_time_s="1")
    with pytest.raises(UnknownDeviceError, match="known devices"):
        bench(torch.relu, a, device="h1000")
    with pytest.raises(InvalidInputError, match="profile"):
        bench(torch.relu, a, profile=3)
    with pytest.raises(InvalidInputError, match="failed.*shapes cannot be multiplied"):
        bench(torch.matmul, torch.randn(3, 4), torch.randn(3, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_uses_events_and_the_gpu_entry():
    a, b = torch.randn(1024, 1024, device="cuda"), torch.randn(1024, 1024, device="cuda")
    r = bench(torch.matmul, a, b, **FAST)
    assert r.timer == "cuda_event" and r.flops == 2 * 1024**3
    assert r.device == costmodel.get_device(torch.cuda.get_device_name()).name
    assert 0 < r.fraction_of_roofline <= 1.5


# ------------------------------------------------------------------ CLI


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_bench_table_json_and_chart(capsys, tmp_path):
    chart = tmp_path / "conv.png"
    code, out, err = _cli(capsys, "bench", "torch.nn.functional.conv2d", "--shapes", "1x4x8x8,8x4x3x3",
                          "--kwargs", '{"padding": 1}', "--repeats", "3", "--min-time", "0", "-o", str(chart))
    assert code == 0, err
    assert "torch.nn.functional.conv2d" in out and "of attainable" in out
    assert chart.exists() and chart.stat().st_size > 5000
    code, out, err = _cli(capsys, "bench", "torch.matmul", "--shapes", "16x8,8x4", "--repeats", "3",
                          "--min-time", "0", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["name"] == "torch.matmul" and d["flops"] == 2 * 16 * 8 * 4
    code, out, err = _cli(capsys, "bench", "torch.Tensor.add", "--shapes", "32,32", "--flops", "64", "--repeats", "3",
                          "--min-time", "0", "--json")
    assert code == 0 and json.loads(out)["flops_source"] == "given"


@pytest.mark.parametrize("op", ["os.system", "torch.os.system", "torch.__builtins__", "torch.nn", "numpy.add",
                                "torch.no_such_op", "torch.matmul; import os"])
def test_cli_rejects_non_torch_ops(capsys, op):
    code, out, err = _cli(capsys, "bench", op, "--shapes", "2,2")
    assert code == 2 and "costmodel: error:" in err and "OP" in err
    assert out == ""


@pytest.mark.parametrize("shapes", ["2x,3", "axb", "0x3", "", "3,-1"])
def test_cli_bad_shapes(capsys, shapes):
    code, _, err = _cli(capsys, "bench", "torch.add", "--shapes", shapes)
    assert code == 2 and "--shapes" in err and "8x64x56x56" in err


def test_cli_other_errors(capsys):
    code, _, err = _cli(capsys, "bench", "torch.add", "--shapes", "2,2", "--kwargs", "{bad")
    assert code == 2 and "--kwargs" in err
    code, _, err = _cli(capsys, "bench", "torch.add", "--shapes", "2,2", "--device", "tpu")
    assert code == 2 and "cpu, cuda or cuda:N" in err
    code, _, err = _cli(capsys, "bench", "torch.matmul", "--shapes", "2x3,2x3")
    assert code == 2 and "failed" in err
    code, _, err = _cli(capsys, "bench", "torch.clone", "--shapes", "8", "-o", "x.png", "--repeats", "1")
    assert code == 2 and "0 FLOPs" in err


def test_chart_without_matplotlib_names_the_plot_extra(monkeypatch, tmp_path):
    r = bench(torch.matmul, torch.randn(16, 8), torch.randn(8, 4), **FAST)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # not installed
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(costmodel.CostModelError, match=r'pip install "costmodel\[plot\]"'):
        r.chart(tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()


def test_a_profile_that_no_quiet_machine_gives_is_flagged():
    assert _profile().anomalies() == []
    busy = dataclasses.replace(_profile(peak_fp32=92.0), peak_gflops={"fp32": 92.0, "fp64": 99.0},
                               levels={"L1": 128.0, "L2": 134.0 / 0.8, "L3": 100.0, "DRAM": 20.0})
    problems = busy.anomalies()
    assert len(problems) == 2 and "fp32 peak (92 GFLOP/s) is below its fp64 peak (99)" in problems[0]
    assert "L1 bandwidth (128 GB/s) is below its L2 bandwidth" in problems[1]
