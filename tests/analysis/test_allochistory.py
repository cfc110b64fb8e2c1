"""A recorded GPU allocator history against the replay: sizes only one side makes, segments, peaks."""

import subprocess
import sys
from pathlib import Path

import pytest

from costmodel._errors import InvalidInputError, ModelLoadError
from costmodel.analysis.allochistory import compare_history, history_from_snapshot, read_history, write_history
from costmodel.analysis.allocator import MIB, replay
from costmodel.analysis.memreplay import workload_trace

REPO = Path(__file__).resolve().parents[2]


def _mirror(events, extra=()):
    """A snapshot whose device trace makes exactly the trace's allocations (plus ``extra`` sizes)."""
    trace = []
    for e in events:
        if e.kind == "alloc":
            trace.append({"action": "alloc", "size": e.nbytes, "addr": e.key,
                          "frames": [{"filename": "/x/torch/cuda/memory.py", "line": 1, "name": "inner"},
                                     {"filename": "/m/model.py", "line": 7, "name": "forward"}]})
        elif e.kind == "free":
            trace.append({"action": "free_requested", "size": 0, "addr": e.key})
            trace.append({"action": "free_completed", "size": 0, "addr": e.key})
    for i, s in enumerate(extra):
        trace.append({"action": "alloc", "size": s, "addr": -1 - i,
                      "frames": [{"filename": "/site/torch/nn/modules/conv.py", "line": 456, "name": "_conv_forward"}]})
        trace.append({"action": "free_completed", "size": s, "addr": -1 - i})
    trace.append({"action": "segment_free", "size": 2 * MIB, "addr": 99})  # held from before the recording
    trace.append({"action": "segment_alloc", "size": 20 * MIB, "addr": 0})
    trace.append({"action": "snapshot", "size": 0, "addr": 0})
    return {"device_traces": [trace], "segments": []}


def test_a_history_that_mirrors_the_trace_differs_only_in_what_was_added(tmp_path):
    events = workload_trace("torchvision:resnet18", batch=2, mode="training").events
    hist = history_from_snapshot(_mirror(events, extra=(7 * MIB + 3,)), row={"model": "resnet18"})
    assert all(e[0] != "snapshot" for e in hist["events"])  # only allocator actions are kept
    back = read_history(write_history(hist, tmp_path / "h.json.gz"))
    assert back["row"] == {"model": "resnet18"}
    c = compare_history(back, events)
    assert c.missing == [(7 * MIB + 512, 1, "conv.py:456:_conv_forward")]
    assert c.extra == []
    st = replay(events)
    assert c.replay_peak_allocated == st.peak_allocated_bytes and c.replay_segments == st.segments
    # the GPU side's peak: the largest sum of live rounded sizes, the 7 MiB block freed at once
    live, peak, size = 0, 0, {}
    for e in events:
        if e.kind == "alloc":
            size[e.key] = -(-e.nbytes // 512) * 512 or 512
            live += size[e.key]
            peak = max(peak, live)
        elif e.kind == "free":
            live -= size.pop(e.key)
    assert c.gpu_peak_allocated == max(peak, live + 7 * MIB + 512)
    assert (c.gpu_segments, c.gpu_segment_bytes, c.gpu_peak_reserved) == (1, 20 * MIB, 20 * MIB)
    assert "only on the GPU: 7.00 MiB x1 (conv.py:456:_conv_forward)" in c.summary()


def test_sizes_only_the_trace_makes_are_listed():
    events = workload_trace("torchvision:resnet18", batch=2).events
    snap = _mirror([e for e in events if not (e.kind == "alloc" and e.op == "cudnn_workspace")])
    c = compare_history(history_from_snapshot(snap), events)
    assert c.extra and c.missing == []
    assert all(n >= 1 for _, n in c.extra)


def test_bad_histories_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="no device trace 1"):
        history_from_snapshot({"device_traces": [[]]}, 1)
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    with pytest.raises(ModelLoadError, match="not a readable allocator history"):
        read_history(tmp_path / "bad.json.gz")
    write_history({"format": "other", "version": 1, "events": []}, tmp_path / "foreign.json.gz")
    with pytest.raises(ModelLoadError, match="not an allocator history"):
        read_history(tmp_path / "foreign.json.gz")
    write_history({"format": "costmodel.alloc_history", "version": 1, "events": [["alloc", 1]]}, tmp_path / "x.json.gz")
    with pytest.raises(ModelLoadError, match="events must be"):
        read_history(tmp_path / "x.json.gz")


def test_the_gpu_script_runs_its_plumbing_on_the_cpu(tmp_path):
    run = [sys.executable, str(REPO / "benchmarks" / "gpu_memory_history.py")]
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    p = subprocess.run(run + ["--device", "cpu", "--out", str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (f,) = tmp_path.glob("*.json.gz")
    h = read_history(f)
    assert h["row"]["mode"] == "train" and h["events"] == [] and "plumbing" in h["note"]
    p = subprocess.run(run + ["--compare", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0 and "no allocator actions" in p.stdout
    p = subprocess.run(run + ["--device", "tpu"], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 2 and "--device must be cuda, cuda:N or cpu; got 'tpu'" in p.stderr
