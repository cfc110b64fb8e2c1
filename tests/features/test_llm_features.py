"""Transformer workload features: closed-form costs vs graphs, graph structure, the feature vector."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from costmodel import InvalidInputError, UnknownModelError
from costmodel.devices import HARDWARE_FEATURE_NAMES, get_device
from costmodel.features import (
    analytic_costs,
    check_model_type,
    graph_structure,
    llm_feature_names,
    llm_feature_vector,
    llm_workload,
    static_features,
    structure_key,
)
from costmodel.features.llm import _LAYER_KEYS, _shipped_table
from costmodel.frontends import hf_graph
from costmodel.llm import resolve_llm

H200 = get_device("h200")


def _small(name, layers=2):
    spec = resolve_llm(name)
    key = next(k for k in _LAYER_KEYS if k in spec.config)
    from dataclasses import replace

    return replace(spec, config=dict(spec.config, **{key: layers}), name=f"{name}-{layers}l")


@pytest.mark.parametrize("name, mode", [("gpt2", "prefill"), ("bert-base-uncased", "forward"),
                                        ("qwen2-0.5b", "prefill"), ("distilbert-base-uncased", "forward")])
def test_closed_form_flops_and_params_match_the_graph(name, mode):
    spec = _small(name)
    w = llm_workload(spec, batch=2, seq=32, mode=mode, dtype="fp32")
    c = analytic_costs(w, H200)
    g = hf_graph(spec.model_type, spec.config, batch=2, seq=32, causal=spec.causal)
    assert c["params"] == pytest.approx(static_features(g)["params"], rel=1e-3)
    assert c["flops"] == pytest.approx(g.tensor_flops, rel=0.02)


@pytest.mark.parametrize("model_type, q_lora_rank", [("deepseek_v3", 96), ("deepseek_v2", None)])
def test_multi_head_latent_attention_flops_and_params_match_the_graph(model_type, q_lora_rank):
    """Its projections through the latent, and a decode step expanding every cached token's keys and
    values (transformers caches the latent): read as plain attention, about 19 % over in prefill and 40 %
    under in decode."""
    cfg = {"model_type": model_type, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1000, "max_position_embeddings": 512,
           "kv_lora_rank": 64, "q_lora_rank": q_lora_rank, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16,
           "v_head_dim": 48, "n_routed_experts": 1, "first_k_dense_replace": 2}
    spec = resolve_llm(cfg)
    for mode in ("prefill", "decode"):
        c = analytic_costs(llm_workload(spec, batch=2, seq=32, mode=mode, dtype="fp32"), H200)
        g = hf_graph(spec.model_type, spec.config, batch=2, seq=32, causal=True, decode=mode == "decode")
        assert c["params"] == static_features(g)["params"]
        assert c["flops"] == pytest.approx(g.tensor_flops, rel=1e-6), mode


def test_no_packaged_row_has_latent_attention():
    """The learned predictor's rows are dense attention: the latent-attention closed forms leave their
    features as they were."""
    from costmodel.llm import mla_layout

    path = Path(__file__).resolve().parents[2] / "costmodel" / "data" / "h200" / "llm.jsonl"
    configs = {json.dumps(r["config"], sort_keys=True): r["config"] for r in map(json.loads, path.open())}
    assert len(configs) > 10 and not any(mla_layout(c) for c in configs.values())


def test_structure_extrapolates_exactly_over_layers():
    spec3 = _small("gpt2", 3)
    s = graph_structure(spec3)  # built from one- and two-layer probes
    g = hf_graph(spec3.model_type, spec3.config, batch=1, seq=8, causal=True)
    assert s["num_nodes"] == g.num_nodes and s["num_edges"] == len(g.edges)
    # the layer count is not part of the structure key; the hidden size is
    assert structure_key(spec3) == structure_key(_small("gpt2", 5))
    assert structure_key(spec3) != structure_key(_small("gpt2-medium", 3))


def test_registry_structures_ship_precomputed():
    table = _shipped_table()
    for n in ("llama-2-7b", "bert-base-uncased", "mistral-7b", "gpt2"):
        assert structure_key(resolve_llm(n)) in table, n


def test_decode_reads_the_cache():
    w = llm_workload("llama-2-7b", batch=4, seq=1024, mode="decode", dtype="fp16")
    c = analytic_costs(w, H200)
    kv = 2 * 32 * 4 * 1025 * 4096 * 2
    assert c["kv_cache_bytes"] == kv
    assert c["memory_ms"] > c["compute_ms"]  # one token: memory-bound
    p = analytic_costs(llm_workload("llama-2-7b", batch=4, seq=1024, mode="prefill", dtype="fp16"), H200)
    assert p["compute_ms"] > p["memory_ms"]  # 4096 tokens: compute-bound
    # the prefill that built the cache (its logits) stays reserved by the caching allocator
    assert c["activation_bytes"] >= 4 * 1024 * 32000 * 2
    assert c["memory_mb"] > p["memory_mb"] - 1


def test_eager_attention_scores_are_counted():
    deb = analytic_costs(llm_workload("deberta-v3-base", batch=8, seq=512, dtype="fp16"), H200)
    bert = analytic_costs(llm_workload("bert-base", batch=8, seq=512, dtype="fp16"), H200)
    # DeBERTa-v3 has no fused attention in transformers: scores plus its c2p and p2c terms
    assert deb["eager_attention"] == 1 and bert["eager_attention"] == 0 and bert["attention_score_bytes"] == 0
    assert deb["attention_score_bytes"] == 3 * 8 * 12 * 512 * 512 * 2 * 12


@pytest.mark.parametrize("kw, msg", [
    (dict(model="bert-base", batch=1, seq=8, mode="decode"), "needs a decoder"),
    (dict(model="gpt2", batch=1, seq=8, dtype="fp8"), "dtype must be one of"),
    (dict(model="gpt2", batch=0, seq=8), "expected batch to be a positive integer, got 0"),
    (dict(model="bert-base", batch=1, seq=4096), "learned positions"),
    (dict(model="gpt2", batch=1, seq=8, mode="train"), "mode must be one of"),
])
def test_workload_validation(kw, msg):
    model = kw.pop("model")
    with pytest.raises(InvalidInputError, match=msg):
        llm_workload(model, **kw)


def test_a_decode_step_past_the_learned_positions_says_the_largest_seq_it_takes():
    # the cache of 1,024 tokens and the new one are 1,025 positions: the message names both counts
    llm_workload("gpt2", batch=1, seq=1023, mode="decode")
    with pytest.raises(InvalidInputError, match=r"decode step at seq 1024 runs 1025 positions .* gpt2's 1024 learned "
                                                r"positions: the largest seq it takes is 1023"):
        llm_workload("gpt2", batch=1, seq=1024, mode="decode")
    with pytest.raises(InvalidInputError, match=r"seq 1025 exceeds gpt2's 1024 learned positions: the largest seq "
                                                r"it takes is 1024"):
        llm_workload("gpt2", batch=1, seq=1025, mode="prefill")


def test_feature_vector_layout():
    w = llm_workload("qwen2-0.5b", batch=8, seq=256, dtype="bf16")
    vals, costs = llm_feature_vector(w, H200)
    names = llm_feature_names(HARDWARE_FEATURE_NAMES)
    assert len(vals) == len(names) and np.isfinite(vals).all()
    d = dict(zip(names, vals))
    assert d["num_kv_heads"] == 2 and d["mode_prefill"] == 1 and d["dtype_bf16"] == 1 and d["dtype_bytes"] == 2
    assert d["log_roofline_latency_ms"] == pytest.approx(math.log(costs["latency_ms"]))


def test_unknown_model_type_names_the_closest_and_a_count():
    from costmodel.llm import estimate_llm

    check_model_type("llama")  # known: no error
    with pytest.raises(UnknownModelError) as e:
        check_model_type("lama")
    msg = str(e.value)
    assert "'lama'" in msg and "llama" in msg and "model types" in msg and len(msg) < 300
    cfg = {"model_type": "no_such_arch", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "vocab_size": 100}
    with pytest.raises(UnknownModelError) as e:
        estimate_llm(cfg, batch=1, seq=8)
    assert "'no_such_arch'" in str(e.value) and len(str(e.value)) < 300


def test_a_config_transformers_refuses_is_one_input_error(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 4, "vocab_size": 100, "intermediate_size": 128, "rope_scaling": {"type": "bogus"}}
    with pytest.raises(InvalidInputError, match="transformers cannot build this llama config") as e:
        graph_structure(resolve_llm(cfg))
    assert "\n" not in str(e.value)


def test_structure_table_is_computed_in_memory_and_written_only_where_asked(tmp_path, monkeypatch):
    import hashlib

    from costmodel.features import llm as F

    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path / "cache"))
    shipped = F.STRUCTURE_PATH.read_bytes()
    spec = resolve_llm({"model_type": "gpt2", "n_layer": 2, "n_embd": 48, "n_head": 3, "vocab_size": 77,
                        "n_positions": 64})
    table = F.structure_table([spec])
    assert F.structure_key(spec) in table and set(F._shipped_table()) < set(table)
    with pytest.raises(TypeError):
        F.write_structure_table([spec])  # no default: the package file is written only on purpose
    out = tmp_path / "structure.json"
    assert F.write_structure_table([spec], out) == len(table)
    assert F.structure_key(spec) in json.loads(out.read_text())["structures"]
    assert hashlib.sha1(F.STRUCTURE_PATH.read_bytes()).digest() == hashlib.sha1(shipped).digest()
    assert F.structure_key(spec) not in F._shipped_table()


@pytest.mark.parametrize("name, embedding_params", [("llama-3-8b", 2 * 128256 * 4096), ("gemma-2b", 256000 * 2048)])
def test_weight_only_quantization_keeps_the_embeddings_and_head_in_fp16(name, embedding_params):
    # bitsandbytes, GPTQ and AWQ quantize the blocks' linear layers: Llama-3-8B's int4 weights were put at
    # 4.02 GB (every parameter at half a byte), where its fp16 embedding and untied head alone hold 2.1 GB
    fp16 = analytic_costs(llm_workload(name, batch=1, seq=512, mode="decode", dtype="fp16"), H200)
    params = fp16["params"]
    for dtype, nbytes in (("int8", 1), ("int4", 0.5)):
        c = analytic_costs(llm_workload(name, batch=1, seq=512, mode="decode", dtype=dtype), H200)
        assert c["weights_bytes"] == pytest.approx((params - embedding_params) * nbytes + embedding_params * 2)
        assert c["kv_cache_bytes"] == fp16["kv_cache_bytes"]  # the cache stays fp16 too
    assert fp16["weights_bytes"] == 2 * params
