"""ONNX frontend: weights computed from weights (weight standardization, reparameterized kernels)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional as F

from costmodel.frontends import from_onnx, from_torch


class StdConvNet(nn.Module):
    """Two convolutions whose kernels are standardized in every forward (NF-Net's ``ScaledStdConv2d``)."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.w2 = nn.Parameter(torch.randn(16, 8, 1, 1))
        self.gain = nn.Parameter(torch.ones(16))

    @staticmethod
    def _std(w, gain=None):
        flat = w.reshape(1, w.shape[0], -1)
        out = F.batch_norm(flat, None, None, weight=gain, training=True, momentum=0.0, eps=1e-5)
        return out.reshape_as(w)

    def forward(self, x):
        x = F.relu(F.conv2d(x, self._std(self.w1), padding=1))
        return F.conv2d(x, self._std(self.w2, self.gain))


def _conv_facts(g):
    return [(n.flops, n.in_shapes[1], n.out_shapes[0]) for n in g.nodes if n.kind == "conv"]


def test_standardized_kernels_are_costed_as_the_kernels_they_are(tmp_path):
    """The kernel a convolution reads is the standardized tensor, of the kernel's shape: FLOPs and shapes
    as the PyTorch frontend gives them (before, the kernel was dropped and the FLOPs were the bias's)."""
    model, x = StdConvNet().eval(), (torch.randn(2, 3, 16, 16),)
    path = tmp_path / "std.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x, dynamo=True, optimize=False, verbose=False).save(str(path))
    g, ref = from_onnx(path), from_torch(model, x).fold_constants()
    assert _conv_facts(g) == _conv_facts(ref)
    assert _conv_facts(g)[0][1] == (8, 3, 3, 3) and _conv_facts(g)[1][1] == (16, 8, 1, 1)
    assert g.params == ref.params == 8 * 27 + 16 * 8 + 16
    assert g.flops == ref.flops


def test_kernel_reshaped_after_it_is_computed_keeps_the_reshaped_shape():
    """``Reshape`` of a computed kernel is a tensor of the new shape (a reshape of an initializer stays an
    alias of it, counted once)."""
    w = numpy_helper.from_array(np.random.randn(4, 27).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([4, 3, 3, 3], np.int64), "shape")
    nodes = [
        helper.make_node("ReduceMean", ["w"], ["mu"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["w", "mu"], ["wc"]),
        helper.make_node("Reshape", ["wc", "shape"], ["k"]),
        helper.make_node("Conv", ["x", "k"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "std", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, shape])
    g = from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    (conv,) = [n for n in g.nodes if n.kind == "conv"]
    assert conv.in_shapes == [(1, 3, 8, 8), (4, 3, 3, 3)] and conv.out_shapes == [(1, 4, 8, 8)]
    assert conv.flops == 2 * 4 * 8 * 8 * 3 * 9
    assert g.params == 4 * 27
