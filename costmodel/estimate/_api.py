"""``costmodel.estimate`` and ``costmodel.estimate_llm``: the one-call APIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._errors import CostModelError, InvalidInputError
from ..frontends.pytorch import METHODS as CAPTURE_METHODS
from ..ir import MODEL_DTYPES as DTYPES, MODES
from ._finish import check_slo, no_faster_than_whole, slice_prediction_into
from ._memory import MEMORY_PATHS, graph_memory_into, replay_into, traceable
from ._types import LLMEstimate, with_notes


def estimate(
    model,
    *,
    batch: int,
    input_shape=None,
    device: str,
    mode: str | None = None,
    dtype: str | None = None,
    optimizer: str = "adam",
    predictor=None,
    inputs=None,
    host=None,
    memory: str = "replay",
    autocast: str | None = None,
    latency_slo_ms: float | None = None,
    cuda_graphs: bool = False,
    method: str = "export",
):
    """Predict latency, memory, energy and a MIG slice for a model on a device.

    Args:
        model: ``.onnx`` path, ``onnx.ModelProto``, ``nn.Module``, zoo name
            (``"torchvision:resnet50"``, ``"timm:poolformer_s12"``), a data
            spec dict, or an already built :class:`~costmodel.CostGraph`.
        batch: batch size (> 0).
        input_shape: input shape without batch, e.g. ``(3, 224, 224)``
            (zoo models know their own; ONNX files need it only for dynamic dims).
        device: device name (``"h100"``, ``"A100-SXM4-80GB"``...; see ``costmodel devices``).
        mode: ``"inference"`` or ``"training"`` (one optimizer step); default inference, or a CostGraph's own
            capture's mode (another costs its operators as captured, and says so).
        dtype: ``"fp32"``, ``"fp16"`` or ``"bf16"``: the model converted to it (``model.half()``...); ``None``
            (default): the model's own (an ``nn.Module``'s first floating parameter's, what an ONNX file's,
            Relax module's or CostGraph's graph records; ``"fp32"`` for a zoo name, a spec or autocast).
        optimizer: for training: ``"sgd"``, ``"sgd_momentum"``, ``"adam"``, ``"adamw"``.
        predictor: a registered name (``"analytic"``...), a Predictor, a trained artifact's folder (which
            ``details["artifact"]`` names) or ``None`` for the library's default.
        inputs: example inputs for an ``nn.Module`` instead of ``input_shape``; ONNX: ``{input name: full shape}``.
        host: a host profile (``costmodel calibrate``'s JSON path or a
            :class:`~costmodel.measure.host.HostProfile`) for predictors that model the host
            (``"timeline"``); others ignore it and say so in ``assumptions``.
        memory: ``"replay"`` (default): when the model can run on fake tensors (a module,
            a zoo name, a data spec), memory comes from its allocation trace replayed
            through the caching allocator (``allocated_mb``, ``reserved_mb`` and
            ``details["memory"]`` say how); ``"predictor"``: the predictor's own.
        autocast: ``"fp16"`` or ``"bf16"``: the fp32 model under ``torch.autocast`` (mixed precision),
            as CUDA autocast runs it: the graph gets autocast's casts and dtypes
            (:func:`~costmodel.analysis.autocast_graph`), and the memory trace runs under autocast.
            ``dtype`` stays ``"fp32"`` (the weights' dtype).
        latency_slo_ms: a latency target (ms): the MIG pick is then the smallest slice that holds
            the memory and, asked about as a device of its own, answers within it
            (``details["mig"]["slo_met"]``; ``mig_profile`` is ``None`` where no slice does).
        cuda_graphs: cost the step replayed from one captured CUDA graph (``torch.compile(mode=
            "reduce-overhead")``, ``torch.cuda.graphs``) instead of eager dispatch: the timeline's device
            lane, begun by one graph launch, without a host cost per operator (no row measured one; the
            estimate says so). Needs the timeline predictor and a GPU.
        method: a PyTorch model's capture, ``"export"`` (``torch.export``) or ``"trace"`` (a dispatch trace
            on meta tensors, faster); memory comes from the module's own allocation trace either way.

    Returns:
        :class:`~costmodel.Estimate`; ``estimate.predictor`` says which model answered and
        ``estimate.assumptions`` every fallback the estimate rests on.
    """
    from ..devices import get_device
    from ..frontends import check_batch, to_graph
    from ..predictors import (default_fallback_note, get_predictor, validate_optimizer, with_cuda_graphs,
                              with_host_profile)

    check_batch(batch)
    mode, mode_note = own_mode(model, mode)
    dtype = own_dtype(model, autocast) if dtype is None else dtype
    for name, value, valid in (("method", method, CAPTURE_METHODS), ("memory", memory, MEMORY_PATHS),
                               ("mode", mode, MODES), ("dtype", dtype, DTYPES)):
        if value not in valid and not (name == "dtype" and value is None):
            raise InvalidInputError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
    optimizer, latency_slo_ms = validate_optimizer(optimizer), check_slo(latency_slo_ms)
    dev, pred = get_device(device), get_predictor(predictor)  # fail on a bad device before featurizing
    pred, host_notes = with_host_profile(pred, host)  # a missing or damaged file fails here, naming it
    notes = ([default_fallback_note(pred)] if predictor is None else []) + host_notes + ([mode_note] if mode_note else [])
    pred = with_cuda_graphs(pred, cuda_graphs)
    graph = to_graph(model, batch=batch, input_shape=input_shape, inputs=inputs, dtype=dtype, mode=mode,
                     autocast=autocast, method=method)
    graph, dtype = in_own_dtype(graph, mode) if dtype is None else (graph, dtype)
    if autocast is not None:
        notes.append(f"autocast {autocast}: CUDA autocast's operator lists applied to the graph (GEMMs, convolutions "
                     f"and attention in {autocast} after a cast of each fp32 operand; its fp32 list in fp32; other "
                     "operators in their inputs' widest dtype); the predictor has no autocast rows")
    if graph.meta.get("batch") not in (None, batch):
        raise InvalidInputError(f"the model's inputs have batch {graph.meta.get('batch')} but batch={batch} was requested")
    notes += frozen_notes(graph, mode, pred) + resolution_notes(model, graph, input_shape, inputs)
    est = _predict_on(pred, graph, dev, mode=mode, optimizer=optimizer)
    if memory == "replay" and traceable(model):
        est = replay_into(est, model, dev, batch=batch, mode=mode, dtype=dtype, optimizer=optimizer,
                          input_shape=input_shape, inputs=inputs, graph=graph, autocast=autocast)
    elif memory == "replay":
        est = graph_memory_into(est, graph, dev, mode=mode, optimizer=optimizer,
                                learns_memory=getattr(pred, "learns_memory", True))
    est = slice_prediction_into(est, dev, lambda d: pred.predict(graph, d, mode=mode, optimizer=optimizer),
                                predictor=pred.name, latency_slo_ms=latency_slo_ms)
    est.details.update({"artifact": pred.artifact} if getattr(pred, "artifact", None) else {})  # a folder by path
    return with_notes(workload_details(est, graph, autocast=autocast, cuda_graphs=cuda_graphs), notes)


def _predict_on(pred, graph, dev, *, mode: str, optimizer: str):
    """``pred``'s estimate of ``graph`` on ``dev``; on a MIG slice, no faster than on its whole GPU."""
    from ..devices import mig_parent

    est = pred.predict(graph, dev, mode=mode, optimizer=optimizer)
    whole = mig_parent(dev)
    if whole is None:
        return est
    return no_faster_than_whole(est, pred.predict(graph, whole, mode=mode, optimizer=optimizer).latency_ms, whole.name)


def own_mode(model, mode: str | None) -> tuple[str, str | None]:
    """``mode`` (for a :class:`~costmodel.CostGraph` asked without one, the mode it was captured in;
    inference for any other model asked without one), and the assumption to add where a graph is costed
    in another mode than its capture's (:func:`costmodel.predictors.graph_mode`)."""
    from ..ir import CostGraph
    from ..predictors import graph_mode

    if isinstance(model, CostGraph):
        return graph_mode(model, mode)
    if mode is not None and mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return ("inference" if mode is None else mode), None


def own_dtype(model, autocast: str | None = None) -> str | None:
    """The dtype a model is in: an ``nn.Module``'s first floating parameter or buffer (``fp16``, ``bf16``,
    else ``fp32``); a CostGraph's recorded dtype; ``fp32`` for a zoo name or a data spec (built in fp32);
    ``None`` for a model only its graph describes (an ONNX file or ModelProto, a Relax module): its graph
    says (:func:`graph_dtype`). Under ``autocast`` the model is an fp32 one, as autocast runs it."""
    import sys

    from ..ir import CostGraph

    if isinstance(model, CostGraph):
        return graph_dtype(model)
    torch = sys.modules.get("torch")  # a module means torch is imported already
    if torch is not None and isinstance(model, torch.nn.Module):
        import itertools

        first = next((t for t in itertools.chain(model.parameters(), model.buffers()) if t.is_floating_point()),
                     None)
        return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(getattr(first, "dtype", None), "fp32")
    from ..frontends import looks_like_onnx_path

    if isinstance(model, dict) or (isinstance(model, (str, Path)) and not looks_like_onnx_path(model)):
        return "fp32"
    return "fp32" if autocast is not None else None


def in_own_dtype(graph, mode: str):
    """``(graph, dtype)`` for a model only its graph describes (an ONNX file, a Relax module): the dtype its
    graph records, the graph cast to fp32 where that is none of the model dtypes."""
    from ..frontends import to_graph

    dtype = graph_dtype(graph)
    return (to_graph(graph, dtype=dtype, mode=mode) if graph.meta.get("dtype") != dtype else graph), dtype


def graph_dtype(graph) -> str:
    """The dtype a graph's frontend recorded for its model (its weights', else its first floating input's):
    ``fp32``, ``fp16`` or ``bf16``; ``fp32`` where it recorded none of them."""
    d = graph.meta.get("dtype")
    return d if d in DTYPES else "fp32"


def workload_details(est, graph, *, autocast: str | None, cuda_graphs: bool):
    """``est`` with what its workload was in ``details``: autocast, CUDA graphs, frozen parameters, input shape."""
    if autocast is not None:
        est.details["autocast"] = autocast
    if cuda_graphs:
        est.details["cuda_graphs"] = True
    if graph.meta.get("frozen_params"):
        est.details["frozen_params"] = int(graph.meta["frozen_params"])
    if graph.meta.get("input_shape"):
        est.details["input_shape"] = [int(d) for d in graph.meta["input_shape"]]
    return est


def resolution_notes(model, graph, input_shape, inputs) -> list[str]:
    """Say so when a zoo model was given no input shape and is priced at a resolution other than 224:
    the one its published weights are evaluated at (torchvision's ``inception_v3``: 299; a timm
    model's ``pretrained_cfg``)."""
    from ..frontends import looks_like_onnx_path

    shape = graph.meta.get("input_shape")
    if input_shape is not None or inputs is not None or not isinstance(model, (str, dict)) or not shape:
        return []
    if isinstance(model, str) and looks_like_onnx_path(model):
        return []
    from ..frontends.zoo import default_resolution, parse_model_ref

    spec = parse_model_ref(model)
    if "res" in spec or len(shape) not in (3, 4) or (len(shape) == 3 and shape[-1] == 224):
        return []
    dims = "x".join(str(int(d)) for d in shape)
    source = default_resolution(spec)[1]
    if source.endswith(" models"):  # torchvision's other tasks: the size the model takes, not a crop
        why = f"the input size of {source}" + (" (a detector resizes every image to it)" if "detection" in source
                                               else "")
    else:
        why = "the resolution the model's published weights are evaluated at"
    clip = " (a 16-frame clip)" if len(shape) == 4 else ""
    return [f"input {dims}{clip}: {why} (no input_shape given; pass one to price another)"]


def frozen_notes(graph, mode: str, pred) -> list[str]:
    """What a training step of a graph with frozen parameters (``requires_grad=False``) rests on; an
    error when nothing is left to train (autograd would refuse the backward)."""
    frozen = int(graph.meta.get("frozen_params") or 0)
    if mode != "training" or not frozen:
        return []
    total = int(graph.params)
    if frozen >= total:
        raise InvalidInputError(
            f"a training step of {graph.meta.get('name', 'the model')!r} updates nothing: all {total:,} of its "
            "parameters are frozen "
            "(requires_grad=False); unfreeze some (a zoo spec's 'trainable': 'head' or a list of name prefixes) "
            "or estimate mode='inference'")
    if getattr(pred, "models_frozen", False):
        return [f"{frozen:,} of {total:,} parameters are frozen: no gradient for them, no backward before the "
                "first trainable layer, the optimizer updates the rest"]
    return [f"{frozen:,} of {total:,} parameters are frozen, which the {pred.name} predictor does not see: its "
            "latency and energy are a full training step's (predictor='timeline' prices the frozen step)"]


def estimate_llm(model: Any, *, batch: int, seq: int, device="h200", mode: str | None = None, dtype: str = "fp16",
                 region: str = "world", carbon_intensity_g_per_kwh: float | None = None,
                 price_per_gpu_hour_usd: float | None = None, provider: str | None = None,
                 instance: str | None = None, predictor=None, host=None, optimizer: str = "adamw",
                 lora_r: int | None = None, lora_targets=None, checkpointing: bool = False,
                 autocast: str | None = None, target_seq: int | None = None,
                 ssm_kernels: str = "reference", latency_slo_ms: float | None = None,
                 cuda_graphs: bool = False, pue: float = 1.0) -> LLMEstimate:
    """Throughput, memory, energy, carbon and cost of a transformer workload.

    ``mode``: ``forward`` (encoders), ``prefill`` or ``decode`` (decoders), or ``training``: one fine-tuning
    step of a decoder or an encoder-decoder (the model's own loss on the ``(batch, seq)`` tokens, backward, ``optimizer``:
    ``adamw`` by default, ``adam``, ``sgd``, ``sgd_momentum``) with its weights in ``dtype``; the timeline
    predictor costs it (no measured row is a training step: the estimate says so). ``lora_r``: LoRA adapters
    of that rank (``peft``, alpha ``2 r``, no dropout) on ``lora_targets`` (module names, a list or a
    comma-separated string; default peft's for the model type), the base weights frozen. ``checkpointing``:
    activation checkpointing of the decoder layers (``gradient_checkpointing_enable``, non-reentrant).
    ``autocast``: ``"bf16"`` or ``"fp16"`` mixed precision of a training step of the fp32 model
    (``dtype="fp32"``: fp32 weights, gradients and optimizer state, the forward pass and loss under
    ``torch.autocast``), what a Trainer's ``bf16=True`` runs; ``dtype="bf16"`` alone is the model converted.
    ``target_seq``: an encoder-decoder's (T5's, BART's) decoder tokens when they differ from its ``seq`` source
    tokens: teacher-forced in ``forward`` and ``training`` (the labels), the tokens generated so far in
    ``decode`` (its self-attention cache; the cross-attention cache holds the ``seq`` source tokens).
    ``ssm_kernels``: a Mamba-family model's selective scans as transformers' ``"reference"`` PyTorch loop
    over the tokens (what runs without ``mamba_ssm``; the default) or as the ``"fused"`` kernels a GPU with
    ``mamba_ssm`` or the ``kernels`` package runs. ``latency_slo_ms``: a latency target per call (ms): the MIG
    pick is then the smallest slice that holds the memory and answers within it (as :func:`estimate`).
    ``cuda_graphs``: the step replayed from one captured CUDA graph, as :func:`estimate` (the timeline only;
    a decode step then leaves out the eager decode loop's per-step host cost). ``pue``: the data centre's
    power usage effectiveness (>= 1, default 1: the GPU alone): ``carbon_g`` is the GPU energy's times it.

    ``predictor``: ``"timeline"`` (default: the workload's graph through the shipped timeline, memory
    from the replayed allocation trace; the first call per workload builds the graph, seconds for a
    7B decoder), ``"llm-xgb"`` (XGBoost on closed-form workload features: a millisecond, less accurate
    on models it never saw, see docs/results.md), or a predictor object. ``host``: a host profile from
    ``costmodel calibrate`` for the timeline's host lane (the XGBoost has none and says so).
    """
    from ..predictors import TimelineLLMPredictor, get_llm_predictor

    from ..frontends.hf import check_ssm_kernels

    check_ssm_kernels(ssm_kernels)
    latency_slo_ms = check_slo(latency_slo_ms)
    from ..devices import get_device
    from ..economics.pricing import check_pricing

    # the device, the region, the PUE and the price fail before a graph is built (seconds for a large decoder)
    from ..economics.carbon import check_pue

    pue = check_pue(pue)
    check_pricing(get_device(device), region=region, intensity_g_per_kwh=carbon_intensity_g_per_kwh,
                  price_per_gpu_hour_usd=price_per_gpu_hour_usd, provider=provider, instance=instance)
    if not isinstance(cuda_graphs, bool):
        raise InvalidInputError(f"cuda_graphs must be True or False, got {cuda_graphs!r}")
    p = get_llm_predictor(predictor)
    kw = dict(batch=batch, seq=seq, device=device, mode=mode, dtype=dtype, region=region,
              carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh, price_per_gpu_hour_usd=price_per_gpu_hour_usd,
              provider=provider, instance=instance)
    if isinstance(p, TimelineLLMPredictor):
        if mode == "training":
            kw["optimizer"] = optimizer
        if lora_r is not None or lora_targets:
            kw.update(lora_r=lora_r, lora_targets=lora_targets)
        if checkpointing:
            kw["checkpointing"] = True
        if autocast is not None:
            kw["autocast"] = autocast
        if target_seq is not None:
            kw["target_seq"] = target_seq
        if ssm_kernels != "reference":
            kw["ssm_kernels"] = ssm_kernels
        if cuda_graphs:
            kw["cuda_graphs"] = True
    elif cuda_graphs:
        from ..predictors import with_cuda_graphs

        with_cuda_graphs(p, cuda_graphs)  # refused, naming the predictor
    elif ssm_kernels != "reference":
        raise InvalidInputError(f"ssm_kernels={ssm_kernels!r} is costed by predictor='timeline'; the {p.name} "
                                "predictor has no state-space features")
    elif lora_r is not None or lora_targets or checkpointing or autocast is not None:
        raise InvalidInputError(f"LoRA adapters, activation checkpointing and autocast are costed by "
                                f"predictor='timeline' in a training step; the {p.name} predictor has none of them")
    elif target_seq is not None:
        raise InvalidInputError(f"target_seq (an encoder-decoder's decoder length) is costed by predictor='timeline'; "
                                f"the {p.name} predictor has no encoder-decoder features")
    ignored: list[str] = []
    if host is not None and isinstance(p, TimelineLLMPredictor):
        kw["host"] = host
    elif host is not None:
        from ..predictors import with_host_profile

        _, ignored = with_host_profile(p, host)  # a missing or damaged file still fails, naming it
    return _named_at_pue(_on_llm_slice(with_notes(p.predict(model, **kw), [*ignored, *spec_notes(model, seq)]), p,
                                       model, kw, latency_slo_ms), p, pue)


def _named_at_pue(est: LLMEstimate, p, pue: float) -> LLMEstimate:
    """``est`` naming the trained artifact's folder that answered, with its carbon at the data centre's ``pue``
    (the grid supplies the facility's energy, not the GPU's alone)."""
    if getattr(p, "artifact", None):
        est.details["artifact"] = p.artifact
    if pue != 1.0:
        est.carbon_g = est.carbon_g * pue if est.carbon_g is not None else None
        est.details["pue"] = pue
    return est


#: a prefill's estimate says that its memory keeps no KV cache where the cache would add this share or more
PREFILL_CACHE_SHARE = 0.05


def _on_llm_slice(est: LLMEstimate, p, model, kw: dict, latency_slo_ms: float | None = None) -> LLMEstimate:
    """``details["mig"]``: the picked MIG slice and the workload there, by the same predictor asked about
    the slice as a device (:func:`slice_prediction_into`, with or without a latency target); on a slice
    device, the note that its cloud cost is its share of its GPU's price."""
    from ..devices import get_device
    from ..economics import mig_slice_share

    kv = (est.details.get("analytic") or {}).get("kv_cache_bytes") or 0.0
    if est.mode == "prefill" and kv / 2**20 >= PREFILL_CACHE_SHARE * est.memory_mb:  # a cache that would matter
        est.assumptions = [*est.assumptions, f"prefill: one forward call over the prompt that keeps no KV cache "
                           f"(use_cache=False, as the measured rows ran it); a server that keeps the cache holds "
                           f"{kv / 2**20:,.0f} MiB more, which a decode estimate at the same seq includes"]
    share = mig_slice_share(est.device)
    if share is not None and est.cost_per_1k_samples_usd is not None and kw.get("price_per_gpu_hour_usd") is None:
        est.assumptions = [*est.assumptions, f"cloud cost: the MIG slice's share of its GPU ({share[2]:.3g}, the "
                                             "larger of its compute and memory fractions) of the GPU's price"]
    return slice_prediction_into(est, get_device(kw["device"]), lambda d: p.predict(model, **{**kw, "device": d}),
                                 predictor=p.name, latency_slo_ms=latency_slo_ms)


def spec_notes(model, seq: int | None = None) -> list[str]:
    """What an estimate rests on because of the architecture: the text decoder of a multimodal config, a
    mixture of experts (no measured row is one), a sequence past the positions a rotary model was trained on."""
    from ..llm import TEXT_DECODER_OF, has_learned_positions, llm_features, moe_layout, resolve_llm

    try:
        spec = resolve_llm(model)
        moe = moe_layout(spec)
        n = llm_features(spec)["max_position_embeddings"]
    except CostModelError:
        return []
    notes = []
    if n and seq and seq > n and not has_learned_positions(spec):  # learned positions refuse it outright
        notes.append(f"seq {seq:,} is past the {n:,} positions {spec.name} was trained on: costed as the same "
                     "layers over more tokens (rotary positions run on); whether the model is any good there, "
                     "or needs a rope_scaling in its config, is not costed")
    if seq:
        from ..llm import cached_tokens

        held = cached_tokens(spec, seq)
        windowed = sum(1 for t in held if 0 < t < seq)
        if windowed:
            notes.append(f"sliding-window attention: {windowed} of {len(held)} layers keep only the latest "
                         f"{min(t for t in held if 0 < t < seq):,} of the {seq:,} tokens in their key/value cache "
                         "(transformers' dynamic cache)")
    if spec.source.startswith(TEXT_DECODER_OF):
        outer = spec.source[len(TEXT_DECODER_OF):].split("; ", 1)[0]
        notes.append(f"a multimodal {outer} config: its text decoder ({spec.model_type}) is costed on the (batch, "
                     "seq) tokens; the vision or audio encoder is not, and the tokens it adds to a prompt count "
                     "only if seq includes them")
    if not moe:
        return notes
    return [*notes, f"mixture of experts ({moe['experts']} experts, {moe['top_k']} per token, in {moe['moe_layers']} "
            "layers): no measured row is one; every expert's weights are held, each token multiplies by its "
            f"{moe['top_k']}, and a call reads the weights of the experts its tokens reach, with routing assumed "
            "even"]
