"""Peak device memory from the execution path: allocation trace -> caching allocator -> driver.

``memory_mb`` (what ``nvidia-smi``/NVML shows, what a MIG slice must hold) is
built in three layers, each measured separately in the packaged data:

1. ``allocated_mb``: the largest sum of live blocks, from the allocation trace
   of the step (:mod:`costmodel.analysis.alloctrace`) replayed through the
   caching allocator (:mod:`costmodel.analysis.allocator`); compared with
   ``torch.cuda.max_memory_allocated()``;
2. ``reserved_mb``: the segments the allocator held at its peak, from the same
   replay; compared with ``max_memory_reserved()``;
3. ``memory_mb = reserved_mb + context_mb``: the CUDA context, the libraries'
   code and handles, which sit outside the allocator.

Two device parameters are not in a trace: the library workspace the process
already holds when the step starts (cuBLAS keeps one per handle; it is
allocated through the caching allocator, so it takes part in the replay), and
the context. Both are fitted per device and workload kind (vision network or
transformer) as medians over the packaged rows of that device: the workspace
from ``weights_mb`` minus the parameters' bytes, the context from
``nvml_used_mb - peak_reserved_mb``. That is four numbers per device, not a
learned model. A device without rows gets the H200's values, and the estimate
says so.

A fifth number is the training allowance: a measured training step reserves
more than its replay does (the H200's vision training rows a median 3.9 %
more, on every host that measured them, while their allocated peaks agree
within 0.5 %), so the caching allocator sees requests outside the trace that
do not reach the allocated peak (the cuDNN backward calls' workspaces are the
likely ones). Until a GPU's allocator history shows which, a replayed training
step's reserved peak is raised by the device's median ratio
(:func:`fit_train_slack`, shipped in ``data/<device>/memory_fit.json`` with
the rows it was fitted on), and the estimate says so.

When the model cannot run on meta tensors (a data-dependent shape, a custom
kernel), or only a CostGraph is at hand, the trace falls back to a liveness
walk over the graph (:func:`graph_trace`), with a warning naming the operator.
The walk simulates what autograd does in a training step (saved buffers, the
reversed pass's gradients, parameter gradients, optimizer state) so that a
graph alone gets the same allocator and overheads as a traced module.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
import warnings
import weakref
from pathlib import Path
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from .._errors import CostModelError, InvalidInputError, UnknownModelError, UnsupportedOpWarning
from ._cast import apply_autocast
from ._memintervals import (
    COVERAGE,
    MEMORY_FIT,
    _DATA,
    bounds_for,
    conformal_bounds,
    fit_intervals,
    interval_group,
    load_memory_fit,
    memory_intervals,
    row_group,
    write_memory_fit,
)
from .allocator import MIB, Event, replay, saved_bytes
from ._llmtrace import trace_llm, trace_llm_training, with_ssm_kernels
from .alloctrace import (
    AllocationTrace,
    TraceError,
    check_autocast,
    check_optimizer,
    conv_workspace_bytes,
    trace_decoder,
    trace_module,
)

__all__ = [
    "COVERAGE",
    "KINDS",
    "MemoryReplay",
    "Overheads",
    "bounds_for",
    "conformal_bounds",
    "fit_intervals",
    "fit_overheads",
    "fit_train_slack",
    "graph_trace",
    "interval_group",
    "memory_intervals",
    "load_memory_fit",
    "write_memory_fit",
    "overheads_for",
    "replay_memory",
    "row_group",
    "workload_trace",
]

#: workload kinds with their own overheads
KINDS = ("vision", "transformer")
#: the device whose fitted overheads stand in for a device with no rows
_FALLBACK_DEVICE = "h200"
_DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class Overheads:
    """Per-device memory outside the trace, in MiB, by workload kind."""

    device: str
    workspace_mb: Mapping[str, float]
    context_mb: Mapping[str, float]
    rows: int
    source: str
    #: a replayed training step's reserved peak is raised by this share (see the module doc)
    train_slack: float = 0.0

    def workspace(self, kind: str) -> float:
        return float(self.workspace_mb.get(kind, statistics.median(self.workspace_mb.values())))

    def context(self, kind: str) -> float:
        return float(self.context_mb.get(kind, statistics.median(self.context_mb.values())))


@dataclass
class MemoryReplay:
    """The memory of one workload from its allocation trace."""

    memory_mb: float  # NVML level: reserved + context
    allocated_mb: float
    reserved_mb: float  # with the training allowance (``slack_mb``) where one applies
    requested_mb: float
    fragmentation: float
    context_mb: float
    workspace_mb: float
    state_mb: float  # weights + buffers + inputs held before the step
    path: str  # "replay" or "liveness-fallback"
    peak_phase: str
    peak_op: str
    allocations: int
    oom: bool
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    slack_mb: float = 0.0  # the training allowance added to the replayed reserved peak
    saved_mb: float = 0.0  # training: what the forward pass left allocated for the backward (allocator.saved_bytes)
    #: (low, high) MiB around ``memory_mb`` from held-out residuals of its path (:mod:`._memintervals`)
    interval_mb: tuple[float, float] | None = None
    interval: dict[str, Any] | None = None  # how it was calibrated

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# ------------------------------------------------------------- overheads
def _row_kind(row: Mapping) -> str:
    return "transformer" if "model_type" in row else "vision"


def fit_overheads(rows: Iterable[Mapping], device: str = "", source: str = "") -> Overheads:
    """Medians of the library workspace and the context over measured rows (see the module doc).

    Rows need ``params``, ``dtype``, ``weights_mb``, ``nvml_used_mb`` and ``peak_reserved_mb``;
    rows missing any are skipped.
    """
    ws: dict[str, list[float]] = {}
    ctx: dict[str, list[float]] = {}
    n = 0
    for r in rows:
        need = ("params", "dtype", "weights_mb", "nvml_used_mb", "peak_reserved_mb")
        if any(r.get(k) is None for k in need) or r["dtype"] not in _DTYPE_BYTES:
            continue
        kind = _row_kind(r)
        ws.setdefault(kind, []).append(r["weights_mb"] - r["params"] * _DTYPE_BYTES[r["dtype"]] / MIB)
        ctx.setdefault(kind, []).append(r["nvml_used_mb"] - r["peak_reserved_mb"])
        n += 1
    if not n:
        raise InvalidInputError(f"no measured rows with weights_mb, nvml_used_mb and peak_reserved_mb for {device!r}")
    return Overheads(device, {k: max(0.0, statistics.median(v)) for k, v in ws.items()},
                     {k: statistics.median(v) for k, v in ctx.items()}, n, source)


def _packaged_rows(device: str) -> list[dict]:
    from ..datasets import read_jsonl

    folder = _DATA / device
    return [row for name in ("vision.jsonl", "llm.jsonl") if (folder / name).exists()
            for _, row in read_jsonl(folder / name)]


@lru_cache(maxsize=None)
def _packaged_overheads(device: str) -> Overheads | None:
    rows = [r for r in _packaged_rows(device) if r.get("nvml_used_mb") is not None]
    if not rows:
        return None
    ov = fit_overheads(rows, device, f"medians over {device}'s packaged rows")
    path = _DATA / device / MEMORY_FIT
    if not path.exists():
        return ov
    fit = load_memory_fit(path)
    return replace(ov, train_slack=fit["train_reserved_slack"],
                   source=f"{ov.source}; training allowance {100 * fit['train_reserved_slack']:.1f} % "
                          f"from {len(fit['rows'])} training rows ({MEMORY_FIT})")


def _interval(out: MemoryReplay, dev, kind: str, mode: str, dtype: str, phase: str | None) -> None:
    """Put the calibrated interval of ``out``'s path around its ``memory_mb`` (in place), from the
    device's own rows or, for a device without rows, the H200's (and say so)."""
    folder = _data_folder(dev)
    cal = memory_intervals(folder, out.path) if folder else None
    source = folder
    if cal is None:
        cal, source = memory_intervals(_FALLBACK_DEVICE, out.path), _FALLBACK_DEVICE
    if cal is None:
        return
    group = interval_group(kind, mode, dtype, phase)
    lo, hi, used, rows = bounds_for(cal, group)
    out.interval_mb = (out.memory_mb * math.exp(lo), out.memory_mb * math.exp(hi))
    out.interval = {"coverage": cal["coverage"], "group": used, "rows": rows, "device_rows": source,
                    "note": (f"{100 * cal['coverage']:.0f} % interval from {rows} held-out {source} rows "
                             f"{'' if out.path == 'replay' else 'of the graph walk '}"
                             f"({'pooled: too few rows of ' + group if used != group else used})"
                             + ("" if source == folder else f"; {dev.name} has no rows of its own"))}


def fit_train_slack(rows: Iterable[Mapping], device="h200", *, overheads: Overheads | None = None,
                    progress: bool = False) -> tuple[float, list[dict]]:
    """The training allowance of ``device`` from measured vision training rows (``spec``, ``batch``,
    ``dtype``, ``peak_reserved_mb``): the median of ``peak_reserved_mb / replayed reserved - 1``
    (at least 0), and one record per row. Each row's step is traced and replayed without an allowance."""
    ov = replace(overheads or overheads_for(device), train_slack=0.0)
    rows = [r for r in rows if r.get("mode") == "train" and "spec" in r and r.get("peak_reserved_mb")]
    if not rows:
        raise InvalidInputError(f"no vision training rows with peak_reserved_mb to fit {device!r}'s allowance on")
    it = rows
    if progress:
        from tqdm import tqdm

        it = tqdm(rows, desc="replaying training rows", unit="row")
    recs = []
    for r in it:
        out = replay_memory(r["spec"], device, batch=r["batch"], mode="training", dtype=r["dtype"], overheads=ov)
        recs.append({"spec": r["spec"], "batch": r["batch"],
                     "dtype": r["dtype"], "peak_reserved_mb": float(r["peak_reserved_mb"]),
                     "replayed_reserved_mb": round(out.reserved_mb, 4)})
    ratios = [x["peak_reserved_mb"] / x["replayed_reserved_mb"] - 1 for x in recs]
    return max(0.0, statistics.median(ratios)), recs


def _data_folder(dev) -> str | None:
    """The packaged data folder measured on ``dev`` (``data/h200`` for the H200; for a MIG slice, its
    whole GPU's: the same driver, context and libraries), if any."""
    from ..devices import base_device, get_device

    dev = base_device(dev)
    for folder in sorted(_DATA.iterdir()):
        if not ((folder / "vision.jsonl").exists() or (folder / "llm.jsonl").exists()):
            continue
        try:
            if get_device(folder.name).name == dev.name:
                return folder.name
        except Exception:  # a folder named after no device
            continue
    return None


def overheads_for(device) -> Overheads:
    """The fitted overheads of ``device`` (a name or a Device), or the H200's with a note in ``source``."""
    dev = _device(device)
    folder = _data_folder(dev)
    ov = _packaged_overheads(folder) if folder else None
    if ov is not None:
        return ov
    base = _packaged_overheads(_FALLBACK_DEVICE)
    if base is None:  # pragma: no cover - the package ships H200 rows
        raise InvalidInputError("no packaged rows to fit memory overheads from")
    context = {k: float(dev.framework_overhead_mb) for k in base.context_mb}
    return Overheads(dev.name, dict(base.workspace_mb), context, 0,
                     f"no rows for {dev.name}: library workspace (and training allowance) from H200 rows, context "
                     "from the device database", train_slack=base.train_slack)


# --------------------------------------------------------------- tracing
_CACHE: dict[tuple, tuple[AllocationTrace, str, tuple[str, ...]]] = {}
_MODULE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_CACHE_MAX = 256


def _kind_of(model, seq: int | None = None) -> str:
    """``transformer`` for a transformers config or module, and for a name given with ``seq`` (a
    registry name); a name without ``seq`` is a zoo name (``resnet50``, ``torchvision:resnet50``)."""
    if isinstance(model, str):
        return "transformer" if seq is not None and ":" not in model else "vision"
    if _is_llm_spec(model):
        return "transformer"
    if isinstance(model, Mapping) and "model_type" in model:  # a transformers config dict
        return "transformer"
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "model_type"):
        return "transformer"
    return "vision"


def _is_llm_spec(model) -> bool:
    from ..llm import LLMSpec

    return isinstance(model, LLMSpec)


def _trace_zoo(ref, *, batch, input_shape, training, dtype, optimizer, autocast=None):
    import torch

    from ..frontends.zoo import build_zoo_model

    try:
        zm = build_zoo_model(ref, device="meta")
    except UnknownModelError:
        if isinstance(ref, str) and _is_llm_name(ref):
            raise InvalidInputError(f"{ref!r} is a transformer: its memory needs seq (the sequence length) and "
                                    "phase") from None
        raise
    shape = tuple(input_shape or zm.input_shape)
    x = torch.empty((batch, *shape), device="meta")
    return trace_module(zm.module, x, training=training, dtype=dtype, optimizer=optimizer, autocast=autocast)


def _is_llm_name(name: str) -> bool:
    from ..llm import resolve_llm

    try:
        resolve_llm(name)
    except CostModelError:
        return False
    return True


def _workload(mode: str, phase: str | None) -> tuple[bool, str | None]:
    if mode not in ("inference", "training"):
        raise InvalidInputError(f"mode must be one of inference, training; got {mode!r}")
    if phase is not None and phase not in ("forward", "prefill", "decode"):
        raise InvalidInputError(f"phase must be one of forward, prefill, decode; got {phase!r}")
    return mode == "training", phase


def _trace(model, *, batch, seq, phase, mode, dtype, optimizer, input_shape, inputs, autocast=None, lora=None,
           checkpointing: bool = False, target_seq: int | None = None, ssm_kernels: str = "reference", graph=None):
    """(trace, path, notes) for anything the frontends accept."""
    training, phase = _workload(mode, phase)
    from ..ir import CostGraph

    amp_note = (f"autocast={autocast}: the walk costs the graph with autocast's casts and dtypes (CUDA's operator "
                "lists)",) if autocast else ()
    if isinstance(model, CostGraph):
        return graph_trace(apply_autocast(model, autocast), training=training, optimizer=optimizer), \
            "liveness-fallback", ("a CostGraph holds no module to run: liveness walk over its operators", *amp_note)
    kind = _kind_of(model, seq)
    try:
        named = isinstance(model, (str, Mapping)) or _is_llm_spec(model)
        if kind == "transformer" and (named or seq is not None):
            if seq is None:
                raise InvalidInputError("a transformer's memory needs seq (the sequence length)")
            if training:  # LoRA as its hashable cache key, back to lora_spec's dict
                spec = {"r": lora[0], "targets": list(lora[1]) if lora[1] else None} if lora else None
                return trace_llm_training(model, named, batch=batch, seq=seq, phase=phase, dtype=dtype,
                                          optimizer=optimizer, autocast=autocast, lora=spec,
                                          checkpointing=checkpointing, target_seq=target_seq,
                                          ssm_kernels=ssm_kernels), "replay", ()
            if lora or checkpointing:
                raise InvalidInputError("LoRA adapters and activation checkpointing are traced for a training step "
                                        "(mode='training')")
            if autocast is not None:
                raise InvalidInputError("autocast is traced for modules' steps; a transformer workload takes "
                                        "dtype='fp16' or 'bf16' (the measured rows converted the model)")
            if named:
                return trace_llm(model, batch=batch, seq=seq, phase=phase or "prefill", dtype=dtype,
                                 target_seq=target_seq, ssm_kernels=ssm_kernels), "replay", ()
            return with_ssm_kernels(model, ssm_kernels, lambda: trace_decoder(
                model, batch=batch, seq=seq, phase=phase or "prefill", dtype=dtype, causal=phase != "forward",
                target_seq=target_seq)), "replay", ()
        if isinstance(model, (str, dict)):
            return _trace_zoo(model, batch=batch, input_shape=input_shape, training=training, dtype=dtype,
                              optimizer=optimizer, autocast=autocast), "replay", ()
        import torch

        if not isinstance(model, torch.nn.Module):
            raise InvalidInputError(f"cannot trace a {type(model).__name__}; expected an nn.Module, a zoo name, a "
                                    "spec dict, a transformers name or a CostGraph")
        if inputs is None:
            if input_shape is None:
                raise InvalidInputError("an nn.Module needs inputs= or input_shape= to be traced")
            inputs = torch.empty((batch, *input_shape), device="meta")
        return trace_module(model, inputs, training=training, dtype=dtype, optimizer=optimizer,
                            autocast=autocast), "replay", ()
    except TraceError as e:
        from ..frontends import to_graph

        warnings.warn(f"memory: {e.op or 'an operator'} cannot run on meta tensors ({e}); falling back to a "
                      "liveness walk over the graph", UnsupportedOpWarning, stacklevel=3)
        if (isinstance(model, (str, Mapping)) or _is_llm_spec(model)) and kind == "transformer":
            from ..frontends.hf import hf_graph
            from ..llm import resolve_llm

            spec = resolve_llm(model)
            g = hf_graph(spec.model_type, spec.config, batch=batch, seq=seq, causal=spec.causal, method="trace",
                         target_seq=target_seq, ssm_kernels=ssm_kernels)
        elif graph is not None and graph.meta.get("capture") in ("trace", "trace-real"):
            g = graph  # the caller's: a model that needs data was run once on the CPU to build it
        else:
            g = to_graph(model, batch=batch, input_shape=input_shape, inputs=inputs, dtype=dtype, mode=mode,
                         method="trace")
        note = f"{e.op or 'an operator'} cannot run on meta tensors: liveness walk over the graph"
        return graph_trace(apply_autocast(g, autocast), training=training, optimizer=optimizer), \
            "liveness-fallback", (note, *amp_note)


def workload_trace(model, *, batch: int = 1, mode: str = "inference", dtype: str = "fp32", optimizer: str = "adam",
                   seq: int | None = None, phase: str | None = None, input_shape=None,
                   target_seq: int | None = None) -> AllocationTrace:
    """The allocation trace :func:`replay_memory` replays for this workload (not cached; a module, a zoo
    name or spec, a transformers name with ``seq``, or a CostGraph's liveness walk)."""
    if mode == "training":
        optimizer = check_optimizer(optimizer)
    return _trace(model, batch=batch, seq=seq, phase=phase, mode=mode, dtype=dtype, optimizer=optimizer,
                  input_shape=tuple(input_shape) if input_shape is not None else None, inputs=None,
                  target_seq=target_seq)[0]


def _cache_key(model, **kw) -> tuple | None:
    if _is_llm_spec(model):
        blob = json.dumps([model.model_type, bool(model.causal), model.config], sort_keys=True, default=str)
        return (blob, *sorted(kw.items()))
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".json"):
        from ..frontends.zoo import parse_model_ref

        model = parse_model_ref(model)  # a spec file: keyed by what it holds, which may change between calls
    if isinstance(model, str):
        return (model, *sorted(kw.items()))
    if isinstance(model, dict):
        return (json.dumps(model, sort_keys=True), *sorted(kw.items()))
    return None


def replay_memory(model, device="h200", *, batch: int = 1, mode: str = "inference", dtype: str = "fp32",
                  optimizer: str = "adam", seq: int | None = None, phase: str | None = None,
                  input_shape=None, inputs=None, expandable_segments: bool = False,
                  kind: str | None = None, overheads: Overheads | None = None,
                  autocast: str | None = None, lora: dict | None = None,
                  checkpointing: bool = False, target_seq: int | None = None,
                  ssm_kernels: str = "reference", graph=None) -> MemoryReplay:
    """Peak device memory of one workload from its allocation trace (see the module doc).

    ``model``: an ``nn.Module`` (with ``inputs`` or ``input_shape``), a zoo name or spec dict, a
    transformers name from the registry (with ``seq`` and ``phase``), or a CostGraph (liveness
    fallback). Traces are cached per (model, workload); the replay runs each call.
    ``overheads`` replaces the device's fitted workspace and context (a benchmark fits them
    without the rows it scores). ``autocast``: ``fp16`` or ``bf16`` traces a module's step under
    mixed precision (see :func:`~costmodel.analysis.alloctrace.trace_module`). ``lora``: LoRA adapters on a
    registry decoder's training step, ``{"r": rank, "targets": module names or None}``
    (:func:`~costmodel.frontends.hf.lora_spec`); ``checkpointing``: its decoder layers checkpointed
    (non-reentrant), their activations recomputed in the backward pass. ``target_seq``: an encoder-decoder's
    decoder tokens (default ``seq``, the encoder's). ``ssm_kernels="fused"``: Mamba's selective scans as
    ``mamba_ssm``'s fused kernels (:func:`costmodel.frontends.hf.fused_ssm_kernels`), not transformers' reference loop.
    ``graph``: the module's CostGraph for this workload, already built by the dispatch-level trace (or its run
    on real data): where the module cannot run on fake tensors, it is walked instead of being built again.
    """
    from .._validate import positive_int
    from ..frontends.hf import lora_spec

    positive_int(batch, "batch")
    if seq is not None:
        positive_int(seq, "seq")
    if dtype not in _DTYPE_BYTES:
        raise InvalidInputError(f"dtype must be one of {', '.join(_DTYPE_BYTES)}; got {dtype!r}")
    if mode == "training":
        optimizer = check_optimizer(optimizer)
    check_autocast(autocast)
    t0 = time.perf_counter()
    ov = overheads or overheads_for(device)
    kind = kind or _kind_of(model, seq)
    if kind not in KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    workspace = int(round(ov.workspace(kind) * MIB))
    kw = dict(batch=batch, seq=seq, phase=phase, mode=mode, dtype=dtype, optimizer=optimizer,
              input_shape=tuple(input_shape) if input_shape is not None else None, autocast=autocast)
    if lora is not None:
        spec = lora_spec(lora.get("r") if isinstance(lora, Mapping) else lora,
                         lora.get("targets") if isinstance(lora, Mapping) else None)
        kw["lora"] = (spec["r"], tuple(spec["targets"]) if spec["targets"] else None)  # hashable, for the caches
    if checkpointing:
        kw["checkpointing"] = True
    if target_seq is not None:
        kw["target_seq"] = positive_int(target_seq, "target_seq")
    if ssm_kernels != "reference":
        from ..frontends.hf import check_ssm_kernels

        kw["ssm_kernels"] = check_ssm_kernels(ssm_kernels)
    key = _cache_key(model, **kw) if inputs is None else None
    hit = None
    with _LOCK:
        if key is not None:
            hit = _CACHE.get(key)
        elif inputs is None and _weakrefable(model):
            hit = _MODULE_CACHE.get(model, {}).get(tuple(sorted(kw.items())))
    if hit is None:
        hit = _trace(model, inputs=inputs, graph=graph, **kw)
        with _LOCK:
            if key is not None:
                if len(_CACHE) >= _CACHE_MAX:
                    _CACHE.pop(next(iter(_CACHE)))
                _CACHE[key] = hit
            elif inputs is None and _weakrefable(model):
                _MODULE_CACHE.setdefault(model, {})[tuple(sorted(kw.items()))] = hit
    trace, path, notes = hit
    dev = _device(device)
    ctx = ov.context(kind)
    st, room_note = _replay_in_room(trace, dev, ctx, workspace, expandable_segments)
    notes = [*notes, *room_note]
    slack = st.peak_reserved_bytes / MIB * ov.train_slack if mode == "training" and path == "replay" else 0.0
    borrowed = " (vision steps' share: no transformer training step was measured)" if kind == "transformer" else ""
    slack_note = [f"training: reserved peak raised by {100 * ov.train_slack:.1f} % ({slack:,.0f} MiB), the device's "
                  f"measured excess of training steps over their replay{borrowed}"] if slack else []
    out = MemoryReplay(
        memory_mb=st.peak_reserved_bytes / MIB + slack + ctx,
        allocated_mb=st.peak_allocated_bytes / MIB,
        reserved_mb=st.peak_reserved_bytes / MIB + slack,
        requested_mb=st.peak_requested_bytes / MIB,
        fragmentation=st.fragmentation,
        context_mb=ctx,
        workspace_mb=workspace / MIB,
        state_mb=trace.state_bytes / MIB,
        path=path,
        peak_phase=st.peak_phase,
        peak_op=st.peak_op,
        allocations=st.allocations,
        oom=st.oom,
        notes=[*notes, *trace.notes, *slack_note, f"overheads: {ov.source}"],
        slack_mb=slack,
        saved_mb=saved_bytes(trace.events) / MIB if mode == "training" else 0.0,
    )
    _interval(out, dev, kind, mode, dtype, phase)
    out.seconds = time.perf_counter() - t0
    return out


def _replay_in_room(trace, dev, ctx_mb: float, workspace: int, expandable_segments: bool):
    """``(allocator stats, notes)``: ``trace`` replayed with what the caching allocator can take on ``dev``, its
    board less the context (CUDA, cuBLAS, cuDNN) the process holds; the note says when it had to release its
    cache to stay within that."""
    room_mb = dev.capacity_mb - ctx_mb if getattr(dev, "capacity_mb", None) else None
    st = replay(trace.events, expandable_segments=expandable_segments, workspace_bytes=workspace,
                capacity_bytes=int(room_mb * MIB) if room_mb and room_mb > 0 else None)
    if not st.cache_releases or st.oom:
        return st, []
    return st, [f"the allocator reached the {room_mb:,.0f} MiB {dev.name} leaves it (its board less "
                f"{ctx_mb:,.0f} MiB of context) and released its cached segments {st.cache_releases:,} time(s), "
                "as PyTorch does before it gives up: a board with more memory reserves more for the same step"]


def _weakrefable(obj) -> bool:
    if not hasattr(obj, "named_parameters"):  # nn.Modules only (a CostGraph is traced afresh)
        return False
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def _device(device):
    from ..devices import get_device

    return get_device(device) if not hasattr(device, "memory_mb") else device


# ------------------------------------------------------------- fallback
def graph_trace(graph, *, training: bool = False, optimizer: str = "adam") -> AllocationTrace:
    """An allocation stream from a CostGraph alone: the liveness walk (the fallback path).

    Weights and inputs first; each operator allocates its outputs (views and in-place operators
    alias their input) and a buffer is freed after its last reader; a dense spatial convolution
    takes cuDNN's transient workspace (the rule of the module trace). Training runs two steps,
    as the module trace does: the forward pass keeps what each operator's backward function
    saves; the backward pass walks the operators in reverse, allocating the gradient of each
    input (a view passes its gradient on without a copy; a second gradient for the same tensor is
    summed into the first), the parameters' gradients (freed by ``zero_grad`` at the next step),
    and frees a saved buffer after the last operator that saved it has run; the optimizer
    allocates its state in the first step and its foreach temporaries in each.
    """
    from ._memory import _SAVES_INPUTS, _SAVES_OUTPUT, OPTIMIZER_STATE, OPTIMIZER_TRANSIENT, _buffers, _nbytes, saved_by

    if training:
        optimizer = check_optimizer(optimizer)
    tr = AllocationTrace(notes=["liveness walk over the CostGraph (no module to run)"])
    ev = tr.events
    key = -1
    weights = int(graph.weights_bytes)
    ev.append(Event("alloc", key, weights, "weights", "weights"))
    key -= 1
    ev.append(Event("workspace", key, 0, "workspace", "library"))
    key -= 1
    for x in graph.inputs:
        ev.append(Event("alloc", key, int(_nbytes(x.shape, x.dtype)), "input", "input"))
        key -= 1
    tr.state_bytes = weights + sum(int(_nbytes(x.shape, x.dtype)) for x in graph.inputs)
    ev.append(Event("reset_peak"))
    owner, allocates = _buffers(graph)
    by = saved_by(graph, owner) if training else [set() for _ in graph.nodes]
    saved = {o for s in by for o in s if o >= 0 and allocates[o]}
    # an in-place operator whose backward needs its input (silu_, hardswish_, mul_) makes autograd save a
    # clone of that input before it is overwritten
    clones = {i for i, nd in enumerate(graph.nodes)
              if training and nd.attrs.get("inplace") and nd.kind in _SAVES_INPUTS and nd.kind not in _SAVES_OUTPUT}
    recorded: set[int] = set()  # the clones a graph records (a copy nothing reads, then the operator)
    if clones:
        preds, succ = graph.predecessors(), graph.successors()
        for i in clones:
            j = i - 1
            nd = graph.nodes[j] if j >= 0 else None
            if nd is not None and nd.kind == "copy" and not nd.is_view and not succ[j] and preds[j] == preds[i][:1]:
                recorded.add(j)  # the operator's saved input stands for it: no buffer, no gradient of its own
                allocates[j] = False
    for step in range(2 if training else 1):
        if step:  # zero_grad(set_to_none=True): the last step's parameter gradients go
            ev.extend(Event("free", _PARAM_GRAD_KEY - i) for i, nd in enumerate(graph.nodes) if any(nd.param_inputs))
        _forward_events(graph, ev, owner, allocates, saved, clones, training)
        if training:
            _backward_events(graph, ev, by, saved, clones, recorded)
            state = int(OPTIMIZER_STATE[optimizer] * weights)
            if state and step == 0:
                ev.append(Event("alloc", -(1 << 30) - 1, state, "optimizer", "state"))
            temp = int(OPTIMIZER_TRANSIENT[optimizer] * weights)
            if temp:
                ev.append(Event("alloc", -(1 << 30) - 2, temp, "optimizer", "foreach"))
                ev.append(Event("free", -(1 << 30) - 2))
    return tr


#: event keys of the parameter gradients, of inputs saved by in-place operators and of max-pool indices:
#: these minus the node index
_PARAM_GRAD_KEY, _CLONE_KEY, _INDEX_KEY, _WS_KEY = -(1 << 33), -(1 << 34), -(1 << 35), -(1 << 36)


def _conv_workspace(node) -> int:
    """The trace's cuDNN workspace rule for one convolution node of a graph (0 for any other node)."""
    from ._memory import _nbytes

    if node.kind != "conv" or not node.in_shapes:
        return 0
    x = node.in_shapes[0]
    return conv_workspace_bytes(int(_nbytes(x, node.in_dtypes[0] if node.in_dtypes else "fp32")),
                                int(node.out_bytes), groups=int(node.attrs.get("groups", 1) or 1),
                                kernel=tuple(node.attrs.get("kernel") or ()),
                                in_channels=int(x[1]) if len(x) > 1 else None)


def _forward_events(graph, ev: list, owner: list[int], allocates: list[bool], saved: set[int],
                    clones: set[int], training: bool) -> None:
    """One forward pass: outputs allocated, unsaved buffers freed after their last reader."""
    from ._memory import _nbytes

    n = len(graph.nodes)
    succ = graph.successors()
    last = list(range(n))
    for i in range(n):
        end = max(succ[i]) if succ[i] else n
        last[owner[i]] = max(last[owner[i]], end)
    frees: dict[int, list[int]] = {}
    for o in set(owner):
        if allocates[o] and o not in saved:
            frees.setdefault(last[o], []).append(o)
    for i, node in enumerate(graph.nodes):
        if i in clones:
            ev.append(Event("alloc", _CLONE_KEY - i, int(node.out_bytes), "forward", f"{node.op} (saved input)"))
        if allocates[i]:
            ev.append(Event("alloc", i + 1, int(node.out_bytes), "forward", node.op))
        if training and node.kind == "max_pool" and node.out_shapes:  # the argmax indices (int64), saved
            ev.append(Event("alloc", _INDEX_KEY - i, int(_nbytes(node.out_shapes[0], "int64")), "forward",
                            f"{node.op} (indices)"))
        ws = _conv_workspace(node)
        if ws:
            ev.append(Event("alloc", -(1 << 31) - i, ws, "forward", "cudnn_workspace"))
            ev.append(Event("free", -(1 << 31) - i))
        for o in frees.get(i, ()):
            ev.append(Event("free", o + 1))
    for o in frees.get(n, ()):
        ev.append(Event("free", o + 1))


def _backward_events(graph, ev: list, by: list[set[int]], saved: set[int], clones: set[int],
                     recorded: set[int] = frozenset()) -> None:
    """One backward pass in reverse operator order (see :func:`graph_trace`); ``recorded``: nodes that
    are autograd's saved clones (no gradient flows to or from them)."""
    from ._memory import _nbytes

    n = len(graph.nodes)
    preds = graph.predecessors()
    succ = graph.successors()
    grad_base, param_base = -(1 << 32), _PARAM_GRAD_KEY
    first_saver: dict[int, int] = {}  # backward runs in reverse: a buffer goes after its first saver's
    for i, s in enumerate(by):
        for o in s:
            first_saver.setdefault(o, i)
    release: dict[int, list[int]] = {}
    for o in saved:
        release.setdefault(first_saver[o], []).append(o)
    live: dict[int, int] = {}  # node -> key of the gradient of its output
    refs: dict[int, int] = {}  # gradient key -> how many tensors it is the gradient of

    def hold(p: int, key: int) -> None:
        live[p] = key
        refs[key] = refs.get(key, 0) + 1

    def drop(key: int) -> None:
        refs[key] -= 1
        if not refs[key]:
            del refs[key]
            ev.append(Event("free", key))

    for i, node in enumerate(graph.nodes):
        if not succ[i] and i not in recorded:  # the loss's gradient with respect to each output
            ev.append(Event("alloc", grad_base - i, int(node.out_bytes), "backward", "grad_output"))
            hold(i, grad_base - i)
    for i in range(n - 1, -1, -1):
        node = graph.nodes[i]
        g = live.pop(i, None)
        if g is not None:
            out_shape = node.out_shapes[0] if node.out_shapes else None
            for k, p in enumerate(preds[i]):
                # a view's gradient is its input's, reshaped; an addition hands the same gradient to each
                # operand of its own shape (a subtraction to its first)
                passes = node.is_view or (node.kind == "add" and (k == 0 or not node.op.endswith("sub"))
                                          and graph.nodes[p].out_shapes[:1] == [out_shape])
                if passes:
                    if p not in live:
                        hold(p, g)
                    continue  # else summed into the gradient already there, in place
                size = int(graph.nodes[p].out_bytes)
                if p in live:  # a second gradient for the same tensor: computed, then summed into the first
                    ev.append(Event("alloc", grad_base - n - i, size, "backward", node.op))
                    ev.append(Event("free", grad_base - n - i))
                else:
                    ev.append(Event("alloc", grad_base - p, size, "backward", node.op))
                    hold(p, grad_base - p)
            pbytes = sum(int(_nbytes(s, d)) for s, d, is_p in zip(node.in_shapes, node.in_dtypes, node.param_inputs)
                         if is_p)
            if pbytes:
                ev.append(Event("alloc", param_base - i, pbytes, "backward", "parameter gradients"))
            ws = _conv_workspace(node)  # one cuDNN call for the input's gradient, one for the weights'
            for c in range((1 if preds[i] else 0) + (1 if pbytes else 0) if ws else 0):
                ev.append(Event("alloc", _WS_KEY - 2 * i - c, ws, "backward", "cudnn_workspace"))
                ev.append(Event("free", _WS_KEY - 2 * i - c))
            drop(g)
        for o in release.get(i, ()):
            ev.append(Event("free", o + 1))
        if i in clones:
            ev.append(Event("free", _CLONE_KEY - i))
        if node.kind == "max_pool":
            ev.append(Event("free", _INDEX_KEY - i))
    for key in list(refs):
        ev.append(Event("free", key))
