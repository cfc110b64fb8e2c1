"""Features of a transformer workload: config, graph structure, closed-form costs, hardware.

A workload is a model (anything :func:`resolve_llm` accepts), a batch, a
sequence length, a mode and a dtype:

* ``forward``: an encoder (or any model) over ``(batch, seq)`` tokens;
* ``prefill``: a decoder over the ``(batch, seq)`` prompt, logits for every
  position, the KV cache written;
* ``decode``: one new token per sequence against a KV cache of ``seq``
  tokens (the measured data's convention).

Costs are closed-form from the config (exact for dense transformer stacks:
the tests compare them with the CostGraph of the same model): linear-layer
and attention FLOPs, parameters and weight bytes, KV-cache bytes, the
activation and logits peak, and a roofline latency (``max(compute time,
memory time)`` plus the measured per-kernel costs) that the learned models
use as their normalizer: they predict *efficiency*, the ratio of measured to
roofline time, so a device without labels is predicted through its own
peaks and bandwidth.

Graph structure (nodes, edges, kernels) comes from featurizing the model on
meta tensors once per architecture, with one and with two layers (a
transformer stack repeats one block, so ``total = one + (layers - 1) x
(two - one)``, exact and 10-50x cheaper than the full graph), cached on disk
(the graph cache, :func:`costmodel.frontends.cache_dir`);
the architectures of the built-in registry ship precomputed in
``structure.json`` so that asking about them never imports ``transformers``.
Nothing here writes into the installed package: :func:`structure_table`
computes a table in memory, and only an explicit
``write_structure_table(specs, path)`` (the maintainer script
``benchmarks/llm_accuracy.py --refresh-structure``) writes a file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import CostModelError, InvalidInputError, UnknownModelError
from .._validate import positive_int
from ..ir import LLM_DTYPES, LLM_MODES
from ..llm import (
    DTYPE_BYTES,
    LLMSpec,
    has_learned_positions,
    is_encoder_decoder,
    is_gated,
    kv_cache_bytes,
    llm_features,
    mla_layout,
    moe_layout,
    param_count_estimate,
    resolve_llm,
)

#: what a transformer workload can be: the inference calls the data measured, and a fine-tuning step of a
#: decoder (forward with its causal-LM loss, backward, optimizer; costed by the timeline and the memory trace)
LLM_WORKLOAD_MODES: tuple[str, ...] = (*LLM_MODES, "training")

#: the shipped structure table of the built-in registry's architectures (next to the registry)
STRUCTURE_PATH = Path(__file__).resolve().parents[1] / "llm" / "structure.json"
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
_IGNORED = {"_name_or_path", "architectures", "transformers_version", "dtype", "torch_dtype", "use_cache",
            "output_attentions", "output_hidden_states", "return_dict"}
#: tokens of the probe graphs that measure structure (structure does not depend on it)
_PROBE_SEQ = 8
#: model types whose transformers implementation has no fused (SDPA) attention: the
#: (batch, heads, q, k) score matrices are written and read in memory
EAGER_ATTENTION_TYPES = frozenset({"deberta", "deberta-v2"})


@dataclass(frozen=True)
class LLMWorkload:
    spec: LLMSpec
    batch: int
    seq: int
    mode: str
    dtype: str
    #: an encoder-decoder's decoder tokens (``None``: as many as the encoder's, ``seq``)
    target_seq: int | None = None

    @property
    def query_tokens(self) -> int:
        """Tokens the model processes in this call."""
        return self.batch * (1 if self.mode == "decode" else self.seq)

    @property
    def context(self) -> int:
        """Tokens each query attends to (the cache plus the new token when decoding)."""
        return self.seq + 1 if self.mode == "decode" else self.seq


def llm_workload(model: Any, *, batch: int, seq: int, mode: str | None = None, dtype: str = "fp16",
                 target_seq: int | None = None) -> LLMWorkload:
    """Validate a workload; ``mode`` defaults to ``prefill`` for decoders and ``forward`` for encoders.
    ``target_seq``: an encoder-decoder's decoder tokens (teacher-forced in ``forward`` and ``training``, the
    tokens generated so far in ``decode``); ``None``: ``seq``, as many as its encoder reads."""
    spec = model if isinstance(model, LLMSpec) else resolve_llm(model)
    positive_int(batch, "batch")
    positive_int(seq, "seq")
    if mode is None:
        mode = "prefill" if spec.causal else "forward"
    if mode not in LLM_WORKLOAD_MODES:
        raise InvalidInputError(f"mode must be one of {LLM_WORKLOAD_MODES}, got {mode!r}")
    seq2seq = not spec.causal and is_encoder_decoder(spec)
    if mode == "prefill" and seq2seq:
        raise InvalidInputError(
            f"{spec.name} is an encoder-decoder ({spec.model_type}); its prompt is read by mode 'forward' (both "
            "stacks over the tokens); 'decode' and 'training' work too"
        )
    if mode in ("prefill", "decode", "training") and not spec.causal and not seq2seq:
        raise InvalidInputError(
            f"{spec.name} is an encoder ({spec.model_type}); mode {mode!r} needs a decoder: use mode 'forward'"
        )
    if dtype not in LLM_DTYPES:
        raise InvalidInputError(f"dtype must be one of {LLM_DTYPES}, got {dtype!r}")
    if target_seq is not None:
        positive_int(target_seq, "target_seq")
        if not seq2seq:
            raise InvalidInputError(f"target_seq ({target_seq}) sets an encoder-decoder's decoder length; "
                                    f"{spec.name} ({spec.model_type}) reads one sequence of seq tokens: leave it out")
    f = llm_features(spec)
    n = f["max_position_embeddings"]
    if n and has_learned_positions(spec):
        for name, length, one_more in (("seq", seq, mode == "decode" and target_seq is None),
                                       ("target_seq", target_seq or 0, mode == "decode" and target_seq is not None)):
            if length + one_more > n:
                what = (f"a decode step at {name} {length} runs {length + 1} positions (the cache and its new token), past"
                        if one_more else f"{name} {length} exceeds")
                raise InvalidInputError(f"{what} {spec.name}'s {n} learned positions: the largest {name} it takes "
                                        f"is {n - one_more}")
    return LLMWorkload(spec, batch, seq, mode, dtype, target_seq)


# ------------------------------------------------------------------ structure
def structure_key(spec: LLMSpec) -> str:
    """Hash of everything in the config that can change the graph, except the layer count."""
    cfg = {k: v for k, v in spec.config.items() if k not in _IGNORED and k not in _LAYER_KEYS}
    blob = json.dumps([spec.model_type, bool(spec.causal), cfg], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _shipped_table() -> dict:
    try:
        return json.loads(STRUCTURE_PATH.read_text()).get("structures", {})
    except (OSError, ValueError):
        return {}


def hf_model_types() -> list[str] | None:
    """The ``model_type`` names this ``transformers`` knows (``None`` without transformers)."""
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except ImportError:
        return None
    return list(CONFIG_MAPPING_NAMES)


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def check_model_type(model_type: str) -> None:
    """Raise :class:`~costmodel.UnknownModelError` for a ``model_type`` transformers does not know;
    the message names the closest few and how many there are (never all of them)."""
    import difflib

    known = hf_model_types()
    if known is None or model_type in known:
        return
    close = difflib.get_close_matches(str(model_type).lower(), known, n=5, cutoff=0.6)
    hint = f"closest: {', '.join(close)}" if close else "e.g. llama, mistral, qwen2, gpt2, bert"
    raise UnknownModelError(
        f"unknown transformers model_type {model_type!r}; transformers {_transformers_version()} knows "
        f"{len(known)} model types ({hint})"
    )


def _cause_line(e: BaseException) -> str:
    """The innermost cause of ``e`` as ``Type: message`` on one line."""
    while e.__cause__ is not None:
        e = e.__cause__
    msg = " ".join(x.strip() for x in str(e).splitlines() if x.strip())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _probe(spec: LLMSpec, layers: int) -> dict:
    import logging
    import warnings

    from ..frontends import hf_graph

    check_model_type(spec.model_type)
    key = next((k for k in _LAYER_KEYS if k in spec.config), "num_hidden_layers")
    cfg = dict(spec.config, **{key: layers})
    full = spec.config.get(key)
    for k, v in spec.config.items():  # per-layer lists (``layer_types`` of Gemma 2/3, ModernBERT, ...) follow
        if isinstance(v, (list, tuple)) and isinstance(full, int) and len(v) == full > layers:
            cfg[k] = list(v[:layers])
    hf_log = logging.getLogger("transformers")  # its config chatter; a real problem raises
    level = hf_log.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf_log.setLevel(logging.ERROR)
        try:
            g = hf_graph(spec.model_type, cfg, batch=1, seq=_PROBE_SEQ, causal=spec.causal)
        except CostModelError:
            raise
        except Exception as e:  # noqa: BLE001 - transformers' own validation of a user's config
            raise InvalidInputError(
                f"{spec.name}: transformers cannot build this {spec.model_type} config: {_cause_line(e)}"
            ) from e
        finally:
            hf_log.setLevel(level)
    return {"num_nodes": float(g.num_nodes), "num_edges": float(len(g.edges)), "num_kernels": float(g.num_kernels)}


def _per_layer_structure(spec: LLMSpec, build: bool) -> dict:
    from ..frontends import cache_dir

    key = structure_key(spec)
    per = _shipped_table().get(key)
    if per is not None:
        return per
    path = cache_dir() / "llm_structure" / f"{key}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    if not build:
        raise LookupError(f"no cached graph structure for {spec.name}")
    one, two = _probe(spec, 1), _probe(spec, 2)
    per = {"base": one, "per_layer": {k: two[k] - one[k] for k in one}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(per))
    return per


def graph_structure(spec: LLMSpec, *, build: bool = True) -> dict[str, float]:
    """Nodes, edges and kernels of the model's graph, plus their per-layer increments.

    Looked up in the shipped table, then the disk cache; otherwise measured
    by featurizing one- and two-layer versions on meta tensors (needs
    ``transformers``; about a second, once per architecture).  With
    ``build=False`` a missing entry raises ``LookupError``.
    """
    per = _per_layer_structure(spec, build)
    layers = llm_features(spec)["num_layers"]
    out = {k: per["base"][k] + (layers - 1) * per["per_layer"][k] for k in per["base"]}
    out.update({f"{k}_per_layer": v for k, v in per["per_layer"].items()})
    return out


def structure_table(specs) -> dict[str, dict]:
    """The shipped structure table plus ``specs`` (measured where missing), in memory:
    ``{structure_key: {"base": ..., "per_layer": ...}}``.  Writes nothing but the graph cache."""
    table = dict(_shipped_table())
    for spec in specs:
        table[structure_key(spec)] = _per_layer_structure(spec, build=True)
    return table


def write_structure_table(specs, path: str | Path) -> int:
    """Write :func:`structure_table` of ``specs`` to ``path``; returns its size.

    For maintainers: ``benchmarks/llm_accuracy.py --refresh-structure`` passes the package's
    ``structure.json`` to regenerate the shipped table.  There is no default path, so nothing
    rewrites the installed package by accident."""
    table = structure_table(specs)
    path = Path(path)
    path.write_text(json.dumps({"note": "graph structure of one layer and per extra layer, by structure_key; "
                                        "regenerate with `python benchmarks/llm_accuracy.py --refresh-structure`",
                                "structures": table}, indent=0, sort_keys=True))
    if path.resolve() == STRUCTURE_PATH:
        _shipped_table.cache_clear()
    return len(table)


# --------------------------------------------------------------------- costs
def analytic_costs(w: LLMWorkload, device, *, structure: dict | None = None) -> dict[str, float]:
    """Closed-form FLOPs, bytes, memory and roofline latency of one call of ``w`` on ``device``.

    ``structure`` (:func:`graph_structure`) gives the kernel count of the launch floor; without it
    a cached structure is used, else an estimate of ~14 kernels per block."""
    from ..analysis import experts_hit

    f = llm_features(w.spec)
    h, L, inter, vocab = f["hidden_size"], f["num_layers"], f["intermediate_size"], f["vocab_size"]
    q_dim, kv_dim = f["num_heads"] * f["head_dim"], f["num_kv_heads"] * f["head_dim"]
    b = DTYPE_BYTES[w.dtype]
    # weight-only quantization (int8, int4: bitsandbytes, GPTQ, AWQ) computes in fp16: its activations, logits
    # and key/value cache are fp16; only the weights take the quantized bytes
    a_b = DTYPE_BYTES["fp16"] if w.dtype in ("int8", "int4") else b
    gated = is_gated(w.spec)
    tokens = w.query_tokens
    params = param_count_estimate(w.spec)
    moe = moe_layout(w.spec)
    idle_experts = 0.0  # expert weights no token of the call is routed to: held, not read
    if moe:  # per token, the routed layers multiply by top_k experts, the router and a shared expert
        active = moe["top_k"] * moe["expert_intermediate"] + moe["shared_intermediate"]
        share = moe["moe_layers"] / L
        mlp_w = (1 - share) * 3 * h * inter + share * (3 * h * active + h * moe["experts"])
        inter = (1 - share) * inter + share * active  # the intermediate activations of one token
        expert_params = moe["moe_layers"] * moe["experts"] * 3 * h * moe["expert_intermediate"]
        idle_experts = expert_params * (1 - experts_hit(tokens * moe["top_k"], moe["experts"]))
    else:
        mlp_w = (3 if gated else 2) * h * inter
    layer_linear = h * (q_dim + 2 * kv_dim) + q_dim * h + mlp_w  # weights multiplied per token
    head = vocab * h if w.spec.causal else 0  # the LM head runs on every returned position
    q_len = 1 if w.mode == "decode" else w.seq
    linear_macs = tokens * (L * layer_linear + head)
    attn_macs = 2 * w.batch * q_len * w.context * q_dim * L
    mla = mla_layout(w.spec)
    if mla:  # multi-head latent attention: its own projections, query/key and value widths
        per_token, per_cached, qk_v = _mla_macs(mla, h, f["num_heads"])
        linear_macs = tokens * (L * (per_token + mlp_w) + head) + w.batch * w.context * L * per_cached
        attn_macs = w.batch * q_len * w.context * qk_v * L
    weights_bytes = params * b
    if a_b != b:  # the token embedding, a learned position table and the LM head stay in fp16
        kept = unquantized_params(w.spec)
        weights_bytes = (params - kept) * b + kept * a_b
    # the cache as transformers keeps it: every token, the window of a sliding-window layer, none in a
    # state-space or linear-attention layer
    kv_bytes = (float(kv_cache_bytes(w.spec, w.batch, w.context, a_b))
                if w.spec.causal and w.mode in ("prefill", "decode") else 0.0)
    # eager attention materializes scores (and the relative-position terms of DeBERTa's c2p/p2c)
    eager = w.spec.model_type in EAGER_ATTENTION_TYPES
    rel = w.spec.config.get("pos_att_type") or []
    n_scores = (1 + len(rel if isinstance(rel, list) else str(rel).split("|"))) if eager else 0
    score_bytes = n_scores * w.batch * f["num_heads"] * q_len * w.context * a_b

    def block_bytes(n_tok: int, q: int) -> float:
        # live activations inside one block (residual, normed input, q/k/v, MLP intermediates, scores)
        s_b = n_scores * w.batch * f["num_heads"] * q * w.context * a_b if eager else 0.0
        return n_tok * (4 * h + q_dim + 2 * kv_dim + (2 if gated else 1) * inter) * a_b + 2 * s_b

    block_act = block_bytes(tokens, q_len)
    logits_bytes = tokens * vocab * a_b if w.spec.causal else 0.0
    act_peak = max(block_act, logits_bytes + tokens * h * a_b)
    if w.mode == "decode":
        # the cache was built by a prefill over the prompt in the same process: its peak
        # (the prompt's logits, mostly) stays reserved by PyTorch's caching allocator
        p_tok = w.batch * w.seq
        act_peak = max(act_peak, block_bytes(p_tok, w.seq), p_tok * (vocab * (w.spec.causal) + h) * a_b)
    # bytes moved: weights once, the cache read (and written), activations in and out of each block
    moved = weights_bytes - idle_experts * b + kv_bytes + L * (2 * block_act + 2 * score_bytes) + 2 * logits_bytes
    flops = 2.0 * (linear_macs + attn_macs)
    # weight-only int8/int4 dequantizes to fp16 and multiplies there: the fp16 tensor-core rate, not int8's
    dtype_peak = device.peak_flops("fp16" if w.dtype in ("int8", "int4") else w.dtype, tensor=True)
    compute_s = flops / dtype_peak
    memory_s = moved / device.bandwidth_bytes_s
    if structure is None:
        try:
            structure = graph_structure(w.spec, build=False)
        except LookupError:
            structure = {"num_kernels": 14.0 * L + 10}  # a dense block launches ~14 kernels in eager PyTorch
    kernels = structure["num_kernels"]
    launch_s = kernels * device.kernel_launch_overhead_us * 1e-6
    host_s = kernels * 15e-6  # per-op host dispatch floor of eager PyTorch
    latency_s = max(host_s, max(compute_s, memory_s) + launch_s)
    memory_mb = device.framework_overhead_mb + (weights_bytes + kv_bytes + act_peak) / 2**20
    return {
        "flops": flops, "macs": linear_macs + attn_macs, "attention_flops": 2.0 * attn_macs,
        "params": float(params), "weights_bytes": float(weights_bytes), "kv_cache_bytes": float(kv_bytes),
        "attention_score_bytes": float(score_bytes * L), "eager_attention": float(eager),
        "activation_bytes": float(act_peak), "logits_bytes": float(logits_bytes), "bytes_moved": float(moved),
        "arithmetic_intensity": flops / max(moved, 1.0), "compute_ms": compute_s * 1e3,
        "memory_ms": memory_s * 1e3, "launch_ms": max(host_s, launch_s) * 1e3, "kernels": float(kernels),
        "latency_ms": latency_s * 1e3, "memory_mb": memory_mb,
    }


def seq2seq_cache_bytes(w: LLMWorkload) -> float:
    """An encoder-decoder's (T5's, BART's) caches in a decode step, which the closed-form ``kv_cache_bytes``
    (a decoder's) leaves at 0: per decoder layer, the self-attention keys and values of the generated tokens
    (``target_seq``, default ``seq``, and the step's own) and the cross-attention keys and values of the ``seq``
    source tokens, in fp16 for the quantized dtypes as their activations are; 0 for any other workload."""
    if w.mode != "decode" or w.spec.causal or not is_encoder_decoder(w.spec):
        return 0.0
    f = llm_features(w.spec)
    cfg = w.spec.config
    layers = int(cfg.get("num_decoder_layers") or cfg.get("decoder_layers") or f["num_layers"])
    tokens = (w.target_seq or w.seq) + 1 + w.seq
    a_b = DTYPE_BYTES["fp16"] if w.dtype in ("int8", "int4") else DTYPE_BYTES[w.dtype]
    return float(layers * w.batch * tokens * 2 * f["num_kv_heads"] * f["head_dim"] * a_b)


def _mla_macs(mla: dict[str, int], hidden: int, heads: int) -> tuple[int, int, int]:
    """Multi-head latent attention's multiply-adds in one layer: per query token (the query's projections,
    ``kv_a_proj_with_mqa``, ``o_proj``), per cached token (``kv_b_proj``: transformers caches the latent and
    expands every cached token's keys and values on each call, a decode step's whole context included), and
    per query-key pair (scores over ``qk_nope_head_dim + qk_rope_head_dim``, values over ``v_head_dim``, every
    head)."""
    nope, rope, v_dim, q_r = mla["qk_nope_head_dim"], mla["qk_rope_head_dim"], mla["v_head_dim"], mla["q_lora_rank"]
    qk = heads * (nope + rope)
    query = hidden * q_r + q_r * qk if q_r else hidden * qk
    per_token = query + hidden * (mla["kv_lora_rank"] + rope) + heads * v_dim * hidden
    return per_token, mla["kv_lora_rank"] * heads * (nope + v_dim), heads * (nope + rope + v_dim)


def unquantized_params(spec: LLMSpec) -> int:
    """Parameters weight-only quantization leaves in fp16: it replaces the linear layers of the blocks
    (bitsandbytes, GPTQ, AWQ), not the token embedding, a learned position or token-type table, or the LM
    head (transformers keeps the output embedding out of the conversion)."""
    f = llm_features(spec)
    h, vocab = f["hidden_size"], f["vocab_size"]
    kept = vocab * h + f["type_vocab_size"] * h
    if has_learned_positions(spec):
        kept += f["max_position_embeddings"] * h
    if (spec.causal or is_encoder_decoder(spec)) and not f["tie_word_embeddings"]:
        kept += vocab * h
    return int(kept)


# ------------------------------------------------------------------ features
def _l(x: float) -> float:
    return math.log1p(max(0.0, float(x)))


def llm_feature_names(hardware_names: tuple[str, ...]) -> tuple[str, ...]:
    cfg = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size",
           "max_position_embeddings", "type_vocab_size", "tie_word_embeddings", "is_decoder")
    work = ("log_batch", "log_seq", "log_query_tokens", "log_context", *(f"mode_{m}" for m in LLM_MODES),
            "dtype_bytes", *(f"dtype_{d}" for d in LLM_DTYPES))
    graph = ("log_num_nodes", "log_num_edges", "log_num_kernels", "log_num_nodes_per_layer")
    costs = ("eager_attention", "log_attention_score_bytes",
             "log_flops", "log_macs", "log_attention_flops", "log_params", "log_weights_bytes", "log_kv_cache_bytes",
             "log_activation_bytes", "log_logits_bytes", "log_bytes_moved", "log_arithmetic_intensity",
             "log_compute_ms", "log_memory_ms", "log_launch_ms", "log_roofline_latency_ms", "log_analytic_memory_mb")
    return cfg + work + graph + costs + tuple(f"hw_{k}" for k in hardware_names)


def llm_feature_vector(w: LLMWorkload, device, *, build_structure: bool = True) -> tuple[list[float], dict]:
    """Feature values (in :func:`llm_feature_names` order) and the analytic costs they include."""
    s = graph_structure(w.spec, build=build_structure)
    c = analytic_costs(w, device, structure=s)
    f = llm_features(w.spec)
    vals = [float(v) for v in f.values()]
    vals += [_l(w.batch), _l(w.seq), _l(w.query_tokens), _l(w.context)]
    vals += [1.0 if w.mode == m else 0.0 for m in LLM_MODES]
    vals += [float(DTYPE_BYTES[w.dtype])] + [1.0 if w.dtype == d else 0.0 for d in LLM_DTYPES]
    vals += [_l(s["num_nodes"]), _l(s["num_edges"]), _l(s["num_kernels"]), _l(s["num_nodes_per_layer"])]
    vals += [c["eager_attention"], _l(c["attention_score_bytes"])]
    vals += [_l(c[k]) for k in ("flops", "macs", "attention_flops", "params", "weights_bytes", "kv_cache_bytes",
                                 "activation_bytes", "logits_bytes", "bytes_moved")]
    vals += [math.log(max(c["arithmetic_intensity"], 1e-9))]
    vals += [math.log(max(c[k], 1e-9)) for k in ("compute_ms", "memory_ms", "launch_ms", "latency_ms", "memory_mb")]
    vals += [_l(v) for v in device.hardware_features().values()]
    return vals, c
