"""Per-operator GPU labels in the timeline's fit.

The timeline's device lane is one efficiency network under each operator's roofline bound.  Fitted
to whole-model latencies alone, it only has to get each row's *sum* right, and it can (and does)
trade errors between operator kinds: measured per operator on an H200 (``benchmarks/timeline_gpu_ops.py``),
the lane fitted that way predicts elementwise kernels 2-3x too slow and convolutions and norms too
fast, errors that cancel on the packaged architectures' mix and not on another mix.  The runs
profiled per operator on a GPU (``costmodel/data/h200/ops``, ``collect --ops``) label the kernels
directly: with :attr:`TimelineConfig.op_weight` > 0 the fit adds, to the whole-model loss, the
mean log error of every labelled kernel of at least :data:`MIN_LABEL_US`, each weighted by its
share of its run's measured kernel time (so a run's long kernels, which set its latency, count
most, and every run counts the same).  Skinny matrix products (:mod:`._skinny`) are left out: their
time comes from a measured line, not from the network these labels teach.

Only the device lane learns from these labels (kernel durations say nothing about the host that
launched them); the host lane and the energy model still come from the whole-model rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ._optable import PHASES, op_tables_by_device

#: kernels shorter than this are left out of the labels (timer resolution and launch jitter)
MIN_LABEL_US = 2.0


@dataclass
class OpRun:
    """One profiled run: its graph (as profiled), device, mode and ``(node id, phase, device_us)`` labels."""

    graph: object
    device: object
    mode: str
    labels: list
    family: str
    model: str
    workload: tuple  # (model with resolution, mode, dtype, batch): what a random split holds out


def packaged_op_runs(root: str | Path | None = None, *, device: str = "h200", progress: bool = False) -> list[OpRun]:
    """The runs profiled per operator on a GPU (``<root>/<device>/ops``, default: the packaged H200's),
    rebuilt as profiled."""
    from ..datasets import default_root
    from ..devices import get_device
    from ._opmodel import load_op_dataset

    base = Path(root) if root is not None else default_root()
    ds, graphs, ops, _ = load_op_dataset(base / device, device="ops", progress=progress)
    runs = []
    for r, g, lab in zip(ds.rows, graphs, ops):
        keep = [(n.id, ph, y) for n, ph, y, _ in lab if y >= MIN_LABEL_US]
        if keep:
            runs.append(OpRun(g, get_device(r.device), r.mode, keep, r.family, r.model, workload_key(r)))
    return runs


def workload_key(r) -> tuple:
    """What identifies a measured workload across hosts: the model (with its resolution), mode, dtype, batch."""
    spec = getattr(r, "spec", None)
    res = spec.get("res") if isinstance(spec, dict) else None
    return (r.model, res, r.mode, r.dtype, r.batch)


class OpLabels:
    """The labelled kernels of some runs as tensors: features (standardized like the fit's), bounds, labels, weights."""

    def __init__(self, runs: Sequence[OpRun], mean: np.ndarray, std: np.ndarray):
        import torch

        tables = op_tables_by_device([r.graph for r in runs], [r.device for r in runs], [r.mode for r in runs])
        xs, bs, ys, ws = [], [], [], []
        for run, t in zip(runs, tables):
            # skinny products are costed by their measured line (._skinny), not the network: not its labels
            line = np.zeros(len(t.kernel), bool) if t.stream_us is None else np.isfinite(t.stream_us)
            where = {(int(n), int(p)): k for k, (n, p, kern, s) in enumerate(zip(t.node, t.phase, t.kernel, line))
                     if kern > 0 and not s}
            sel = [(where[(nid, PHASES.index(ph))], y) for nid, ph, y in run.labels if (nid, PHASES.index(ph)) in where]
            if not sel:
                continue
            k = np.asarray([s[0] for s in sel])
            y = np.asarray([s[1] for s in sel], np.float64)
            xs.append(t.x[k])
            bs.append(t.bound_s[k] * 1e6)
            ys.append(y)
            ws.append(y / y.sum())
        self.runs = len(ys)
        self.n = int(sum(len(y) for y in ys))
        if not self.n:
            from .._errors import InvalidInputError

            raise InvalidInputError("no labelled kernel of the operator runs matches an operator of their graphs")
        self.x = torch.as_tensor((np.concatenate(xs) - mean) / std, dtype=torch.float32)
        self.bound_us = torch.as_tensor(np.concatenate(bs), dtype=torch.float32)
        self.log_y = torch.as_tensor(np.log(np.concatenate(ys)), dtype=torch.float32)
        self.w = torch.as_tensor(np.concatenate(ws) / self.runs, dtype=torch.float32)

    def loss(self, model, kind: str, min_efficiency: float):
        """Weighted mean absolute (``l1``) or squared (``l2``) log error of the labelled kernels under ``model``."""
        import torch
        import torch.nn.functional as F

        eff = min_efficiency + (1 - min_efficiency) * torch.sigmoid(model.mlp(self.x).squeeze(-1))
        err = torch.log(self.bound_us / eff + F.softplus(model.floor)) - self.log_y
        return (self.w * (err.abs() if kind == "l1" else err ** 2)).sum()

    def summary(self) -> dict:
        return {"op_runs": self.runs, "op_labels": self.n}


def operator_times(pred, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> list[dict]:
    """:meth:`TimelinePredictor.operator_times`: every kernel's predicted device and host time."""
    from .._errors import ModelLoadError
    from ..devices import get_device
    from ._base import validate_mode, validate_optimizer
    from ._optable import _is_cpu, op_table
    from ._timeline_start import row_op

    if pred.params is None:
        raise ModelLoadError("the timeline predictor is not fitted (fit() it or load a saved one)")
    dev = get_device(device)
    m = validate_mode(mode or graph.meta.get("mode", "inference"))
    if pred._has_cpu() and _is_cpu(dev):
        from ._opmodel import compose

        c = compose(graph, pred.cpu.figs, mode=m)
        d_us = pred.cpu.model.predict_us(c.X, c.bound_us)
        nodes, phases = c.node, c.phase
        eff = np.where(d_us > 0, c.bound_us / np.maximum(d_us, 1e-12), 0.0)
        h_ms, hcls = [None] * len(d_us), [None] * len(d_us)
    else:
        t = op_table(graph, dev, mode=m, optimizer=validate_optimizer(optimizer))
        d_us, eff = pred._device_us(t)
        h_us = pred._host_vector()[0][t.host_class] * t.host_count * pred._host_multiplier(t)
        keep = t.kernel > 0
        d_us, eff, nodes, phases, h_ms, hcls = (d_us[keep], eff[keep], t.node[keep], t.phase[keep],
                                                h_us[keep] / 1e3, t.host_class[keep])
    return [{"node": int(n), "op": row_op(graph, int(n), c), "phase": PHASES[int(ph)],
             "device_ms": float(d) / 1e3, "efficiency": float(e), "host_ms": None if h is None else float(h)}
            for n, ph, d, e, h, c in zip(nodes, phases, d_us, eff, h_ms, hcls)]
