"""The largest batch of a transformer workload whose replayed memory fits a device or a MIG slice."""

from __future__ import annotations

from typing import Any

from .._errors import InvalidInputError
from .._validate import positive_int


def largest_llm_batch(model: Any, *, seq: int, device="h200", mode: str | None = None, dtype: str = "fp16",
                      optimizer: str = "adamw", lora_r: int | None = None, lora_targets=None,
                      checkpointing: bool = False, memory_mb: float | None = None, limit: int = 4096,
                      autocast: str | None = None, target_seq: int | None = None,
                      ssm_kernels: str = "reference") -> dict:
    """The largest batch (sequences of ``seq`` tokens) whose memory, from the workload's allocation trace
    replayed through the caching allocator (``memory_mb``, NVML level), fits ``device``'s memory, or
    ``memory_mb`` (a MIG slice's, or what is free). The workload is :func:`~costmodel.estimate_llm`'s
    (``mode``: forward, prefill, decode or training, with its ``optimizer``, LoRA, checkpointing and autocast;
    ``target_seq``: an encoder-decoder's decoder tokens; ``ssm_kernels``: Mamba's selective scans as
    transformers' reference loop or the fused kernels).

    A transformer's memory grows with the batch almost linearly (its weights and optimizer state stay,
    the activations, logits and KV cache scale), so two traces (batch 1 and 2) give a first guess,
    and traces around it settle it: the answer is a batch that fits with the next one traced over.
    Returns ``{"batch", "memory_mb", "next_memory_mb", "limit_mb", "traced": {batch: memory_mb}}``;
    ``batch`` is 0 when not even one sequence fits, and ``limit`` caps the search.
    """
    from ..analysis.memreplay import replay_memory
    from ..devices import get_device
    from ..features import llm_workload
    from ..frontends.hf import amp_option, step_options
    from ..predictors import validate_optimizer

    positive_int(seq, "seq")
    positive_int(limit, "limit")
    dev = get_device(device)
    w = llm_workload(model, batch=1, seq=seq, mode=mode, dtype=dtype, target_seq=target_seq)
    lora = step_options(w.mode, lora_r, lora_targets, checkpointing)
    amp = amp_option(w.mode, w.dtype, autocast)
    training = w.mode == "training"
    if memory_mb is not None and not (isinstance(memory_mb, (int, float)) and memory_mb > 0):
        raise InvalidInputError(f"memory_mb must be a positive number of MB, got {memory_mb!r}")
    cap = float(memory_mb) if memory_mb is not None else float(dev.memory_mb)
    kw: dict = dict(seq=seq, dtype=w.dtype, **({"target_seq": target_seq} if target_seq is not None else {}),
                    **({"ssm_kernels": ssm_kernels} if ssm_kernels != "reference" else {}))
    if training:
        kw.update(mode="training", optimizer=validate_optimizer(optimizer))
        if lora:
            kw["lora"] = lora
        if checkpointing:
            kw["checkpointing"] = True
        if amp:
            kw["autocast"] = amp
    else:
        kw.update(mode="inference", phase=w.mode)
    traced: dict[int, float] = {}

    def mem(b: int) -> float:
        if b not in traced:
            traced[b] = replay_memory(w.spec, dev, batch=b, **kw).memory_mb
        return traced[b]

    if mem(1) > cap:
        return {"batch": 0, "memory_mb": None, "next_memory_mb": traced[1], "limit_mb": cap, "traced": traced}
    lo, hi = 1, None
    if limit > 1 and mem(2) > cap:
        hi = 2
    elif limit > 1:
        lo = 2
        # a linear guess from batches 1 and 2 (where the peak moves, from the optimizer's state to the
        # activations, the two can be equal: then a gallop from 4), then a bracket around it
        slope = mem(2) - mem(1)
        cand = min(limit, max(3, int((cap - mem(2)) / slope) + 2 if slope > 0 else 4))
        step = max(1, cand // 8)
        if cand > lo and mem(cand) <= cap:
            lo = cand
            while lo < limit:
                nxt = min(limit, lo + step)
                if mem(nxt) > cap:
                    hi = nxt
                    break
                lo, step = nxt, step * 2
        elif cand > lo:
            hi = cand
            while hi - lo > 1:
                nxt = max(lo + 1, hi - step)
                if mem(nxt) <= cap:
                    lo = nxt
                    break
                hi, step = nxt, step * 2
    while hi is not None and hi - lo > 1:  # bisect the bracket
        mid = (lo + hi) // 2
        if mem(mid) <= cap:
            lo = mid
        else:
            hi = mid
    return {"batch": lo, "memory_mb": traced[lo], "next_memory_mb": traced.get(hi) if hi else None,
            "limit_mb": cap, "traced": dict(sorted(traced.items()))}
