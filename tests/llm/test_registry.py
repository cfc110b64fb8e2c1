"""The built-in transformer registry: configs instantiate, match published counts and the measured data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costmodel import InvalidInputError, ModelLoadError, UnknownModelError
from costmodel.llm import (
    LLMSpec,
    kv_cache_bytes,
    list_llms,
    llm_features,
    param_count_estimate,
    resolve_llm,
)

from costmodel.frontends.hf import build_hf_model  # noqa: E402

LLM_JSONL = Path(__file__).resolve().parents[2] / "costmodel" / "data" / "h200" / "llm.jsonl"

# Parameter counts published for the checkpoints (model cards / sum of the
# weights in the released files); encoders are counted with their pooler.
PUBLISHED_PARAMS = {
    "gpt2": 124_439_808,
    "bert-base-uncased": 109_482_240,
    "llama-2-7b": 6_738_415_616,
    "mistral-7b": 7_241_732_096,
    "qwen2-0.5b": 494_032_768,
    "tinyllama-1.1b": 1_100_048_384,
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "llama-3.2-1b": 1_235_814_400,
    "llama-3.2-3b": 3_212_749_824,
    "qwen2.5-0.5b": 494_032_768,
    "qwen2.5-7b": 7_615_616_512,
    "mixtral-8x7b": 46_702_792_704,
    "gemma-2-9b": 9_241_705_984,
    "phi-3-mini": 3_821_079_552,
    "t5-small": 60_506_624,
    "t5-base": 222_903_552,
    "mamba-130m": 129_135_360,
}


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def built_counts() -> dict[str, int]:
    """Every registry entry built on the meta device once: name -> parameter count."""
    counts = {}
    for name in list_llms():
        spec = resolve_llm(name)
        model, causal = build_hf_model(spec.model_type, spec.config, causal=spec.causal)
        assert causal == spec.causal
        assert next(model.parameters()).device.type == "meta"
        counts[name] = _n_params(model)
    return counts


@pytest.fixture(scope="module")
def measured_rows() -> dict[str, dict]:
    """First row of each model in the measured H200 LLM data."""
    rows: dict[str, dict] = {}
    with LLM_JSONL.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            rows.setdefault(row["model"], row)
    return rows


def test_registry_lists_the_expected_architectures():
    names = list_llms()
    assert len(names) == len(set(names)) == 38
    for n in ("bert-base-uncased", "deberta-v3-large", "gpt2-xl", "llama-2-70b", "llama-3-8b", "mistral-7b",
              "qwen2-7b", "tinyllama-1.1b", "phi-2", "gemma-2b", "gemma-7b", "llama-3.1-8b", "llama-3.2-1b",
              "qwen2.5-7b", "mixtral-8x7b", "gemma-2-9b", "phi-3-mini", "t5-small", "mamba-130m"):
        assert n in names


def test_every_entry_instantiates_on_meta(built_counts):
    assert set(built_counts) == set(list_llms())
    assert all(n > 10_000_000 for n in built_counts.values())


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_param_count_matches_published(built_counts, name):
    assert built_counts[name] == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", ["gpt2", "bert-base-uncased", "llama-2-7b", "phi-3-mini", "gemma-2-9b", "t5-small",
                                  "mamba-130m", "mixtral-8x7b"])
def test_param_count_estimate_within_2_percent_of_published(name):
    est = param_count_estimate(name)
    assert est == pytest.approx(PUBLISHED_PARAMS[name], rel=0.02)


def test_param_count_estimate_close_for_every_entry(built_counts):
    for name, real in built_counts.items():
        assert param_count_estimate(name) == pytest.approx(real, rel=0.005), name


def test_measured_model_names_resolve_and_agree_with_the_data(measured_rows):
    assert measured_rows, "no rows in llm.jsonl"
    keys = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size")
    for model, row in measured_rows.items():
        spec = resolve_llm(model)
        assert spec.model_type == row["model_type"], model
        assert spec.causal == row["causal"], model
        ours = llm_features(spec)
        theirs = llm_features({**row["config"], "model_type": row["model_type"]})
        assert {k: ours[k] for k in keys} == {k: theirs[k] for k in keys}, model
        assert param_count_estimate(spec) == row["params"], model


def test_measured_configs_agree_on_raw_field_names(measured_rows):
    # same check on the config fields themselves, for families that use the standard names
    fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    for model, row in measured_rows.items():
        cfg = resolve_llm(model).config
        for f in fields:
            if f in row["config"]:
                assert cfg[f] == row["config"][f], (model, f)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("bert-base", "bert-base-uncased"),
        ("BERT_BASE_UNCASED", "bert-base-uncased"),
        ("google-bert/bert-base-uncased", "bert-base-uncased"),
        ("meta-llama/Llama-2-7b-hf", "llama-2-7b"),
        ("Llama2-7B", "llama-2-7b"),
        ("Qwen/Qwen2-0.5B", "qwen2-0.5b"),
        ("qwen2_0_5b", "qwen2-0.5b"),
        ("microsoft-deberta-v3-small", "deberta-v3-small"),
        ("microsoft/deberta-v3-large", "deberta-v3-large"),
        ("openai-community/gpt2", "gpt2"),
        ("mistralai/Mistral-7B-v0.1", "mistral-7b"),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "tinyllama-1.1b"),
        ("Meta-Llama-3-8B", "llama-3-8b"),
    ],
)
def test_aliases(alias, canonical):
    spec = resolve_llm(alias)
    assert spec.name == canonical
    assert spec.config["model_type"] == spec.model_type


def test_resolve_returns_independent_copies():
    a = resolve_llm("gpt2")
    a.config["n_layer"] = 1
    assert resolve_llm("gpt2").config["n_layer"] == 12
    assert isinstance(a, LLMSpec) and resolve_llm(a) is a


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError, match=r"Did you mean: .*llama-2-7b"):
        resolve_llm("llama-2-7bb")
    with pytest.raises(UnknownModelError, match="known names: bert-base-uncased"):
        resolve_llm("not-a-model")


def test_local_directory(tmp_path):
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 128,
        "tie_word_embeddings": False,
    }  # fmt: skip
    d = tmp_path / "tiny-llama"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    for arg in (d, str(d), str(d / "config.json")):
        spec = resolve_llm(arg)
        assert spec.name == "tiny-llama"
        assert spec.model_type == "llama" and spec.causal
    f = llm_features(d)
    assert (f["num_kv_heads"], f["head_dim"], f["is_decoder"], f["type_vocab_size"]) == (2, 64, 1, 0)
    model, _ = build_hf_model(spec.model_type, spec.config, causal=spec.causal)
    assert _n_params(model) == param_count_estimate(spec)


def test_local_directory_encoder_and_errors(tmp_path):
    d = tmp_path / "enc"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    assert resolve_llm(d).causal is False
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        resolve_llm(tmp_path / "empty")
    (d / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(InvalidInputError, match="model_type"):
        resolve_llm(d)


def test_pretrained_config_and_dict():
    import transformers

    cfg = transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4)
    spec = resolve_llm(cfg)
    assert spec.model_type == "gpt2" and spec.causal and spec.source == "PretrainedConfig"
    assert llm_features(spec)["num_layers"] == 2
    spec = resolve_llm({"model_type": "roberta", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2})
    assert spec.causal is False and spec.source == "dict"
    with pytest.raises(InvalidInputError, match="model_type"):
        resolve_llm({"hidden_size": 64})
    with pytest.raises(InvalidInputError, match="expected a registry name"):
        resolve_llm(42)


def test_features():
    f = llm_features("gemma-2b")
    assert f == {
        "hidden_size": 2048, "num_layers": 18, "num_heads": 8, "num_kv_heads": 1, "head_dim": 256,
        "intermediate_size": 16384, "vocab_size": 256000, "max_position_embeddings": 8192,
        "type_vocab_size": 0, "tie_word_embeddings": 1, "is_decoder": 1,
    }  # fmt: skip
    g = llm_features("gpt2")  # n_inner=None means 4 * n_embd
    assert (g["hidden_size"], g["intermediate_size"], g["num_kv_heads"]) == (768, 3072, 12)
    assert g["max_position_embeddings"] == 1024
    b = llm_features("bert-base-uncased")
    assert (b["type_vocab_size"], b["is_decoder"]) == (2, 0)
    assert llm_features("distilbert-base-uncased")["num_layers"] == 6
    assert llm_features("llama-3-8b")["tie_word_embeddings"] == 0


def test_kv_cache_bytes():
    # Llama-2-7B: 2 * 32 layers * 32 kv heads * 128 dims * 2 bytes = 512 KiB per token
    assert kv_cache_bytes("llama-2-7b", batch=1, seq=1, dtype_bytes=2) == 524_288
    assert kv_cache_bytes("llama-2-7b", batch=4, seq=4096, dtype_bytes="fp16") == 4 * 4096 * 524_288
    # grouped-query attention: Llama-3-8B keeps 8 kv heads
    assert kv_cache_bytes("llama-3-8b", batch=1, seq=1, dtype_bytes="bf16") == 2 * 32 * 8 * 128 * 2
    assert kv_cache_bytes("llama-2-7b", batch=1, seq=1, dtype_bytes="int4") == 131_072
    for bad in ({"batch": 0, "seq": 1}, {"batch": 1, "seq": -1}, {"batch": 1.5, "seq": 1}):
        with pytest.raises(InvalidInputError):
            kv_cache_bytes("gpt2", **bad)
    with pytest.raises(InvalidInputError, match="fp16"):
        kv_cache_bytes("gpt2", 1, 1, dtype_bytes="half")
    with pytest.raises(InvalidInputError):
        kv_cache_bytes("gpt2", 1, 1, dtype_bytes=0)


def test_heads_that_do_not_divide_the_width_are_an_input_error():
    base = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "vocab_size": 100, "intermediate_size": 128}
    with pytest.raises(InvalidInputError, match="hidden size 65 is not divisible by the 4 attention heads"):
        llm_features(dict(base, hidden_size=65))
    with pytest.raises(InvalidInputError, match="4 attention heads are not divisible by the 3 key/value heads"):
        llm_features(dict(base, num_key_value_heads=3))
    # an explicit head_dim decouples the two (as in Gemma)
    assert llm_features(dict(base, hidden_size=65, head_dim=16))["head_dim"] == 16


def test_decoders_are_told_from_encoders_by_their_model_classes():
    from costmodel.llm import is_causal_type

    pytest.importorskip("transformers")
    for t in ("gpt2", "llama", "mixtral", "mpt", "qwen3_moe"):
        assert is_causal_type(t), t
    # BERT and RoBERTa also have causal-LM classes, but are encoders
    for t in ("bert", "roberta", "xlm-roberta", "deberta-v2", "distilbert", "electra", "albert"):
        assert not is_causal_type(t), t
    assert resolve_llm({"model_type": "mpt", "d_model": 64, "n_layers": 2, "n_heads": 4}).causal


def test_features_fall_back_to_the_config_class_defaults():
    pytest.importorskip("transformers")
    # ELECTRA's vocabulary size is left to transformers' default (30522), as from_config would build it
    f = llm_features({"model_type": "electra", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4})
    assert f["vocab_size"] == 30522 and f["hidden_size"] == 256 and f["num_layers"] == 2


_SMALL = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 3, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 1000}
MOE_CONFIGS = {
    "mixtral": dict(_SMALL, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(_SMALL, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=128,
                      shared_expert_intermediate_size=384),
    "qwen3_moe": dict(_SMALL, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=128, head_dim=64,
                      mlp_only_layers=[1]),
    "olmoe": dict(_SMALL, num_experts=4, num_experts_per_tok=2),
    "gpt_oss": dict(_SMALL, num_local_experts=4, num_experts_per_tok=2, head_dim=64),
    "mistral": dict(_SMALL),  # dense, its untied head left to the config class's default
}


@pytest.mark.parametrize("model_type", sorted(MOE_CONFIGS))
def test_param_count_of_mixtures_of_experts_matches_the_built_model(model_type):
    from costmodel.llm import moe_layout

    cfg = MOE_CONFIGS[model_type]
    model, _ = build_hf_model(model_type, cfg, causal=True)
    real = sum(p.numel() for p in model.parameters())
    spec = resolve_llm(dict(cfg, model_type=model_type))
    # within 0.05 %: Qwen3-MoE's and OLMoE's per-head query/key norms are not counted
    assert param_count_estimate(spec) == pytest.approx(real, rel=5e-4)
    moe = moe_layout(spec)
    if model_type == "mistral":
        assert moe is None
    else:
        assert moe["experts"] == 4 and moe["top_k"] == 2
        assert moe["moe_layers"] == (2 if model_type == "qwen3_moe" else 3)  # layer 1 stays dense


def test_a_mixture_of_experts_costs_its_active_experts_and_holds_them_all():
    from costmodel.devices import get_device
    from costmodel.features import analytic_costs, llm_workload

    moe = dict(MOE_CONFIGS["mixtral"], model_type="mixtral")
    dense = dict(_SMALL, model_type="mistral")
    dev = get_device("h200")
    m = analytic_costs(llm_workload(moe, batch=4, seq=64, mode="prefill", dtype="fp16"), dev)
    d = analytic_costs(llm_workload(dense, batch=4, seq=64, mode="prefill", dtype="fp16"), dev)
    # four experts held: their weights count in memory; two per token: twice the MLP's multiplies
    mlp = 3 * 256 * 512
    assert m["params"] - d["params"] == pytest.approx(3 * (3 * mlp + 256 * 4))
    tokens = 4 * 64
    assert m["macs"] - d["macs"] == pytest.approx(tokens * 3 * (mlp + 256 * 4))
    # a decode step of one sequence routes 2 token-expert pairs over 4 experts: the rest are not read
    one = analytic_costs(llm_workload(moe, batch=1, seq=64, mode="decode", dtype="fp16"), dev)
    unread = 3 * 4 * mlp * (3 / 4) ** 2 * 2  # expected share of experts no pair reaches (even routing), fp16
    held = one["weights_bytes"] - unread
    assert held <= one["bytes_moved"] <= held + one["kv_cache_bytes"] + 6 * one["activation_bytes"] \
        + 2 * one["logits_bytes"]
    assert unread > 0.1 * one["weights_bytes"]


def test_a_sliding_window_cache_is_named_in_the_notes():
    from costmodel.estimate._api import spec_notes

    (note,) = [n for n in spec_notes("mistral-7b", 8192) if "sliding-window" in n]
    assert "32 of 32 layers keep only the latest 4,095 of the 8,192 tokens" in note
    assert not [n for n in spec_notes("mistral-7b", 2048) if "sliding-window" in n]  # within the window
    assert not [n for n in spec_notes("llama-2-7b", 4096) if "sliding-window" in n]


@pytest.mark.parametrize("model_type, takes", [("whisper", "audio features"), ("vit", "pixel values")])
def test_a_model_fed_no_token_ids_is_refused_by_name(model_type, takes):
    # Whisper failed deep inside its trace ("'NoneType' object has no attribute 'shape'"), a ViT on its
    # missing vocabulary size
    with pytest.raises(InvalidInputError, match=rf"a '{model_type}' model takes {takes}, not token ids"):
        resolve_llm({"model_type": model_type, "hidden_size": 64})


def test_positions_a_config_leaves_out_are_its_class_default():
    from costmodel.estimate._api import spec_notes

    # Falcon-7B's config has no max_position_embeddings: it was read as 0, and 4,096 tokens passed unnoted
    falcon = {"model_type": "falcon", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
              "multi_query": True, "vocab_size": 1000}
    assert llm_features(resolve_llm(falcon))["max_position_embeddings"] == 2048
    assert any("past the 2,048 positions" in n for n in spec_notes(falcon, 4096))


#: decoders with rotary positions whose model types are outside the built-in families: their configs name a
#: rotary field (SmolLM3's rope parameters, CodeGen's rotary_dim), and they hold no position table
ROTARY_ELSEWHERE = {
    "smollm3": dict(_SMALL, max_position_embeddings=65536, tie_word_embeddings=True, pad_token_id=0),
    "codegen": {"n_embd": 256, "n_layer": 2, "n_head": 4, "vocab_size": 1000, "n_positions": 2048,
                "rotary_dim": 32, "tie_word_embeddings": False},
}


@pytest.mark.parametrize("model_type", sorted(ROTARY_ELSEWHERE))
def test_rotary_models_outside_the_known_families_hold_no_position_table(model_type):
    from costmodel.estimate._api import spec_notes
    from costmodel.features import llm_workload
    from costmodel.llm import has_learned_positions

    cfg = dict(ROTARY_ELSEWHERE[model_type], model_type=model_type)
    model, _ = build_hf_model(model_type, cfg, causal=True)
    spec = resolve_llm(cfg)
    # SmolLM3's count carried a 65,536 x 256 table it does not have: 17,956,352 against 1,436,928 built
    assert not has_learned_positions(spec)
    assert param_count_estimate(spec) == pytest.approx(_n_params(model), rel=2e-3)
    # past its positions: noted, as for Llama, not refused as if a learned table capped it
    n = llm_features(spec)["max_position_embeddings"]
    assert llm_workload(spec, batch=1, seq=2 * n, mode="prefill").seq == 2 * n
    assert any(f"past the {n:,} positions" in note for note in spec_notes(spec, 2 * n))


def test_a_mixture_of_experts_config_leaving_its_activation_out_is_gated():
    # DeepSeek-V2-Lite's layout with the activation left to the config class (SiLU): it was read as an
    # ungated dense stack with a learned table of 163,840 positions, 2.42 B parameters for 15.7 B
    cfg = {"model_type": "deepseek_v2", "hidden_size": 2048, "intermediate_size": 10944,
           "moe_intermediate_size": 1408, "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
           "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16,
           "first_k_dense_replace": 1, "kv_lora_rank": 512, "q_lora_rank": None, "qk_nope_head_dim": 128,
           "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 102400, "tie_word_embeddings": False,
           "max_position_embeddings": 163840}
    # published 15,706,484,224, with its multi-head latent attention's own projections (read as plain
    # attention, 15,787,866,112: 0.5 % over)
    assert param_count_estimate(cfg) == 15_706_484_224


_MLA = dict(_SMALL, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=48)
#: multi-head latent attention: a low-rank query (q_lora_rank) or one query projection (null), biases or not
MLA_CONFIGS = {
    "deepseek_v2": dict(_MLA, q_lora_rank=None, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=128,
                        n_shared_experts=1, first_k_dense_replace=1),
    "deepseek_v3": dict(_MLA, q_lora_rank=96, attention_bias=True, n_routed_experts=4, num_experts_per_tok=2,
                        moe_intermediate_size=128, n_shared_experts=1, first_k_dense_replace=1, n_group=1,
                        topk_group=1),
    "minicpm3": dict(_MLA, q_lora_rank=96),
}


@pytest.mark.parametrize("model_type", sorted(MLA_CONFIGS))
def test_param_count_of_multi_head_latent_attention_matches_the_built_model(model_type):
    from costmodel.llm import mla_layout

    cfg = dict(MLA_CONFIGS[model_type], model_type=model_type)
    model, _ = build_hf_model(model_type, cfg, causal=True)
    spec = resolve_llm(cfg)
    # read as plain attention: 16-17 % over on these small configurations
    assert param_count_estimate(spec) == _n_params(model)
    mla = mla_layout(spec)
    assert mla["q_lora_rank"] == (cfg["q_lora_rank"] or 0) and mla["v_head_dim"] == 48
    assert mla_layout(dict(_SMALL, model_type="mistral")) is None
