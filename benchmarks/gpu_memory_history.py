"""The GPU caching allocator's own history of chosen rows, and the replay set against it.

    python benchmarks/gpu_memory_history.py [--out DIR] [--device cuda|cpu] [--rows N] [--budget S]
    python benchmarks/gpu_memory_history.py --compare DIR

On a GPU (``--device cuda``, the default), each chosen row is measured again with the data protocol
(:func:`costmodel.measure.measure`) while ``torch.cuda.memory._record_memory_history`` records every
allocator action. ``DIR/<n>_<model>_<mode>_<dtype>_b<batch>.json.gz`` holds the compact history and
the measured row (:mod:`costmodel.analysis.allochistory`). About 10 s per row; ``--budget`` (default
240 s) stops cleanly between rows.

The rows, in this order: the packaged training rows whose reserved peak the replay falls furthest
short of (from ``costmodel/data/h200/memory_fit.json``; ``--rows`` of them, default 8), then the
inference rows the replay misses most in allocated memory: vgg11 at batch 128 (its first
convolution's workspace is smaller than the trace's rule) and ConvMixer-1024/20 at batch 128 (a
workspace the trace does not make).

``--compare DIR`` (any machine) sets each history against the trace of its workload: segments,
peaks, and the allocation sizes that only the GPU made (with the Python frame that made the first),
or only the trace.

``--device cpu`` checks the script's plumbing on a machine without a GPU: one small row measured on
the CPU, written without a history (the CPU has no caching allocator to record).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

#: inference rows (spec, batch, dtype) whose allocated peak the replay misses most
INFERENCE_ROWS = [
    ({"family": "vgg", "name": "vgg11", "res": 224, "src": "tv"}, 128, "fp32"),
    ({"family": "convmixer", "name": "convmixer_1024_20_ks9_p14", "res": 224, "src": "timm"}, 128, "fp32"),
]


def chosen_rows(n_train: int) -> list[dict]:
    """The work list: ``n_train`` training rows by shortfall, then :data:`INFERENCE_ROWS`."""
    from costmodel.analysis.memreplay import MEMORY_FIT, load_memory_fit
    from costmodel.datasets import default_root

    fit = load_memory_fit(default_root() / "h200" / MEMORY_FIT)
    worst = sorted(fit["rows"], key=lambda r: r["replayed_reserved_mb"] / r["peak_reserved_mb"])[:n_train]
    rows = [{"spec": r["spec"], "batch": r["batch"], "mode": "train", "dtype": r["dtype"]} for r in worst]
    return rows + [{"spec": s, "batch": b, "mode": "infer", "dtype": d} for s, b, d in INFERENCE_ROWS]


def _name(i: int, w: dict) -> str:
    return f"{i:02d}_{w['spec']['name']}_{w['mode']}_{w['dtype']}_b{w['batch']}.json.gz"


def record(out: Path, device: str, n_train: int, budget_s: float) -> int:
    import torch

    from costmodel.analysis.allochistory import history_from_snapshot, write_history
    from costmodel.measure import measure

    out.mkdir(parents=True, exist_ok=True)
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("gpu_memory_history: no CUDA device; use --device cpu for a plumbing check", file=sys.stderr)
        return 2
    work = chosen_rows(n_train) if cuda else [{"spec": {"family": "resnet", "name": "resnet18", "res": 64,
                                                        "src": "tv"}, "batch": 2, "mode": "train", "dtype": "fp32"}]
    t0 = time.perf_counter()
    for i, w in enumerate(work):
        path = out / _name(i, w)
        if path.exists():
            print(f"   {path.name}: kept (already recorded)")
            continue
        if time.perf_counter() - t0 > budget_s:
            print(f"   budget of {budget_s:.0f} s spent: {len(work) - i} rows left (run again to resume)")
            break
        if cuda:
            torch.cuda.memory._record_memory_history(max_entries=2_000_000, context="alloc", stacks="python")
        try:
            row = measure(w["spec"], w["batch"], device=device, mode=w["mode"], dtype=w["dtype"])
            snap = torch.cuda.memory._snapshot() if cuda else {"device_traces": [[]]}
        finally:
            if cuda:
                torch.cuda.memory._record_memory_history(enabled=None)
        keep = {k: row.get(k) for k in ("spec", "mode", "dtype", "batch", "iters", "latency_ms", "weights_mb",
                                         "peak_alloc_mb", "peak_reserved_mb", "nvml_used_mb", "device")}
        keep["torch"] = torch.__version__
        keep["cudnn"] = torch.backends.cudnn.version() if cuda else None
        hist = history_from_snapshot(snap, torch.cuda.current_device() if cuda else 0, row=keep)
        if not cuda:
            hist["note"] = "recorded on the CPU: no caching allocator, no history (a plumbing check)"
        write_history(hist, path)
        print(f"   {path.name}: {len(hist['events']):,} allocator actions, peak allocated "
              f"{keep['peak_alloc_mb'] or 0:,.0f} MiB, reserved {keep['peak_reserved_mb'] or 0:,.0f} MiB "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


def compare(folder: Path) -> int:
    from costmodel.analysis.allochistory import compare_history, read_history
    from costmodel.analysis.allocator import MIB
    from costmodel.analysis.memreplay import overheads_for, workload_trace

    files = sorted(folder.glob("*.json.gz"))
    if not files:
        print(f"gpu_memory_history: no histories in {folder}", file=sys.stderr)
        return 2
    ws = int(round(overheads_for("h200").workspace("vision") * MIB))
    for p in files:
        h = read_history(p)
        row = h["row"]
        if not h["events"]:
            print(f"{p.name}: no allocator actions ({h.get('note', 'empty history')})")
            continue
        trace = workload_trace(row["spec"], batch=row["batch"], dtype=row["dtype"],
                               mode="training" if row["mode"] == "train" else "inference")
        c = compare_history(h, trace.events, workspace_bytes=ws)
        print(f"{p.name} (measured: allocated {row.get('peak_alloc_mb') or 0:,.0f}, reserved "
              f"{row.get('peak_reserved_mb') or 0:,.0f} MiB)\n   {c.summary()}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_memory_history")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a plumbing check)")
    ap.add_argument("--rows", type=int, default=8, help="training rows by shortfall (default 8)")
    ap.add_argument("--budget", type=float, default=240.0, help="stop between rows after this many seconds")
    ap.add_argument("--compare", metavar="DIR", help="set recorded histories against the replay")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    if a.rows < 0:
        ap.error(f"--rows must be at least 0; got {a.rows}")
    if a.compare:
        return compare(Path(a.compare))
    if not (a.device == "cpu" or a.device.startswith("cuda")):
        ap.error(f"--device must be cuda, cuda:N or cpu; got {a.device!r}")
    out = Path(a.out)
    if a.device.startswith("cuda"):
        out = out / "history"
    return record(out, a.device, a.rows, a.budget)


if __name__ == "__main__":
    sys.exit(main())
