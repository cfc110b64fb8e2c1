"""The largest batch of a workload whose replayed memory fits a device, a MIG slice or a given limit.

Two answers come back: the largest batch whose replayed ``memory_mb`` fits (``batch``), and the largest whose
90 % interval's upper end fits (``upper_batch``), the one to plan on where a run that does not fit costs more
than a slightly smaller batch (the MIG pick takes the upper end too, docs/memory.md)."""

from __future__ import annotations

from typing import Any, Callable

from .._errors import InvalidInputError
from .._validate import positive_int


def fit_limit_mb(dev, memory_mb: float | None, mig: str | None) -> tuple[float, str]:
    """The memory to fit in, and what it is: ``memory_mb``, a MIG profile of ``dev`` or the whole device."""
    if memory_mb is not None and mig is not None:
        raise InvalidInputError("give memory_mb or mig, not both")
    if memory_mb is not None:
        if not (isinstance(memory_mb, (int, float)) and not isinstance(memory_mb, bool) and memory_mb > 0):
            raise InvalidInputError(f"memory_mb must be a positive number of MB, got {memory_mb!r}")
        return float(memory_mb), f"{float(memory_mb):,.0f} MB"
    if mig is not None:
        names = [p.name for p in dev.mig_profiles]
        if not names:
            raise InvalidInputError(f"{dev.name} has no MIG profiles; give memory_mb (--memory-mb) instead")
        prof = next((p for p in dev.mig_profiles if p.name.lower() == str(mig).lower()), None)
        if prof is None:
            raise InvalidInputError(f"unknown MIG profile {mig!r} for {dev.name}; choose one of {', '.join(names)}")
        return float(prof.capacity_mb), f"MIG {prof.name}"
    return float(dev.capacity_mb), dev.name


def search_batch(mem: Callable[[int], float], cap: float, limit: int,
                 known: dict[int, float] | None = None) -> tuple[int, int | None]:
    """``(lo, hi)``: ``lo`` the largest batch up to ``limit`` with ``mem(lo) <= cap`` (0: not even one),
    ``hi`` the batch above it found over (``None`` when ``limit`` fits). ``mem`` must grow with the batch;
    ``known`` holds values already computed (no call repeats them).

    Memory grows with the batch almost linearly beyond a fixed part (weights and optimizer state stay;
    activations, logits and KV cache scale), so each guess is read off a line through the two nearest
    known batches, and the batch beside it is checked: a line that holds ends the search in two calls.
    Where the line misleads (the peak moving from the optimizer's state to the activations), a step that
    does not halve the bracket is followed by a bisection."""
    pts = dict(known or {})

    def f(b: int) -> float:
        if b not in pts:
            pts[b] = mem(b)
        return pts[b]

    if f(1) > cap:
        return 0, 1
    lo = max(b for b, v in pts.items() if v <= cap and b <= limit)
    hi = min((b for b, v in pts.items() if v > cap and b > lo), default=None)
    prev = None
    while hi is None:  # gallop along the line until a batch is over, or the limit fits
        if lo >= limit:
            return limit, None
        below = [b for b in pts if b < lo and pts[b] <= cap]
        slope = (pts[lo] - pts[max(below)]) / (lo - max(below)) if below else 0.0
        g = lo + int((cap - pts[lo]) / slope) + 1 if slope > 0 else 2 * lo
        if prev is not None:
            g = max(g, lo + 2 * (lo - prev))  # the line under-shot before: at least double the step
        g = min(limit, max(g, lo + 1))
        if f(g) <= cap:
            prev, lo = lo, g
        else:
            hi = g
    while hi - lo > 1:
        width = hi - lo
        g = lo + int(round((cap - pts[lo]) / (pts[hi] - pts[lo]) * width)) if pts[hi] > pts[lo] else (lo + hi) // 2
        g = min(hi - 1, max(lo + 1, g))
        if f(g) <= cap:
            lo = g
            if g + 1 < hi:
                lo, hi = (lo, g + 1) if f(g + 1) > cap else (g + 1, hi)
        else:
            hi = g
            if g - 1 > lo:
                lo, hi = (g - 1, hi) if f(g - 1) <= cap else (lo, g - 1)
        if hi - lo > 1 and hi - lo > width / 2:  # the line misled: bisect once
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if f(mid) <= cap else (lo, mid)
    return lo, hi


def rebatch_inputs(inputs, batch: int, new: int) -> tuple:
    """``inputs`` with every tensor whose leading dimension is ``batch`` replaced by an empty meta tensor
    with ``new`` there (shapes and dtypes are all an allocation trace reads)."""
    import torch

    return tuple(torch.empty((new, *t.shape[1:]), dtype=t.dtype, device="meta")
                 if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == batch else t for t in inputs)


def fit_answer(replay_at: Callable[[int], Any], cap: float, limit: int, what: str,
               runs: dict[int, Any] | None = None) -> dict:
    """Both searches over one cache of replays (``replay_at(batch)`` -> a MemoryReplay; ``runs``: replays
    already made, by batch, filled in place), as the dict :func:`largest_batch` returns."""
    runs = {} if runs is None else runs

    def run(b: int):
        if b not in runs:
            runs[b] = replay_at(b)
        return runs[b]

    def upper(b: int) -> float:
        r = run(b)
        return r.interval_mb[1] if r.interval_mb else r.memory_mb

    lo, hi = search_batch(lambda b: run(b).memory_mb, cap, limit, known={b: r.memory_mb for b, r in runs.items()})
    # the upper end is the replayed memory times one factor per workload group: the first search's
    # replays bracket the answer, and a line through them finds it in a call or two
    ulo, uhi = search_batch(upper, cap, max(lo, 1), known={b: upper(b) for b in runs})
    first = run(1)
    out = {"batch": lo, "memory_mb": runs[lo].memory_mb if lo else None,
           "next_memory_mb": runs[hi].memory_mb if hi else None,
           "upper_batch": ulo, "upper_memory_mb": upper(ulo) if ulo else None,
           "upper_next_memory_mb": upper(uhi) if uhi else None,
           "coverage": (first.interval or {}).get("coverage"), "limit_mb": cap, "limit": what,
           "capped": hi is None,  # the search's own cap (limit=) fits: larger batches may fit too
           "path": first.path, "traced": {b: runs[b].memory_mb for b in sorted(runs)}}
    return out


def answers(replay_at: Callable[[int], Any], dev, memory_mb: float | None, mig: str | None,
            limit: int) -> dict | list[dict]:
    """:func:`fit_answer` for the limit named; ``mig="all"``: one answer per MIG profile of ``dev``, smallest
    first, over one cache of replays (each slice's search starts from the lines the smaller ones traced)."""
    if not (isinstance(mig, str) and mig.strip().lower() == "all"):
        cap, what = fit_limit_mb(dev, memory_mb, mig)
        return fit_answer(replay_at, cap, limit, what)
    if memory_mb is not None:
        raise InvalidInputError("give memory_mb or mig, not both")
    if not dev.mig_profiles:
        raise InvalidInputError(f"{dev.name} has no MIG profiles; give memory_mb (--memory-mb) instead")
    runs: dict[int, Any] = {}
    seen: dict[float, dict] = {}
    out = []
    for mb, name in sorted({(float(p.capacity_mb), p.name) for p in dev.mig_profiles}):
        if mb not in seen:  # profiles of one memory size (1g.35gb, 2g.35gb) share one answer
            seen[mb] = fit_answer(replay_at, mb, limit, "", runs=runs)
        out.append({**seen[mb], "limit": f"MIG {name}"})
    return out


def latency_into(out: dict | list[dict], dev, predict_at: Callable[[int, Any], float],
                 latency_slo_ms: float | None = None) -> dict | list[dict]:
    """Each answer's latency (``predict_at(batch, device)``, ms) and throughput at the batch to plan on
    (``upper_batch``, else ``batch``), on the memory it answers for: its MIG slice as a device of its own
    (:func:`costmodel.devices.slice_device`), else ``dev``. Adds ``latency_batch``, ``latency_device``,
    ``latency_ms`` and ``throughput_samples_s`` (``None`` where no batch fits); answers sharing a batch and
    a device share one prediction. With ``latency_slo_ms``, also the largest batch up to that one whose
    latency is within the target (``slo_batch``, 0 when not even one sample is; ``slo_latency_ms``,
    ``slo_throughput_samples_s``), found by bisection (latency grows with the batch)."""
    from ..devices import slice_device

    done: dict[tuple[int, str], float] = {}

    def lat_at(b: int, target) -> float:
        if (b, target.name) not in done:
            done[(b, target.name)] = float(predict_at(b, target))
        return done[(b, target.name)]

    for a in out if isinstance(out, list) else [out]:
        b = a.get("upper_batch") or a.get("batch")
        target = slice_device(dev, a["limit"][4:]) if a["limit"].startswith("MIG ") else dev
        if not b:
            a.update(latency_batch=None, latency_device=target.name, latency_ms=None, throughput_samples_s=None)
            if latency_slo_ms is not None:
                a.update(latency_slo_ms=latency_slo_ms, slo_batch=0, slo_latency_ms=None, slo_throughput_samples_s=None)
            continue
        lat = lat_at(b, target)
        a.update(latency_batch=b, latency_device=target.name, latency_ms=lat,
                 throughput_samples_s=b / (lat / 1e3) if lat > 0 else None)
        if latency_slo_ms is not None:
            lo, hi = 0, b + 1  # lo: within the target (0: none yet), hi: over it
            if lat <= latency_slo_ms:
                lo = b
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if lat_at(mid, target) <= latency_slo_ms else (lo, mid)
            s_lat = lat_at(lo, target) if lo else None
            a.update(latency_slo_ms=latency_slo_ms, slo_batch=lo, slo_latency_ms=s_lat,
                     slo_throughput_samples_s=lo / (s_lat / 1e3) if s_lat else None)
    return out


def _not_a_transformer(model) -> None:
    """A transformers name or config is a workload of tokens: :func:`largest_llm_batch` searches it."""
    from .._errors import CostModelError
    from ..llm import resolve_llm

    if isinstance(model, str) and ":" not in model and not model.endswith((".json", ".onnx")):
        try:
            resolve_llm(model)
        except CostModelError:
            return
        raise InvalidInputError(f"{model!r} is a transformer: its batch is of sequences, so search it with "
                                f"largest_llm_batch({model!r}, seq=..., mode=...) (costmodel llm {model} --batch B "
                                "--seq S --max-batch)")


def _graph_replays(model, dev, *, mode: str, dtype: str | None, optimizer: str, input_shape) -> Callable[[int], Any]:
    """``replay_at(batch)`` for a model that only a graph describes (an ONNX file or ModelProto): its graph
    built at each batch (a dynamic batch dimension bound to it) and walked through the caching allocator."""
    from ..analysis.memreplay import replay_memory
    from ..frontends import to_graph
    from ._api import graph_dtype

    def replay_at(b: int):
        g = to_graph(model, batch=b, input_shape=input_shape, mode=mode)
        if g.meta.get("batch") not in (None, b):
            raise InvalidInputError(f"the model's batch is fixed at {g.meta.get('batch')} in its input shapes, so no "
                                    "other batch can be costed; export it with a dynamic batch dimension")
        return replay_memory(g, dev, batch=b, mode=mode, dtype=dtype or graph_dtype(g), optimizer=optimizer,
                             graph=g)

    return replay_at


def largest_batch(model: Any, *, device="h200", mode: str = "inference", dtype: str | None = None,
                  optimizer: str = "adam", input_shape=None, inputs=None, autocast: str | None = None,
                  memory_mb: float | None = None, mig: str | None = None, limit: int = 4096,
                  latency: bool = True, latency_slo_ms: float | None = None, predictor=None, host=None,
                  cuda_graphs: bool = False, method: str = "export") -> dict | list[dict]:
    """The largest batch of ``model`` whose memory, from its allocation trace replayed through the caching
    allocator (``memory_mb``, NVML level), fits ``device``'s memory, one of its MIG profiles (``mig``, e.g.
    ``"3g.71gb"``; ``"all"``: a list of answers, one per profile, smallest first) or ``memory_mb`` (what is
    free). ``model``: a zoo name (``"torchvision:resnet50"``), a data
    spec dict, an ``nn.Module`` with ``input_shape`` or example ``inputs`` (every tensor whose leading
    dimension is the first tensor's is batched), or an ONNX file or ``ModelProto`` with a dynamic batch
    dimension (its graph built at each batch and walked: ``path`` ``"liveness-fallback"``); ``mode``,
    ``dtype``, ``optimizer`` and ``autocast`` as :func:`~costmodel.estimate` takes them.

    Returns ``{"batch", "memory_mb", "next_memory_mb", "upper_batch", "upper_memory_mb",
    "upper_next_memory_mb", "coverage", "limit_mb", "limit", "capped", "path", "traced": {batch: memory_mb}}``:
    ``batch`` fits by the replayed memory, ``upper_batch`` by its interval's upper end (``coverage``: the
    interval's); 0 when not even one sample fits; ``limit`` caps the search (``capped``: it fit, so larger
    batches may fit too); ``path`` is ``"replay"``, or
    ``"liveness-fallback"`` where the module could not run on fake tensors (a walk over its graph).
    With ``latency`` (the default), each answer also gives ``latency_ms`` and
    ``throughput_samples_s`` at ``latency_batch`` (``upper_batch``, else ``batch``) on ``latency_device``,
    by ``predictor`` on the graph ``method`` captures, with ``host`` and ``cuda_graphs``, as
    :func:`~costmodel.estimate` takes them (default: the library's default predictor):
    the MIG slice as a device of its own, else ``device`` (:func:`latency_into`); with ``latency_slo_ms``,
    also the largest batch that fits and answers within that target (``slo_batch``, its ``slo_latency_ms``
    and ``slo_throughput_samples_s``).
    """
    from ..analysis.memreplay import replay_memory
    from ..devices import get_device
    from ..predictors import validate_optimizer
    from ..ir import MODEL_DTYPES as DTYPES, MODES
    from ._memory import traceable

    from ._api import own_dtype

    positive_int(limit, "limit")
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
    dtype = own_dtype(model, autocast) if dtype is None else dtype  # as estimate() reads it: the model's own
    if dtype not in DTYPES and dtype is not None:  # None: an ONNX file's, read from its graph at each batch
        raise InvalidInputError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    optimizer = validate_optimizer(optimizer)
    latency_slo_ms = _slo(latency_slo_ms, latency)
    dev = get_device(device)
    _not_a_transformer(model)
    pred = _latency_predictor(predictor, host, cuda_graphs) if latency else None  # a bad one fails first
    if not traceable(model):
        if inputs is not None:
            raise InvalidInputError("inputs= are a module's example tensors; an ONNX graph takes input_shape")
        out = answers(_graph_replays(model, dev, mode=mode, dtype=dtype, optimizer=optimizer,
                                     input_shape=input_shape), dev, memory_mb, mig, limit)
        return latency_into(out, dev, _latency_at(model, pred, mode=mode, dtype=dtype, optimizer=optimizer,
                                                  input_shape=input_shape), latency_slo_ms) if latency else out
    first = None
    if inputs is not None:
        if input_shape is not None:
            raise InvalidInputError("give input_shape or inputs, not both")
        inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        first = next((t for t in inputs if getattr(t, "dim", lambda: 0)() > 0), None)
        if first is None:
            raise InvalidInputError("inputs hold no tensor with a batch dimension")
    elif hasattr(model, "named_parameters") and input_shape is None:
        raise InvalidInputError("an nn.Module needs input_shape (the input without its batch, e.g. (3, 224, 224)) "
                                "or example inputs")

    def batched(b: int):
        return rebatch_inputs(inputs, int(first.shape[0]), b) if first is not None else None

    def replay_at(b: int):
        return replay_memory(model, dev, batch=b, mode=mode, dtype=dtype, optimizer=optimizer,
                             input_shape=input_shape, autocast=autocast, inputs=batched(b))

    out = answers(replay_at, dev, memory_mb, mig, limit)
    return latency_into(out, dev, _latency_at(model, pred, mode=mode, dtype=dtype, optimizer=optimizer,
                                              input_shape=input_shape, autocast=autocast, method=method,
                                              batched=batched), latency_slo_ms) if latency else out


def _slo(latency_slo_ms, latency: bool) -> float | None:
    """``latency_slo_ms`` checked; it needs the latency (``latency=True``)."""
    from ._finish import check_slo

    latency_slo_ms = check_slo(latency_slo_ms)
    if latency_slo_ms is not None and not latency:
        raise InvalidInputError("latency_slo_ms needs latency=True (the target is met by predicted latency)")
    return latency_slo_ms


def _latency_predictor(predictor, host, cuda_graphs: bool):
    """The predictor :func:`largest_batch` asks for latency: ``predictor`` (default the library's) with the
    ``host`` profile and ``cuda_graphs``, as :func:`~costmodel.estimate` builds it."""
    from ..predictors import get_predictor, with_cuda_graphs, with_host_profile

    pred, _ = with_host_profile(get_predictor(predictor), host)
    return with_cuda_graphs(pred, cuda_graphs)


def _latency_at(model, pred, *, mode: str, dtype: str, optimizer: str, input_shape, autocast: str | None = None,
                method: str = "export", batched: Callable[[int], Any] | None = None) -> Callable[[int, Any], float]:
    """``latency(batch, device)`` in ms: ``pred`` on ``model``'s graph at that batch."""
    from ..frontends import to_graph

    def at(b: int, target) -> float:
        kw = {"inputs": batched(b)} if batched is not None and batched(b) is not None else {}
        kw.update({"autocast": autocast} if autocast is not None else {})
        g = to_graph(model, batch=b, input_shape=None if kw.get("inputs") is not None else input_shape,
                     dtype=dtype, mode=mode, method=method, **kw)
        return pred.predict(g, target, mode=mode, optimizer=optimizer).latency_ms

    return at


def largest_llm_batch(model: Any, *, seq: int, device="h200", mode: str | None = None, dtype: str = "fp16",
                      optimizer: str = "adamw", lora_r: int | None = None, lora_targets=None,
                      checkpointing: bool = False, memory_mb: float | None = None, limit: int = 4096,
                      autocast: str | None = None, target_seq: int | None = None,
                      ssm_kernels: str = "reference", mig: str | None = None,
                      latency: bool = True, latency_slo_ms: float | None = None, predictor=None, host=None,
                      cuda_graphs: bool = False) -> dict | list[dict]:
    """The largest batch (sequences of ``seq`` tokens) whose memory, from the workload's allocation trace
    replayed through the caching allocator (``memory_mb``, NVML level), fits ``device``'s memory, one of its
    MIG profiles (``mig``; ``"all"``: a list, one answer per profile) or ``memory_mb`` (what is free). The
    workload is :func:`~costmodel.estimate_llm`'s (``mode``: forward, prefill, decode or training, with its ``optimizer``, LoRA, checkpointing and autocast;
    ``target_seq``: an encoder-decoder's decoder tokens; ``ssm_kernels``: Mamba's selective scans as
    transformers' reference loop or the fused kernels).

    Two traces (batch 1 and 2) give a first guess, and traces around it settle it: the answer is a batch
    that fits with the next one traced over. Returns :func:`largest_batch`'s dict: ``batch`` fits by the
    replayed memory, ``upper_batch`` by its 90 % interval's upper end; ``batch`` is 0 when not even one
    sequence fits, and ``limit`` caps the search. With ``latency`` (the default), each answer also gives
    :func:`~costmodel.estimate_llm`'s latency and throughput at the batch to plan on, on the MIG slice it
    answers for (:func:`latency_into`; with ``latency_slo_ms``, also the largest batch within that target), by
    ``predictor`` with ``host`` and ``cuda_graphs`` as :func:`~costmodel.estimate_llm` takes them.
    """
    from ..analysis.memreplay import replay_memory
    from ..devices import get_device
    from ..features import llm_workload
    from ..frontends.hf import amp_option, step_options
    from ..ir import MODEL_DTYPES as DTYPES
    from ..predictors import validate_optimizer

    positive_int(seq, "seq")
    positive_int(limit, "limit")
    latency_slo_ms = _slo(latency_slo_ms, latency)
    dev = get_device(device)
    if latency:  # a bad predictor or host profile fails before the traces
        from ..predictors import get_llm_predictor, with_host_profile

        with_host_profile(get_llm_predictor(predictor), host)
    w = llm_workload(model, batch=1, seq=seq, mode=mode, dtype=dtype, target_seq=target_seq)
    if w.dtype not in DTYPES:  # int8, int4: a quantized model's kernels and buffers have no allocation trace
        raise InvalidInputError(f"the largest batch is searched over the allocation trace of a model in "
                                f"{', '.join(DTYPES)}; an {w.dtype} model has none (its memory is the llm-xgb "
                                f"predictor's): pass dtype= one of {', '.join(DTYPES)}, or estimate_llm at the "
                                "batches you consider")
    lora = step_options(w.mode, lora_r, lora_targets, checkpointing)
    amp = amp_option(w.mode, w.dtype, autocast)
    kw: dict = dict(seq=seq, dtype=w.dtype, **({"target_seq": target_seq} if target_seq is not None else {}),
                    **({"ssm_kernels": ssm_kernels} if ssm_kernels != "reference" else {}))
    if w.mode == "training":
        kw.update(mode="training", optimizer=validate_optimizer(optimizer))
        if lora:
            kw["lora"] = lora
        if checkpointing:
            kw["checkpointing"] = True
        if amp:
            kw["autocast"] = amp
    else:
        kw.update(mode="inference", phase=w.mode)
    out = answers(lambda b: replay_memory(w.spec, dev, batch=b, **kw), dev, memory_mb, mig, limit)
    if not latency:
        return out
    from ._api import estimate_llm

    opts = dict(seq=seq, mode=w.mode, dtype=dtype, target_seq=target_seq, ssm_kernels=ssm_kernels,
                predictor=predictor, host=host, cuda_graphs=cuda_graphs)
    if w.mode == "training":
        opts.update(optimizer=optimizer, lora_r=lora_r, lora_targets=lora_targets, checkpointing=checkpointing,
                    autocast=autocast)
    return latency_into(out, dev, lambda b, target: estimate_llm(model, batch=b, device=target, **opts).latency_ms,
                        latency_slo_ms)
