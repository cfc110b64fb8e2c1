"""Label collection: measure workloads with the protocol of the packaged data.

Protocol (as in ``costmodel/data/README``-style measurements of the H200):
random weights, ``eval()`` + ``inference_mode`` for inference; 3 warm-up
calls, one calibration call, then N timed calls with N chosen so the timed
window is at least 0.25 s (at least 10 calls, at most 2.5 s unless one call is
longer), split in 3 chunks whose means are ``latency_ms_chunks``.

This module implements the CPU path (wall clock, process RSS; energy only
where RAPL counters are readable, else ``null``).  Rows are appended to a
JSONL file as they are measured, rows already present are skipped (resumable),
and a time budget stops the run cleanly.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Iterable

from ._errors import InvalidInputError

WARMUP = 3
MIN_WINDOW_S = 0.25
MAX_WINDOW_S = 2.5
MIN_CALLS = 10


def row_key(spec: dict, batch: int, mode: str, dtype: str) -> str:
    return json.dumps([spec, batch, mode, dtype], sort_keys=True)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def calls_for(t_call_s: float) -> int:
    """Timed calls for one call of ``t_call_s`` seconds (protocol above)."""
    n = max(MIN_CALLS, math.ceil(MIN_WINDOW_S / max(t_call_s, 1e-9)))
    if n * t_call_s > MAX_WINDOW_S:
        n = max(3, int(MAX_WINDOW_S // max(t_call_s, 1e-9)))
    return n


def measure_cpu(spec: dict, batch: int, *, mode: str = "infer", dtype: str = "fp32", threads: int | None = None) -> dict:
    """Measure one vision spec on this CPU; returns a row in the data's format."""
    import torch

    from .frontends._zoo import build_zoo_model

    if mode != "infer":
        raise InvalidInputError(f"the CPU collector measures inference only, got mode {mode!r}")
    if dtype != "fp32":
        raise InvalidInputError(f"the CPU collector measures fp32 only, got dtype {dtype!r}")
    if threads:
        torch.set_num_threads(threads)
    # real modules with their own random init: index buffers (relative
    # positions in Swin, say) must hold valid values
    zm = build_zoo_model(spec, device="cpu")
    model = zm.module.eval()
    x = torch.randn(batch, *zm.input_shape)
    rss0 = _rss_mb()
    with torch.inference_mode():
        for _ in range(WARMUP):
            model(x)
        t = time.perf_counter()
        model(x)
        t_cal = time.perf_counter() - t
        n = calls_for(t_cal)
        sizes = [n // 3 + (1 if i < n % 3 else 0) for i in range(3)]
        chunks = []
        t_all = time.perf_counter()
        for k in sizes:
            t = time.perf_counter()
            for _ in range(k):
                model(x)
            chunks.append((time.perf_counter() - t) / max(k, 1) * 1e3)
        window = time.perf_counter() - t_all
    latency = sum(c * k for c, k in zip(chunks, sizes)) / n
    return {
        "spec": spec,
        "mode": mode,
        "dtype": dtype,
        "batch": batch,
        "input": list(zm.input_shape),
        "params": sum(p.numel() for p in model.parameters()),
        "iters": n,
        "latency_ms": latency,
        "latency_ms_chunks": [round(c, 5) for c in chunks],
        "window_s": round(window, 4),
        "energy_j": None,
        "power_w": None,
        "rss_mb": _rss_mb(),
        "rss_delta_mb": _rss_mb() - rss0,
        "nvml_used_mb": None,
        "threads": torch.get_num_threads(),
        "device": cpu_name(),
    }


def cpu_name() -> str:
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores)"


def hardware_description() -> dict:
    import torch

    return {
        "name": cpu_name(),
        "costmodel_device": "cpu",
        "kind": "cpu",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "energy": "not readable (no RAPL counters exposed)" if not Path("/sys/class/powercap").exists() else "rapl",
    }


def collect(specs: Iterable[dict], batches: Iterable[int], output: str | Path, *, budget_s: float | None = None,
            cooldown_s: float = 0.5, progress: bool = True) -> int:
    """Measure every (spec, batch) not yet in ``output``; returns rows written."""
    output = Path(output)
    done = set()
    if output.exists():
        for line in output.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done.add(row_key(r["spec"], r["batch"], r["mode"], r["dtype"]))
    todo = [(s, b) for s in specs for b in batches if row_key(s, b, "infer", "fp32") not in done]
    it = todo
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(todo, desc="measuring", unit="row")
    start = time.perf_counter()
    written = 0
    with output.open("a") as f:
        for spec, b in it:
            if budget_s is not None and time.perf_counter() - start > budget_s:
                break
            try:
                row = measure_cpu(spec, b)
            except MemoryError:
                row = {"spec": spec, "mode": "infer", "dtype": "fp32", "batch": b, "oom": True, "device": cpu_name()}
            f.write(json.dumps(row) + "\n")
            f.flush()
            written += 1
            time.sleep(cooldown_s)
    return written
