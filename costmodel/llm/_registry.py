"""Built-in registry of transformer architectures, and config-derived features.

The registry (``registry.json`` next to this file) maps a canonical name such
as ``"llama-2-7b"`` to the Hugging Face ``model_type`` and the ``config.json``
fields of the checkpoint it is named after, so a model can be instantiated on
the meta device (no weights, no hub access) and featurized.

:func:`resolve_llm` also accepts a local checkpoint directory, a
``transformers.PretrainedConfig`` or a plain config dict, so every source of
a config ends up as the same :class:`LLMSpec`.

Only the standard library is imported here; ``transformers`` is needed only
to turn a spec into a module (:func:`costmodel.frontends.hf.build_hf_model`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Mapping

from .._errors import InvalidInputError, ModelLoadError, UnknownModelError, suggest
from .._tables import PACKAGE_DIR, NameTable, load_table, name_table, normalize_name, table_section, unknown_name_error
from .._validate import positive_int, positive_number

__all__ = [
    "CAUSAL_MODEL_TYPES",
    "DTYPE_BYTES",
    "LLMSpec",
    "TEXT_DECODER_OF",
    "attention_free",
    "cached_tokens",
    "is_encoder_decoder",
    "has_learned_positions",
    "is_causal_type",
    "is_gated",
    "kv_cache_bytes",
    "mla_layout",
    "moe_layout",
    "list_llms",
    "llm_features",
    "normalize_llm_name",
    "param_count_estimate",
    "resolve_llm",
]

_REGISTRY = "llm/registry.json"

#: ``model_type`` values whose checkpoints are decoder-only language models.
CAUSAL_MODEL_TYPES = frozenset(
    {
        "bloom", "codegen", "cohere", "falcon", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_bigcode",
        "gpt_neo", "gpt_neox", "gptj", "granite", "llama", "mistral", "mixtral", "olmo", "olmo2", "opt",
        "phi", "phi3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "stablelm", "starcoder2",
    }
)  # fmt: skip

#: bytes per element of the dtype names :func:`kv_cache_bytes` accepts.
DTYPE_BYTES: dict[str, float] = {
    "fp64": 8, "fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1, "int4": 0.5,
}  # fmt: skip

# Families whose MLP is gated (gate, up and down projections) and whose norms
# are RMSNorm without bias; their linear layers carry no bias unless the
# config says so (attention_bias, or Qwen2's fixed q/k/v bias).
_GATED_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "granite", "olmo", "olmo2",
     "cohere", "qwen2_moe", "qwen3_moe", "olmoe", "gpt_oss", "phi3"}
)  # fmt: skip
_QKV_BIAS_TYPES = frozenset({"qwen2", "qwen2_moe"})
_MOE_TYPES = frozenset({"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "gpt_oss", "deepseek_v2", "deepseek_v3"})
# Encoders that AutoModel builds with a pooler (dense hidden -> hidden).
_POOLER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "ernie"})
# Position information comes from rotary embeddings (no learned table).
_ROTARY_TYPES = _GATED_TYPES | frozenset({"phi", "phi3", "gpt_neox", "gptj", "falcon", "stablelm", "starcoder2"})


@dataclasses.dataclass(frozen=True)
class LLMSpec:
    """A transformer architecture: enough to build it on the meta device.

    Attributes:
        name: canonical registry name, checkpoint directory name, or the
            config's ``_name_or_path``.
        model_type: the ``transformers`` model type (``"llama"``, ``"bert"``...).
        causal: True for decoder-only language models (built with their LM
            head), False for encoders.
        config: the config fields; includes ``model_type``.  Each resolve
            returns a fresh copy, so editing it never changes the registry.
        source: where the values come from (a Hub repo id, a local path,
            ``"PretrainedConfig"`` or ``"dict"``).
    """

    name: str
    model_type: str
    causal: bool
    config: dict[str, Any] = dataclasses.field(hash=False)
    source: str

    def build(self):
        """Instantiate the model on the meta device (needs ``transformers``)."""
        from ..frontends.hf import build_hf_model

        model, _ = build_hf_model(self.model_type, self.config, causal=self.causal)
        return model


def normalize_llm_name(name: str) -> str:
    """Lowercase ``name`` and keep only letters and digits (``"Llama-2_7b"`` -> ``"llama27b"``)."""
    return normalize_name(name)


@functools.cache
def _registry() -> NameTable:
    """Canonical name -> registry entry; its index also holds every alias and Hub source id."""
    where = str(PACKAGE_DIR / _REGISTRY)
    models = table_section(load_table(_REGISTRY, "JSON registry"), "models", dict, where)
    for name, entry in models.items():
        for field, kind in (("model_type", str), ("causal", bool), ("source", str), ("config", dict)):
            if not isinstance(entry.get(field), kind):
                raise ModelLoadError(f"{where}: model {name!r}: expected {field!r} of type {kind.__name__}")
    return name_table(models, where, aliases=lambda name, e: (e["source"], *e.get("aliases", ())))


def list_llms() -> list[str]:
    """Canonical names of the built-in architectures, in registry order."""
    return list(_registry().entries)


def is_causal_type(model_type: str) -> bool:
    """Whether transformers builds ``model_type`` as a decoder-only language model: the known
    decoders, else a type transformers has a causal-LM class for and no masked-LM class (BERT
    and RoBERTa have both and are encoders; MPT or a new mixture-of-experts decoder only the first)."""
    if model_type in CAUSAL_MODEL_TYPES:
        return True
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )
    except ImportError:
        return False
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def _infer_causal(model_type: str, config: Mapping[str, Any]) -> bool:
    """Decoder-only LM or not, from ``architectures`` if present, else the model type."""
    archs = config.get("architectures")
    if isinstance(archs, (list, tuple)) and archs:
        return any(isinstance(a, str) and ("CausalLM" in a or "LMHead" in a) for a in archs)
    return bool(config.get("is_decoder")) or is_causal_type(model_type)


def _from_config_dict(config: Mapping[str, Any], *, name: str | None, source: str, where: str) -> LLMSpec:
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise InvalidInputError(
            f"{where}: expected a 'model_type' string (e.g. 'llama', 'bert'), got {model_type!r}"
        )
    if model_type in NOT_TEXT:
        raise InvalidInputError(
            f"{where}: a {model_type!r} model takes {NOT_TEXT[model_type]}, not token ids; transformer workloads "
            "here are text models fed (batch, seq) tokens: cost a vision or audio model as an nn.Module with "
            "costmodel.estimate (`costmodel predict`)")
    cfg = copy.deepcopy(dict(config))
    cfg["model_type"] = model_type
    label = name or cfg.get("_name_or_path") or model_type
    text = _text_decoder(model_type, cfg, label)
    if text is not None:
        text_type, text_cfg, what = text
        return LLMSpec(label, text_type, True, text_cfg, f"{TEXT_DECODER_OF}{model_type}{what}; {source}")
    return LLMSpec(label, model_type, _infer_causal(model_type, cfg), cfg, source)


#: model types whose inputs are not token ids (what they take instead): refused by name, where they failed deep
#: inside a trace ("'NoneType' object has no attribute 'shape'") or on a missing vocabulary size
NOT_TEXT = {
    **dict.fromkeys(("whisper", "speech_to_text", "speecht5", "wav2vec2", "wav2vec2-conformer", "hubert", "wavlm",
                     "unispeech", "unispeech-sat", "data2vec-audio", "sew", "sew-d", "encodec", "seamless_m4t",
                     "audio-spectrogram-transformer", "clap_audio_model"), "audio features"),
    **dict.fromkeys(("vit", "deit", "beit", "swin", "swinv2", "convnext", "convnextv2", "dinov2", "clip_vision_model",
                     "siglip_vision_model", "segformer", "detr", "yolos", "sam", "mobilevit", "levit", "regnet",
                     "resnet", "efficientnet", "data2vec-vision", "vit_mae", "vit_msn", "dpt", "mask2former",
                     "upernet"), "pixel values"),
}


#: how an :class:`LLMSpec`'s ``source`` says it is the text decoder of a multimodal config
TEXT_DECODER_OF = "text decoder of "
#: text decoders transformers gives no causal-LM class, and the decoder built in their place: the same
#: layers, with ordinary rotary positions for text tokens where the original has multimodal ones (M-RoPE)
_TEXT_STAND_INS = {"qwen2_vl_text": "qwen2", "qwen2_5_vl_text": "qwen2", "qwen3_vl_text": "qwen3"}


def _text_decoder(model_type: str, cfg: dict, label: str) -> tuple[str, dict, str] | None:
    """``(model_type, fields, what)`` of the text decoder inside a multimodal config (Gemma 3, Llama 4,
    LLaVA, Mistral 3, Qwen2.5-VL...; ``what`` names a stand-in, if one is built), or ``None`` for a config
    that is its own language model."""
    if not isinstance(cfg.get("text_config"), Mapping):
        return None
    from ..frontends.hf import hf_config  # transformers knows where each multimodal class keeps its decoder

    try:
        built = hf_config(model_type, cfg)
        text = built.get_text_config(decoder=True)
    except Exception:  # noqa: BLE001 - no transformers, or a config it refuses: read as given
        return None
    if text is built or not getattr(text, "model_type", None):
        return None
    text_type = _TEXT_STAND_INS.get(text.model_type, text.model_type)
    if not _has_causal_lm(text_type):
        raise InvalidInputError(
            f"{label}: a multimodal {model_type} config whose text decoder ({text.model_type}) has no causal-LM "
            "class in transformers; pass the decoder's config (a model_type with a *ForCausalLM class) instead"
        )
    what = "" if text_type == text.model_type else (
        f" ({text.model_type} built as {text_type}: the same layers, ordinary rotary positions for text tokens)")
    return text_type, dict(text.to_dict(), model_type=text_type), what


def _has_causal_lm(model_type: str) -> bool:
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:
        return True
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def _no_config(path: object) -> str:
    return f"{path}: expected a Hugging Face checkpoint directory holding config.json, found none"


def _from_directory(path: Path) -> LLMSpec:
    cfg_path = path / "config.json" if path.is_dir() else path
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(_no_config(path)) from None
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{cfg_path}: expected a readable JSON config, got {e}") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{cfg_path}: expected a JSON object, got {type(data).__name__}")
    name = path.name if path.is_dir() else path.parent.name or cfg_path.stem
    return _from_config_dict(data, name=name, source=str(cfg_path.resolve()), where=str(cfg_path))


def _looks_like_path(s: str) -> bool:
    return s.startswith((".", "~", os.sep)) or s.endswith(".json") or (os.sep != "/" and "\\" in s)


def resolve_llm(model: Any) -> LLMSpec:
    """Turn a name, checkpoint directory, config object or dict into an :class:`LLMSpec`.

    Args:
        model: one of

            * a registry name or alias, matched case-insensitively and
              ignoring ``-``, ``_``, ``.``, ``/`` (``"llama-2-7b"``,
              ``"meta-llama/Llama-2-7b-hf"``, ``"Qwen/Qwen2-0.5B"``);
            * a path (``str`` or ``os.PathLike``) to a local directory
              holding a Hugging Face ``config.json``, or to that file; an
              existing directory with a ``config.json`` wins over a registry
              name, as it does in ``transformers``;
            * a ``transformers.PretrainedConfig``;
            * a dict with a ``model_type`` key (plus the config fields).

    Returns:
        The spec.  ``causal`` comes from the registry, or for other inputs
        from ``architectures`` (a class name containing ``CausalLM`` or
        ``LMHead``) or, without it, from ``model_type``.

    Raises:
        UnknownModelError: a name that is neither registered nor a path;
            the message suggests close registry names.
        ModelLoadError: a path whose ``config.json`` is missing or unreadable.
        InvalidInputError: a config without ``model_type``, or an argument
            of an unsupported type.
    """
    if isinstance(model, LLMSpec):
        return model
    if isinstance(model, os.PathLike):
        return _from_directory(Path(model).expanduser())
    if isinstance(model, Mapping):
        return _from_config_dict(model, name=None, source="dict", where="config dict")
    if hasattr(model, "to_dict") and hasattr(model, "model_type") and not isinstance(model, str):
        cfg = model.to_dict()
        cfg.setdefault("model_type", getattr(model, "model_type", None))
        name = getattr(model, "name_or_path", None) or None
        return _from_config_dict(cfg, name=name, source="PretrainedConfig", where=type(model).__name__)
    if not isinstance(model, str):
        raise InvalidInputError(
            "expected a registry name, a checkpoint directory, a transformers PretrainedConfig or a config dict, "
            f"got {type(model).__name__}"
        )
    if not model.strip():
        raise InvalidInputError(f"expected a model name, got {model!r}; known names: {', '.join(list_llms())}")
    path = Path(model).expanduser()
    if (path.is_dir() and (path / "config.json").is_file()) or (path.is_file() and path.suffix == ".json"):
        return _from_directory(path)
    reg = _registry()
    canonical = reg.key(model)
    if canonical is None:
        if _looks_like_path(model) or path.is_dir():
            raise ModelLoadError(_no_config(model))
        raise unknown_name_error(
            model, reg.entries, expected="a known transformer name, a checkpoint directory or a config",
            listing="known names", hint="case, '-', '_', '.' and '/' are ignored", error=UnknownModelError,
        )
    entry = reg.entries[canonical]
    cfg = copy.deepcopy(entry["config"])
    cfg["model_type"] = entry["model_type"]
    return LLMSpec(canonical, entry["model_type"], entry["causal"], cfg, entry["source"])


# --------------------------------------------------------------------------
# config-derived features and closed-form estimates
# --------------------------------------------------------------------------


def _built_config(spec: LLMSpec) -> Any:
    """The config object transformers builds from ``spec``'s fields (its class's defaults for the
    fields left out, its aliases resolved: Qwen3-MoE's ``num_experts`` is ``num_local_experts``);
    ``None`` without transformers or for a type or fields it refuses. Cached per config: reading
    defaults must not cost the millisecond predictor a config build per field."""
    try:
        key = json.dumps(spec.config, sort_keys=True)
    except (TypeError, ValueError):  # a field JSON cannot hold: built each time
        return _config_or_none(spec.model_type, dict(spec.config))
    return _cached_config(spec.model_type, key)


@functools.lru_cache(maxsize=256)
def _cached_config(model_type: str, key: str) -> Any:
    return _config_or_none(model_type, json.loads(key))


def _config_or_none(model_type: str, config: dict) -> Any:
    from ..frontends.hf import hf_config

    try:
        return hf_config(model_type, config)
    except Exception:  # noqa: BLE001 - no transformers, an unknown type or fields it refuses
        return None


def _config_default(spec: LLMSpec, keys: tuple[str, ...]) -> Any:
    """The first of ``keys`` set in :func:`_built_config` (a field the config leaves out, such as
    ELECTRA's ``vocab_size``, gets its class's default)."""
    built = _built_config(spec)
    if built is None:
        return None
    for k in keys:
        v = getattr(built, k, None)
        if v is not None:
            return v
    return None


def _field(spec: LLMSpec, key: str, default: Any = None) -> Any:
    """``key`` of the config, else its config class's default (what transformers builds), else
    ``default``."""
    v = spec.config.get(key)
    if v is None:
        v = _config_default(spec, (key,))
    return default if v is None else v


def _first(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        v = cfg.get(k)
        if v is not None:
            return v
    return None


def _int_field(cfg: Mapping[str, Any], keys: tuple[str, ...], spec: LLMSpec, what: str) -> int:
    value = _first(cfg, keys)
    if value is None:  # left to the config class's default, as transformers builds the model
        value = _config_default(spec, keys)
    if value is None:
        _unknown_type(spec, f"the {what} (one of {', '.join(keys)})")
    return positive_int(value, f"the {what} in the config (one of {', '.join(keys)})", where=spec.name)


def _unknown_type(spec: LLMSpec, missing: str) -> None:
    """Raise, naming the model type, when a field is missing because transformers knows no such model type
    (so no config class gives its defaults); return where it knows it or is not installed."""
    try:
        from transformers import CONFIG_MAPPING
    except ImportError:
        return
    known = list(CONFIG_MAPPING.keys())
    if spec.model_type not in known:
        raise InvalidInputError(f"{spec.name}: model_type {spec.model_type!r} is not one transformers knows, so no "
                                f"config class gives its defaults and {missing} must be in the config."
                                f"{suggest(str(spec.model_type), known)}")


def llm_features(spec: LLMSpec | Any) -> dict[str, int]:
    """Architecture features read from the config, under one naming scheme.

    Field names differ between families (``n_embd`` in GPT-2, ``dim`` in
    DistilBERT...); this maps them onto: ``hidden_size``, ``num_layers``,
    ``num_heads``, ``num_kv_heads`` (defaults to ``num_heads``),
    ``head_dim`` (the config's, else ``hidden_size // num_heads``; all three
    0 for an attention-free model, see :func:`attention_free`),
    ``intermediate_size`` (GPT-2's ``n_inner=None`` means ``4 * hidden``),
    ``vocab_size``, ``max_position_embeddings``, ``type_vocab_size`` (0 for
    decoders and encoders without token types), ``tie_word_embeddings``
    and ``is_decoder`` (0/1).

    Args:
        spec: an :class:`LLMSpec` or anything :func:`resolve_llm` accepts.
    """
    spec = resolve_llm(spec)
    cfg = spec.config
    hidden = _int_field(cfg, ("hidden_size", "n_embd", "dim", "d_model"), spec, "hidden size")
    layers = _int_field(cfg, ("num_hidden_layers", "n_layer", "n_layers", "num_layers"), spec, "layer count")
    if attention_free(spec):  # a state-space model (Mamba): no heads, no key/value cache
        return _features(spec, hidden, layers, 0, 0, 0)
    heads = _int_field(cfg, _HEAD_KEYS, spec, "attention head count")
    kv = _first(cfg, ("num_key_value_heads", "n_kv_heads", "num_kv_heads"))
    if kv is None and cfg.get("multi_query"):
        kv = 1
    kv_heads = int(kv) if kv else heads
    if not cfg.get("head_dim") and hidden % heads:
        raise InvalidInputError(
            f"{spec.name}: the hidden size {hidden} is not divisible by the {heads} attention heads "
            "(give a head_dim in the config, or a hidden size that is a multiple of the head count)"
        )
    if kv_heads <= 0 or heads % kv_heads:
        raise InvalidInputError(
            f"{spec.name}: the {heads} attention heads are not divisible by the {kv_heads} key/value heads"
        )
    return _features(spec, hidden, layers, heads, kv_heads, int(cfg.get("head_dim") or hidden // heads))


_HEAD_KEYS = ("num_attention_heads", "n_head", "n_heads", "num_heads")


def is_encoder_decoder(spec: LLMSpec | Any) -> bool:
    """Whether the model is an encoder-decoder (T5, BART): its forward pass runs both stacks."""
    return bool(_field(resolve_llm(spec), "is_encoder_decoder", False))


def attention_free(spec: LLMSpec | Any) -> bool:
    """Whether the model has no attention at all (Mamba and other state-space models): neither its
    config nor its config class names a head count, and transformers builds the config."""
    spec = resolve_llm(spec)
    return (_first(spec.config, _HEAD_KEYS) is None and _built_config(spec) is not None
            and _config_default(spec, _HEAD_KEYS) is None)


def _features(spec: LLMSpec, hidden: int, layers: int, heads: int, kv_heads: int, head_dim: int) -> dict[str, int]:
    cfg = spec.config
    inter = _first(cfg, ("intermediate_size", "n_inner", "hidden_dim", "ffn_dim", "d_ff"))
    intermediate = int(inter) if inter else 4 * hidden
    vocab = _int_field(cfg, ("vocab_size",), spec, "vocabulary size")
    pos_keys = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len")
    # a config that leaves the positions out has its class's (Falcon-7B's 2,048, which it was read as 0)
    max_pos = int(_first(cfg, pos_keys) or _config_default(spec, pos_keys) or 0)
    type_vocab = 0 if spec.causal else int(cfg.get("type_vocab_size") or 0)
    return {
        "hidden_size": hidden,
        "num_layers": layers,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate_size": intermediate,
        "vocab_size": vocab,
        "max_position_embeddings": max_pos,
        "type_vocab_size": type_vocab,
        "tie_word_embeddings": int(bool(_field(spec, "tie_word_embeddings", True))),
        "is_decoder": int(spec.causal),
    }


def kv_cache_bytes(spec: LLMSpec | Any, batch: int, seq: int, dtype_bytes: float | str = 2) -> float:
    """Size of the key/value cache: ``2 * layers * batch * seq * kv_heads * head_dim * dtype_bytes``, or for
    multi-head latent attention (DeepSeek-V2/V3, MiniCPM3: a config with ``kv_lora_rank``) the compressed
    latent and the rotary key transformers caches, ``layers * batch * seq * (kv_lora_rank + qk_rope_head_dim)
    * dtype_bytes``; a sliding-window or state layer holds the tokens :func:`cached_tokens` says.

    Args:
        spec: an :class:`LLMSpec` or anything :func:`resolve_llm` accepts.
        batch: sequences held in the cache.
        seq: tokens per sequence (prompt plus generated).
        dtype_bytes: bytes per cached element, or a dtype name from
            :data:`DTYPE_BYTES` (``"fp16"``, ``"fp8"``...).

    Returns:
        Bytes (an int unless ``dtype_bytes`` is fractional, e.g. int4).
    """
    batch = positive_int(batch, "batch")
    seq = positive_int(seq, "seq")
    if isinstance(dtype_bytes, str):
        key = dtype_bytes.lower()
        if key not in DTYPE_BYTES:
            raise InvalidInputError(
                f"expected dtype_bytes to be a number or one of {', '.join(DTYPE_BYTES)}, got {dtype_bytes!r}"
                f"{suggest(key, DTYPE_BYTES)}"
            )
        dtype_bytes = DTYPE_BYTES[key]
    positive_number(dtype_bytes, "dtype_bytes")  # checked only: an int stays an int below
    n = batch * sum(cached_tokens(spec, seq)) * _cached_width(resolve_llm(spec)) * dtype_bytes
    return int(n) if float(n).is_integer() else float(n)


def _cached_width(spec: LLMSpec) -> int:
    """Elements one token adds to one attention layer's cache: keys and values of every key/value head, or
    multi-head latent attention's compressed latent and rotary key (cached before the per-head expansion)."""
    latent = _field(spec, "kv_lora_rank")
    if latent:
        return int(latent) + int(_field(spec, "qk_rope_head_dim", 0))
    f = llm_features(spec)
    return 2 * f["num_kv_heads"] * f["head_dim"]


def cached_tokens(spec: LLMSpec | Any, seq: int) -> list[int]:
    """Tokens each layer's key/value cache holds after ``seq`` tokens, as transformers' dynamic cache
    keeps them: ``seq`` for full attention, at most ``sliding_window - 1`` for a sliding-window layer
    (Mistral, Gemma 2/3, GPT-OSS), none for a layer without keys and values (state-space, linear-attention
    and convolution layers of Mamba, Jamba, Qwen3-Next, LFM2, whose fixed-size states are not counted).
    Without transformers' per-layer cache description (an older version), every layer holds ``seq``."""
    spec = resolve_llm(spec)
    layers = llm_features(spec)["num_layers"]
    if attention_free(spec):
        return [0] * layers
    try:
        windows = _layer_windows(spec.model_type, json.dumps(spec.config, sort_keys=True))
    except (TypeError, ValueError):  # a field JSON cannot hold
        windows = None
    if windows is None or len(windows) != layers:
        return [seq] * layers
    return [seq if w < 0 else min(seq, w) for w in windows]


@functools.lru_cache(maxsize=256)
def _layer_windows(model_type: str, key: str) -> tuple[int, ...] | None:
    """Per layer of the config ``key`` (JSON): -1 (the cache keeps every token), ``sliding_window - 1`` (a
    sliding-window layer keeps the latest that many) or 0 (no keys and values); ``None`` where transformers
    cannot say."""
    try:
        from transformers.cache_utils import DYNAMIC_LAYER_TYPE_MAPPING, get_layer_types_and_kwargs

        built = _cached_config(model_type, key)
        types, kwargs = get_layer_types_and_kwargs(built.get_text_config(decoder=True))
    except Exception:  # noqa: BLE001 - no transformers, an older one, or no config
        return None
    out = []
    for t, kw in zip(types, kwargs):
        kind = DYNAMIC_LAYER_TYPE_MAPPING[t].__name__ if t in DYNAMIC_LAYER_TYPE_MAPPING else str(t)
        if "Sliding" in kind and kw.get("sliding_window"):
            out.append(int(kw["sliding_window"]) - 1)
        elif kind in ("LinearAttentionLayer", "DummyLayer", "dummy"):
            out.append(0)
        else:
            out.append(-1)
    return tuple(out)


def moe_layout(spec: LLMSpec | Any) -> dict[str, int] | None:
    """A mixture-of-experts decoder's expert layout, or ``None`` for a dense model: ``experts``
    (routed), ``top_k`` (experts per token), ``expert_intermediate``, ``shared_intermediate`` (an
    always-on shared expert's width, 0 without one), ``shared_gate`` (1 when a sigmoid gate scales
    the shared expert), ``moe_layers`` (how many of the layers route; the others have a dense MLP
    of ``intermediate_size``). Read from the config as transformers builds it (Mixtral, Qwen2-MoE,
    Qwen3-MoE, OLMoE, GPT-OSS, DeepSeek-V2/V3 field names)."""
    spec = resolve_llm(spec)
    names = ("num_local_experts", "num_experts", "n_routed_experts")
    if _first(spec.config, names) is None and spec.model_type not in _MOE_TYPES:
        return None
    built = _built_config(spec)
    src = built.to_dict() if built is not None else {}
    cfg = {**src, **{k: getattr(built, k) for k in names if built is not None and hasattr(built, k)}, **spec.config}
    experts = int(_first(cfg, names) or 0)
    if experts <= 1:
        return None
    layers = int(_first(cfg, ("num_hidden_layers", "n_layer", "num_layers")) or 0)
    inter = int(_first(cfg, ("moe_intermediate_size", "intermediate_size")) or 0)
    step = int(cfg.get("decoder_sparse_step") or 1)
    dense = set(cfg.get("mlp_only_layers") or [])
    first_dense = int(cfg.get("first_k_dense_replace") or 0)
    moe_layers = sum(1 for i in range(layers) if i not in dense and (i + 1) % step == 0 and i >= first_dense)
    shared = int(cfg.get("shared_expert_intermediate_size") or 0)
    if not shared and cfg.get("n_shared_experts"):
        shared = int(cfg["n_shared_experts"]) * inter
    return {"experts": experts, "top_k": int(_first(cfg, ("num_experts_per_tok", "experts_per_token")) or 1),
            "expert_intermediate": inter, "shared_intermediate": shared,
            "shared_gate": int(bool(cfg.get("shared_expert_intermediate_size"))), "moe_layers": moe_layers}


def mla_layout(spec: LLMSpec | Any) -> dict[str, int] | None:
    """Multi-head latent attention's widths (DeepSeek-V2/V3, MiniCPM3: a config with ``kv_lora_rank``), or
    ``None`` for other attention: ``q_lora_rank`` (0 where the config sets it to null: one plain query
    projection ``hidden -> heads x (qk_nope_head_dim + qk_rope_head_dim)``), ``kv_lora_rank``,
    ``qk_nope_head_dim``, ``qk_rope_head_dim``, ``v_head_dim`` and ``attention_bias`` (0/1: biases on the
    query's down-projection, the key/value down-projection and the output projection). Read from the config
    as transformers builds it (its class's defaults for the fields left out)."""
    spec = resolve_llm(spec)
    if not _field(spec, "kv_lora_rank"):
        return None
    built = _built_config(spec)

    def read(key: str) -> Any:  # the built config's, which keeps an explicit null and resolves the defaults
        return getattr(built, key, None) if built is not None else spec.config.get(key)

    nope, rope = int(read("qk_nope_head_dim") or 0), int(read("qk_rope_head_dim") or 0)
    heads = llm_features(spec)["num_heads"]
    v_dim = read("v_head_dim") or llm_features(spec)["hidden_size"] // heads
    return {"q_lora_rank": int(read("q_lora_rank") or 0), "kv_lora_rank": int(read("kv_lora_rank")),
            "qk_nope_head_dim": nope, "qk_rope_head_dim": rope, "v_head_dim": int(v_dim),
            "attention_bias": int(bool(read("attention_bias")))}


def _mla_params(mla: dict[str, int], hidden: int, heads: int) -> int:
    """One multi-head latent attention layer's parameters: the query (a low-rank pair with its RMSNorm, or
    one projection), ``kv_a_proj_with_mqa`` to the latent and the shared rotary key, ``kv_a_layernorm``,
    ``kv_b_proj`` from the latent to every head's key and value, ``o_proj`` from the values."""
    qk = heads * (mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"])
    q_r, kv_r, bias = mla["q_lora_rank"], mla["kv_lora_rank"], mla["attention_bias"]
    q = hidden * q_r + q_r * bias + q_r + q_r * qk if q_r else hidden * qk
    kv_a = (hidden + bias) * (kv_r + mla["qk_rope_head_dim"]) + kv_r
    kv_b = kv_r * heads * (mla["qk_nope_head_dim"] + mla["v_head_dim"])
    return q + kv_a + kv_b + heads * mla["v_head_dim"] * hidden + hidden * bias


def is_gated(spec: LLMSpec) -> bool:
    """Whether the MLP is gated (gate, up and down projections: the Llama-style families)."""
    mt = spec.model_type
    # a config that leaves the activation out has its class's (DeepSeek-V2/V3's SiLU)
    return mt in _GATED_TYPES or (mt not in _ROTARY_TYPES and _field(spec, "hidden_act") == "silu")


#: model types with no absolute position table that name no rotary field either (ALiBi, or a hybrid whose
#: state-space layers carry the order)
_NO_POSITION_TABLE_TYPES = frozenset({"bloom", "mpt", "jamba"})
#: config fields that only a rotary-position model sets (``rope_parameters`` in transformers 5)
_ROTARY_FIELDS = ("rope_parameters", "rope_theta", "rope_scaling", "rotary_dim", "rotary_pct", "rotary_emb_base")


def has_learned_positions(spec: LLMSpec) -> bool:
    """Whether the model has a learned absolute position table (which caps the sequence length): not the
    rotary families, nor any model whose config or config class sets a rotary field (DeepSeek-V2/V3, SmolLM3,
    GLM-4, CodeGen, ...), nor an ALiBi or hybrid state-space model."""
    cfg, mt = spec.config, spec.model_type
    if mt == "deberta-v2":
        return bool(cfg.get("position_biased_input", True))
    if mt in _ROTARY_TYPES or mt in _NO_POSITION_TABLE_TYPES or cfg.get("sinusoidal_pos_embds"):
        return False
    return _first(cfg, _ROTARY_FIELDS) is None and _config_default(spec, _ROTARY_FIELDS) is None


def _mamba_params(spec: LLMSpec, f: dict) -> int:
    """Mamba's count: per layer the input projection (to the two inner streams), the causal convolution
    (with bias), the projection to the step size and the state's B and C, the step size's projection,
    A and D, the output projection and one RMSNorm; the embedding, a final norm, an untied head."""
    h, L, v = f["hidden_size"], f["num_layers"], f["vocab_size"]
    cfg = spec.config
    inner = int(cfg.get("intermediate_size") or int(cfg.get("expand", 2)) * h)
    state, kernel = int(cfg.get("state_size", 16)), int(cfg.get("conv_kernel", 4))
    rank = cfg.get("time_step_rank", "auto")
    rank = -(-h // 16) if rank in (None, "auto") else int(rank)
    bias, conv_bias = bool(cfg.get("use_bias", False)), bool(cfg.get("use_conv_bias", True))
    layer = (h * 2 * inner + 2 * inner * bias + inner * kernel + inner * conv_bias + inner * (rank + 2 * state)
             + rank * inner + inner + inner * state + inner + inner * h + h * bias + h)
    total = v * h + L * layer + h
    return int(total + (0 if f["tie_word_embeddings"] else v * h))


def _t5_params(spec: LLMSpec, f: dict) -> int:
    """T5's count (built with its LM head): the shared embedding; per encoder layer self-attention (no
    biases) and the feed-forward (gated for the v1.1 checkpoints), each with a weight-only norm; per
    decoder layer also cross-attention; one relative-position table per stack (its first layer); a
    final norm per stack; an untied head."""
    cfg = spec.config
    h, v = f["hidden_size"], f["vocab_size"]
    inner = f["num_heads"] * f["head_dim"]
    d_ff = int(cfg.get("d_ff", f["intermediate_size"]))
    enc_layers = int(cfg.get("num_layers", f["num_layers"]))
    dec_layers = int(cfg.get("num_decoder_layers") or enc_layers)
    ff = (3 if str(cfg.get("feed_forward_proj", "relu")).startswith("gated") else 2) * h * d_ff
    attn = 4 * h * inner
    rel = int(cfg.get("relative_attention_num_buckets", 32)) * f["num_heads"]
    enc = enc_layers * (attn + ff + 2 * h) + rel + h
    dec = dec_layers * (2 * attn + ff + 3 * h) + rel + h
    return int(v * h + enc + dec + (0 if f["tie_word_embeddings"] else v * h))


def param_count_estimate(spec: LLMSpec | Any) -> int:
    """Closed-form parameter count from the config (no model is built).

    Counts embeddings (token, learned positions, token types), per layer the
    attention projections (grouped-query aware; multi-head latent attention's
    low-rank ones and their norms, :func:`mla_layout`), the MLP (gated for the
    Llama-style families) and the norms, the final norm, the encoder pooler
    where ``AutoModel`` adds one, and an untied LM head for decoders.  Exact
    for the common families; within a few percent for others (relative
    position tables and other family-specific extras are approximated).

    Args:
        spec: an :class:`LLMSpec` or anything :func:`resolve_llm` accepts.
    """
    spec = resolve_llm(spec)
    f = llm_features(spec)
    cfg, mt = spec.config, spec.model_type
    if mt in ("mamba", "falcon_mamba"):
        return _mamba_params(spec, f)
    if mt == "t5":
        return _t5_params(spec, f)
    h, L, v = f["hidden_size"], f["num_layers"], f["vocab_size"]
    q_dim = f["num_heads"] * f["head_dim"]
    kv_dim = f["num_kv_heads"] * f["head_dim"]
    inter = f["intermediate_size"]
    if is_gated(spec):
        bias = bool(_field(spec, "attention_bias", False))
        qkv_bias = bias or mt in _QKV_BIAS_TYPES
        attn = h * (q_dim + 2 * kv_dim) + q_dim * h + (q_dim + 2 * kv_dim) * qkv_bias + h * bias
        attn += f["num_heads"] * (mt == "gpt_oss")  # one attention-sink logit per head
        mla = mla_layout(spec)
        if mla:  # DeepSeek-V2/V3, MiniCPM3: low-rank projections through a shared latent
            attn = _mla_params(mla, h, f["num_heads"])
        mlp = 3 * h * inter + (2 * inter + h) * bool(_field(spec, "mlp_bias", False))
        norm = h  # RMSNorm: weight only
        # Gemma 2 and 3 also normalize each sublayer's output (four norms per layer)
        layer = attn + mlp + (4 if mt in ("gemma2", "gemma3_text") else 2) * norm
        moe = moe_layout(spec)
        if moe:  # the routed layers: every expert's gated MLP, the router, a shared expert and its gate
            e, e_inter = moe["experts"], moe["expert_intermediate"]
            biased = mt == "gpt_oss"  # biases on every expert's projections and on the router
            routed = (e * (3 * h * e_inter + (2 * e_inter + h) * biased) + (h + biased) * e
                      + 3 * h * moe["shared_intermediate"] + h * moe["shared_gate"])
            layer += (routed - mlp) * moe["moe_layers"] / L
    else:
        attn = h * (q_dim + 2 * kv_dim) + q_dim * h + (q_dim + 2 * kv_dim) + h
        mlp = 2 * h * inter + inter + h
        norm = 2 * h  # LayerNorm: weight and bias
        n_norms = 1 if mt == "phi" else 2  # Phi runs attention and MLP in parallel off one norm
        layer = attn + mlp + n_norms * norm
    emb = v * h
    if mt == "deberta-v2" and cfg.get("relative_attention"):
        buckets = int(cfg.get("position_buckets") or 0)
        span = buckets if buckets > 0 else int(cfg.get("max_relative_positions") or 0)
        span = span if span > 0 else f["max_position_embeddings"]
        emb += 2 * span * h + (2 * h if cfg.get("norm_rel_ebd", "none") != "none" else 0)
    if has_learned_positions(spec):
        emb += f["max_position_embeddings"] * h
    emb += f["type_vocab_size"] * h
    total = emb + L * layer
    if spec.causal:
        total += norm  # final norm
        if not f["tie_word_embeddings"]:
            total += v * h + (v if mt == "phi" else 0)
    else:
        total += 2 * h  # embedding LayerNorm
        if mt in _POOLER_TYPES:
            total += h * h + h
    return int(total)
