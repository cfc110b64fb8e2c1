"""Intervals around the replayed memory, calibrated on held-out residuals, and the device's memory fit
file that keeps them (``memory_fit.json``: the training allowance, and each memory path's calibration).

The replay is exact where the trace and the allocator are (a deterministic step, its allocated peak
within 0.5 %); what is left is what neither records: the context a process has grown to, the library
workspace its history holds, the placement of blocks that a growing KV cache fragments. Those scatter
per row, so an interval says how far: split-conformal bounds on ``log(measured / replayed)`` over the
packaged rows of the device, each row's residual taken with the overheads fitted *without its own
family* (what ``benchmarks/memory.py`` scores), per workload group (vision inference per dtype, vision
training, transformer forward / prefill / decode). A group with fewer than :data:`MIN_GROUP_ROWS`
rows, or none, uses every row pooled, and the estimate says which.

The bounds are the signed quantiles, not a symmetric width: the replay's misses are mostly short
(a training step's or a decode loop's extra reservations), so the upper bound sits further out than
the lower. The upper bound is what a MIG slice must hold: the pick takes it (``recommend_mig``'s
margin), as the learned predictors' picks take their intervals' upper ends.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

#: the shipped training allowance and memory intervals of a device's packaged data folder
MEMORY_FIT = "memory_fit.json"
_FIT_FORMAT = "costmodel.memory_fit"
_FIT_VERSION = 1
_DATA = Path(__file__).resolve().parent.parent / "data"

#: the share of held-out rows an interval is calibrated to hold
COVERAGE = 0.9
#: a group with fewer calibration rows than this uses the pooled bounds
MIN_GROUP_ROWS = 10
#: the pooled group's name
POOLED = "all"
#: where a memory fit keeps the calibration of each memory path's intervals
INTERVAL_KEYS = {"replay": "intervals", "liveness-fallback": "walk_intervals"}


def interval_group(kind: str, mode: str, dtype: str, phase: str | None = None) -> str:
    """The calibration group of a workload: ``vision infer fp32``, ``vision train fp32``,
    ``transformer prefill``... (``kind``: ``vision`` or ``transformer``)."""
    if kind == "transformer":
        return f"transformer {'training' if mode == 'training' else (phase or 'forward')}"
    return f"vision {'train' if mode == 'training' else 'infer'} {dtype}"


def row_group(row: Mapping) -> str:
    """:func:`interval_group` of a measured row (the packaged rows' fields)."""
    if "model_type" in row:
        return interval_group("transformer", "training" if row["mode"] == "training" else "inference",
                              row["dtype"], row["mode"])
    return interval_group("vision", "training" if row["mode"] == "train" else "inference", row["dtype"])


def conformal_bounds(log_ratios: Sequence[float], coverage: float = COVERAGE) -> tuple[float, float]:
    """Split-conformal signed bounds of ``log(measured / predicted)``: the ``(1 + coverage) / 2``
    quantile of the residuals and the ``(1 - coverage) / 2`` one, each with the finite-sample
    correction (the ``ceil((n + 1) q)``-th smallest; the extreme residual where ``n`` is small)."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage!r}")
    v = sorted(float(x) for x in log_ratios)
    if not v or not all(math.isfinite(x) for x in v):
        raise ValueError("conformal bounds need finite residuals")
    n, q = len(v), (1 + coverage) / 2
    k = min(n, math.ceil((n + 1) * q))
    return v[n - k], v[k - 1]


def fit_intervals(residuals: Sequence[Mapping], coverage: float = COVERAGE) -> dict[str, Any]:
    """The bounds of every group with enough rows, and the pooled ones, from held-out residual records
    (``group``, ``family``, ``log_ratio``); the records are kept with them, so a loader can check."""
    recs = [{"group": str(r["group"]), "family": str(r["family"]), "log_ratio": round(float(r["log_ratio"]), 6)}
            for r in residuals]
    if not recs:
        raise ValueError("no residuals to calibrate memory intervals on")
    groups: dict[str, list[float]] = {}
    for r in recs:
        groups.setdefault(r["group"], []).append(r["log_ratio"])
    out = {POOLED: _bounds([r["log_ratio"] for r in recs], coverage)}
    out.update({g: _bounds(v, coverage) for g, v in sorted(groups.items()) if len(v) >= MIN_GROUP_ROWS})
    return {"coverage": coverage, "held_out": "family", "groups": out, "residuals": recs}


def _bounds(v: Sequence[float], coverage: float) -> dict[str, Any]:
    lo, hi = conformal_bounds(v, coverage)
    return {"lo": lo, "hi": hi, "rows": len(v)}


def check_intervals(blob: Any) -> str | None:
    """What is wrong with a stored ``intervals`` entry (``None``: nothing): every group's bounds must be
    the ones its residual records give."""
    if not isinstance(blob, Mapping):
        return "intervals must be an object"
    cov, recs, groups = blob.get("coverage"), blob.get("residuals"), blob.get("groups")
    if not isinstance(cov, (int, float)) or not 0 < cov < 1:
        return f"intervals' coverage must be a number in (0, 1); got {cov!r}"
    if not isinstance(recs, list) or not isinstance(groups, Mapping):
        return "intervals must list residuals and groups"
    try:
        again = fit_intervals(recs, float(cov))["groups"]
    except (TypeError, KeyError, ValueError) as e:
        return f"intervals' residuals are damaged ({e})"
    if set(again) != set(groups):
        return f"intervals' groups {sorted(groups)} are not the ones its residuals give ({sorted(again)})"
    for g, b in again.items():
        s = groups[g]
        if not isinstance(s, Mapping) or s.get("rows") != b["rows"] or any(
                not isinstance(s.get(k), (int, float)) or abs(s[k] - b[k]) > 1e-9 for k in ("lo", "hi")):
            return f"intervals' bounds for {g!r} are not the ones its {b['rows']} residuals give"
    return None


def bounds_for(intervals: Mapping, group: str) -> tuple[float, float, str, int]:
    """``(lo, hi, group used, rows)`` for ``group``: its own bounds, or the pooled ones."""
    g = group if group in intervals["groups"] else POOLED
    b = intervals["groups"][g]
    return float(b["lo"]), float(b["hi"]), g, int(b["rows"])


def load_memory_fit(path) -> dict:
    """A device's ``memory_fit.json``, checked: its format and version, a finite allowance in [0, 0.5]
    that is the median of its rows' ratios. A damaged or foreign file is an error naming what is wrong."""
    from .._errors import ModelLoadError

    path = Path(path)
    try:
        blob = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: not a readable memory fit ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != _FIT_FORMAT:
        raise ModelLoadError(f"{path}: not a memory fit (format {blob.get('format') if isinstance(blob, dict) else None!r}"
                             f", expected {_FIT_FORMAT!r})")
    if blob.get("version") != _FIT_VERSION:
        raise ModelLoadError(f"{path}: memory fit version {blob.get('version')!r}; this costmodel reads "
                             f"version {_FIT_VERSION}")
    slack, rows = blob.get("train_reserved_slack"), blob.get("rows")
    if not isinstance(slack, (int, float)) or not (0.0 <= slack <= 0.5):
        raise ModelLoadError(f"{path}: train_reserved_slack must be a number in [0, 0.5]; got {slack!r}")
    try:
        ratios = [float(r["peak_reserved_mb"]) / float(r["replayed_reserved_mb"]) - 1 for r in rows]
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        raise ModelLoadError(f"{path}: rows must list peak_reserved_mb and replayed_reserved_mb") from None
    if not ratios or abs(max(0.0, statistics.median(ratios)) - slack) > 1e-6:
        raise ModelLoadError(f"{path}: train_reserved_slack {slack!r} is not the median of its {len(ratios)} rows")
    for key in INTERVAL_KEYS.values():
        if key in blob and (bad := check_intervals(blob[key])):
            raise ModelLoadError(f"{path}: {key}: {bad}")
    return blob


def write_memory_fit(path, slack: float, rows: list[dict], *, device: str, fitted_by: str,
                     intervals: dict | None = None, walk_intervals: dict | None = None) -> Path:
    """Write a device's ``memory_fit.json`` (one line per row; ``intervals`` and ``walk_intervals``: the
    calibrations of the replay's and of the graph walk's intervals, :func:`fit_intervals`) and read it
    back through :func:`load_memory_fit`, so a file that would not load is never left behind unnoticed."""
    from .. import __version__

    path = Path(path)
    head = json.dumps({"format": _FIT_FORMAT, "version": _FIT_VERSION, "device": device, "fitted_by": fitted_by,
                       "costmodel_version": __version__, "train_reserved_slack": slack}, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(r) for r in rows)
    tail = ""
    for key, cal in (("intervals", intervals), ("walk_intervals", walk_intervals)):
        if cal is not None:
            res = ",\n".join("   " + json.dumps(r) for r in cal["residuals"])
            rest = json.dumps({k: v for k, v in cal.items() if k != "residuals"})[1:-1]
            tail += f",\n \"{key}\": {{{rest},\n  \"residuals\": [\n{res}\n  ]}}"
    path.write_text(f"{head},\n \"rows\": [\n{body}\n ]{tail}\n}}\n")
    load_memory_fit(path)
    return path


@lru_cache(maxsize=None)
def memory_intervals(device: str, path: str = "replay") -> dict | None:
    """The calibration of ``path``'s memory intervals (``replay`` or ``liveness-fallback``, the graph walk)
    in a packaged data folder's ``memory_fit.json`` (``None``: none)."""
    if path not in INTERVAL_KEYS:
        raise ValueError(f"path must be one of {', '.join(INTERVAL_KEYS)}; got {path!r}")
    fit = _DATA / device / MEMORY_FIT
    return load_memory_fit(fit).get(INTERVAL_KEYS[path]) if fit.exists() else None
