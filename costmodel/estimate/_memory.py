"""Memory of an estimate from the execution path (allocation trace + caching-allocator replay).

A predictor decides latency, energy and its own guess at memory; when the
model can be run on fake tensors (an ``nn.Module``, a zoo name, a data spec)
the memory is taken from :func:`costmodel.analysis.memreplay.replay_memory`
instead, and the estimate says which path answered (``details["memory"]``).
A graph alone (ONNX, Relax, a CostGraph) has no module to run: a predictor
that learned memory keeps its own; one whose memory is the analytic liveness
model (``timeline``, ``analytic``) gets the graph's liveness walk replayed
through the same caching allocator and overheads (``path`` is
``liveness-fallback``), which is closer to the measured peaks (docs/memory.md).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .._errors import CostModelError
from ._finish import mig_details
from ._types import Estimate
from .mig import recommend_mig

#: what ``estimate(memory=...)`` takes
MEMORY_PATHS = ("replay", "predictor")


def graph_memory_into(est: Estimate, graph, dev, *, mode: str, optimizer: str = "adam",
                      learns_memory: bool = True) -> Estimate:
    """Memory of an estimate made from a graph alone (no module to run), in place: the graph's liveness
    walk replayed through the caching allocator when the predictor learned no memory
    (``learns_memory=False``: its memory is the analytic liveness model's), else the predictor's own;
    ``details["memory"]["path"]`` says which."""
    if not learns_memory:
        return replay_into(est, graph, dev, batch=graph.meta.get("batch") or est.batch or 1, mode=mode,
                           dtype=est.dtype or "fp32", optimizer=optimizer, graph=graph)
    est.details["memory"] = {"path": "predictor", "reason": "a graph alone holds no module to trace; the "
                                                            "predictor's learned memory is kept"}
    return est


def traceable(model) -> bool:
    """Whether the allocation trace can run ``model`` (a module, a zoo name or a data spec)."""
    from ..frontends import looks_like_onnx_path

    if isinstance(model, dict):
        return True
    if isinstance(model, (str, Path)):
        return not looks_like_onnx_path(model)
    return hasattr(model, "named_parameters") and hasattr(model, "forward")


#: what an estimate whose memory is the graph's liveness walk says
_WALK_NOTE = "memory: a liveness walk over the graph replayed through the caching allocator"

#: how a predictor that does not learn memory says where its memory came from (dropped once the replay answers)
PREDICTOR_MEMORY_NOTE = "memory from the analytic liveness model"


def _replay_note(note: str) -> bool:
    """Whether ``note`` is one :func:`replay_into` writes (or the predictor's own memory note), so that a second
    replay into the same estimate replaces it rather than adding to it."""
    return (note.startswith((PREDICTOR_MEMORY_NOTE, _WALK_NOTE, "memory overheads: ",
                             "memory: a training step's reserved peak"))
            or (note.startswith("MIG slice: ") and "upper end of the memory interval" in note))


def replay_into(est: Estimate, model, dev, *, batch: int, mode: str, dtype: str, optimizer: str, input_shape=None,
                inputs=None, graph=None, seq: int | None = None, phase: str | None = None,
                autocast: str | None = None, lora: dict | None = None, checkpointing: bool = False,
                target_seq: int | None = None, ssm_kernels: str = "reference") -> Estimate:
    """Put the replayed memory into ``est`` (in place; returned), or say why the predictor's stays
    (``seq``, ``phase`` and ``target_seq``: a transformer workload's)."""
    from ..analysis.memreplay import replay_memory

    before = est.memory_mb
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mem = replay_memory(model, dev, batch=batch, mode=mode, dtype=dtype,
                                optimizer=optimizer, input_shape=input_shape,
                                inputs=inputs, seq=seq, phase=phase, autocast=autocast,
                                **({"lora": lora} if lora else {}),
                                **({"checkpointing": True} if checkpointing else {}),
                                **({"target_seq": target_seq} if target_seq is not None else {}),
                                **({"ssm_kernels": ssm_kernels} if ssm_kernels != "reference" else {}),
                                # the estimate's own graph, walked if the module cannot run on fake tensors
                                **({"graph": graph} if graph is not None and autocast is None else {}))
    except (CostModelError, RuntimeError, TypeError, ValueError) as e:
        est.details["memory"] = {"path": "predictor", "reason": f"{type(e).__name__}: {e}"}
        est.assumptions = [*est.assumptions, f"memory: from the {est.predictor} predictor (the allocation trace "
                                             f"could not run: {e})"]
        return est
    for w in caught:  # what the trace had to assume; a library's notice of a renamed function is not that
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
            est.assumptions = [*est.assumptions, str(w.message)]
    # the predictor's own word on how it got its memory, or an earlier replay's, no longer applies
    est.assumptions = [a for a in est.assumptions if not _replay_note(a)]
    est.memory_mb = mem.memory_mb
    est.allocated_mb = mem.allocated_mb
    est.reserved_mb = mem.reserved_mb
    est.memory_mb_interval = mem.interval_mb
    est.details["memory"] = {
        "path": mem.path,
        "allocated_mb": mem.allocated_mb,
        "reserved_mb": mem.reserved_mb,
        "context_mb": mem.context_mb,
        "workspace_mb": mem.workspace_mb,
        "fragmentation": mem.fragmentation,
        "slack_mb": mem.slack_mb,
        "saved_mb": mem.saved_mb,
        "peak_phase": mem.peak_phase,
        "peak_op": mem.peak_op,
        "predictor_memory_mb": before,
        "interval": mem.interval,
    }
    est.details["memory"]["notes"] = list(mem.notes)
    # the replay is the normal path; what it had to borrow or fall back on is an assumption
    if mem.path != "replay":
        why = ("a graph alone holds no module to run" if model is graph
               else "the module could not run on fake tensors")
        est.assumptions = [*est.assumptions, f"{_WALK_NOTE} ({why})"]
    if "no rows for" in mem.notes[-1]:
        est.assumptions = [*est.assumptions, f"memory {mem.notes[-1]}"]
    if mem.slack_mb:
        est.assumptions = [*est.assumptions, f"memory: a training step's reserved peak is raised by the device's "
                                             f"fitted allowance ({mem.slack_mb:,.0f} MiB; docs/memory.md)"]
    # the slice must hold the memory a run may reach: the interval's upper end where one is calibrated (a
    # calibration whose rows all measured below their replay puts that end under the estimate: no margin)
    margin = max(0.0, mem.interval_mb[1] - mem.memory_mb) if mem.interval_mb else 0.0
    mig = recommend_mig(dev, est.memory_mb, margin_mb=margin)
    est.mig_profile = mig.name if mig else None
    plain = recommend_mig(dev, est.memory_mb)
    if (mig.name if mig else None) != (plain.name if plain else None):
        est.assumptions = [*est.assumptions, f"MIG slice: {mig.name if mig else 'none'} holds the upper end of the "
                                             f"memory interval ({mem.interval_mb[1]:,.0f} MiB), which the smallest "
                                             "slice holding the estimate would not"]
    if graph is not None and "mig" in est.details:
        est.details["mig"] = mig_details(graph, dev, mig, est.mode)
    est.fits_device = est.memory_mb <= dev.capacity_mb
    return est
