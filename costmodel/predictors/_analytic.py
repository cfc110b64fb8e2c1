"""The analytic predictor: roofline latency, liveness memory, utilization power.

No parameters are fitted to measurements: every constant is a datasheet
number from the device database or a documented default of
:class:`~costmodel.analysis.RooflineConfig`.  It answers for any device and
any graph, and it is the floor every learned predictor has to beat
(``benchmarks/analytic_floor.py`` prints its error on the measured data).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..analysis import (
    RooflineConfig,
    allocator_reserved_bytes,
    average_power_w,
    memory_breakdown_many,
    roofline_many,
)
from ..devices import get_device
from ..estimate import Estimate, finish_estimate
from ..ir import OP_KINDS, node_columns
from ._base import Predictor, built_graphs, items_named, validate_mode, validate_optimizer, with_mode_notes
from ._registry import read_artifact_config, register_predictor

MB = 2**20  # bytes per MB (as the analysis reports memory)
_OTHER = OP_KINDS.index("other")


@register_predictor("analytic")
class AnalyticPredictor(Predictor):
    """Physics-only cost model (see module docstring)."""

    name = "analytic"
    version = "1"
    learns_memory = False

    def __init__(self, config: RooflineConfig | None = None) -> None:
        self.config = config or RooflineConfig()

    @classmethod
    def default(cls) -> "AnalyticPredictor":
        return cls()

    def predict(self, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> Estimate:
        return self._predict(built_graphs([graph], "predict")[0], device, mode=mode, optimizer=optimizer,
                             mig_details=True)

    def predict_many(self, graphs, device, *, mode: str | None = None, optimizer: str = "adam") -> list[Estimate]:
        graphs = built_graphs(graphs)
        dev = get_device(device)
        modes = [validate_mode(mode or g.meta.get("mode", "inference")) for g in graphs]
        with items_named():
            ests = self.estimates(graphs, dev, modes, validate_optimizer(optimizer))
        return with_mode_notes(graphs, [finish_estimate(e, dev, version=self.version, graph=g) for g, e in
                                        zip(graphs, ests)], mode)

    def _predict(self, graph, device, *, mode, optimizer, mig_details: bool) -> Estimate:
        """``mig_details=False`` skips the slice-penalty rooflines (learned
        predictors recompute them for their own MIG pick)."""
        dev = get_device(device)
        mode = validate_mode(mode or graph.meta.get("mode", "inference"))
        est = self.estimates([graph], dev, [mode], validate_optimizer(optimizer))[0]
        return with_mode_notes([graph], [finish_estimate(est, dev, version=self.version,
                                                         graph=graph if mig_details else None)], mode)[0]

    def estimates(self, graphs, dev, modes, optimizer: str, *, columns=None) -> list[Estimate]:
        """The analytic estimates of ``graphs`` on the device ``dev`` (validated modes and optimizer),
        before :func:`~costmodel.estimate.finish_estimate`; ``columns``: the graphs'
        :func:`~costmodel.ir.node_columns`, when the caller has them (they are read once for all)."""
        cols = columns if columns is not None else node_columns(graphs)
        rls = roofline_many(graphs, dev, modes=modes, cfg=self.config, columns=cols)
        mems = memory_breakdown_many(graphs, modes=modes, optimizer=optimizer, columns=cols)
        kernels = np.diff(np.concatenate([[0], np.cumsum(~cols.view)])[cols.offsets])
        out = []
        for g, (graph, mode, rl, mem) in enumerate(zip(graphs, modes, rls, mems)):
            reserved = allocator_reserved_bytes(mem.total_bytes)
            memory_mb = dev.framework_overhead_mb + reserved / MB
            power = average_power_w(dev, rl.latency_s, rl.busy_s)
            energy = power * rl.latency_s
            span = cols.span(g)
            out.append(Estimate(
                assumptions=[*graph_assumptions(graph, cols, g), *dev.assumptions, *rl.assumptions],
                latency_ms=rl.latency_ms,
                memory_mb=memory_mb,
                energy_j=energy,
                power_w=power,
                mig_profile=None,
                predictor=self.name,
                predictor_version=self.version,
                device=dev.name,
                model=graph.meta.get("name"),
                batch=graph.meta.get("batch"),
                mode=mode,
                dtype=graph.meta.get("dtype", "fp32"),
                flops=float(sum(cols.flops[span].tolist())) * (3.0 if mode == "training" else 1.0),
                params=graph.params,
                details={
                    "memory_breakdown_mb": mem.to_mb(),
                    "framework_overhead_mb": dev.framework_overhead_mb,
                    "kernels": int(kernels[g]),
                    "ops_bound_by": rl.bound_counts(),
                    "mig": None,
                },
            ))
        return out

    def fit(self, dataset) -> "AnalyticPredictor":
        """Nothing to fit: the analytic model has no learned parameters."""
        return self

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"predictor": self.name, "version": self.version, "config": asdict(self.config)}
        (path / "config.json").write_text(json.dumps(cfg, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "AnalyticPredictor":
        from .._errors import SchemaMismatchError

        p = Path(path)
        cfg = read_artifact_config(p, {cls.name})
        try:
            return cls(RooflineConfig(**cfg.get("config", {})))
        except TypeError as e:
            raise SchemaMismatchError(f"{p} has an incompatible analytic config: {e}") from None


def graph_assumptions(graph, cols=None, g: int = 0) -> list[str]:
    """What featurizing ``graph`` assumed: the notes its frontend recorded in ``meta["assumptions"]``
    (a capture that fell back to another) and the operators outside the op vocabulary (kind
    ``other``, costed without FLOPs), whichever frontend emitted them. ``cols``: node columns holding
    ``graph`` as their graph ``g`` (its kinds are read from them)."""
    notes = [str(a) for a in graph.meta.get("assumptions") or ()]
    if cols is None:
        other = list(dict.fromkeys(n.op for n in graph.nodes if n.kind == "other"))
    else:
        span = cols.span(g)
        hits = np.flatnonzero(cols.kind[span] == _OTHER)
        other = list(dict.fromkeys(graph.nodes[i].op for i in hits.tolist()))
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        notes.append(f"{len(other)} operator type(s) outside the op vocabulary costed as kind 'other' "
                     f"(no FLOPs): {shown}")
    return notes
