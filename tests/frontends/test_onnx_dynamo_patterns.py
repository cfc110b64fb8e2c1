"""ONNX frontend: the forms ``torch.onnx.export(..., dynamo=True)`` writes decomposed operators in
(constants as initializers, operands in its own order) are the same single operators as the
TorchScript exporter's forms."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from costmodel.frontends import from_onnx


def _init(name: str, value) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _model(nodes, inputs, output: str, inits, opset: int = 18):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_erf_gelu_with_half_applied_to_one_plus_erf_is_one_gelu():
    """x * (0.5 * (1 + erf(x / sqrt(2)))): the scalars are initializers, the half multiplies 1 + erf."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    nodes = [
        helper.make_node("Div", ["x", "s2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["half", "a"], ["h"]),
        helper.make_node("Mul", ["x", "h"], ["y"]),
    ]
    inits = [_init("s2", 1.4142135), _init("one", 1.0), _init("half", 0.5)]
    g = from_onnx(_model(nodes, [x], "y", inits))
    assert [n.kind for n in g.nodes] == ["gelu"]
    assert g.nodes[0].in_shapes == [(2, 8)] and g.nodes[0].out_shapes == [(2, 8)]
    assert g.flops == 2 * 8 * 8


def test_half_times_one_plus_erf_without_x_is_not_a_gelu():
    """0.5 * (1 + erf(x / sqrt(2))) that is not multiplied by x stays what it is."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    nodes = [
        helper.make_node("Div", ["x", "s2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["half", "a"], ["y"]),
    ]
    inits = [_init("s2", 1.4142135), _init("one", 1.0), _init("half", 0.5)]
    g = from_onnx(_model(nodes, [x], "y", inits))
    assert "gelu" not in [n.kind for n in g.nodes]


def _group_norm(scale, bias):
    """GroupNorm(4, 16) as the dynamo exporter writes it: InstanceNormalization of (N, 4, -1) with its
    scale and bias as initializers, then the per-channel affine."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16, 8, 8])
    nodes = [
        helper.make_node("Reshape", ["x", "grouped"], ["r"]),
        helper.make_node("InstanceNormalization", ["r", "in_scale", "in_bias"], ["n"], epsilon=1e-5),
        helper.make_node("Reshape", ["n", "back"], ["b"]),
        helper.make_node("Mul", ["b", "gamma"], ["m"]),
        helper.make_node("Add", ["m", "beta"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([2, 4, -1], np.int64), "grouped"),
        numpy_helper.from_array(np.array([2, 16, 8, 8], np.int64), "back"),
        _init("in_scale", scale), _init("in_bias", bias),
        _init("gamma", np.random.rand(16, 1, 1)), _init("beta", np.random.rand(16, 1, 1)),
    ]
    return from_onnx(_model(nodes, [x], "y", inits))


def test_group_norm_with_identity_affine_initializers_is_one_group_norm():
    g = _group_norm(np.ones(4), np.zeros(4))
    (n,) = g.nodes
    assert n.kind == "group_norm" and n.attrs["groups"] == 4
    assert n.in_shapes[0] == (2, 16, 8, 8) and n.out_shapes == [(2, 16, 8, 8)]


def test_instance_norm_with_learned_affine_is_not_a_group_norm():
    g = _group_norm(np.linspace(0.5, 2.0, 4), np.zeros(4))
    assert "instance_norm" in [n.kind for n in g.nodes]
    assert "group_norm" not in [n.kind for n in g.nodes]
