"""Mixture-of-experts decoders: each grouped expert GEMM is one ``matmul`` node with its FLOPs, and
a decode step builds (torch's grouped GEMM has no meta kernel for fp32, transformers' own operator
stands in while a model is captured)."""

from __future__ import annotations

import warnings

import pytest

from costmodel.analysis import experts_hit, op_cost
from costmodel.frontends import hf_graph

H, I, E, TOP, V = 64, 96, 4, 2, 500
MIXTRAL = {"num_hidden_layers": 2, "hidden_size": H, "intermediate_size": I, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": V, "num_local_experts": E, "num_experts_per_tok": TOP,
           "max_position_embeddings": 256, "bos_token_id": 0, "eos_token_id": 0}


def _needs_grouped_moe():
    transformers = pytest.importorskip("transformers")
    try:
        from transformers.integrations import moe
    except ImportError:
        pytest.skip(f"transformers {transformers.__version__} has no grouped-GEMM experts")
    if not hasattr(moe, "_can_use_grouped_mm"):
        pytest.skip(f"transformers {transformers.__version__} has no grouped-GEMM experts")


def _graph(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf_graph("mixtral", MIXTRAL, cache=False, **kw)


def test_expert_gemms_are_matmuls_with_their_flops():
    _needs_grouped_moe()
    b, seq = 2, 16
    g = _graph(batch=b, seq=seq)
    grouped = [n for n in g.nodes if "grouped_mm" in n.op]
    assert len(grouped) == 2 * MIXTRAL["num_hidden_layers"]  # gate+up, then down, per layer
    rows = b * seq * TOP  # token-expert pairs
    for n in grouped:
        assert n.kind == "matmul" and n.attrs["experts"] == E
        (s, k), (e, k2, out) = n.in_shapes[0], n.in_shapes[1]
        assert (s, e, k2) == (rows, E, k)
        assert n.flops == pytest.approx(2 * rows * k * out)
    flops = sorted(n.flops for n in grouped)
    assert flops == pytest.approx(sorted([2 * rows * H * 2 * I, 2 * rows * I * H] * 2))
    # without the grouped GEMMs the graph held a tenth of its work
    assert sum(n.flops for n in grouped) > 0.4 * g.flops


def test_decode_step_of_a_mixture_of_experts_builds():
    _needs_grouped_moe()
    b, seq = 2, 32
    g = _graph(batch=b, seq=seq, decode=True)
    assert g.meta["phase"] == "decode" and g.meta["causal"]
    grouped = [n for n in g.nodes if "grouped_mm" in n.op]
    assert grouped and all(n.in_shapes[0][0] == b * TOP for n in grouped)
    # a decode step routes 4 pairs over 4 experts: only the experts hit are read
    gate_up = next(n for n in grouped if n.in_shapes[1][-1] == 2 * I)
    weights = E * H * 2 * I * 4
    assert gate_up.bytes_read == pytest.approx(b * TOP * H * 4 + weights * experts_hit(b * TOP, E) + E * 4)  # int32 offsets


def test_experts_hit():
    assert experts_hit(1, 8) == pytest.approx(1 / 8)
    assert experts_hit(8, 8) == pytest.approx(1 - (7 / 8) ** 8)
    assert experts_hit(10_000, 8) == pytest.approx(1.0)
    assert experts_hit(5, 1) == 1.0
    # op_cost: a grouped GEMM reads its input, the weights of the experts hit and the offsets
    flops, _, read, written = op_cost("matmul", [(3, 16), (8, 16, 32), (8,)], ["fp16", "fp16", "int32"],
                                      [(3, 32)], ["fp16"], {"k": 16, "experts": 8})
    assert flops == 2 * 3 * 16 * 32 and written == 3 * 32 * 2
    assert read == pytest.approx(3 * 16 * 2 + 8 * 16 * 32 * 2 * experts_hit(3, 8) + 8 * 4)
