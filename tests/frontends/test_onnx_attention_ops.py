"""ONNX frontend: fused attention operators read their graph inputs through views, and stay data."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from costmodel.frontends import from_onnx


def _out(name: str = "o"):
    return [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)]


def test_opset23_attention_reads_its_inputs():
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4, 16, 8]) for n in "qkv"]
    model = helper.make_model(helper.make_graph([helper.make_node("Attention", ["q", "k", "v"], ["o"])], "att", ins,
                                                _out()), opset_imports=[helper.make_opsetid("", 23)])
    g = from_onnx(model)
    (n,) = g.nodes
    assert n.kind == "attention" and not n.attrs.get("constant")
    # nothing here is computable ahead of time: folding constants keeps the attention
    assert [m.kind for m in g.fold_constants().nodes] == ["attention"]


def test_contrib_attention_after_its_projection_is_not_constant():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16, 64])
    node = helper.make_node("Attention", ["x", "w", "b"], ["o"], domain="com.microsoft", num_heads=4)
    inits = [numpy_helper.from_array(np.ones((64, 192), np.float32), "w"),
             numpy_helper.from_array(np.ones((192,), np.float32), "b")]
    model = helper.make_model(helper.make_graph([node], "att", [x], _out(), inits),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    g = from_onnx(model)
    assert [n.kind for n in g.nodes] == ["matmul", "attention"]
    assert not any(n.attrs.get("constant") for n in g.nodes)
    assert g.edges == [(0, 1)]
    assert [n.kind for n in g.fold_constants().nodes] == ["matmul", "attention"]
