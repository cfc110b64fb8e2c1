"""Hugging Face ``transformers`` configs -> CostGraph (no hub access, no weights).

A config (a ``model_type`` plus its fields, as stored in the measured LLM
rows, or a local ``config.json``) is instantiated on the meta device:
encoders as ``AutoModel``, decoders as ``AutoModelForCausalLM`` (the head is
part of what runs), then featurized like any ``nn.Module`` on random token ids
of shape ``(batch, seq)``.  Featurization disables the KV cache (``use_cache=
False``): a prefill graph then has the same operators minus the cache copies.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from .._errors import InvalidInputError, ModelLoadError
from ..ir import CostGraph
from ._ssm import MAMBA1_MODULES as MAMBA1_TYPES  # noqa: F401 - public here
from ._ssm import MAMBA2_MODULES as MAMBA2_TYPES  # noqa: F401 - public here
from ._ssm import SSM_KERNELS, check_ssm_kernels, chunk_scan_flops, fused_ssm_kernels, scan_flops  # noqa: F401

_DROP = {"transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype", "model_type"}


def hf_config(model_type: str, config: dict):
    """The config object transformers builds from ``config``'s fields (its class's defaults for the
    fields left out, its aliases resolved)."""
    try:
        import transformers
    except ImportError:
        raise InvalidInputError(
            "featurizing a transformers config needs the 'transformers' package: pip install 'costmodel[llm]'"
        ) from None
    kw = {k: v for k, v in config.items() if k not in _DROP}
    try:
        return transformers.AutoConfig.for_model(model_type, **kw)
    except ValueError as e:
        raise InvalidInputError(f"unknown transformers model_type {model_type!r}: {e}") from None


def build_hf_model(model_type: str, config: dict, *, causal: bool | None = None):
    import torch

    cfg = hf_config(model_type, config)
    cfg.use_cache = False
    if causal is None:
        from ..llm import is_causal_type

        causal = bool(getattr(cfg, "is_decoder", False)) or is_causal_type(model_type)
    with torch.device("meta"):
        model = model_class(cfg, causal).from_config(cfg)
    return model.eval(), causal


def model_class(cfg, causal: bool):
    """The transformers auto class a config is built and measured with: decoders with their LM head,
    encoder-decoders (T5, BART) with theirs (both stacks and the head, as they are run), encoders bare."""
    import transformers

    if causal:
        return transformers.AutoModelForCausalLM
    if getattr(cfg, "is_encoder_decoder", False) and _has_seq2seq_lm(cfg):
        return transformers.AutoModelForSeq2SeqLM
    return transformers.AutoModel


@contextlib.contextmanager
def reference_kernels() -> Iterator[set]:
    """Collect the names of the fused kernels transformers replaces by its reference PyTorch code while
    a model runs eagerly within the block, e.g. under fake tensors (Mamba's selective scan, causal
    convolutions, gated delta rules...). On meta or fake tensors, or without the kernels' package, such
    a layer runs its reference path: a loop of small operators that a GPU with the package runs as a
    few fused kernels. transformers says so once per process in a log line; the block takes those lines
    (every time) instead of logging them. A capture by ``torch.export`` takes the reference path
    without saying so, so an eager run (the allocation trace) is where this is asked."""
    found: set[str] = set()
    hub = sys.modules.get("transformers.integrations.hub_kernels")
    if hub is None:  # no model built yet (a measurement builds it inside the block)
        try:
            import transformers.integrations.hub_kernels as hub
        except ImportError:  # a transformers without hub kernels
            hub = None
    log = getattr(hub, "logger", None)
    if log is None:
        yield found
        return

    class _Recorder:
        def __getattr__(self, name):
            return getattr(log, name)

        def warning_once(self, msg, *args, **kwargs):
            if isinstance(msg, str) and "falling back to its reference" in msg and msg.count("`") >= 2:
                found.add(msg.split("`")[1])
                return None
            return log.warning_once(msg, *args, **kwargs)

    hub.logger = _Recorder()
    try:
        yield found
    finally:
        hub.logger = log


#: how an allocation trace's note names transformers' reference code run in place of fused kernels
REFERENCE_NOTE = "transformers' reference PyTorch code for "


def noting_reference_kernels(make_trace):
    """``make_trace()``'s allocation trace, with a note (``REFERENCE_NOTE``) naming the fused kernels
    transformers replaced by its reference code while it was traced, if any."""
    with reference_kernels() as ref:
        trace = make_trace()
    if ref:
        trace.notes.append(f"{REFERENCE_NOTE}{', '.join(sorted(ref))}")
    return trace


@contextlib.contextmanager
def unpadded_sequences() -> Iterator[None]:
    """One unpadded sequence per row, as the measured runs had, said to transformers' masking code
    where it would read tensor values that meta and fake tensors do not hold: its check of the position
    ids for packed sequences (none), and its test that a padding mask is all ones (it is) before it
    lets attention run with ``is_causal`` instead of a mask. A fake padding mask is not a sign of tracing
    either: BART's decoder makes an all-ones mask itself, and transformers would otherwise build the causal
    mask it skips on real tensors (one ``(batch, 1, target, target)`` float mask more at a step's peak).
    Where transformers was never imported no model of it can run, and nothing is imported (a second)."""
    if "transformers" not in sys.modules:
        yield
        return
    try:
        import transformers.masking_utils as mu
    except ImportError:  # an older transformers without these checks
        yield
        return
    from torch._subclasses.fake_tensor import FakeTensor

    packed, fast_all = getattr(mu, "find_packed_sequence_indices", None), getattr(mu, "fast_all", None)
    tracing = getattr(mu, "is_tracing", None)

    def _all_ones(t):
        return True if t.is_meta or isinstance(t, FakeTensor) else fast_all(t)

    def _tracing(tensor=None):  # dynamo, jit and fx still count; a meta or fake tensor alone does not
        fake = tensor is not None and (getattr(tensor, "is_meta", False) or isinstance(tensor, FakeTensor))
        return tracing(None if fake else tensor)

    if packed is not None:
        mu.find_packed_sequence_indices = lambda position_ids: None
    if fast_all is not None:
        mu.fast_all = _all_ones
    if tracing is not None:
        mu.is_tracing = _tracing
    try:
        yield
    finally:
        if packed is not None:
            mu.find_packed_sequence_indices = packed
        if fast_all is not None:
            mu.fast_all = fast_all
        if tracing is not None:
            mu.is_tracing = tracing


def seq2seq_inputs(model, ids, target_seq: int | None = None) -> dict:
    """An encoder-decoder's (T5's) forward call also needs the decoder's tokens: ``(batch, target_seq)``
    ids, teacher-forced; ``target_seq=None``: the same ``(batch, seq)`` ids as the encoder's (what BART derives
    from the input ids itself when it is given none)."""
    cfg = getattr(model, "config", None)
    if not getattr(cfg, "is_encoder_decoder", False):
        return {}
    return {"decoder_input_ids": ids if target_seq is None else target_ids(ids, target_seq)}


def target_ids(ids, target_seq: int):
    """Decoder token ids of ``target_seq`` tokens per sequence, on ``ids``' device and batch."""
    import torch

    return torch.zeros((ids.shape[0], int(target_seq)), dtype=ids.dtype, device=ids.device)


def check_target_seq(target_seq, model_type: str, encoder_decoder: bool) -> None:
    """``target_seq`` (the decoder's tokens) is a positive int, and only for an encoder-decoder."""
    if target_seq is None:
        return
    from .._validate import positive_int

    positive_int(target_seq, "target_seq")
    if not encoder_decoder:
        raise InvalidInputError(f"target_seq ({target_seq}) sets an encoder-decoder's decoder length; {model_type} "
                                "reads one sequence of seq tokens: leave target_seq out")


def _has_seq2seq_lm(cfg) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

    return cfg.model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES


def lora_spec(r, targets=None) -> dict | None:
    """A LoRA setting as the graph and trace caches key it: ``{"r", "targets"}`` (``None``: no adapters)."""
    if r is None:
        if targets:
            raise InvalidInputError("LoRA targets were given without a rank: pass lora_r (e.g. 16)")
        return None
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise InvalidInputError(f"lora_r must be a positive integer (the adapters' rank), got {r!r}")
    if isinstance(targets, str):
        targets = [t for t in targets.split(",") if t]
    return {"r": r, "targets": sorted(targets) if targets else None}


def step_options(mode: str, lora_r=None, lora_targets=None, checkpointing: bool = False) -> dict | None:
    """Check a transformer workload's training options against its ``mode`` and return :func:`lora_spec`'s
    adapters: LoRA and activation checkpointing change a training step only."""
    lora = lora_spec(lora_r, lora_targets)
    if (lora or checkpointing) and mode != "training":
        raise InvalidInputError("LoRA adapters and activation checkpointing are costed for a training step "
                                f"(mode 'training'), not {mode}")
    return lora


def amp_option(mode: str, dtype: str, autocast: str | None) -> str | None:
    """Check a transformer workload's mixed precision: ``autocast`` (``fp16`` or ``bf16``) runs a training
    step's forward pass and loss under ``torch.autocast`` with the weights, gradients and optimizer state in
    fp32, as a Trainer's ``bf16=True`` / ``fp16=True`` does; an inference call is costed as the measured
    rows ran it, the model converted (``dtype``)."""
    if autocast is None:
        return None
    from ..analysis import check_autocast

    check_autocast(autocast)
    if mode != "training":
        raise InvalidInputError(f"autocast is costed for a training step (mode 'training'); for {mode} pass "
                                f"dtype={autocast!r} (the model converted, as the measured rows ran it)")
    if dtype != "fp32":
        raise InvalidInputError(f"autocast runs an fp32 model (fp32 master weights, the usual recipe); got "
                                f"dtype={dtype!r}: pass dtype='fp32' with autocast={autocast!r}, or dtype={dtype!r} "
                                "without autocast for a model converted to it")
    return autocast


def apply_lora(model, lora: dict):
    """``model`` with LoRA adapters (``peft``) of rank ``lora["r"]`` on the modules ``lora["targets"]`` names
    (``None``: peft's default for the model type, the attention's query and value projections for most),
    scaled by ``alpha = 2 r``, without dropout; the base weights frozen, as ``peft.get_peft_model`` leaves them."""
    import warnings

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise InvalidInputError("LoRA adapters need the 'peft' package: pip install 'costmodel[llm]'") from None
    cfg = LoraConfig(r=lora["r"], lora_alpha=2 * lora["r"], lora_dropout=0.0, target_modules=lora["targets"],
                     task_type="CAUSAL_LM")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft's notes on meta-device weights
            return get_peft_model(model, cfg)
    except ValueError as e:  # a target no module matches, or a model type peft has no default for
        import torch

        try:
            from transformers.pytorch_utils import Conv1D
        except ImportError:  # a transformers without GPT-2's Conv1D where it was
            Conv1D = torch.nn.Linear
        # the names a target may take: the last part of each linear layer's name (what peft matches), GPT-2's
        # Conv1D projections (c_attn, its default) among them
        kinds = (torch.nn.Linear, Conv1D)
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, kinds)})
        hint = (f" The model's linear layers: {', '.join(linear)}." if linear else "") + (
            "" if lora["targets"] else " Name the modules to adapt with lora_targets (e.g. q_proj,v_proj).")
        raise InvalidInputError(f"LoRA adapters: {e}{hint}") from None


def checkpointed_blocks(model) -> list[str]:
    """The modules ``gradient_checkpointing_enable()`` checkpoints (transformers' decoder layers), by name:
    with activation checkpointing their forward pass runs again in the backward pass."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # an older transformers: the blocks that carry the flag, less the model itself
        from transformers import PreTrainedModel

        return [n for n, m in model.named_modules() if hasattr(m, "gradient_checkpointing")
                and not isinstance(m, PreTrainedModel)]
    return [n for n, m in model.named_modules() if isinstance(m, GradientCheckpointingLayer)]


def enable_checkpointing(model) -> None:
    """Activation checkpointing of a transformers model's decoder layers, non-reentrant (what PyTorch
    recommends, and what the allocation trace follows)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise InvalidInputError(f"{type(model).__name__} does not support activation checkpointing in transformers")
    # transformers 5 renamed it (the old name warns that it goes in v6); older releases have the old name only
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def hf_graph(
    model_type: str,
    config: dict,
    *,
    batch: int,
    seq: int,
    causal: bool | None = None,
    method: str = "export",
    mode: str = "inference",
    decode: bool = False,
    fused: bool = True,
    lora: dict | None = None,
    target_seq: int | None = None,
    ssm_kernels: str = "reference",
) -> CostGraph:
    """The graph of a transformers config on ``(batch, seq)`` token ids, or (``decode=True``) of one
    decode step with a KV cache of ``seq`` tokens (:func:`_decode_graph`). ``target_seq``: an
    encoder-decoder's decoder tokens (default ``seq``): the encoder reads ``seq`` source tokens, the
    decoder is teacher-forced on ``target_seq`` (a training step's labels), and a decode step attends to
    ``target_seq`` generated tokens and, across, the ``seq`` source tokens. ``mode="training"``: the
    forward pass of a fine-tuning step of a decoder or an encoder-decoder, its own loss included (the tokens are the
    labels); the predictors add the backward pass and the optimizer. ``lora``: :func:`lora_spec`'s adapters
    on the decoder, whose base weights are then frozen (a training step only). ``ssm_kernels="fused"``:
    Mamba's selective scans as the fused kernels a GPU with ``mamba_ssm`` runs (:func:`fused_ssm_kernels`), not
    transformers' reference loop over the tokens."""
    model, causal = build_hf_model(model_type, config, causal=causal)
    check_ssm_kernels(ssm_kernels, model)
    with fused_ssm_kernels(ssm_kernels == "fused"):
        g = _hf_graph(model, causal, model_type, config, batch=batch, seq=seq, method=method, mode=mode,
                      decode=decode, fused=fused, lora=lora, target_seq=target_seq)
    if ssm_kernels == "fused":
        g.meta["ssm_kernels"] = "fused"
    return g


def _hf_graph(model, causal, model_type, config, *, batch, seq, method, mode, decode, fused, lora, target_seq):
    """:func:`hf_graph` of the built ``model``."""
    import torch

    from .pytorch import from_torch

    ids = torch.zeros((batch, seq), dtype=torch.long, device="meta")
    name = config.get("_name_or_path") or model_type
    check_target_seq(target_seq, model_type, bool(seq2seq_inputs(model, ids)))
    target = {"target_seq": target_seq} if target_seq is not None else {}
    if decode:
        if not causal and not seq2seq_inputs(model, ids):
            raise InvalidInputError(f"a decode step needs a decoder; {model_type} is built as an encoder")
        g = _decode_graph(model, batch, seq, name, fused, target_seq)  # traced: export takes no cache object
        g.meta.update({"seq": seq, "model_type": model_type, "causal": causal, "phase": "decode",
                       "cache_len": target_seq or seq, **target})
        return g
    inputs = {"input_ids": ids, **seq2seq_inputs(model, ids, target_seq)}
    # a state-space or gated-delta mixer without its fused kernels is a per-token loop of small operators:
    # torch.export takes minutes to capture what the dispatch trace records in seconds, the same operators;
    # export stays the fallback (a model whose routing reads tensor values traces only through export)
    methods = ["trace", "export"] if method == "export" and sequential_mixers(model) else [method]
    if mode == "training":
        if not causal and "decoder_input_ids" not in inputs:
            raise InvalidInputError(f"{model_type} is built as an encoder; a training step is costed for decoders "
                                    "(the causal-LM loss on the tokens) and encoder-decoders")
        inputs["labels"] = inputs.get("decoder_input_ids", ids)  # an encoder-decoder's labels are its targets
        if causal:
            model.loss_type = "ForCausalLM"  # the loss transformers picks for the class, said without a warning
        if lora:
            model = apply_lora(model, lora)
        blocks = checkpointed_blocks(model)
    elif lora:
        raise InvalidInputError("LoRA adapters are costed for a training step (mode 'training')")
    for i, m in enumerate(methods):
        try:
            g = from_torch(model, inputs, mode=mode, method=m, name=name, fused=fused)
            break
        except ModelLoadError:
            if i == len(methods) - 1:
                raise
    g.meta.update({"seq": seq, "model_type": model_type, "causal": causal, **target})
    if mode == "training":
        g.meta["checkpoint_blocks"] = blocks
    return g


def sequential_mixers(model) -> list[str]:
    """The class names of ``model``'s mixers that transformers runs as a loop over the tokens when the fused
    kernels are not there (on meta and fake tensors they never are): Mamba's and Mamba-2's selective scans
    (Mamba, Mamba-2, Falcon-Mamba, Jamba, Bamba, Zamba) and the gated delta rule (Qwen3-Next)."""
    names = {type(m).__name__ for m in model.modules()}
    return sorted(n for n in names if (n.endswith("Mixer") and "amba" in n) or n.endswith("GatedDeltaNet"))


def _cache_kwarg(model) -> str:
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _state_tensors(layer) -> list:
    """The tensors one cache layer holds, in a fixed order: keys and values of an attention layer,
    convolution and recurrent states of a linear-attention or state-space layer (Mamba, hybrids)."""
    import torch

    out = []
    for name in sorted(vars(layer)):
        v = getattr(layer, name)
        items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else (v,)
        out += [t for t in items if isinstance(t, torch.Tensor) and t.dim() > 1]
    return out


def _decode_graph(model, batch: int, seq: int, name: str, fused: bool = True,
                  target_seq: int | None = None) -> CostGraph:
    """One decode step: one new token per sequence against a KV cache of ``seq`` tokens (an
    encoder-decoder's: ``target_seq`` generated tokens, and ``seq`` source tokens across).

    The cache is filled by a prefill on the meta device (no memory, no compute)
    with the model's own cache class, so it has the layout, heads and dtype the
    model really appends to; its tensors are graph inputs, so the cache read by
    attention and the copy the cache update makes (``torch.cat`` in the dynamic
    cache) are costed with their true sizes.  Traced (``torch.export`` does not
    take a cache object).
    """
    import torch

    from .pytorch import from_torch

    model.config.use_cache = True
    from ._moe import grouped_mm_fallback

    with torch.device("meta"), torch.no_grad(), grouped_mm_fallback(), unpadded_sequences():
        cache, enc = prefilled(model(**prefill_kwargs(model, torch.zeros((batch, seq), dtype=torch.long),
                                                      target_seq)))
    layers = cache_layers(cache)
    if layers is None:
        raise InvalidInputError(f"{name}: this transformers version's KV cache has no per-layer tensors to cost")
    kv = [t for layer in layers for t in _state_tensors(layer)]

    class DecodeStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, *tensors):  # the cache's own tensors (and the encoder's output), as inputs
            return self.model(**step_kwargs(model, input_ids, cache, enc)).logits

    tok = torch.zeros((batch, 1), dtype=torch.long, device="meta")
    extra = () if enc is None else (enc,)
    with unpadded_sequences():
        g = from_torch(DecodeStep(), (tok, *extra, *kv), method="trace", name=name, fused=fused)
    g.meta["cache_inputs_from"] = 1 + len(extra)  # the inputs from here on are the cache's tensors
    return g


def prefill_kwargs(model, ids, target_seq: int | None = None) -> dict:
    """The call that fills a decode step's cache with the ``(batch, seq)`` prompt; an encoder-decoder's
    encoder reads the prompt and its decoder the tokens generated so far (``target_seq``, default as many)."""
    return {"input_ids": ids, "use_cache": True, **seq2seq_inputs(model, ids, target_seq)}


def prefilled(out) -> tuple:
    """``(cache, encoder output or None)`` of a prefill's output: all a decode loop keeps of it (the prompt's
    logits are dropped, as a generation loop drops them)."""
    c = out.get("cache") if hasattr(out, "get") else None
    return (c if c is not None else out["past_key_values"]), getattr(out, "encoder_last_hidden_state", None)


def step_kwargs(model, tok, cache, enc) -> dict:
    """One decode step's call: one new token per sequence against the cache (under the keyword this
    transformers version's model takes). An encoder-decoder's decoder also takes the encoder's output
    ``enc`` of the prefill (its cross-attention keys and values are in the cache already)."""
    arg = _cache_kwarg(model)
    if seq2seq_inputs(model, tok):
        return {"decoder_input_ids": tok, "encoder_outputs": (enc,), "use_cache": True, arg: cache}
    return {"input_ids": tok, "use_cache": True, arg: cache}


def cache_layers(cache) -> list | None:
    """The layers of a cache: its own, or an encoder-decoder cache's self-attention layers then its
    cross-attention layers; ``None`` for a cache without per-layer tensors."""
    parts = [getattr(cache, k, None) for k in ("self_attention_cache", "cross_attention_cache")]
    if parts[0] is not None:
        return [layer for p in parts if p is not None for layer in (getattr(p, "layers", None) or [])]
    return getattr(cache, "layers", None)
