"""The timed measurement of one row, with the protocol of the packaged data.

The protocol (``costmodel/data`` README, "How a row was measured"):

* the model is built with random weights directly on the measuring device
  (nothing is downloaded; a detector is built on the CPU with seeded weights
  and moved, as the graph capture builds it); ``fp16``/``bf16`` convert the fp32
  model (``model.half()``, no autocast);
* inputs are ``torch.randn(batch, *input)`` for vision models (seeded on the CPU,
  the values the capture of a model that needs data runs on) and random
  token ids of shape ``(batch, seq)`` for language models;
* inference runs under ``torch.inference_mode()`` with the model in
  ``eval()``; training runs one full step (``zero_grad``, forward,
  cross-entropy against random labels, backward, ``torch.optim.Adam`` step),
  the Adam state being created during the warm-up;
* 3 warm-up calls, a calibration (the median of up to 5 calls timed one at a
  time within 0.05 s; the packaged data timed one), then N timed calls with N
  chosen so the timed window is at least 0.25 s (at least 10 calls, at most
  2.5 s; when 2.5 s allows fewer than 10 calls, at least 3; ``window_s``
  lengthens both bounds; a window that comes out shorter than its minimum, the
  calibration having been slower than the calls, is timed again with N planned
  from its own latency, ``window_replanned_from_s`` recording the short one),
  split in 3 chunks each timed
  with CUDA events on a GPU and ``time.perf_counter`` on a CPU; ``latency_ms``
  is the mean per call and ``latency_ms_chunks`` the chunk means;
* transformer decode (``mode="decode"``): a KV cache of ``seq`` tokens is
  prefilled, then 8 one-token decode steps are timed as one chunk (the cache
  grows from ``seq`` to ``seq + 7`` during the window);
* energy: NVML's total-energy counter read before and after the timed window
  (``energy_j`` per call, ``power_w`` the mean power over the window,
  ``power_w_sample`` one instantaneous NVML power reading); on a CPU the RAPL
  package counter where it is readable, else ``null``. Beyond the packaged
  protocol, on a GPU the step then runs on for an energy span
  (:mod:`costmodel.measure.energy`): the power between two updates of the
  counter, at least ``energy_span_s`` (0.3 s) apart, times ``latency_ms`` gives
  ``energy_j`` and ``power_w``; the window's reading stays as
  ``energy_j_window``/``power_w_window`` and ``energy_method`` says which one
  ``energy_j`` is (``counter-updates`` or ``window``). The counter steps about
  every 100 ms, so the window alone carries a label error of about 13 %;
* memory: before each row ``gc.collect()``, ``torch.cuda.empty_cache()``,
  ``reset_peak_memory_stats()``; ``weights_mb`` is what is allocated before
  the row, ``peak_alloc_mb``/``peak_reserved_mb`` the allocator peaks,
  ``nvml_used_mb`` the device memory in use per NVML right after the timed
  window.  On a CPU: the process RSS.

"""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Any, Callable

from .._errors import InvalidInputError
from ..frontends.hf import MAMBA1_TYPES, MAMBA2_TYPES, prefill_kwargs, prefilled, reference_kernels, seq2seq_inputs, step_kwargs
from .energy import ENERGY_SPAN_S, energy_between_updates
from .models import _drop_model, _model, _torch_dtype
from .probes import _MB, _Device, _device, _rss_mb, _version, cpu_name, normalize_device
from .work import (
    CHUNKS,
    DECODE_TOKENS,
    MAX_WINDOW_S,
    MIN_CALLS,
    MIN_WINDOW_S,
    WARMUP,
    WorkItem,
    _check_vision_spec,
    _grid_items,
    _llm_items,
)

#: the longest timed window ``window_s`` may ask for (seconds)
WINDOW_LIMIT_S = 60.0


def calls_for(t_call_s: float, min_window_s: float = MIN_WINDOW_S) -> int:
    """Timed calls for one call of ``t_call_s`` seconds (protocol above). ``min_window_s`` replaces the
    protocol's 0.25 s; the window's cap is then ``max(2.5 s, min_window_s)``."""
    cap = max(MAX_WINDOW_S, min_window_s)
    n = max(MIN_CALLS, math.ceil(min_window_s / max(t_call_s, 1e-9)))
    if n * t_call_s > cap:
        n = max(3, int(cap // max(t_call_s, 1e-9)))
    return n


def _seconds(value, what: str) -> float:
    """``value`` as a float, or an error that names ``what`` and the value."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a number of seconds, got {value!r}") from None


def check_window(window_s) -> float | None:
    """``window_s`` as a float, or an error naming it (``None``: the protocol's window)."""
    if window_s is None:
        return None
    w = _seconds(window_s, "window")
    if not (MIN_WINDOW_S <= w <= WINDOW_LIMIT_S):
        raise InvalidInputError(f"window must be between {MIN_WINDOW_S:g} and {WINDOW_LIMIT_S:g} seconds "
                                f"(the protocol's minimum and this tool's limit), got {window_s!r}")
    return w


def check_energy_span(energy_span_s) -> float:
    """``energy_span_s`` as a float (``None``: the default span), or an error naming it."""
    if energy_span_s is None:
        return ENERGY_SPAN_S
    s = _seconds(energy_span_s, "energy span")
    if not (0 <= s <= WINDOW_LIMIT_S):  # NaN fails every comparison
        raise InvalidInputError(f"energy span must be 0 (off) to {WINDOW_LIMIT_S:g} seconds, got {energy_span_s!r}")
    return s


def _chunk_sizes(n: int) -> list[int]:
    """Calls per chunk: ``n`` split in 3 (``n >= 3`` always)."""
    return [n // CHUNKS + (1 if i < n % CHUNKS else 0) for i in range(CHUNKS)]


def _time_once(step: Callable[[], Any], d: _Device) -> float:
    if d.cuda:
        a, b = d.torch.cuda.Event(enable_timing=True), d.torch.cuda.Event(enable_timing=True)
        d.sync()
        a.record()
        step()
        b.record()
        d.sync()
        return a.elapsed_time(b) / 1e3
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


def _timed_window(step: Callable[[], Any], sizes: list[int], d: _Device) -> dict:
    """Run ``sum(sizes)`` calls in chunks; time each chunk and meter the energy of the window."""
    n = sum(sizes)
    d.sync()
    e0 = d.meter.energy_j() if d.cuda else d.meter.read()
    t0 = time.perf_counter()
    if d.cuda:
        events = []
        for k in sizes:
            a, b = d.torch.cuda.Event(enable_timing=True), d.torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(k):
                step()
            b.record()
            events.append((a, b))
        d.sync()
        window = time.perf_counter() - t0
        e1 = d.meter.energy_j()
        chunks = [a.elapsed_time(b) / k for (a, b), k in zip(events, sizes)]
    else:
        chunks = []
        for k in sizes:
            t = time.perf_counter()
            for _ in range(k):
                step()
            chunks.append((time.perf_counter() - t) / k * 1e3)
        window = time.perf_counter() - t0
        e1 = d.meter.read()
    energy = d.meter.delta(e0, e1)
    latency = sum(c * k for c, k in zip(chunks, sizes)) / n
    out = {
        "iters": n,
        "latency_ms": latency,
        "latency_ms_chunks": [round(c, 5) for c in chunks],
        "window_s": round(window, 4),
        "energy_j": energy / n if energy is not None else None,
        "power_w": energy / window if energy is not None and window > 0 else None,
    }
    if d.cuda:
        out["power_w_sample"] = d.meter.power_w()
    if energy is not None:
        out["energy_method"] = "window"
    return out


def _energy_span(step: Callable[[], Any], d: _Device, out: dict, clock: Callable[[], float] = time.perf_counter) -> dict:
    """On a GPU, replace the window's energy by the energy between two updates of NVML's counter
    (:mod:`costmodel.measure.energy`), keeping the window's reading as ``energy_j_window`` and
    ``power_w_window``. The span lasts at least ``d.energy_span_s`` and 5 calls (at most 2.5 s)."""
    span_s = getattr(d, "energy_span_s", ENERGY_SPAN_S)
    if not d.cuda or not span_s or out.get("energy_j") is None:
        return out
    span = max(span_s, min(5 * out["latency_ms"] / 1e3, MAX_WINDOW_S))
    res = energy_between_updates(step, d.meter.energy_j, mark=d.event, sync=d.sync, span_s=span, clock=clock)
    if res is None:
        out["energy_method"] = "window (the energy counter did not advance within the span)"
        return out
    out["energy_j_window"], out["power_w_window"] = out["energy_j"], out["power_w"]
    out["energy_j"] = res["power_w"] * out["latency_ms"] / 1e3
    out["power_w"] = res["power_w"]
    out["energy_method"] = "counter-updates"
    out["energy_span"] = {k: res[k] for k in ("span_s", "updates", "update_ms", "calls")}
    return out


#: calibration: up to this many calls, timed one at a time, while their sum stays under CALIBRATION_S
CALIBRATION_CALLS = 5
CALIBRATION_S = 0.05


def _calibrate(step: Callable[[], Any], d: _Device) -> float:
    """Seconds per call, to plan the timed window: the median of up to :data:`CALIBRATION_CALLS` calls
    timed one at a time (as many as fit in :data:`CALIBRATION_S`; one when a call takes longer). The
    packaged data planned from one call; on a busy host one call can be off several-fold, and the
    window with it (on a 2-core machine a 2 s window planned from one 2.1 ms call of a model that
    then ran at 0.23 ms a call came out at a quarter of a second)."""
    times = [_time_once(step, d)]
    while len(times) < CALIBRATION_CALLS and sum(times) < CALIBRATION_S:
        times.append(_time_once(step, d))
    return statistics.median(times)


def _protocol(step: Callable[[], Any], d: _Device) -> dict:
    for _ in range(WARMUP):
        step()
    t_cal = _calibrate(step, d)
    out = _timed_window(step, _chunk_sizes(calls_for(t_cal, d.min_window_s)), d)
    planned = calls_for(out["latency_ms"] / 1e3, d.min_window_s)
    if out["window_s"] < d.min_window_s and planned > out["iters"]:
        # the calibration was slower than the calls (a cold first call, a busy host): the window came out
        # shorter than the protocol's; timed again, planned from the window's own latency (on a 2-core
        # machine 7 of 17 CPU rows had windows of 0.15-0.25 s)
        short = out["window_s"]
        out = _timed_window(step, _chunk_sizes(planned), d)
        out["window_replanned_from_s"] = short
    return _energy_span(step, d, out)


def _logits(out):
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):  # (logits, aux) of Inception/GoogLeNet in training
        return out[0]
    return out


def _vision_step(model, x, mode: str, batch: int):
    import torch

    if mode == "infer":
        return lambda: model(x)
    model.train()
    opt = torch.optim.Adam(model.parameters())
    labels: list = []

    def step():
        opt.zero_grad()
        logits = _logits(model(x))
        if not labels:
            labels.append(torch.randint(0, logits.shape[-1], (batch,), device=x.device))
        torch.nn.functional.cross_entropy(logits, labels[0]).backward()
        opt.step()

    step.opt = opt  # freed with the step
    return step


def _llm_step(model, ids, causal: bool, target_seq: int | None = None):
    """One fine-tuning step of a transformer, as the cost model's training estimate runs it: the tokens
    are the labels of the model's own loss (a causal LM shifts them; an encoder-decoder's decoder reads
    the same tokens, or ``target_seq`` target tokens that are its labels), backward, AdamW (PyTorch's
    default implementation for the device), weights in the row's dtype."""
    import torch

    model.train()
    if causal:
        model.loss_type = "ForCausalLM"  # the loss transformers picks for the class, said without a warning
    opt = torch.optim.AdamW(model.parameters())
    dec = seq2seq_inputs(model, ids, target_seq)
    kw = {"input_ids": ids, "labels": dec.get("decoder_input_ids", ids), **dec}
    if causal:
        kw["use_cache"] = False

    def step():
        opt.zero_grad()
        model(**kw).loss.backward()
        opt.step()

    step.opt = opt  # freed with the step
    return step


def _measure_rows(item: WorkItem, d: _Device, ops: bool = False) -> dict:
    import torch

    model, info = _model(item, d)
    d.clear()
    weights_mb = torch.cuda.memory_allocated(d.dev) / _MB if d.cuda else None
    rss0 = None if d.cuda else _rss_mb()
    b = item.batch
    if item.kind == "vision":
        # the values the graph capture runs a model that needs data on (a detector keeps the same boxes)
        x = torch.randn((b, *info["input"]), generator=torch.Generator().manual_seed(0)).to(
            device=d.dev, dtype=_torch_dtype(item.dtype))
        step = _vision_step(model, x, item.mode, b)
        try:
            if item.mode == "infer":
                with torch.inference_mode():
                    t = _protocol(step, d)
                    prof = _profile_ops(model, x, step, item, d, t) if ops else None
            else:
                t = _protocol(step, d)
                prof = _profile_ops(model, x, step, item, d, t) if ops else None
        finally:
            if item.mode == "train":
                model.zero_grad(set_to_none=True)
                model.eval()
        head = {"spec": item.spec, "mode": item.mode, "dtype": item.dtype, "batch": b, "input": list(info["input"]),
                "params": sum(p.numel() for p in model.parameters())}
    else:
        seq = item.seq
        ids = torch.randint(0, info["vocab"], (b, seq), device=d.dev)
        causal = item.spec["causal"]
        if item.mode == "training":  # a fine-tuning step: the model's own loss, backward, AdamW
            step = _llm_step(model, ids, causal, item.target_seq)
            try:
                t = _protocol(step, d)
            finally:
                model.zero_grad(set_to_none=True)
                model.eval()
            prof = ([], {"skipped": "transformer training steps are not profiled per operator yet"}) if ops else None
        else:
            with torch.inference_mode():
                if item.mode == "decode":
                    tok = torch.randint(0, info["vocab"], (b, 1), device=d.dev)

                    def prefill():  # an encoder-decoder's encoder reads the prompt, its decoder as many tokens;
                        # the cache (and an encoder's output) kept, the prompt's logits dropped
                        return prefilled(model(**prefill_kwargs(model, ids, item.target_seq)))

                    cache, enc = prefill()
                    for _ in range(WARMUP):
                        model(**step_kwargs(model, tok, cache, enc))
                    del cache, enc
                    cache, enc = prefill()  # a fresh cache of `seq` tokens for the timed steps
                    step_kw = step_kwargs(model, tok, cache, enc)  # built once: the cache grows in place
                    t = _timed_window(lambda: model(**step_kw), [DECODE_TOKENS], d)
                    prof = ([], {"skipped": "decode steps are not profiled per operator yet"}) if ops else None
                else:
                    kw = ({"use_cache": False} if causal  # T5: its decoder's tokens
                          else seq2seq_inputs(model, ids, item.target_seq))
                    t = _protocol(lambda: model(input_ids=ids, **kw), d)
                    prof = _profile_ops(model, {"input_ids": ids, **kw}, lambda: model(input_ids=ids, **kw), item, d,
                                        t) if ops else None
        lat_s = t["latency_ms"] / 1e3
        head = {"model": item.spec["model"], "model_type": item.spec["model_type"], "config": info["config"],
                "causal": causal, "mode": item.mode, "dtype": item.dtype, "batch": b, "seq": seq,
                **({"target_seq": item.target_seq} if item.target_seq is not None else {}),
                "params": sum(p.numel() for p in model.parameters())}
        if item.mode == "training":
            head["optimizer"] = "adamw"
        t["throughput_samples_s"] = b / lat_s
        t["tokens_s"] = b * (1 if item.mode == "decode" else seq) / lat_s
    row = dict(head, **t)
    if d.cuda:
        row.update(weights_mb=weights_mb, peak_alloc_mb=torch.cuda.max_memory_allocated(d.dev) / _MB,
                   peak_reserved_mb=torch.cuda.max_memory_reserved(d.dev) / _MB, nvml_used_mb=d.meter.used_mb())
    else:
        rss = _rss_mb()
        row.update(rss_mb=rss, rss_delta_mb=rss - rss0, nvml_used_mb=None, threads=torch.get_num_threads())
        row.pop("power_w_sample", None)
    if d.energy_error():
        row["energy_error"] = d.energy_error()
    if d.cuda and row.get("nvml_used_mb") is None:
        row["memory_error"] = d.memory_error() or "NVML did not report the memory in use"
    row["device"] = d.name
    row["costmodel_version"] = _version()
    if prof is not None:
        row["ops"] = prof[1]
        row["_ops"] = prof[0]
    return row


def _profile_ops(model, inputs, step, item: WorkItem, d: _Device, timed: dict) -> tuple[list[dict], dict]:
    """Per-operator rows of one workload (see :mod:`costmodel.measure.opprofile`)."""
    from ..frontends import from_torch
    from .opprofile import profile_step

    import warnings

    import torch

    training = item.mode == "train"
    # the graph a user gets from the trace frontend: built outside the step's inference mode
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")  # unsupported-op notes: the rows name every operator anyway
        graph = from_torch(model, inputs, mode="training" if training else "inference", method="trace")
    rows, summary = profile_step(step, graph, cuda=d.cuda, sync=d.sync, unprofiled_ms=timed["latency_ms"])
    if training:
        model.train()  # from_torch restores the mode it found; the step trains
    return rows, summary



def measure(spec: dict | WorkItem, batch: int | None = None, *, device: str = "cuda", mode: str | None = None,
            dtype: str = "fp32", seq: int | None = None, threads: int | None = None, ops: bool = False,
            window_s: float | None = None, energy_span_s: float | None = None) -> dict:
    """Measure one workload with the data protocol; returns a row in the data's format.

    Args:
        spec: a vision spec (``{"family", "name", "res", "src"}``), a transformer
            workload (``{"model": "gpt2"}``, resolved through the registry, or
            ``{"model", "model_type", "config", "causal"}``), or a :class:`WorkItem`.
        batch: batch size.
        device: ``"cuda"``, ``"cuda:N"`` or ``"cpu"``.
        mode: ``infer``/``train`` (vision, default ``infer``) or
            ``forward``/``prefill``/``decode`` (transformers; default
            ``prefill`` for decoders, ``forward`` for encoders).
        dtype: ``fp32``, ``fp16`` or ``bf16``.
        seq: sequence length (transformers; for ``decode`` the KV-cache length).
        threads: CPU threads for torch (CPU only).
        ops: also profile the step per operator (:mod:`costmodel.measure.opprofile`):
            the row gets an ``ops`` summary and, under ``_ops``, the operator rows.
        window_s: the shortest timed window in seconds (default: the protocol's 0.25 s; at most 60).
            A longer window averages over more of the host's slow and fast spells, which set the
            latency of launch-bound rows (``benchmarks/label_noise.py``); the row records it as
            ``min_window_s`` when it is not the protocol's.
        energy_span_s: on a GPU, the shortest span between the two energy-counter updates that
            ``energy_j`` is read between (default 0.3 s; 0 keeps the window's reading, the packaged
            protocol; at most 60).

    Raises ``torch.cuda.OutOfMemoryError``/``MemoryError`` when the workload
    does not fit (:func:`collect` turns those into ``"oom"`` rows).
    """
    if isinstance(spec, WorkItem):
        item = spec
    else:
        if batch is None:
            raise InvalidInputError("measure() needs a batch size")
        if isinstance(spec, dict) and "model" in spec and "src" not in spec:
            entry = {k: v for k, v in spec.items() if k in ("model", "model_type", "config", "causal", "target_seq")}
            entry.update(batch=batch, seq=seq, dtype=dtype)
            if mode is not None:
                entry["mode"] = mode
            if seq is None:
                raise InvalidInputError(f"measuring {spec['model']} needs seq (the sequence length)")
            (item,) = _llm_items(entry, str(spec["model"]))
        else:
            (item,) = _grid_items(_check_vision_spec(spec, "spec"), [{"mode": mode or "infer", "dtype": dtype,
                                                                       "batch": batch}], "spec")
    window_s = check_window(window_s)
    span_s = check_energy_span(energy_span_s)
    d = _device(normalize_device(device))
    d.energy_span_s = span_s
    if threads and not d.cuda:
        d.torch.set_num_threads(threads)
    d.min_window_s = window_s if window_s is not None else MIN_WINDOW_S  # the device object is shared
    if item.kind == "llm":
        with reference_kernels() as ref:
            row = _measure_rows(item, d, ops=ops)
        row.update(kernel_record(item.spec["model_type"], ref))
    else:
        row = _measure_rows(item, d, ops=ops)
    if window_s is not None and window_s != MIN_WINDOW_S:
        row["min_window_s"] = window_s
    return row


def measure_cpu(spec: dict, batch: int, *, mode: str = "infer", dtype: str = "fp32", threads: int | None = None) -> dict:
    """Measure one vision spec on this CPU (see :func:`measure`)."""
    return measure(spec, batch, device="cpu", mode=mode, dtype=dtype, threads=threads)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "alloc_failed" in msg)


def kernel_record(model_type: str, reference: set) -> dict:
    """What a transformer row records of the kernels it ran: ``reference_kernels``, the fused kernels
    transformers replaced by its reference PyTorch code (where any), and for the Mamba-1 family
    ``ssm_kernels``, ``fused`` where its selective scan ran ``mamba_ssm``'s kernel (the dataset then costs
    the row's graph with the stand-ins of ``costmodel.frontends.hf.fused_ssm_kernels``); the same for the
    Mamba-2 family's chunked scan."""
    out: dict = {"reference_kernels": sorted(reference)} if reference else {}
    scan = ("selective_scan_fn" if model_type in MAMBA1_TYPES else
            "mamba_chunk_scan_combined" if model_type in MAMBA2_TYPES else None)
    if scan:
        out["ssm_kernels"] = "reference" if scan in reference else "fused"
    return out


def _oom_row(item: WorkItem, device_name: str, err: str) -> dict:
    if item.kind == "llm":
        head = {k: item.spec[k] for k in ("model", "model_type", "config", "causal")}
        head.update(mode=item.mode, dtype=item.dtype, batch=item.batch, seq=item.seq)
        if item.target_seq is not None:
            head["target_seq"] = item.target_seq
    else:
        head = {"spec": item.spec, "mode": item.mode, "dtype": item.dtype, "batch": item.batch}
    return dict(head, oom=True, error=err[:300], device=device_name, costmodel_version=_version())


def _free_after_error(device: str) -> None:
    _drop_model()
    torch = sys.modules.get("torch")
    if torch is not None and device.startswith("cuda") and torch.cuda.is_available():
        try:
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001 - a broken context stays broken; keep going
            pass
        torch.cuda.empty_cache()


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(int(device.split(":")[1]) if ":" in device else None)
    return cpu_name()


def measure_safe(item: WorkItem, device: str, measure_fn: Callable | None = None) -> tuple[dict | None, str | None]:
    """``(row, None)``, an ``oom`` row, or ``(None, error)`` for any other failure."""
    fn = measure_fn or measure
    row = err = None
    oom = False
    try:
        row = fn(item, device=device)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - one failing model must not end a long run
        oom = _is_oom(e)
        err = f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__
    if err is not None:  # outside the except block: the traceback's tensors are gone
        _free_after_error(device)
        if oom:
            return _oom_row(item, _device_name(device), err), None
    return row, err

