"""The CPU operator model under another CPU's measured roofline (``OpTimeline.predict(..., target=)``,
what ``benchmarks/cpu_transfer.py`` scores), and CPU estimates, which do not use it."""

import dataclasses

import numpy as np
import pytest
import torch

import costmodel
from costmodel.frontends import from_torch
from costmodel.measure.host import HostProfile
from costmodel.predictors import ARTIFACTS_DIR, TimelinePredictor
from costmodel.predictors._opmodel import DeviceFigures, bound_s, compose, cpu_target, transfer_ratios


@pytest.fixture(scope="module")
def shipped():
    return TimelinePredictor.load(ARTIFACTS_DIR / "timeline")


@pytest.fixture(scope="module")
def net_graphs():
    """A GEMM-heavy layer and an elementwise one: one operator bound by each roofline side."""
    net = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    x = torch.empty(256, 1024)
    return {m: from_torch(net, x, method="trace", mode=m) for m in ("inference", "training")}


def _profile(gflops: float, gbps: float, threads: int = 1, cpu: str = "Test CPU 9000") -> HostProfile:
    return HostProfile(dispatch_us={"default": 3.0}, module_call_us=1.0, synchronous=True, host={"cpu": cpu},
                       source="test", library_version=costmodel.__version__,
                       roofline={"peak_gflops_fp32": gflops, "bandwidth_gbps": gbps, "threads": threads})


def test_each_operator_moves_with_the_side_of_the_roofline_that_bounds_it(shipped, net_graphs):
    g = net_graphs["inference"]
    ref = shipped.cpu.figs
    c = compose(g, ref, mode="inference")
    target = DeviceFigures("t", gflops=ref.gflops * 2, gbps=ref.gbps / 4)
    r = transfer_ratios(g, c, ref, target)
    nodes = {n.id: n for n in g.nodes}
    kinds = [nodes[int(i)].kind for i in c.node]
    for kind, ratio, nid in zip(kinds, r, c.node):
        n = nodes[int(nid)]
        comp, mem = bound_s(n, "forward", ref, "fp32")
        comp2, mem2 = bound_s(n, "forward", target, "fp32")
        assert ratio == pytest.approx(max(comp2, mem2) / max(comp, mem))
    # the 1024 x 1024 GEMM at batch 256 is compute-bound on both: twice the rate, half the time
    assert r[kinds.index("matmul")] == pytest.approx(0.5)
    # the ReLU streams its operand on both: a quarter of the bandwidth, four times the time
    assert r[kinds.index("relu")] == pytest.approx(4.0)


def test_the_profiled_cpus_own_roofline_changes_nothing(shipped, net_graphs):
    tl = shipped.cpu
    for mode, g in net_graphs.items():
        a, b = tl.predict(g, mode), tl.predict(g, mode, target=dataclasses.replace(tl.figs, name="same"))
        assert b["latency_ms"] == pytest.approx(a["latency_ms"], rel=1e-12)
        assert b["latency_ms"] == pytest.approx(shipped.predict(g, "cpu", mode=mode).latency_ms, rel=1e-12)


def test_a_faster_roofline_runs_the_operators_faster_and_keeps_the_host_costs(shipped, net_graphs):
    tl = shipped.cpu
    ref = tl.figs
    fast = cpu_target(_profile(2 * ref.gflops, 2 * ref.gbps, threads=4))
    assert fast == DeviceFigures("Test CPU 9000", gflops=2 * ref.gflops, gbps=2 * ref.gbps, cores=4)
    for mode, g in net_graphs.items():
        a, b = tl.predict(g, mode), tl.predict(g, mode, target=fast)
        # every operator bound twice as fast; the per-operator host costs as fitted
        assert b["device_ms"] == pytest.approx(a["device_ms"] / 2, rel=1e-9)
        per_op = [{k: v for k, v in r["host_terms_ms"].items() if k != "optimizer_step"} for r in (a, b)]
        assert per_op[1] == per_op[0]
        stream_ms = tl.host.optimizer_scale * compose(g, ref, mode=mode).optimizer_us / 1e3
        # the optimizer's sweep streams the parameters: at twice the bandwidth it takes half as long
        assert a["host_ms"] - b["host_ms"] == pytest.approx(stream_ms / 2, rel=1e-9, abs=1e-12)
        assert b["latency_ms"] == pytest.approx(b["device_ms"] + b["host_ms"], rel=1e-9)
        # efficiencies are against the new bounds: unchanged
        eff = {(t["node"], t["phase"]): t["efficiency"] for t in a["top"]}
        for t in b["top"]:
            assert t["efficiency"] == pytest.approx(eff[(t["node"], t["phase"])])


def test_cpu_estimates_ignore_a_host_profile_and_say_why(tmp_path, shipped, net_graphs):
    g = net_graphs["inference"]
    ref = shipped.cpu.figs
    prof = _profile(ref.gflops, ref.gbps / 3)
    a, b = shipped.predict(g, "cpu"), shipped.with_host(prof).predict(g, "cpu")
    assert b.latency_ms == a.latency_ms
    assert any("host profile ignored on a CPU" in x and "does not carry" in x for x in b.assumptions)
    assert any(x.startswith("CPU operator model trained on") and "runs at its own speed" in x for x in a.assumptions)
    path = prof.save(tmp_path / "cpu.json")
    e = costmodel.estimate("torchvision:mobilenet_v3_small", batch=1, device="cpu", host=path)
    assert e.latency_ms == costmodel.estimate("torchvision:mobilenet_v3_small", batch=1, device="cpu").latency_ms
    # a profile without a roofline (a GPU host's) gives no target
    assert cpu_target(dataclasses.replace(prof, roofline=None)) is None and cpu_target(None) is None


def test_the_other_cpus_rows_are_kept_apart_and_complete(benchmark_module):
    """The rows of two other CPUs (``benchmarks/data/cpu_xeon*``): never in the packaged data, every
    workload of the packaged CPU grid they repeat, and a calibrated profile at the rows' thread count."""
    import json
    from pathlib import Path

    from costmodel.datasets import PerfDataset

    bench = benchmark_module("cpu_transfer")
    root = Path(bench.HERE) / "data"
    packaged = json.loads((Path(costmodel.__file__).parent / "data" / "cpu" / "hardware.json").read_text())
    first = bench.first_cpu_rows()
    for folder, threads in (("cpu_xeon", 1), ("cpu_xeon_2t", 2)):
        hw = json.loads((root / folder / "hardware.json").read_text())
        assert hw["name"] != packaged["name"] and hw["costmodel_device"] == "cpu"
        ds = PerfDataset.load(root, device=folder, kinds=("vision", "llm"), method="trace")
        assert len(ds) == 130 and {r.raw["threads"] for r in ds.rows} == {threads}
        assert all(r.latency_ms > 0 and r.raw.get("host_reference") for r in ds.rows)
        assert sum(bench._key(r) in first for r in ds.rows) == 130  # every row repeats a packaged workload
        prof = HostProfile.load(root / folder / "host.json")
        assert prof.roofline["threads"] == threads and cpu_target(prof).cores == threads


def test_the_best_single_scale_is_the_minimiser(benchmark_module):
    bench = benchmark_module("cpu_transfer")
    rng = np.random.default_rng(0)
    y, p = rng.uniform(1, 10, 41), rng.uniform(1, 10, 41)
    s = bench.best_scale(y, p)
    err = lambda k: np.mean(np.abs(k * p / y - 1))  # noqa: E731
    assert all(err(s) <= err(k) + 1e-12 for k in np.linspace(0.05, 20, 4000))
