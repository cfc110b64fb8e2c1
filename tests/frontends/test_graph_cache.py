"""The on-disk graph cache: featurizing from several threads, and entries keyed by the capture method
that built them.  (Concurrent writers of one file: tests/ir/test_graph.py and tests/datasets/test_corpus.py.)"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# small zoo workloads, inference and training (alexnet training at batch 32 is a workload whose estimate
# changed when a concurrent export failed and the trace graph was served in its place)
JOBS = [
    ("torchvision:resnet18", 2, (3, 64, 64), "inference"),
    ("torchvision:mobilenet_v3_small", 2, (3, 64, 64), "training"),
    ("torchvision:alexnet", 32, (3, 64, 64), "training"),
    ("torchvision:resnet18", 4, (3, 32, 32), "training"),
    ("torchvision:alexnet", 2, (3, 64, 64), "inference"),
    ("torchvision:mobilenet_v3_small", 1, (3, 32, 32), "inference"),
]
THREADS = 8


def _estimate(job) -> dict:
    import costmodel

    model, batch, shape, mode = job
    est = costmodel.estimate(model, batch=batch, input_shape=shape, device="h200", mode=mode, predictor="analytic")
    return est.to_dict()


def _cached_graphs(root: Path):
    from costmodel import CostGraph

    return [CostGraph.load(p) for p in sorted((root / "graphs").glob("*.json.gz"))]


def test_threads_give_the_estimates_of_serial_calls(tmp_path, monkeypatch):
    # threads first, on an empty cache: every thread featurizes, several at once
    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path / "threads"))
    start = threading.Barrier(THREADS)

    def worker(i):
        start.wait()
        order = JOBS[i % len(JOBS):] + JOBS[:i % len(JOBS)]  # threads start on different models
        return {job: _estimate(job) for job in order}

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))
    # every graph cached by the threads was built by the method of its key (export)
    stored = _cached_graphs(tmp_path / "threads")
    assert len(stored) == len(JOBS)
    assert {g.meta["capture"] for g in stored} == {"export"}

    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path / "serial"))
    serial = {job: _estimate(job) for job in JOBS}
    # no fallback anywhere (a training step names only its fitted memory allowance)
    assert all(not [a for a in e["assumptions"] if "fitted allowance" not in a] for e in serial.values())
    differ = [(i, job[0]) for i, r in enumerate(results) for job in JOBS if r[job] != serial[job]]
    assert not differ, f"{len(differ)} of {THREADS * len(JOBS)} threaded estimates differ from serial ones: {differ}"


def _zoo(method="export"):
    from costmodel.frontends import zoo_graph

    return zoo_graph("torchvision:resnet18", batch=2, input_shape=(3, 32, 32), method=method)


def test_a_failed_export_is_cached_under_the_trace_key_only(tmp_path, monkeypatch):
    from costmodel.frontends import pytorch as _torch

    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path))

    def broken(*a, **k):
        raise RuntimeError("export broke")

    with monkeypatch.context() as m:
        m.setattr(_torch, "_from_export", broken)
        with pytest.warns(UserWarning, match="falling back"):
            g = _zoo("export")
    assert g.meta["capture"] == "trace"
    assert any("torch.export failed" in a and "export broke" in a for a in g.meta["assumptions"])

    # one entry, the trace's, holding the graph as the trace builds it (no fallback note)
    (stored,) = _cached_graphs(tmp_path)
    assert stored.meta["capture"] == "trace" and "assumptions" not in stored.meta
    assert "capture_fallback" not in stored.meta
    assert stored.num_nodes == g.num_nodes

    # a trace request reads it (the trace is not run again) ...
    with monkeypatch.context() as m:
        m.setattr(_torch, "_from_trace", lambda *a, **k: pytest.fail("the cached trace graph was not used"))
        t = _zoo("trace")
    assert t.meta["capture"] == "trace" and t.num_nodes == g.num_nodes and "assumptions" not in t.meta

    # ... an export request does not: export works again and builds its own graph
    e = _zoo("export")
    assert e.meta["capture"] == "export" and "assumptions" not in e.meta
    assert sorted(x.meta["capture"] for x in _cached_graphs(tmp_path)) == ["export", "trace"]


def test_a_cache_entry_built_by_another_method_than_its_key_is_not_used(tmp_path, monkeypatch):
    # caches written before graphs were keyed by the method that built them hold trace graphs under
    # export keys: such an entry is dropped and rebuilt
    from costmodel.frontends import cache_dir
    from costmodel.frontends import cache_key as _cache_key
    from costmodel.frontends.zoo import parse_model_ref

    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path))
    trace = _zoo("trace")
    desc = {"zoo": parse_model_ref("torchvision:resnet18"), "batch": 2, "input_shape": (3, 32, 32),
            "mode": "inference", "method": "export"}
    path = cache_dir() / "graphs" / f"{_cache_key(desc)}.json.gz"
    trace.save(path)
    g = _zoo("export")
    assert g.meta["capture"] == "export" and g.num_nodes != trace.num_nodes
    from costmodel import CostGraph

    assert CostGraph.load(path).meta["capture"] == "export"  # the entry was rebuilt
