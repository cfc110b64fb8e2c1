"""Transformer architectures by name: a built-in registry of Hugging Face configs.

>>> from costmodel.llm import resolve_llm, llm_features, kv_cache_bytes
>>> spec = resolve_llm("meta-llama/Llama-2-7b-hf")   # aliases, any case/punctuation
>>> spec.name, spec.model_type, spec.causal
('llama-2-7b', 'llama', True)
>>> llm_features(spec)["num_kv_heads"]
32
>>> kv_cache_bytes(spec, batch=1, seq=4096, dtype_bytes="fp16") / 2**30   # GiB
2.0

``resolve_llm`` also reads a local checkpoint directory (its ``config.json``),
a ``transformers.PretrainedConfig`` or a plain dict with ``model_type``.
Importing this package loads only the standard library.
"""

from __future__ import annotations

from . import _registry
from ._registry import (
    CAUSAL_MODEL_TYPES,
    DTYPE_BYTES,
    LLMSpec,
    TEXT_DECODER_OF,
    attention_free,
    cached_tokens,
    has_learned_positions,
    is_causal_type,
    is_encoder_decoder,
    is_gated,
    kv_cache_bytes,
    list_llms,
    llm_features,
    mla_layout,
    moe_layout,
    normalize_llm_name,
    param_count_estimate,
    resolve_llm,
)

__all__ = [*_registry.__all__, "LLMEstimate", "XGBLLMPredictor", "estimate_llm"]

#: the transformer estimate and its predictor, defined in costmodel.estimate and costmodel.predictors
_ELSEWHERE = {"LLMEstimate": "costmodel.estimate", "estimate_llm": "costmodel.estimate",
              "XGBLLMPredictor": "costmodel.predictors"}


def __getattr__(name):
    if name in _ELSEWHERE:
        from importlib import import_module

        return getattr(import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module 'costmodel.llm' has no attribute {name!r}")
