"""The operators PyTorch's fused inference paths run, for captures that cannot take those paths.

``nn.MultiheadAttention`` in eval mode under ``no_grad``/``inference_mode`` skips its Python
implementation (``F.multi_head_attention_forward``: an input projection, a contiguous copy of q, k
and v, a dozen views and checks, attention, a second copy, the output projection) and calls one
C++ operator, ``torch._native_multi_head_attention``. PyTorch declines that path when any argument
is on the ``meta`` device or is traced by ``make_fx``, which is exactly how both capture methods
run the model, so without help a graph records the Python path that a GPU (or a CPU) never runs at
inference. This module lets a capture record what the fused operator does instead:

* on CUDA, self-attention with a head size divisible by 8 and no attention weights asked for, the
  operator runs one input projection (``linear``), views that split q, k and v into heads, one
  ``scaled_dot_product_attention`` (the fused flash or memory-efficient kernel), a reshape back to
  ``(B, T, D)`` (a view: the fused kernels write ``(B, T, H, hd)``) and the output projection
  (``native_multi_head_attention_cuda`` in ATen);
* otherwise (attention weights requested, or a head size not divisible by 8) it runs the explicit
  path: a GEMM without bias, one kernel that adds the bias, scales q and splits the heads, a
  batched GEMM for the scores, a softmax, a batched GEMM for the context and a copy plus GEMM for
  the output projection.

The conditions mirror ``MultiheadAttention.forward``'s fast-path checks except the device and
tracing ones; a module that fails them (training, ``batch_first=False``, separate q/k/v weights,
an odd head count, a key/value that is not the query, ``bias_k``, autocast) runs its own forward
and the graph records the Python path, as PyTorch would run it. Masks are passed on as the fused
operator receives them (merged into one additive mask); ``is_causal`` without a mask is left to the
Python path. Only inference captures use this: PyTorch takes no fused path when training.

``nn.TransformerEncoderLayer``'s own fused path (``torch._transformer_encoder_layer_fwd``) runs
the same attention followed by the layer's norms, adds and feed-forward GEMMs, which its Python
path records already; its attention goes through the module patched here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def _fast_path_ok(mha, query, key, value, key_padding_mask, attn_mask, is_causal) -> bool:
    """``MultiheadAttention.forward``'s fast-path conditions, without the device and tracing checks and
    without its grad-mode check: an inference capture stands for a call under ``inference_mode``."""
    import torch

    if not torch.backends.mha.get_fastpath_enabled() or torch.is_autocast_enabled():
        return False
    if query.dim() != 3 or query is not key or key is not value or query.is_nested:
        return False
    if mha.training or not mha.batch_first or not mha._qkv_same_embed_dim or mha.num_heads % 2:
        return False
    if mha.in_proj_weight is None or mha.in_proj_bias is None or mha.bias_k is not None or mha.bias_v is not None:
        return False
    if mha.add_zero_attn or query.dtype != mha.in_proj_weight.dtype or query.dtype != mha.in_proj_bias.dtype:
        return False
    for m in (attn_mask, key_padding_mask):
        if m is not None and torch.is_floating_point(m):
            return False
    return not (is_causal and attn_mask is None)


def fused_attention(mha, query, mask, need_weights: bool, average_attn_weights: bool):
    """What ``torch._native_multi_head_attention`` computes for ``mha`` on a CUDA device, as the
    ATen operators its kernel runs; ``mask``: the merged additive mask or None. Returns
    ``(output, weights or None)``."""
    import torch
    import torch.nn.functional as F

    b, t, d = query.shape
    h = mha.num_heads
    hd = d // h
    if hd % 8 == 0 and not need_weights:
        x = F.linear(query, mha.in_proj_weight, mha.in_proj_bias)
        q, k, v = (c.view(b, -1, h, hd).transpose(1, 2) for c in x.chunk(3, -1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(b, -1, d)
        return F.linear(y, mha.out_proj.weight, mha.out_proj.bias), None
    qkv = torch.matmul(query, mha.in_proj_weight.t())
    # one kernel adds the bias, scales q and writes q, k, v as (B, H, T, hd); here an add and a
    # scale of q, a third of its traffic
    q, k, v = (qkv + mha.in_proj_bias).view(b, t, 3, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
    scores = torch.matmul(q * hd ** -0.5, k.transpose(-2, -1))
    if mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1)
    ctx = torch.matmul(probs, v)
    out = F.linear(ctx.transpose(1, 2).reshape(b, t, d), mha.out_proj.weight, mha.out_proj.bias)
    if not need_weights:
        return out, None
    return out, (probs.mean(dim=1) if average_attn_weights else probs)


@contextlib.contextmanager
def inference_fast_paths(enabled: bool = True) -> Iterator[None]:
    """Within the block, an ``nn.MultiheadAttention`` that PyTorch would send down its fused
    inference path records :func:`fused_attention`'s operators; ``enabled=False`` does nothing
    (training captures, where PyTorch takes no fused path)."""
    if not enabled:
        yield
        return
    from torch import nn

    original = nn.MultiheadAttention.forward

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not _fast_path_ok(self, query, key, value, key_padding_mask, attn_mask, is_causal):
            return original(self, query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                            attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
        import torch.nn.functional as F

        key_padding_mask = F._canonical_mask(mask=key_padding_mask, mask_name="key_padding_mask",
                                             other_type=F._none_or_dtype(attn_mask), other_name="attn_mask",
                                             target_type=query.dtype)
        attn_mask = F._canonical_mask(mask=attn_mask, mask_name="attn_mask", other_type=None, other_name="",
                                      target_type=query.dtype, check_other=False)
        merged, mask_type = self.merge_masks(attn_mask, key_padding_mask, query)
        if mask_type == 1:  # a key padding mask alone, (B, S): broadcast over heads and queries
            merged = merged.view(merged.shape[0], 1, 1, merged.shape[-1])
        return fused_attention(self, query, merged, need_weights, average_attn_weights)

    nn.MultiheadAttention.forward = forward
    try:
        yield
    finally:
        nn.MultiheadAttention.forward = original


@contextlib.contextmanager
def cuda_attention() -> Iterator[None]:
    """Run ``F.scaled_dot_product_attention`` as a CUDA device would, on fake or meta tensors.

    For the CPU tensors fake tensors stand for, PyTorch picks its CPU flash kernel, or the math
    backend (which materialises the ``L x L`` attention probabilities and saves them for the
    backward pass) where that kernel does not apply; on meta tensors it always takes the math
    backend. A CUDA device runs a fused kernel (flash for fp16/bf16, memory-efficient for fp32) that
    keeps only the output and one log-sum-exp per row. The memory-efficient kernel stands in for
    both fused kernels: one operator, its allocations, its FLOPs. A boolean mask becomes an additive
    one first (one kernel, as PyTorch converts it), and grouped-query attention repeats k and v to
    the query's heads. 3-D inputs are left to PyTorch.
    """
    import torch
    import torch.nn.functional as F

    orig = F.scaled_dot_product_attention

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if query.dim() != 4:
            return orig(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale, enable_gqa=enable_gqa)
        if enable_gqa and key.shape[1] != query.shape[1]:
            rep = query.shape[1] // key.shape[1]
            key = key.repeat_interleave(rep, dim=1)
            value = value.repeat_interleave(rep, dim=1)
        bias = attn_mask
        if bias is not None and bias.dtype == torch.bool:
            bias = torch.zeros(bias.shape, dtype=query.dtype, device=bias.device)
        need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
        out = torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, bias, need_grad, dropout_p, is_causal, scale=scale)
        return out[0]

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = orig
