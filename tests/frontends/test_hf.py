"""Decode-step graphs of the transformers frontend (``costmodel.frontends.hf``): one token per sequence against a
KV cache of the right shape."""

from __future__ import annotations

import warnings

import pytest

from costmodel import InvalidInputError
from costmodel.frontends import hf_graph

GPT2 = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 1000, "n_positions": 256,
        "bos_token_id": 0, "eos_token_id": 0}
LLAMA = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 256,
         "bos_token_id": 0, "eos_token_id": 0}


def _graph(model_type, cfg, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf_graph(model_type, cfg, cache=False, **kw)


@pytest.mark.parametrize("model_type,cfg,kv_heads", [("gpt2", GPT2, 4), ("llama", LLAMA, 2)])
def test_decode_graph_reads_a_cache_of_seq_tokens(model_type, cfg, kv_heads):
    b, seq = 3, 40
    g = _graph(model_type, cfg, batch=b, seq=seq, decode=True, causal=True)
    assert g.meta["phase"] == "decode" and g.meta["cache_len"] == seq
    # inputs: one token per sequence, then a key and a value per layer with the cache's shape
    shapes = [tuple(i.shape) for i in g.inputs]
    assert shapes[0] == (b, 1)
    head_dim = 64 // 4
    assert shapes[1:] == [(b, kv_heads, seq, head_dim)] * 4
    # the cache update appends the new token: seq + 1 positions afterwards, read by attention
    cats = [n for n in g.nodes if n.kind == "concat" and (b, kv_heads, seq, head_dim) in n.in_shapes]
    assert len(cats) == 4 and all(n.out_shapes[0] == (b, kv_heads, seq + 1, head_dim) for n in cats)
    lm_head = [n for n in g.nodes if n.kind == "matmul" and n.out_shapes[0][-1] == 1000]
    assert lm_head and all(n.out_shapes[0][-2:] in ((b, 1000), (1, 1000)) or n.out_shapes[0][0] == b
                           for n in lm_head)


def test_decode_costs_grow_with_the_cache_and_stay_below_prefill():
    short = _graph("gpt2", GPT2, batch=2, seq=16, decode=True, causal=True)
    long = _graph("gpt2", GPT2, batch=2, seq=128, decode=True, causal=True)
    prefill = _graph("gpt2", GPT2, batch=2, seq=128, causal=True)
    # attention over a longer cache: more FLOPs and more bytes, same number of operators
    assert long.flops > short.flops
    assert long.bytes_moved > short.bytes_moved
    assert len(long.nodes) == len(short.nodes)
    # one token costs far less than the 128-token prompt
    assert long.flops < prefill.flops / 20


def test_decode_needs_a_decoder():
    with pytest.raises(InvalidInputError, match="decoder"):
        _graph("bert", {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
                        "intermediate_size": 64, "vocab_size": 100}, batch=1, seq=8, decode=True, causal=False)


def test_dataset_builds_decode_rows(tmp_path):
    from costmodel.datasets import PerfDataset
    from costmodel.datasets._dataset import _llm_row

    row = {"model": "tiny", "model_type": "gpt2", "config": GPT2, "causal": True, "mode": "decode", "dtype": "fp32",
           "batch": 2, "seq": 24, "latency_ms": 1.0, "nvml_used_mb": 1.0, "energy_j": 1.0, "power_w": 1.0}
    r = _llm_row(row, "h200")
    assert r.has_graph and not r.graph_supported
    g = PerfDataset([r]).graph(0)
    assert g.meta["phase"] == "decode" and tuple(g.inputs[0].shape) == (2, 1)
