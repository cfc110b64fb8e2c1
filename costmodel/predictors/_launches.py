"""Kernels an operator launches on an NVIDIA GPU beyond the one the op table gives it: the batch norms
that run PyTorch's native kernels (applied) and cuDNN's convolutions (measured, not applied). The op
table (:mod:`._optable`) puts the extra kernels of a graph into one row after its module calls."""

from __future__ import annotations

import numpy as np

from ..ir import OP_KINDS

_BATCH_NORM, _CONV = OP_KINDS.index("batch_norm"), OP_KINDS.index("conv")  # ids in node columns


#: kernels a batch norm launches on PyTorch's native CUDA path (in eval: the inverse standard deviation,
#: the per-channel scale and shift, the normalization), against one where cuDNN takes it
NATIVE_BATCH_NORM_KERNELS = 3


def batch_norm_kernels(n) -> int:
    """Kernels a batch norm node launches on an NVIDIA GPU. cuDNN takes a batch norm only if its input
    has at least 3 dimensions and at most 65,535 samples (in eval), neither it nor its weights are bf16,
    and an fp16 input has fp32 weights; otherwise PyTorch runs its native kernels, three of them. The
    H200 profiles (packaged and later architectures) show it without exception: every eval-mode batch
    norm of a ``model.half()`` run launched 3 kernels (1,422 of them), every fp32 one on a 4-D input 1
    (3,313), LeViT's fp32 batch norms over 2-D inputs 3 (192). 1 for other nodes."""
    if n.kind != "batch_norm" or not n.in_shapes or not n.in_shapes[0]:
        return 1
    x_dt = n.in_dtypes[0] if n.in_dtypes else None
    w_dt = n.in_dtypes[1] if len(n.in_dtypes) > 1 else None
    x = n.in_shapes[0]
    native = ("bf16" in (x_dt, w_dt) or (x_dt == "fp16" and w_dt != "fp32") or len(x) < 3
              or (not n.attrs.get("training") and x[0] > 65535))
    return NATIVE_BATCH_NORM_KERNELS if native else 1


#: kernels a convolution launches on an NVIDIA GPU through cuDNN, by (half precision?, bias?, shape class):
#: the median over the forward convolutions of the packaged H200 profiles (``depthwise``, ``grouped``,
#: ``1x1`` and ``kxk`` dense). A dense k x k convolution transposes its input and output around the GEMM
#: (fp32 3, fp16 4), a bias adds a kernel, a grouped one runs several. The table gets 73 % of the
#: packaged convolutions' counts exactly and 56 % of the later architectures'.
MEASURED_CONV_KERNELS: dict[tuple[bool, bool, str], int] = {
    (False, False, "depthwise"): 1, (False, False, "grouped"): 6, (False, False, "1x1"): 1, (False, False, "kxk"): 3,
    (False, True, "1x1"): 2, (False, True, "kxk"): 5,
    (True, False, "depthwise"): 1, (True, False, "grouped"): 7, (True, False, "1x1"): 1, (True, False, "kxk"): 4,
    (True, True, "1x1"): 2, (True, True, "kxk"): 6,
}
#: the convolution kernel counts the op table applies; ``None`` (the default): one kernel a convolution.
#: :data:`MEASURED_CONV_KERNELS` made held-out families and the later architectures worse with both
#: seeds (docs/results.md, "Kernels an operator launches"): cuDNN's extra kernels are short and the
#: fitted convolution costs already carry them on average.
CONV_KERNELS: dict[tuple[bool, bool, str], int] | None = None


def conv_kernels(n) -> int:
    """Kernels a convolution node launches on an NVIDIA GPU (:data:`CONV_KERNELS`; a depthwise or grouped
    convolution with a bias: one more than without); 1 for other nodes."""
    if CONV_KERNELS is None or n.kind != "conv" or not n.in_shapes or len(n.in_shapes) < 2 or not n.in_shapes[1]:
        return 1
    groups = n.attrs.get("groups") or 1
    w = n.in_shapes[1]
    shape = ("depthwise" if groups > 1 and len(w) > 1 and w[1] == 1 else "grouped" if groups > 1
             else "1x1" if all(k == 1 for k in w[2:]) else "kxk")
    half = bool(n.in_dtypes) and n.in_dtypes[0] in ("fp16", "bf16")
    bias = len(n.in_shapes) > 2 and bool(n.in_shapes[2])
    k = CONV_KERNELS.get((half, bias, shape))
    return k if k is not None else CONV_KERNELS.get((half, False, shape), 1) + int(bias)


def extra_launches(cols, n_graphs: int, device) -> list[int]:
    """Per graph of ``cols``: the kernels its operators launch beyond one each on ``device`` (an NVIDIA
    GPU's batch norms on PyTorch's native path, :func:`batch_norm_kernels`, and its convolutions,
    :func:`conv_kernels`; none elsewhere)."""
    out = [0] * n_graphs
    if device.vendor.lower() != "nvidia":
        return out
    kinds = [_BATCH_NORM] + ([_CONV] if CONV_KERNELS is not None else [])
    which = np.flatnonzero(np.isin(cols.kind, kinds) & ~cols.view)
    if len(which):
        graph_of = np.searchsorted(cols.offsets, which, side="right") - 1
        for g, i in zip(graph_of.tolist(), which.tolist()):
            n = cols.nodes[i]
            out[g] += (batch_norm_kernels(n) if n.kind == "batch_norm" else conv_kernels(n)) - 1
    return out


def launched_rows(graphs, n_rows, node: np.ndarray, host: np.ndarray, launch: int) -> None:
    """The rows of nodes a graph lists in ``meta["launched_nodes"]`` (the kernels of one library call, a
    cuDNN RNN's: :func:`costmodel.frontends.pytorch.with_rnn_launches`) cost a kernel launch on the host,
    not an operator's dispatch: the host class ``launch`` (in place on ``host``)."""
    listed = [g.meta.get("launched_nodes") for g in graphs]
    if not any(listed):
        return
    start = np.concatenate([[0], np.cumsum(n_rows)]).astype(np.int64)
    for g, ids in enumerate(listed):
        if ids:
            sl = slice(int(start[g]), int(start[g + 1]))
            host[sl] = np.where(np.isin(node[sl], ids), launch, host[sl])
