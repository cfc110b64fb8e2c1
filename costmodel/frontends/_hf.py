"""Hugging Face ``transformers`` configs -> CostGraph (no hub access, no weights).

A config (a ``model_type`` plus its fields, as stored in the measured LLM
rows, or a local ``config.json``) is instantiated on the meta device:
encoders as ``AutoModel``, decoders as ``AutoModelForCausalLM`` (the head is
part of what runs), then featurized like any ``nn.Module`` on random token ids
of shape ``(batch, seq)``.  Featurization disables the KV cache (``use_cache=
False``): a prefill graph then has the same operators minus the cache copies.
"""

from __future__ import annotations

from .._errors import InvalidInputError
from ..ir._graph import CostGraph

_DROP = {"transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype", "model_type"}


def build_hf_model(model_type: str, config: dict, *, causal: bool | None = None):
    try:
        import transformers
    except ImportError:
        raise InvalidInputError(
            "featurizing a transformers config needs the 'transformers' package: pip install 'costmodel[llm]'"
        ) from None
    import torch

    kw = {k: v for k, v in config.items() if k not in _DROP}
    try:
        cfg = transformers.AutoConfig.for_model(model_type, **kw)
    except ValueError as e:
        raise InvalidInputError(f"unknown transformers model_type {model_type!r}: {e}") from None
    cfg.use_cache = False
    if causal is None:
        causal = bool(getattr(cfg, "is_decoder", False)) or model_type in _CAUSAL_TYPES
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    with torch.device("meta"):
        model = auto.from_config(cfg)
    return model.eval(), causal


_CAUSAL_TYPES = {"gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "phi3", "gpt_neox", "opt", "falcon"}


def hf_graph(
    model_type: str,
    config: dict,
    *,
    batch: int,
    seq: int,
    causal: bool | None = None,
    method: str = "export",
    mode: str = "inference",
) -> CostGraph:
    import torch

    from ._torch import from_torch

    model, causal = build_hf_model(model_type, config, causal=causal)
    ids = torch.zeros((batch, seq), dtype=torch.long, device="meta")
    g = from_torch(model, {"input_ids": ids}, mode=mode, method=method, name=config.get("_name_or_path") or model_type)
    g.meta.update({"seq": seq, "model_type": model_type, "causal": causal})
    return g
