"""ONNX frontend: the dtype a graph records for its model is its weights', as for a PyTorch module."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import costmodel
from costmodel.frontends import from_onnx


def _mlp(io_type: int, weight_type: int, np_type) -> object:
    """Two matmuls in ``weight_type``; inputs and outputs in ``io_type`` (cast at both ends where they differ)."""
    nodes, src = [], "x"
    if io_type != weight_type:  # a half-precision model exported with fp32 inputs and outputs
        nodes.append(helper.make_node("Cast", ["x"], ["xc"], to=weight_type))
        src = "xc"
    nodes += [helper.make_node("MatMul", [src, "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
              helper.make_node("MatMul", ["r", "w2"], ["o"])]
    nodes.append(helper.make_node("Cast", ["o"], ["y"], to=io_type) if io_type != weight_type
                 else helper.make_node("Identity", ["o"], ["y"]))
    inits = [numpy_helper.from_array(np.ones((64, 128), np_type), "w1"),
             numpy_helper.from_array(np.ones((128, 64), np_type), "w2"),
             numpy_helper.from_array(np.ones((64,), np.float32), "unused_fp32_scale")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", io_type, [8, 64])],
                              [helper.make_tensor_value_info("y", io_type, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_half_precision_weights_with_fp32_inputs_is_an_fp16_model():
    model = _mlp(TensorProto.FLOAT, TensorProto.FLOAT16, np.float16)
    g = from_onnx(model)
    assert g.meta["dtype"] == "fp16"
    assert [n.in_dtypes for n in g.nodes if n.kind == "matmul"] == [["fp16", "fp16"]] * 2
    est = costmodel.estimate(model, batch=8, device="h100", predictor="analytic")
    assert est.dtype == "fp16"
    # asked in fp32, the model is converted: its matmuls read fp32
    g32 = costmodel.to_graph(model, dtype="fp32")
    assert [n.in_dtypes for n in g32.nodes if n.kind == "matmul"] == [["fp32", "fp32"]] * 2


def test_dtype_of_models_in_one_precision():
    assert from_onnx(_mlp(TensorProto.FLOAT, TensorProto.FLOAT, np.float32)).meta["dtype"] == "fp32"
    assert from_onnx(_mlp(TensorProto.FLOAT16, TensorProto.FLOAT16, np.float16)).meta["dtype"] == "fp16"
