"""ATen operator names -> op kinds.

Covers both the high-level operators ``torch.export`` keeps (``conv2d``,
``linear``, ``scaled_dot_product_attention``, ``batch_norm``...) and the
lower-level ones a dispatch-level trace sees (``convolution``, ``addmm``,
``native_batch_norm``, ``_scaled_dot_product_*_attention``...), keyed by the
operator's base name (``aten::relu_`` -> ``relu``; the trailing underscore of
in-place variants is stripped and recorded as ``inplace``).
"""

from __future__ import annotations

# base name -> (kind, is_view)
_TABLE: dict[str, tuple[str, bool]] = {}


def _reg(kind: str, names: str, view: bool = False) -> None:
    for n in names.split():
        _TABLE[n] = (kind, view)


_reg("conv", "convolution _convolution conv1d conv2d conv3d cudnn_convolution mkldnn_convolution "
     "convolution_overrideable _slow_conv2d_forward thnn_conv2d conv_tbc")
_reg("conv_transpose", "conv_transpose1d conv_transpose2d conv_transpose3d cudnn_convolution_transpose "
     "slow_conv_transpose2d")
_reg("matmul", "linear addmm mm bmm matmul baddbmm addbmm einsum _addmm_activation mv addmv dot "
     "_scaled_mm tensordot _grouped_mm grouped_mm grouped_mm_fallback")
_reg("attention", "scaled_dot_product_attention _scaled_dot_product_flash_attention "
     "_scaled_dot_product_efficient_attention _scaled_dot_product_cudnn_attention "
     "_scaled_dot_product_flash_attention_for_cpu _flash_attention_forward _efficient_attention_forward "
     "_scaled_dot_product_fused_attention_overrideable")
_reg("batch_norm", "batch_norm native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training "
     "_native_batch_norm_legit_functional cudnn_batch_norm miopen_batch_norm _batch_norm_impl_index "
     "_batch_norm_with_update _batch_norm_no_update")
_reg("layer_norm", "layer_norm native_layer_norm")
_reg("group_norm", "group_norm native_group_norm")
_reg("instance_norm", "instance_norm")
_reg("rms_norm", "rms_norm _fused_rms_norm")
_reg("relu", "relu threshold")
_reg("gelu", "gelu")
_reg("silu", "silu")
_reg("sigmoid", "sigmoid")
_reg("tanh", "tanh")
_reg("hardswish", "hardswish hardsigmoid")
_reg("clamp", "hardtanh clamp clamp_min clamp_max relu6")
_reg("softmax", "softmax _softmax _safe_softmax log_softmax _log_softmax")
# losses a model computes in its forward pass (a language model given labels): a cross entropy is a
# log-softmax over the logits and a gather of the targets' log-probabilities
_reg("softmax", "cross_entropy_loss")
_reg("gather", "nll_loss nll_loss_nd nll_loss2d")
_reg("elementwise", "mse_loss l1_loss smooth_l1_loss huber_loss binary_cross_entropy "
     "binary_cross_entropy_with_logits")
_reg("activation", "elu leaky_relu mish softplus selu celu prelu _prelu_kernel glu logsigmoid rrelu "
     "log_sigmoid_forward softshrink hardshrink")
_reg("max_pool", "max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices "
     "adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d")
_reg("avg_pool", "avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d "
     "adaptive_avg_pool3d _adaptive_avg_pool2d _adaptive_avg_pool3d")
_reg("add", "add sub rsub")
_reg("mul", "mul div true_divide floor_divide")
_reg("elementwise", "pow sqrt rsqrt exp exp2 log log2 log1p neg abs where eq ne lt gt le ge masked_fill "
     "maximum minimum erf erfc sin cos reciprocal floor ceil round trunc sign bitwise_and bitwise_or "
     "bitwise_not logical_and logical_or logical_not fill zero zeros zeros_like ones ones_like full "
     "full_like new_zeros new_ones new_full arange lerp addcmul addcdiv isnan isinf "
     "nan_to_num fmod remainder square atan2 triu tril rand rand_like randn randn_like bernoulli "
     "native_dropout_backward __and__ __or__ __xor__ __invert__ diff _weight_norm_interface")
_reg("reduction", "sum mean amax amin max min argmax argmin var std var_mean std_mean prod norm "
     "linalg_vector_norm cumsum cumprod logsumexp topk sort all any count_nonzero nansum median")
_reg("reshape", "view _unsafe_view reshape reshape_as flatten unflatten squeeze unsqueeze expand expand_as view_as "
     "alias detach _reshape_alias as_strided lift_fresh lift_fresh_copy view_as_real view_as_complex", view=True)
_reg("transpose", "permute transpose t swapaxes movedim numpy_T adjoint", view=True)
_reg("concat", "cat concat concatenate stack hstack vstack")
_reg("slice", "slice select split split_with_sizes chunk narrow unbind tensor_split diagonal unfold "
     "unsafe_split unsafe_split_with_sizes unsafe_chunk", view=True)
_reg("pad", "pad constant_pad_nd reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d "
     "replication_pad2d replication_pad3d")
_reg("copy", "contiguous clone _to_copy to type_as copy copy_ roll repeat tile flip repeat_interleave "
     "channel_shuffle pixel_shuffle pixel_unshuffle native_channel_shuffle _unsafe_index im2col col2im")
_reg("copy", "empty empty_like new_empty empty_strided new_empty_strided", view=True)
# a Python number made a tensor (``x[a:b] = 1`` on meta or fake tensors records it on their device, then a
# view, an expand and a ``copy_``): eager CUDA makes it on the CPU, with no kernel, and fills the slice
_reg("copy", "scalar_tensor", view=True)
_reg("resize", "upsample_nearest1d upsample_nearest2d upsample_nearest3d upsample_bilinear2d "
     "upsample_bicubic2d upsample_linear1d upsample_trilinear3d interpolate _upsample_nearest_exact2d "
     "_upsample_bilinear2d_aa grid_sampler grid_sampler_2d")
_reg("embedding", "embedding embedding_bag _embedding_bag")
# Fourier transforms: no kind of their own; their FLOPs are stated (5 N log2 n, ``frontends._capture_rules.fft_flops``)
_reg("other", "_fft_r2c _fft_c2r _fft_c2c " + " ".join(f"fft_{k}{v}" for v in ("", "2", "n")
                                                     for k in ("fft", "ifft", "rfft", "irfft")))
_reg("gather", "gather take_along_dim index index_select index_put scatter scatter_add scatter_reduce masked_select "
     "take index_add index_copy index_fill masked_scatter")
_reg("dropout", "dropout native_dropout feature_dropout alpha_dropout feature_alpha_dropout")
# operators whose output size depends on the values (a detector's box filtering and NMS); a graph
# that has them was built from one real run (``trace-real``). ``nonzero`` and ``unique`` are scans,
# torchvision's NMS a pass over the sorted boxes' overlaps; RoI pooling samples a few points of the
# feature map per output element, a gather (it does not stream the whole map)
_reg("reduction", "nonzero nonzero_static _unique _unique2 unique_dim unique_consecutive argwhere nms batched_nms")
_reg("gather", "roi_align ps_roi_align _roi_align roi_pool ps_roi_pool")
# the stand-ins for Mamba's fused selective-scan kernels (``frontends._ssm``): one kernel each, costed by the
# FLOPs of the scan (``attrs["flops"]``) and one read and write of its operands; like an activation, a
# training step runs one backward kernel for the forward one
_reg("activation", "selective_scan_fwd selective_state_update chunk_scan_fwd causal_conv1d_fwd causal_conv1d_update")
# the stand-ins for cuDNN's fused RNN gate kernel (``frontends._cudnn_rnn``): one kernel per time step, costed by
# the FLOPs of the elementwise operators it fuses; one backward kernel each
_reg("activation", "lstm_pointwise gru_pointwise rnn_tanh_pointwise rnn_relu_pointwise")

#: operators that carry no tensor work at all (bookkeeping, asserts, symbolic sizes)
IGNORED = frozenset(
    "sym_size sym_numel sym_stride sym_storage_offset _assert_async _assert_scalar _assert_tensor_metadata "
    "sym_constrain_range sym_constrain_range_for_size _local_scalar_dense item _set_grad_enabled "
    "record_stream _functional_assert_async _make_dep_token _print".split()
)


def lookup(base: str) -> tuple[str, bool, bool] | None:
    """``(kind, is_view, inplace)`` for an ATen base name, or ``None`` if unknown."""
    if base in _TABLE:
        kind, view = _TABLE[base]
        return kind, view, False
    if base.endswith("_") and base[:-1] in _TABLE:
        kind, view = _TABLE[base[:-1]]
        return kind, view, True
    return None


def base_name(op) -> str:
    """``aten.add_.Tensor`` (an OpOverload) -> ``add_``."""
    name = getattr(op, "_schema", None)
    if name is not None:
        return op._schema.name.split("::")[-1]
    return getattr(op, "__name__", str(op)).split(".")[0]
