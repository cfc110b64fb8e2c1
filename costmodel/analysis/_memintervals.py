"""Intervals around the replayed memory, calibrated on held-out residuals.

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

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: the share of held-out rows an interval is calibrated to hold
COVERAGE = 0.9
#: a group with fewer calibration rows than this uses the pooled bounds
MIN_GROUP_ROWS = 10
#: the pooled group's name
POOLED = "all"


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
