"""The timeline's fit settings, where its fit starts, and the intervals it attaches: helpers of
:mod:`._timeline` that need none of its classes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._errors import InvalidInputError
from ._base import conformal_quantile
from ._optable import _HOST_INDEX, HOST_CLASSES, OpTable


#: the fit's loss on the log-latency error: ``l1`` (the default) or ``l2``
LOSSES = ("l1", "l2")

#: said of a graph with neither a module call count (the PyTorch frontend records one) nor module scopes
#: (a Relax module, an ONNX file without them), whose host lane then counts no Python ``nn.Module`` calls
NO_SCOPES_NOTE = ("the graph records no Python module calls (neither a call count nor module scopes: a Relax module, "
                  "an ONNX file without scopes): the host lane counts none, which PyTorch eager makes (resnet50 at "
                  "batch 1: about a quarter of its latency); featurize the nn.Module for the PyTorch-eager number")


@dataclass
class TimelineConfig:
    """How :class:`~costmodel.predictors.TimelinePredictor` is fitted (saved with its artifact)."""

    hidden: int = 32
    host_hidden: int = 16
    epochs: int = 400
    lr: float = 3e-3
    weight_decay: float = 1e-3
    seed: int = 0
    #: ``l1``: mean absolute log error (the median, what MAPE scores; robust to rows measured in a
    #: host's slow spell); ``l2``: mean squared log error, the fit before it
    loss: str = "l1"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidInputError(f"unknown timeline loss {self.loss!r}; valid: {', '.join(LOSSES)}")


def _host_init_us(tables: Sequence[OpTable], rows) -> list[float]:
    """One starting host cost for every class: the median latency per dispatched operator over the
    rows whose roofline explains under a fifth of their time (host-bound on a GPU). A per-class
    least-squares start is ill-posed on a few dozen rows; the fit specializes the classes."""
    lat = np.asarray([r.latency_ms * 1e3 for r in rows])
    work = np.asarray([float(t.bound_s.sum()) * 1e6 for t in tables])
    units = np.asarray([float(t.host_count[t.host_class != _HOST_INDEX["module"]].sum()) for t in tables])
    light = (work < 0.2 * lat) & (units > 0)
    per_op = float(np.median(lat[light] / units[light])) if light.sum() >= 3 else 8.0
    per_op = min(max(per_op, 1.0), 100.0)
    return [per_op if c not in ("module", "call") else (per_op / 4 if c == "module" else 10 * per_op)
            for c in HOST_CLASSES]


def _decode_init_us(tables: Sequence[OpTable], rows, host_raw) -> float:
    """Where the decode-step cost starts: the median, over the decode rows, of what their measured latency
    leaves after the starting host lane (at least a tenth of the latency)."""
    import torch.nn.functional as F

    h = F.softplus(host_raw.detach()).numpy().astype(np.float64)
    left = []
    for t, r in zip(tables, rows):
        if t.decode:
            lat = r.latency_ms * 1e3
            H = float((h[t.host_class] * t.host_count).sum() + h[_HOST_INDEX["call"]])
            left.append(max(lat - H, 0.1 * lat))
    return float(np.median(left)) if left else 1000.0


def interval_table(rows, ests, *, coverage: float = 0.9, held_out: str = "") -> dict[str, Any]:
    """Split-conformal half-widths from held-out estimates: per regime (the estimate's host- or
    device-bound lane) and target, the finite-sample-corrected ``coverage`` quantile of
    ``|log(measured / predicted)|`` (``None`` where fewer than 5 rows have the target)."""
    err: dict[str, dict[str, list[float]]] = {r: {"latency_ms": [], "energy_j": []} for r in ("host", "device")}
    for row, e in zip(rows, ests):
        regime = "host" if e.details["ops"]["bound"] == "host" else "device"
        for t in ("latency_ms", "energy_j"):
            y, p = getattr(row, t), getattr(e, t)
            if math.isfinite(y) and y > 0 and p > 0:
                err[regime][t].append(abs(math.log(y / p)))

    return {"coverage": coverage, "held_out": held_out, "rows": {r: len(err[r]["latency_ms"]) for r in err},
            "log_halfwidth": {r: {t: conformal_quantile(v, coverage) for t, v in err[r].items()} for r in err}}
