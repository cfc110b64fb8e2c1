"""Inference captures record the operators of PyTorch's fused multi-head attention, not its Python path."""

import pytest
import torch
import torchvision
from torch import nn

from costmodel.frontends import from_torch
from costmodel.frontends._fastpath import fused_attention, inference_fast_paths


def _mha(heads=4, dim=32, **kw):
    torch.manual_seed(0)
    return nn.MultiheadAttention(dim, heads, batch_first=True, **kw).eval()


@pytest.mark.parametrize("heads,need_weights,average", [(4, False, True), (4, True, True), (4, True, False),
                                                       (8, False, True)])
def test_the_fused_operators_compute_what_the_module_computes(heads, need_weights, average):
    # heads=8 with dim 32: head size 4, not a multiple of 8, so the explicit (bmm, softmax, bmm) path
    mha = _mha(heads)
    x = torch.randn(3, 5, 32)
    with torch.inference_mode():
        want, want_w = mha(x, x, x, need_weights=need_weights, average_attn_weights=average)
        got, got_w = fused_attention(mha, x, None, need_weights, average)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if need_weights:
        torch.testing.assert_close(got_w, want_w, rtol=1e-4, atol=1e-5)
    else:
        assert got_w is None


def test_a_padding_mask_is_applied_as_the_module_applies_it():
    mha = _mha()
    x = torch.randn(2, 6, 32)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.inference_mode(), inference_fast_paths():
        got, _ = mha(x, x, x, key_padding_mask=pad, need_weights=False)
    with torch.inference_mode():
        want, _ = mha(x, x, x, key_padding_mask=pad, need_weights=False)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _vit():
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=32, mlp_dim=64).eval()


def _graph(m, method, fast, mode="inference"):
    import costmodel.frontends.pytorch as P

    real = P.inference_fast_paths
    if not fast:
        P.inference_fast_paths = lambda enabled=True: real(False)
    try:
        return from_torch(m, torch.randn(2, 3, 32, 32), method=method, mode=mode)
    finally:
        P.inference_fast_paths = real


@pytest.mark.parametrize("method", ["export", "trace"])
def test_an_inference_graph_has_no_copies_of_q_k_and_v(method):
    # the Python path copies the packed projection into contiguous q, k, v; the fused path's SDPA
    # reads strided views of it, so that copy never runs (export keeps SDPA as one node; the trace
    # records SDPA as the meta backend decomposes it, whose own copies stay)
    m = _vit()
    fast, slow = _graph(m, method, True), _graph(m, method, False)
    n_fast, n_slow = (sum(n.kind == "copy" for n in g.nodes) for g in (fast, slow))
    if method == "export":
        assert n_slow >= 2 and n_fast <= n_slow - 2  # one copy per layer gone
    ops_fast, ops_slow = (sum(not n.is_view for n in g.nodes) for g in (fast, slow))
    assert ops_fast <= ops_slow and len(fast.nodes) < len(slow.nodes)
    # the same GEMMs and attention (the trace records the Python path's 3-D linears as a GEMM plus a bias add)
    def work(g):
        return sum(n.flops for n in g.nodes if n.kind in ("matmul", "attention", "conv"))

    assert work(fast) == pytest.approx(work(slow), rel=1e-9)
    assert nn.MultiheadAttention.forward is _ORIGINAL_FORWARD


_ORIGINAL_FORWARD = nn.MultiheadAttention.forward


def test_training_graphs_keep_the_python_path_and_the_module_is_restored():
    m = _vit()
    fast, slow = _graph(m, "trace", True, "training"), _graph(m, "trace", False, "training")
    assert [n.kind for n in fast.nodes] == [n.kind for n in slow.nodes]
    assert nn.MultiheadAttention.forward is _ORIGINAL_FORWARD and m.training is False


def test_a_capture_that_fails_still_restores_the_module():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), inference_fast_paths():
        Broken()(torch.zeros(1))
    assert nn.MultiheadAttention.forward is _ORIGINAL_FORWARD


@pytest.mark.parametrize("kw,why", [
    ({"batch_first": False}, "batch_first"),
    ({"batch_first": True, "kdim": 16, "vdim": 16}, "separate q/k/v weights"),
    ({"batch_first": True, "add_bias_kv": True}, "bias_k"),
    ({"batch_first": True, "num_heads": 1}, "odd head count"),
    ({"batch_first": True, "train": True}, "training"),
])
def test_modules_that_fail_the_fast_path_conditions_are_left_alone(kw, why):
    from costmodel.frontends._fastpath import _fast_path_ok

    kw = dict(kw)
    train = kw.pop("train", False)
    mha = nn.MultiheadAttention(32, kw.pop("num_heads", 4), **kw).train(train)
    x = torch.randn(2, 5, 32)
    assert not _fast_path_ok(mha, x, x, x, None, None, False), why
    assert _fast_path_ok(_mha(), x, x, x, None, None, False)
    assert not _fast_path_ok(_mha(), x, x.clone(), x, None, None, False)  # not self-attention
    assert not _fast_path_ok(_mha(), x, x, x, None, None, True)  # is_causal without a mask


def test_a_transformer_encoder_layer_gets_the_fused_attention():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
    m = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 7, 32)
    g = from_torch(m, x)
    assert sum(n.kind == "attention" for n in g.nodes) == 2
    assert not any(n.kind == "copy" for n in g.nodes)  # the packed projection is only viewed
    with torch.inference_mode(), inference_fast_paths():
        got = m(x)
    with torch.inference_mode():
        want = m(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_the_trace_records_one_fused_attention_as_export_does():
    # on meta tensors PyTorch would decompose SDPA into GEMMs, a softmax and copies; a GPU runs one kernel
    m = _vit()
    x = torch.randn(2, 3, 32, 32)
    ge, gt = from_torch(m, x, method="export"), from_torch(m, x, method="trace")

    def kinds(g):
        out = {}
        for n in g.nodes:
            if not n.is_view:
                out[n.kind] = out.get(n.kind, 0) + 1
        return out

    assert kinds(gt) == kinds(ge) and kinds(gt)["attention"] == 2
    assert "softmax" not in kinds(gt)
    assert gt.flops == pytest.approx(ge.flops, rel=1e-9)
    att = [n for n in gt.nodes if n.kind == "attention"]
    assert all(n.in_shapes[0] == (2, 2, 17, 16) for n in att)  # (B, heads, tokens, head size)


def test_fused_false_records_what_the_capture_sees_and_is_cached_apart(tmp_path, monkeypatch):
    from costmodel.frontends import zoo_graph

    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path))
    spec = {"src": "tv", "name": "vit_b_32"}
    fused = zoo_graph(spec, batch=1)
    plain = zoo_graph(spec, batch=1, fused=False)
    assert len(plain.nodes) > len(fused.nodes)
    # from the cache, each under its own key
    assert len(zoo_graph(spec, batch=1, fused=False).nodes) == len(plain.nodes)
    assert len(zoo_graph(spec, batch=1).nodes) == len(fused.nodes)
    assert len(list((tmp_path / "graphs").glob("*.json.gz"))) == 2
