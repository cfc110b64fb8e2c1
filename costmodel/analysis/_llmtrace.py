"""Allocation traces of transformer workloads by name, spec, config or module: an inference call under the
data protocol, and a fine-tuning step (what :func:`~costmodel.analysis.memreplay.replay_memory` replays)."""

from __future__ import annotations

from .._errors import InvalidInputError
from .alloctrace import trace_decoder, trace_module


def with_ssm_kernels(model, kernels: str, make_trace):
    """``make_trace()`` with Mamba's selective scans as ``kernels`` say (``fused``: the stand-ins for
    ``mamba_ssm``'s kernels, :func:`costmodel.frontends.hf.fused_ssm_kernels`), noting the reference code that still ran."""
    from ..frontends.hf import check_ssm_kernels, fused_ssm_kernels, noting_reference_kernels

    check_ssm_kernels(kernels, model)
    with fused_ssm_kernels(kernels == "fused"):
        return noting_reference_kernels(make_trace)


def trace_llm(ref, *, batch, seq, phase, dtype, target_seq=None, ssm_kernels="reference"):
    """An inference call of a registry name, spec or config (``phase``: forward, prefill or decode) under
    the data protocol (:func:`~costmodel.analysis.alloctrace.trace_decoder`)."""
    from ..frontends.hf import build_hf_model
    from ..llm import resolve_llm

    spec = resolve_llm(ref)
    model, causal = build_hf_model(spec.model_type, spec.config, causal=spec.causal)
    return with_ssm_kernels(model, ssm_kernels, lambda: trace_decoder(
        model, batch=batch, seq=seq, phase=phase, dtype=dtype, causal=causal, target_seq=target_seq))


def trace_llm_training(model, named: bool, *, batch, seq, phase, dtype, optimizer, autocast, lora=None,
                       checkpointing: bool = False, target_seq=None, ssm_kernels="reference"):
    """A fine-tuning step of a decoder or an encoder-decoder on ``(batch, seq)`` token ids: its own loss (the
    labels are the tokens; an encoder-decoder's, its ``target_seq`` decoder tokens, default ``seq``), backward,
    the optimizer; two steps, as a vision training step is traced. ``lora`` (``frontends.hf.lora_spec``) puts
    LoRA adapters on a registry model (a module comes as it is)."""
    import torch

    if phase not in (None, "forward", "prefill"):
        raise InvalidInputError(f"a training step runs the whole sequence; phase {phase!r} is an inference call")
    if named:
        from ..frontends.hf import build_hf_model
        from ..llm import resolve_llm

        spec = resolve_llm(model)
        module, causal = build_hf_model(spec.model_type, spec.config, causal=spec.causal)
        name = spec.name
        if causal:
            module.loss_type = "ForCausalLM"  # the loss transformers picks for the class, said without a warning
        elif not getattr(module.config, "is_encoder_decoder", False):
            raise InvalidInputError(f"{name} is built as an encoder; a transformer training step is traced for "
                                    "decoders (the causal-LM loss on the tokens) and encoder-decoders")
        if checkpointing:
            from ..frontends.hf import enable_checkpointing

            enable_checkpointing(module)
        if lora:
            from ..frontends.hf import apply_lora

            module = apply_lora(module, lora)
    else:
        if checkpointing:
            raise InvalidInputError("checkpointing= is for a registry model or config; enable it on a module "
                                    "yourself (model.gradient_checkpointing_enable()) and pass the module")
        if lora:
            raise InvalidInputError("lora= adapts a registry model or config; put adapters on a module yourself "
                                    "(peft.get_peft_model) and pass the module")
        import inspect

        module = model
        if "labels" not in inspect.signature(model.forward).parameters:
            raise InvalidInputError(f"{type(model).__name__}.forward takes no labels: a transformer training step "
                                    "is traced for a model that computes its own loss (a *ForCausalLM class); "
                                    "or pass inputs= with the module's own loss-making call")
    ids = torch.zeros((batch, seq), dtype=torch.long, device="meta")
    from ..frontends.hf import check_target_seq, seq2seq_inputs

    check_target_seq(target_seq, getattr(module.config, "model_type", type(module).__name__),
                     bool(getattr(getattr(module, "config", None), "is_encoder_decoder", False)))
    dec = seq2seq_inputs(module, ids, target_seq)  # an encoder-decoder's decoder is teacher-forced on its targets
    inputs = {"input_ids": ids, "labels": dec.get("decoder_input_ids", ids), **dec}
    return with_ssm_kernels(module, ssm_kernels, lambda: trace_module(module, inputs, training=True, dtype=dtype,
                                                                      optimizer=optimizer, autocast=autocast))
