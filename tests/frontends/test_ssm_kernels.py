"""Mamba's fused selective-scan kernels (costmodel.frontends.hf.fused_ssm_kernels): the stand-ins replace transformers'
reference loop over the tokens in graphs and allocation traces, count the same arithmetic, and are refused
where a model has no such layer."""

from __future__ import annotations


import pytest

transformers = pytest.importorskip("transformers")

from costmodel import InvalidInputError, estimate_llm  # noqa: E402
from costmodel.frontends import hf_graph  # noqa: E402
from costmodel.frontends.hf import fused_ssm_kernels, scan_flops  # noqa: E402
from _hf_small import MAMBA, quiet  # noqa: E402


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_a_fused_scan_is_one_operator_per_layer_with_the_reference_loops_arithmetic(mode):
    b, seq = 2, 64
    ref = quiet(hf_graph, "mamba", MAMBA, batch=b, seq=seq, causal=True, mode=mode, cache=False)
    fused = quiet(hf_graph, "mamba", MAMBA, batch=b, seq=seq, causal=True, mode=mode, cache=False,
                   ssm_kernels="fused")
    scans = [n for n in fused.nodes if n.op.endswith("selective_scan_fwd")]
    assert len(scans) == MAMBA["num_hidden_layers"] and fused.meta["ssm_kernels"] == "fused"
    inner = 2 * MAMBA["hidden_size"]
    assert scans[0].flops == scan_flops(b, inner, seq, MAMBA["state_size"], gated=True)
    assert scans[0].out_shapes[0] == (b, inner, seq)
    assert scans[0].out_shapes[1] == (b, inner, 1, 2 * MAMBA["state_size"])  # fp32 states of each 2,048 tokens
    # the loop of small operators is gone; the work the graph counts stays within a few percent
    assert len(fused.nodes) < len(ref.nodes) / 5
    assert fused.flops == pytest.approx(ref.flops, rel=0.05)
    assert fused.params == ref.params
    assert not any(n.op.endswith("selective_scan_fwd") for n in ref.nodes)


def test_estimates_with_fused_scans_are_faster_to_make_and_to_run():
    cfg = dict(MAMBA, model_type="mamba")
    ref = quiet(estimate_llm, cfg, batch=2, seq=128, mode="prefill", dtype="bf16")
    fused = quiet(estimate_llm, cfg, batch=2, seq=128, mode="prefill", dtype="bf16", ssm_kernels="fused")
    assert fused.latency_ms < ref.latency_ms / 3  # 256 host dispatches per layer become one kernel
    assert fused.details["memory"]["path"] == "replay" and fused.details["ssm_kernels"] == "fused"
    note = [a for a in fused.assumptions if "fused kernels" in a and "selective scans" in a]
    assert len(note) == 1, fused.assumptions
    # the scan and the causal convolution ran their stand-ins: no reference code is left to name
    assert not [a for a in fused.assumptions if "reference PyTorch code" in a], fused.assumptions
    ref_note = [a for a in ref.assumptions if "reference PyTorch code" in a]
    assert ref_note and "selective_scan_fn" in ref_note[0] and "causal_conv1d_fn" in ref_note[0]
    assert "ssm_kernels" not in ref.details
    g = quiet(hf_graph, "mamba", MAMBA, batch=2, seq=128, causal=True, cache=False, ssm_kernels="fused")
    conv = [n for n in g.nodes if n.op.endswith("causal_conv1d_fwd")]
    assert len(conv) == MAMBA["num_hidden_layers"] and conv[0].flops == 2 * 128 * 128 * (2 * 4 + 4)


def test_a_fused_training_step_keeps_what_mamba_ssm_keeps_and_runs_one_backward_kernel():
    from costmodel.analysis.memreplay import replay_memory, workload_trace

    cfg = dict(MAMBA, model_type="mamba")
    step = quiet(replay_memory, cfg, "h200", batch=2, seq=64, mode="training", dtype="bf16", optimizer="adamw",
                  ssm_kernels="fused")
    ref = quiet(replay_memory, cfg, "h200", batch=2, seq=64, mode="training", dtype="bf16", optimizer="adamw")
    # the reference loop keeps a state per token for its backward pass; the fused scan its inputs and the
    # states of each chunk
    assert 0 < step.allocated_mb < ref.allocated_mb
    with fused_ssm_kernels():
        trace = quiet(workload_trace, cfg, batch=2, seq=64, mode="training", dtype="bf16", optimizer="adamw")
    ops = [e.op or "" for e in trace.events if e.kind == "alloc"]
    layers = MAMBA["num_hidden_layers"]
    assert sum(o.startswith("selective_scan_bwd") for o in ops) >= layers  # the gradients of every input
    assert sum(o.startswith("selective_scan_fwd") for o in ops) >= layers


def test_a_fused_decode_step_updates_the_state_in_one_operator():
    g = quiet(hf_graph, "mamba", MAMBA, batch=2, seq=32, causal=True, decode=True, cache=False, ssm_kernels="fused")
    upd = [n for n in g.nodes if n.op.endswith("selective_state_update")]
    assert len(upd) == MAMBA["num_hidden_layers"] and upd[0].flops > 0


def test_fused_kernels_are_refused_where_there_is_no_selective_scan():
    with pytest.raises(InvalidInputError, match="ssm_kernels='fused' costs Mamba's .*gpt2 has no such layer"):
        estimate_llm("gpt2", batch=1, seq=16, ssm_kernels="fused")
    with pytest.raises(InvalidInputError, match="ssm_kernels must be one of reference, fused; got 'fast'"):
        estimate_llm(dict(MAMBA, model_type="mamba"), batch=1, seq=16, ssm_kernels="fast")
    with pytest.raises(InvalidInputError, match="predictor='timeline'"):
        estimate_llm(dict(MAMBA, model_type="mamba"), batch=1, seq=16, ssm_kernels="fused", predictor="llm-xgb")
    lfm2 = {"model_type": "lfm2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "layer_types": ["conv", "full_attention"]}
    with pytest.raises(InvalidInputError, match="lfm2 has no such layer"):
        quiet(estimate_llm, lfm2, batch=1, seq=16, ssm_kernels="fused")


MAMBA2 = {"hidden_size": 64, "num_hidden_layers": 2, "state_size": 16, "num_heads": 4, "head_dim": 32, "n_groups": 1,
          "vocab_size": 512, "pad_token_id": 0, "chunk_size": 32}


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_mamba2s_chunked_scan_is_one_operator_with_the_chunked_algorithms_arithmetic(mode):
    from costmodel.frontends.hf import chunk_scan_flops

    b, seq = 2, 100  # four chunks of 32, the last one padded
    ref = quiet(hf_graph, "mamba2", MAMBA2, batch=b, seq=seq, causal=True, mode=mode, cache=False)
    fused = quiet(hf_graph, "mamba2", MAMBA2, batch=b, seq=seq, causal=True, mode=mode, cache=False,
                   ssm_kernels="fused")
    scans = [n for n in fused.nodes if n.op.endswith("chunk_scan_fwd")]
    assert len(scans) == MAMBA2["num_hidden_layers"]
    h, p, n, chunk = MAMBA2["num_heads"], MAMBA2["head_dim"], MAMBA2["state_size"], MAMBA2["chunk_size"]
    assert scans[0].flops == chunk_scan_flops(b, seq, h, p, 1, n, chunk)
    # the chunks' states and C B^T are written by the kernels: results of the operator
    assert (b, 4, h, p, n) in scans[0].out_shapes and (b, 4, 1, chunk, chunk) in scans[0].out_shapes
    assert len(fused.nodes) < len(ref.nodes) / 2 and fused.params == ref.params
    # the reference repeats B and C over the heads and multiplies whole chunk squares: more work
    assert fused.flops < ref.flops


def test_a_fused_mamba2_step_holds_less_than_the_reference_chunks():
    from costmodel.analysis.memreplay import replay_memory

    cfg = dict(MAMBA2, model_type="mamba2")
    kw = dict(batch=2, seq=128, mode="training", dtype="bf16", optimizer="adamw")
    fused = quiet(replay_memory, cfg, "h200", ssm_kernels="fused", **kw)
    ref = quiet(replay_memory, cfg, "h200", **kw)
    assert 0 < fused.allocated_mb < ref.allocated_mb
    d = quiet(estimate_llm, cfg, batch=2, seq=64, mode="decode", ssm_kernels="fused")
    assert d.details["memory"]["path"] == "replay" and d.details["ssm_kernels"] == "fused"


def test_the_stand_ins_have_no_arithmetic_and_leave_the_modules_as_they_were():
    import torch

    import transformers.models.mamba.modeling_mamba as mm

    before = mm.mamba_selective_scan
    with fused_ssm_kernels() as types:
        assert "mamba" in types and mm.mamba_selective_scan is not before
        u = torch.zeros(1, 4, 3)
        with pytest.raises(RuntimeError, match="shapes only"):
            mm.mamba_selective_scan(u, u, torch.zeros(4, 2), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
    assert mm.mamba_selective_scan is before


def test_a_fused_mamba_training_step_runs_mamba_inner_fn_and_recomputes_as_it_does():
    # a Mamba-1 training step on a GPU with mamba_ssm goes through mamba_inner_fn: the convolution's output
    # and the time steps are not kept but recomputed in the backward pass (checkpoint_lvl 1)
    from costmodel.analysis.memreplay import workload_trace

    cfg = dict(MAMBA, model_type="mamba")
    with fused_ssm_kernels():
        trace = quiet(workload_trace, cfg, batch=2, seq=64, mode="training", dtype="bf16", optimizer="adamw")
    conv = [e.phase for e in trace.events if e.kind == "alloc" and (e.op or "").startswith("causal_conv1d_fwd")]
    layers = MAMBA["num_hidden_layers"]
    assert conv.count("backward") >= layers and conv.count("forward") >= layers
    e = quiet(estimate_llm, cfg, batch=2, seq=64, mode="training", dtype="bf16", ssm_kernels="fused")
    assert not [a for a in e.assumptions if "reference PyTorch code" in a], e.assumptions
    # Falcon-Mamba normalizes B, C and the time steps inside its fused function: not modelled, its own path runs
    from costmodel.frontends.hf import fused_ssm_kernels as fused
    import transformers.models.mamba.modeling_mamba as mm

    with fused():
        assert mm.mamba_inner_fn(None, None, None, None, None, None, None, None, b_rms_weight=object()) is None
