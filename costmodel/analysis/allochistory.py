"""A GPU caching allocator's own history, read back and set against the replay of the same step.

The replay (:mod:`costmodel.analysis.memreplay`) is checked against the peaks a measured row records
(``max_memory_allocated``, ``max_memory_reserved``). Where the peaks disagree, the rows cannot say
which allocation the trace missed. PyTorch can: ``torch.cuda.memory._record_memory_history`` logs
every allocator action of a CUDA process (each allocation and free with its size and address, and
each segment the allocator takes from the driver or gives back), and ``torch.cuda.memory._snapshot``
returns that log. ``benchmarks/gpu_memory_history.py`` records it for chosen rows on a GPU and
stores it compactly (:func:`history_from_snapshot`, :func:`write_history`); :func:`compare_history`
then sets it against the trace of the same workload:

* the segments each side takes (count and bytes) and the peaks each side reaches;
* the allocation sizes (rounded as the allocator rounds them) that the GPU made and the trace never
  does, largest total first: the requests outside the trace (a cuDNN algorithm's workspace, a
  layout copy); and those the trace makes and the GPU never did.

Sizes, not order, are compared: the measured history covers the protocol's warm-up and timed calls
(a dozen steps and more), the trace one or two, so counts differ by the number of steps while the
set of sizes does not.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import InvalidInputError, ModelLoadError
from .allocator import MIB, Event, replay, round_size

__all__ = ["HistoryComparison", "compare_history", "history_from_snapshot", "read_history", "write_history"]

_FORMAT = "costmodel.alloc_history"
_VERSION = 1
#: allocator actions kept from a snapshot's device trace (the rest say nothing about sizes)
ACTIONS = ("alloc", "free_completed", "segment_alloc", "segment_free", "segment_map", "segment_unmap", "oom")


def _top_frame(entry: Mapping) -> str:
    for f in entry.get("frames") or ():
        name = f.get("filename", "")
        if name and "torch/cuda/memory" not in name:
            return f"{Path(name).name}:{f.get('line', 0)}:{f.get('name', '')}"
    return ""


def history_from_snapshot(snapshot: Mapping, device: int = 0, *, row: Mapping | None = None) -> dict:
    """The compact history of ``torch.cuda.memory._snapshot()``'s device ``device``: one
    ``[action, size, address, top Python frame]`` per allocator action, and the measured ``row``."""
    traces = snapshot.get("device_traces")
    if not isinstance(traces, list) or device >= len(traces):
        raise InvalidInputError(f"the snapshot has no device trace {device} (was the history recorded?)")
    events = [[e["action"], int(e.get("size", 0)), int(e.get("addr", 0)), _top_frame(e) if e["action"] == "alloc" else ""]
              for e in traces[device] if e.get("action") in ACTIONS]
    return {"format": _FORMAT, "version": _VERSION, "row": dict(row or {}), "events": events}


def write_history(history: Mapping, path) -> Path:
    path = Path(path)
    with gzip.open(path, "wt") as f:
        json.dump(history, f)
    return path


def read_history(path) -> dict:
    """A history written by :func:`write_history`; a damaged or foreign file is an error naming why."""
    path = Path(path)
    try:
        with gzip.open(path, "rt") as f:
            blob = json.load(f)
    except (OSError, ValueError, EOFError) as e:
        raise ModelLoadError(f"{path}: not a readable allocator history ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT or blob.get("version") != _VERSION:
        raise ModelLoadError(f"{path}: not an allocator history of format {_FORMAT!r} version {_VERSION}")
    if not isinstance(blob.get("events"), list) or any(not isinstance(e, list) or len(e) != 4 for e in blob["events"]):
        raise ModelLoadError(f"{path}: events must be [action, size, address, frame] lists")
    return blob


@dataclass
class HistoryComparison:
    """What :func:`compare_history` finds (sizes in bytes, rounded to the allocator's 512-byte blocks)."""

    gpu_segments: int
    gpu_segment_bytes: int
    replay_segments: int
    gpu_peak_allocated: int  # the largest sum of live (rounded) allocations over the whole history
    gpu_peak_reserved: int  # the largest sum of segments taken while recording (earlier ones are not seen)
    replay_peak_allocated: int
    replay_peak_reserved: int
    #: ``(size, GPU count, a Python frame that made it)``: sizes the GPU allocated and the trace never does
    missing: list[tuple[int, int, str]] = field(default_factory=list)
    #: ``(size, trace count)``: sizes the trace allocates and the GPU never did
    extra: list[tuple[int, int]] = field(default_factory=list)

    def summary(self, top: int = 5) -> str:
        miss = ", ".join(f"{s / MIB:.2f} MiB x{n}" + (f" ({fr})" if fr else "") for s, n, fr in self.missing[:top])
        extra = ", ".join(f"{s / MIB:.2f} MiB x{n}" for s, n in self.extra[:top])
        return (f"segments GPU {self.gpu_segments} ({self.gpu_segment_bytes / MIB:,.0f} MiB) / replay "
                f"{self.replay_segments}; peak allocated "
                f"{self.gpu_peak_allocated / MIB:,.0f} / {self.replay_peak_allocated / MIB:,.0f} MiB, reserved "
                f"{self.gpu_peak_reserved / MIB:,.0f} / {self.replay_peak_reserved / MIB:,.0f} MiB; "
                f"only on the GPU: {miss or 'none'}; only in the trace: {extra or 'none'}")


def _gpu_side(events: Iterable[list]) -> tuple[Counter, dict[int, str], int, int, int, int]:
    sizes: Counter = Counter()
    frame: dict[int, str] = {}
    live: dict[int, int] = {}
    held: dict[int, int] = {}  # segments taken while recording (one held from before is freed unseen)
    alloc = reserved = peak_a = peak_r = segs = seg_bytes = 0
    for action, size, addr, fr in events:
        if action == "alloc":
            s = round_size(size)
            sizes[s] += 1
            frame.setdefault(s, fr)
            live[addr] = s
            alloc += s
            peak_a = max(peak_a, alloc)
        elif action == "free_completed":
            alloc -= live.pop(addr, round_size(size))
        elif action in ("segment_alloc", "segment_map"):
            segs += action == "segment_alloc"
            seg_bytes += size
            held[addr] = held.get(addr, 0) + size
            reserved += size
            peak_r = max(peak_r, reserved)
        elif action in ("segment_free", "segment_unmap") and addr in held:
            gone = min(size, held[addr])
            held[addr] -= gone
            if not held[addr]:
                del held[addr]
            reserved -= gone
    return sizes, frame, peak_a, peak_r, segs, seg_bytes


def compare_history(history: Mapping, events: Iterable[Event], *, workspace_bytes: int = 0) -> HistoryComparison:
    """Set a recorded GPU history against a trace's ``events`` replayed through the allocator model
    (``workspace_bytes``: the device's library workspace, as :func:`~costmodel.analysis.allocator.replay`
    takes it)."""
    events = list(events)
    sizes, frame, peak_a, peak_r, segs, seg_bytes = _gpu_side(history["events"])
    st = replay(events, workspace_bytes=workspace_bytes)
    mine: Counter = Counter(round_size(e.nbytes) for e in events if e.kind == "alloc")
    if workspace_bytes > 0 and any(e.kind == "workspace" for e in events):
        mine[round_size(workspace_bytes)] += 1
    missing = sorted(((s, n, frame.get(s, "")) for s, n in sizes.items() if s not in mine),
                     key=lambda t: -t[0] * t[1])
    extra = sorted(((s, n) for s, n in mine.items() if s not in sizes), key=lambda t: -t[0] * t[1])
    return HistoryComparison(segs, seg_bytes, st.segments, peak_a, peak_r,
                             st.peak_allocated_bytes, st.peak_reserved_bytes, missing, extra)
