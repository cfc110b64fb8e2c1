"""Transformer architectures beyond dense attention blocks: configs with per-layer lists (Gemma 2/3's
``layer_types``), hybrid caches whose layers hold convolution or recurrent states (LFM2), attention-free
state-space models (Mamba) and encoder-decoders (T5). Each builds, answers ``estimate_llm`` with the
parameters and FLOPs its graph counts, and says what it rests on."""

from __future__ import annotations


import pytest

transformers = pytest.importorskip("transformers")

from costmodel import InvalidInputError, estimate_llm  # noqa: E402
from costmodel.frontends import hf_graph  # noqa: E402
from costmodel.frontends.hf import build_hf_model  # noqa: E402
from costmodel.llm import attention_free, kv_cache_bytes, llm_features  # noqa: E402
from _hf_small import MAMBA, quiet  # noqa: E402

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 512, "head_dim": 16, "max_position_embeddings": 256, "pad_token_id": 0, "bos_token_id": 0,
         "eos_token_id": 0}


def _model_params(model_type: str, config: dict) -> int:
    model, _ = quiet(build_hf_model, model_type, config)
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def test_a_config_with_per_layer_types_answers():
    # a Gemma 2 config as a config.json or a config object gives it: one entry per layer
    cfg = transformers.Gemma2Config(**SMALL, num_hidden_layers=3).to_dict()
    assert len(cfg["layer_types"]) == 3
    e = quiet(estimate_llm, dict(cfg, model_type="gemma2"), batch=2, seq=32, mode="prefill")
    assert e.latency_ms > 0 and e.memory_mb > 0
    assert e.params == _model_params("gemma2", cfg)


def test_hybrid_cache_states_are_inputs_of_the_decode_step():
    # LFM2: a short-convolution layer, then an attention layer; the cache holds a convolution state
    # for the first and keys and values for the second
    cfg = dict(SMALL, num_hidden_layers=2, layer_types=["conv", "full_attention"])
    b, seq = 2, 48
    g = quiet(hf_graph, "lfm2", cfg, batch=b, seq=seq, decode=True, cache=False)
    shapes = [tuple(i.shape) for i in g.inputs]
    kv = (b, SMALL["num_key_value_heads"], seq, SMALL["head_dim"])
    assert shapes.count(kv) == 2, shapes  # keys and values of the attention layer
    assert shapes.count((b, SMALL["hidden_size"], 3)) == 1, shapes  # the convolution's state: (batch, hidden, L)
    e = quiet(estimate_llm, dict(cfg, model_type="lfm2"), batch=b, seq=seq, mode="decode")
    assert e.latency_ms > 0 and e.memory_mb > 0


def test_attention_free_models_are_costed_from_their_graph():
    spec = dict(MAMBA, model_type="mamba")
    assert attention_free(spec)
    f = llm_features(spec)
    assert (f["num_heads"], f["num_kv_heads"], f["head_dim"]) == (0, 0, 0)
    assert kv_cache_bytes(spec, batch=4, seq=1024) == 0
    assert not attention_free("gpt2")
    e = quiet(estimate_llm, spec, batch=2, seq=32, mode="prefill")
    assert e.params == _model_params("mamba", MAMBA)  # the graph's count, not a dense block's formula
    # on meta tensors transformers runs its reference selective scan: the estimate says so
    assert any("reference PyTorch code" in a and "selective_scan_fn" in a for a in e.assumptions), e.assumptions
    with pytest.raises(InvalidInputError, match="no attention.*predictor='timeline'"):
        quiet(estimate_llm, spec, batch=2, seq=32, mode="prefill", predictor="llm-xgb")


def test_a_scan_loop_is_captured_by_the_dispatch_trace_with_export_as_fallback():
    """A selective scan without its fused kernels is a per-token loop: the graph asked of torch.export comes
    from the dispatch trace (seconds, not minutes), with the same FLOPs and bytes; dense models stay on export."""
    from costmodel.frontends.hf import sequential_mixers

    assert sequential_mixers(quiet(build_hf_model, "mamba", MAMBA)[0]) == ["MambaMixer"]
    assert sequential_mixers(quiet(build_hf_model, "llama", dict(SMALL, num_hidden_layers=2))[0]) == []
    g = quiet(hf_graph, "mamba", MAMBA, batch=2, seq=16, causal=True)
    assert g.meta["capture"] == "trace"
    t = quiet(hf_graph, "mamba", MAMBA, batch=2, seq=16, causal=True, method="trace")
    cost = lambda x: (x.flops, sum(n.bytes_read + n.bytes_written for n in x.nodes))  # noqa: E731
    assert cost(g) == cost(t)
    dense = quiet(hf_graph, "llama", dict(SMALL, num_hidden_layers=2), batch=2, seq=16, causal=True)
    assert dense.meta["capture"] == "export"


def test_attention_free_decode_step_carries_the_recurrent_states():
    b, seq = 2, 40
    g = quiet(hf_graph, "mamba", MAMBA, batch=b, seq=seq, decode=True, cache=False)
    shapes = [tuple(i.shape) for i in g.inputs]
    inner = 2 * MAMBA["hidden_size"]  # expand 2
    assert shapes.count((b, inner, MAMBA["state_size"])) == MAMBA["num_hidden_layers"], shapes  # SSM states
    assert shapes.count((b, inner, 4)) == MAMBA["num_hidden_layers"], shapes  # conv states (kernel 4)
    e = quiet(estimate_llm, dict(MAMBA, model_type="mamba"), batch=b, seq=seq, mode="decode")
    # the trace (the prompt's prefill, then the steps) ran the reference kernels, and the estimate names them
    ref = [a for a in e.assumptions if "reference PyTorch code" in a]
    assert len(ref) == 1, e.assumptions
    assert all(k in ref[0] for k in ("causal_conv1d_update", "selective_state_update", "selective_scan_fn"))


def test_an_encoder_decoder_runs_its_decoder_on_the_tokens():
    cfg = {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "d_kv": 16,
           "vocab_size": 512}
    g = quiet(hf_graph, "t5", cfg, batch=2, seq=16, cache=False)
    e = quiet(estimate_llm, dict(cfg, model_type="t5"), batch=2, seq=16, mode="forward")
    assert e.params == g.params == _model_params("t5", cfg)
    assert e.flops == pytest.approx(g.flops)
    # the memory is the replayed trace (both stacks ran), not a fallback
    assert e.details["memory"]["path"] == "replay" and e.allocated_mb > 0
    assert not any("could not run" in a for a in e.assumptions), e.assumptions
    # built as it is run: T5ForConditionalGeneration, its LM head on every decoder position
    head = [n for n in g.nodes if n.kind == "matmul" and n.out_shapes and n.out_shapes[0][-1] == cfg["vocab_size"]]
    assert len(head) == 1 and head[0].flops == pytest.approx(2 * 2 * 16 * cfg["d_model"] * cfg["vocab_size"])
    # a fine-tuning step: the model's own loss on the tokens as labels, backward, AdamW
    step = quiet(estimate_llm, dict(cfg, model_type="t5"), batch=2, seq=16, mode="training", dtype="bf16")
    assert step.details["memory"]["path"] == "replay" and step.latency_ms > e.latency_ms
    assert step.allocated_mb > e.allocated_mb
    with pytest.raises(InvalidInputError, match="encoder-decoder.*'forward'.*'decode' and 'training'"):
        quiet(estimate_llm, dict(cfg, model_type="t5"), batch=2, seq=16, mode="prefill")


def test_an_encoder_decoders_decode_step_reads_its_self_and_cross_attention_caches():
    cfg = {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 3, "num_heads": 4, "d_kv": 16,
           "vocab_size": 512}
    b, seq = 2, 24
    g = quiet(hf_graph, "t5", cfg, batch=b, seq=seq, decode=True, cache=False)
    shapes = [tuple(i.shape) for i in g.inputs]
    assert shapes[:2] == [(b, 1), (b, seq, cfg["d_model"])]  # the new tokens, the encoder's output
    # keys and values of 3 decoder layers' self-attention, then of their cross-attention over the source
    assert shapes[2:] == [(b, cfg["num_heads"], seq, cfg["d_kv"])] * (2 * 2 * cfg["num_decoder_layers"])
    e = quiet(estimate_llm, dict(cfg, model_type="t5"), batch=b, seq=seq, mode="decode", dtype="fp16")
    assert e.details["cache_mb"] * 2**20 == 4 * cfg["num_decoder_layers"] * b * cfg["num_heads"] * seq * cfg["d_kv"] * 2
    assert e.details["memory"]["path"] == "replay" and e.latency_ms > 0


T5 = {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 3, "num_heads": 4, "d_kv": 16,
      "vocab_size": 512}


def test_an_encoder_decoders_target_length_sets_its_decoder_and_its_labels():
    b, seq, tgt = 2, 32, 8
    same = quiet(hf_graph, "t5", T5, batch=b, seq=seq, cache=False)
    assert quiet(hf_graph, "t5", T5, batch=b, seq=seq, target_seq=seq, cache=False).flops == pytest.approx(same.flops)
    g = quiet(hf_graph, "t5", T5, batch=b, seq=seq, target_seq=tgt, cache=False)
    assert g.meta["target_seq"] == tgt and g.params == same.params
    # the LM head runs on the target's positions, the encoder still on the source's
    head = [n for n in g.nodes if n.kind == "matmul" and n.out_shapes and n.out_shapes[0][-1] == T5["vocab_size"]]
    assert len(head) == 1 and head[0].out_shapes[0][:2] == (b, tgt)
    assert any(n.out_shapes and n.out_shapes[0][:2] == (b, seq) and n.out_shapes[0][-1] == T5["d_model"]
               for n in g.nodes)
    # cross-attention scores: (batch, heads, target, source)
    assert any(n.out_shapes and n.out_shapes[0] == (b, T5["num_heads"], tgt, seq) for n in g.nodes)
    assert g.flops < same.flops
    # a fine-tuning step's labels are the targets (a loss over seq positions would not match the logits)
    step = quiet(hf_graph, "t5", T5, batch=b, seq=seq, target_seq=tgt, mode="training", cache=False)
    assert step.meta["target_seq"] == tgt and step.flops < quiet(hf_graph, "t5", T5, batch=b, seq=seq,
                                                                   mode="training", cache=False).flops


def test_an_encoder_decoders_decode_step_holds_target_and_source_caches():
    b, seq, tgt = 2, 24, 40
    g = quiet(hf_graph, "t5", T5, batch=b, seq=seq, decode=True, target_seq=tgt, cache=False)
    shapes = [tuple(i.shape) for i in g.inputs]
    assert shapes[:2] == [(b, 1), (b, seq, T5["d_model"])]
    layers = T5["num_decoder_layers"]
    self_kv, cross_kv = (b, T5["num_heads"], tgt, T5["d_kv"]), (b, T5["num_heads"], seq, T5["d_kv"])
    assert shapes[2:] == [self_kv] * (2 * layers) + [cross_kv] * (2 * layers), shapes
    assert g.meta["cache_len"] == tgt
    e = quiet(estimate_llm, dict(T5, model_type="t5"), batch=b, seq=seq, mode="decode", dtype="fp16",
               target_seq=tgt)
    assert e.details["cache_mb"] * 2**20 == 2 * layers * b * T5["num_heads"] * (tgt + seq) * T5["d_kv"] * 2
    assert e.details["target_seq"] == tgt and e.details["memory"]["path"] == "replay"
    # a longer target holds a longer self-attention cache: more memory than the target of seq tokens
    d = quiet(estimate_llm, dict(T5, model_type="t5"), batch=b, seq=seq, mode="decode", dtype="fp16")
    assert e.allocated_mb > d.allocated_mb and "target_seq" not in d.details


@pytest.mark.parametrize("mode", ["forward", "training"])
def test_estimate_llm_costs_the_target_length_in_time_and_memory(mode):
    cfg = dict(T5, model_type="t5")
    short = quiet(estimate_llm, cfg, batch=4, seq=128, mode=mode, dtype="bf16", target_seq=16)
    long = quiet(estimate_llm, cfg, batch=4, seq=128, mode=mode, dtype="bf16", target_seq=512)
    assert short.details["target_seq"] == 16 and short.details["memory"]["path"] == "replay"
    assert short.flops < long.flops and short.allocated_mb < long.allocated_mb
    assert short.latency_ms <= long.latency_ms


def test_a_target_length_is_refused_where_it_means_nothing():
    with pytest.raises(InvalidInputError, match="target_seq .*encoder-decoder.*leave it out"):
        estimate_llm("gpt2", batch=1, seq=64, target_seq=16)
    with pytest.raises(InvalidInputError, match="target_seq"):
        estimate_llm("t5-small", batch=1, seq=64, target_seq=0)
    with pytest.raises(InvalidInputError, match="predictor='timeline'"):
        estimate_llm("t5-small", batch=1, seq=64, target_seq=16, predictor="llm-xgb")
    with pytest.raises(InvalidInputError, match="target_seq"):
        quiet(hf_graph, "gpt2", {"n_layer": 1, "n_embd": 64, "n_head": 4, "vocab_size": 512}, batch=1, seq=8,
               target_seq=4, cache=False)
    bart = {"model_type": "bart", "d_model": 64, "encoder_layers": 1, "decoder_layers": 1,
            "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 128,
            "decoder_ffn_dim": 128, "vocab_size": 512, "max_position_embeddings": 128}
    with pytest.raises(InvalidInputError, match="target_seq 200 exceeds .*128 learned positions"):
        estimate_llm(bart, batch=1, seq=64, target_seq=200)


def test_dense_models_keep_their_counts():
    e = quiet(estimate_llm, "gpt2", batch=1, seq=64, mode="prefill")
    assert e.params == 124439808


def test_bart_half_precision_memory_is_traced_past_its_overflow_guard():
    # BART's encoder layers branch on `torch.isfinite(h).all()` in fp16: the trace answers as for finite values
    cfg = {"model_type": "bart", "d_model": 64, "encoder_layers": 2, "decoder_layers": 2,
           "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 128,
           "decoder_ffn_dim": 128, "vocab_size": 512, "max_position_embeddings": 128}
    e = quiet(estimate_llm, cfg, batch=2, seq=32, mode="forward", dtype="fp16")
    assert e.details["memory"]["path"] == "replay"
    assert any("2 host read(s)" in n for n in e.details["memory"]["notes"]), e.details["memory"]["notes"]
    # its decoder makes an all-ones mask and checks it on the host before a decode step's attention: the
    # check is answered (one unpadded sequence per row) in the graph and in the trace
    d = quiet(estimate_llm, cfg, batch=2, seq=32, mode="decode", dtype="fp16")
    assert d.details["memory"]["path"] == "replay" and d.latency_ms > 0


TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512}


@pytest.mark.parametrize("outer, text_type, built_as", [
    ("llava", "llama", "llama"),  # a vision tower in front of Llama
    ("gemma3", "gemma3_text", "gemma3_text"),
    ("qwen2_5_vl", "qwen2_5_vl_text", "qwen2"),  # no causal-LM class for its text model: Qwen2's layers
])
def test_a_multimodal_config_is_costed_as_its_text_decoder(outer, text_type, built_as):
    # what a checkpoint's config.json holds: the outer type, its text and vision configs
    cfg = {"model_type": outer, "text_config": dict(TEXT, model_type=text_type)}
    e = quiet(estimate_llm, cfg, batch=1, seq=32, mode="prefill")
    note = e.assumptions[0]
    assert note.startswith(f"a multimodal {outer}") and f"text decoder ({built_as})" in note, e.assumptions
    assert "vision or audio encoder is not" in note
    assert e.params == _model_params(built_as, TEXT)  # the decoder's own parameters, no vision tower
    assert e.latency_ms > 0 and e.details["memory"]["path"] == "replay"


def test_a_multimodal_config_without_a_text_decoder_class_is_refused_by_name():
    cfg = {"model_type": "mllama", "text_config": {"model_type": "mllama_text_model", "hidden_size": 64,
                                                   "num_hidden_layers": 2, "num_attention_heads": 4}}
    with pytest.raises(InvalidInputError, match="mllama.*text decoder \\(mllama_text_model\\) has no causal-LM"):
        quiet(estimate_llm, cfg, batch=1, seq=32, mode="prefill")


@pytest.mark.parametrize("model_type, config", [
    ("gemma2", dict(SMALL, num_hidden_layers=4, sliding_window=16)),  # sliding and full layers alternate
    ("mistral", dict(SMALL, num_hidden_layers=2, sliding_window=24)),  # every layer slides
    ("lfm2", dict(SMALL, num_hidden_layers=3, layer_types=["conv", "full_attention", "conv"])),
    ("llama", dict(SMALL, num_hidden_layers=2)),
    # multi-head latent attention caches its compressed latent and rotary key: DeepSeek-V3's cache of 4,096
    # tokens in bf16 was put at 6,832 MiB (keys and values of 128 heads of 56), where it holds 274.5 MiB
    ("deepseek_v3", dict(SMALL, num_hidden_layers=2, num_key_value_heads=4, kv_lora_rank=32, q_lora_rank=None,
                         qk_nope_head_dim=16, qk_rope_head_dim=8, head_dim=8, v_head_dim=16, n_routed_experts=4,
                         num_experts_per_tok=2, moe_intermediate_size=32, n_group=1, topk_group=1)),
])
def test_kv_cache_size_is_what_the_cache_holds(model_type, config):
    import torch

    from costmodel.llm import cached_tokens

    b, seq = 2, 40
    model, _ = quiet(build_hf_model, model_type, config, causal=True)
    with torch.device("meta"), torch.no_grad():
        out = quiet(model, input_ids=torch.zeros((b, seq), dtype=torch.long), use_cache=True)
    layers = [layer for layer in out.past_key_values.layers]
    held = [layer.keys.shape[-2] if isinstance(getattr(layer, "keys", None), torch.Tensor) else 0
            for layer in layers]
    spec = dict(config, model_type=model_type)
    assert cached_tokens(spec, seq) == held
    elems = sum(layer.keys.numel() + layer.values.numel() for layer, n in zip(layers, held) if n)
    assert kv_cache_bytes(spec, batch=b, seq=seq) == elems * 2
    if model_type != "deepseek_v3":
        f = llm_features(spec)
        assert elems == 2 * b * sum(held) * f["num_kv_heads"] * f["head_dim"]


def test_a_decode_estimate_reports_the_cache_it_reads():
    spec = dict(SMALL, num_hidden_layers=2, model_type="llama")
    e = quiet(estimate_llm, spec, batch=3, seq=48, mode="decode", dtype="fp16")
    assert e.details["cache_mb"] * 2**20 == kv_cache_bytes(spec, batch=3, seq=48, dtype_bytes="fp16")
    assert "cache" in e.table() and "read per step" in e.table()
    # a sliding window caps what a layer keeps: Mistral with a 16-token window holds 15 of 48
    slide = dict(SMALL, num_hidden_layers=2, sliding_window=16, model_type="mistral")
    s = quiet(estimate_llm, slide, batch=3, seq=48, mode="decode", dtype="fp16")
    assert s.details["cache_mb"] * 2**20 == kv_cache_bytes(slide, batch=3, seq=48, dtype_bytes="fp16")
    assert s.details["cache_mb"] == pytest.approx(e.details["cache_mb"] * 15 / 48)


def test_the_cli_and_the_batch_search_take_a_target_length(capsys, tmp_path):
    import json

    from costmodel import largest_llm_batch
    from costmodel.cli import main

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(T5, model_type="t5")))
    argv = ["llm", str(cfg), "--batch", "2", "--seq", "64", "--mode", "decode", "--dtype", "bf16"]
    assert main([*argv, "--target-seq", "16"]) == 0
    out = capsys.readouterr().out
    assert "seq 64 (source), target 16" in out and "16 generated and 64 source tokens" in out
    assert main([*argv, "--target-seq", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["details"]["target_seq"] == 16
    # a shorter target leaves room for more sequences in the same memory
    kw = dict(seq=256, mode="training", dtype="bf16", memory_mb=1400.0)
    short = quiet(largest_llm_batch, dict(T5, model_type="t5"), target_seq=16, **kw)
    same = quiet(largest_llm_batch, dict(T5, model_type="t5"), **kw)
    assert short["batch"] > same["batch"] > 0
