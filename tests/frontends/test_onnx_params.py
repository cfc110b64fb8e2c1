"""ONNX frontend: which initializers are parameters (constants an exporter folded into initializers are
not), tanh-GELU from the TorchScript exporter, and the bytes ``Split`` writes."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional as F

from costmodel.frontends import from_onnx, from_torch


def _init(name: str, value, dtype=np.float32) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _model(nodes, inputs, output: str, inits, opset: int = 18, out_type=TensorProto.FLOAT):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(output, out_type, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _export(model, x, path, *, dynamo: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), dynamo=True, optimize=True, verbose=False).save(str(path))
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
    return path


class _Mixed(nn.Module):
    """Causal attention, ``interpolate``, an affine and a plain GroupNorm, and ``x * 2``: the dynamo
    exporter folds the mask, the scales, the identity affine and the scalar into initializers."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.gn_plain = nn.GroupNorm(4, 8, affine=False)

    def forward(self, x):  # x: (1, 16, 8)
        q, k, v = self.qkv(x).view(1, 16, 3, 2, 4).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(1, 1, 16, 8)
        y = self.gn_plain(self.gn(self.conv(a)))
        return F.interpolate(y, scale_factor=2, mode="bilinear") * 2


def _randomized(model: nn.Module) -> nn.Module:
    """Weights other than the default ones and zeros (an exporter merges equal initializers)."""
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.5, 1.5)
    return model.eval()


def test_folded_constants_are_not_parameters(tmp_path):
    """The causal mask (L x L), the attention and interpolation scales, GroupNorm's identity affine and a
    scalar the dynamo exporter stores as initializers are not parameters: ``params`` and ``weights_bytes``
    are the PyTorch frontend's, from either exporter (before: 602 params and 2,648 bytes for the dynamo
    file against 312 and 1,248, the mask growing with L**2)."""
    model, x = _randomized(_Mixed()), torch.randn(1, 16, 8)
    ref = from_torch(model, x)
    assert ref.params == 8 * 24 + 24 + 8 * 9 + 8 + 16
    for dynamo in (True, False):
        g = from_onnx(_export(model, x, tmp_path / f"m{int(dynamo)}.onnx", dynamo=dynamo))
        assert (g.params, g.weights_bytes) == (ref.params, ref.weights_bytes), dynamo
        assert [n.kind for n in g.nodes].count("group_norm") == 2


def test_learned_attention_bias_is_a_parameter():
    """An additive input of the scores that is not a mask (a learned bias) stays a parameter; a mask of
    zeros and -inf is a constant."""
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 2, 4, 8])
    nodes = [
        helper.make_node("Transpose", ["q"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Add", ["s", "bias"], ["sb"]),
        helper.make_node("Softmax", ["sb"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "q"], ["y"]),
    ]
    learned = np.random.default_rng(0).standard_normal((2, 4, 4))
    mask = np.triu(np.full((4, 4), -np.inf), 1)
    for value, params in ((learned, 32), (mask, 0)):
        g = from_onnx(_model(nodes, [q], "y", [_init("bias", value)]))
        assert "attention" in [n.kind for n in g.nodes]
        assert g.params == params


def test_scalar_operand_is_a_constant_and_a_prelu_slope_a_parameter():
    """``x * c`` with a scalar initializer is PyTorch's ``x * 2`` (an attribute); a single PReLU slope is
    a weight."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    nodes = [helper.make_node("Mul", ["x", "c"], ["m"]), helper.make_node("PRelu", ["m", "slope"], ["y"])]
    g = from_onnx(_model(nodes, [x], "y", [_init("c", 2.0), _init("slope", [0.25])]))
    assert g.params == 1 and g.weights_bytes == 4


def test_quantization_parameters_are_buffers_and_the_int32_bias_a_parameter():
    """QLinearConv: its int8 kernel and int32 bias are parameters (as in the QDQ form); the scales and
    zero points are buffers (in ``weights_bytes``, not ``params``)."""
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 8, 8])
    inits = [_init("xs", 0.1), _init("xz", 0, np.uint8), _init("w", np.ones((4, 3, 3, 3)), np.int8),
             _init("ws", 0.2), _init("wz", 0, np.int8), _init("ys", 0.3), _init("yz", 0, np.uint8),
             _init("b", np.ones(4), np.int32)]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"])
    g = from_onnx(_model([node], [x], "y", inits, 13, TensorProto.UINT8))
    assert g.params == 4 * 27 + 4
    assert g.weights_bytes == 4 * 27 + 4 * 4 + 3 * 4 + 3


def test_torchscript_tanh_gelu_is_one_gelu(tmp_path):
    """``GELU(approximate="tanh")`` from the TorchScript exporter (nine elementwise nodes) is one ``gelu``
    with the PyTorch frontend's FLOPs (before: 1,792 FLOPs against 1,024)."""
    model, x = nn.GELU(approximate="tanh"), torch.randn(1, 128)
    g = from_onnx(_export(model, x, tmp_path / "gelu.onnx", dynamo=False))
    ref = from_torch(model, x)
    assert [(n.kind, n.attrs["approximate"]) for n in g.nodes] == [("gelu", "tanh")]
    assert g.flops == ref.flops == 1024
    assert g.nodes[0].bytes_written == 128 * 4


def _tanh_chain(c1: float):
    """``1 + tanh(c2 (x + c1 Pow(x, 3)))`` into ``a1``, with its constants (GELU's when ``c1`` is 0.044715)."""
    nodes = [
        helper.make_node("Pow", ["x", "three"], ["x3"]),
        helper.make_node("Mul", ["x3", "c1"], ["m"]),
        helper.make_node("Add", ["x", "m"], ["a"]),
        helper.make_node("Mul", ["a", "c2"], ["s"]),
        helper.make_node("Tanh", ["s"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["a1"]),
    ]
    return nodes, [_init("three", 3.0), _init("c1", c1), _init("c2", 0.7978845608), _init("one", 1.0)]


def test_tanh_gelu_with_pow_is_one_gelu():
    """``x ** 3`` written as ``Pow(x, 3)`` (other converters) is the same GELU."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    nodes, inits = _tanh_chain(0.044715)
    nodes += [helper.make_node("Mul", ["x", "half"], ["xh"]), helper.make_node("Mul", ["xh", "a1"], ["y"])]
    g = from_onnx(_model(nodes, [x], "y", [*inits, _init("half", 0.5)]))
    assert [n.kind for n in g.nodes] == ["gelu"] and g.params == 0


def test_tanh_with_other_constants_is_not_a_gelu():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    nodes, inits = _tanh_chain(0.5)
    g = from_onnx(_model([*nodes, helper.make_node("Mul", ["x", "a1"], ["y"])], [x], "y", inits))
    assert "gelu" not in [n.kind for n in g.nodes]


def test_split_writes_every_piece():
    """A ``Split`` kernel writes all its outputs, read or not."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 12])
    nodes = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
             helper.make_node("Relu", ["a"], ["y"])]
    g = from_onnx(_model(nodes, [x], "y", []))
    (split,) = [n for n in g.nodes if n.op == "onnx.Split"]
    assert split.out_shapes == [(2, 4)] * 3
    assert split.bytes_written == 2 * 12 * 4
