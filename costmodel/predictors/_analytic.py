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

from .. import __version__
from ..analysis._memory import MB, allocator_reserved_bytes, memory_breakdown
from ..analysis._roofline import RooflineConfig, average_power_w, roofline
from ..devices import get_device
from ..mig import mig_latency_penalty, recommend_mig
from ._base import Estimate, Predictor, register_predictor, validate_mode, validate_optimizer


@register_predictor("analytic")
class AnalyticPredictor(Predictor):
    """Physics-only cost model (see module docstring)."""

    name = "analytic"
    version = "1"

    def __init__(self, config: RooflineConfig | None = None) -> None:
        self.config = config or RooflineConfig()

    @classmethod
    def default(cls) -> "AnalyticPredictor":
        return cls()

    def predict(self, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> Estimate:
        return self._predict(graph, device, mode=mode, optimizer=optimizer, mig_details=True)

    def _predict(self, graph, device, *, mode, optimizer, mig_details: bool) -> Estimate:
        """``mig_details=False`` skips the slice-penalty rooflines (learned
        predictors recompute them for their own MIG pick)."""
        dev = get_device(device)
        mode = validate_mode(mode or graph.meta.get("mode", "inference"))
        optimizer = validate_optimizer(optimizer)
        rl = roofline(graph, dev, mode=mode, cfg=self.config)
        mem = memory_breakdown(graph, mode=mode, optimizer=optimizer)
        reserved = allocator_reserved_bytes(mem.total_bytes)
        memory_mb = dev.framework_overhead_mb + reserved / MB
        power = average_power_w(dev, rl.latency_s, rl.busy_s)
        energy = power * rl.latency_s
        mig = recommend_mig(dev, memory_mb)
        batch = graph.meta.get("batch")
        bound = {"compute": 0, "memory": 0, "overhead": 0}
        for op in rl.ops:
            bound[op.bound] += 1
        return Estimate(
            assumptions=[*graph_assumptions(graph), *dev.assumptions, *rl.assumptions],
            latency_ms=rl.latency_ms,
            memory_mb=memory_mb,
            energy_j=energy,
            power_w=power,
            mig_profile=mig.name if mig else None,
            predictor=self.name,
            predictor_version=f"{self.version} (costmodel {__version__})",
            device=dev.name,
            model=graph.meta.get("name"),
            batch=batch,
            mode=mode,
            dtype=graph.meta.get("dtype", "fp32"),
            flops=graph.flops * (3.0 if mode == "training" else 1.0),
            params=graph.params,
            throughput_samples_s=(batch / rl.latency_s) if batch and rl.latency_s > 0 else None,
            fits_device=memory_mb <= dev.memory_mb,
            details={
                "memory_breakdown_mb": mem.to_mb(),
                "framework_overhead_mb": dev.framework_overhead_mb,
                "kernels": graph.num_kernels,
                "ops_bound_by": bound,
                "mig": _mig_details(graph, dev, mig, mode) if mig_details else None,
            },
        )

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
        from ._base import read_artifact_config

        p = Path(path)
        cfg = read_artifact_config(p, {cls.name})
        try:
            return cls(RooflineConfig(**cfg.get("config", {})))
        except TypeError as e:
            raise SchemaMismatchError(f"{p} has an incompatible analytic config: {e}") from None


def graph_assumptions(graph) -> list[str]:
    """What featurizing ``graph`` assumed: the notes its frontend recorded in ``meta["assumptions"]``
    (a capture that fell back to another) and the operators outside the op vocabulary (kind
    ``other``, costed without FLOPs), whichever frontend emitted them."""
    notes = [str(a) for a in graph.meta.get("assumptions") or ()]
    other = list(dict.fromkeys(n.op for n in graph.nodes if n.kind == "other"))
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        notes.append(f"{len(other)} operator type(s) outside the op vocabulary costed as kind 'other' "
                     f"(no FLOPs): {shown}")
    return notes


def _mig_details(graph, dev, profile, mode) -> dict | None:
    """Compute share and predicted slow-down of the recommended MIG slice."""
    if profile is None:
        return None
    return {
        "profile": profile.name,
        "memory_mb": profile.memory_mb,
        "compute_fraction": profile.compute_fraction,
        "latency_penalty": mig_latency_penalty(graph, dev, profile, mode=mode),
    }
