"""Seed models of the ONNX fuzzer (``_onnx_fuzz.py``): small torch exports and hand-written graphs
covering contrib ops, shape plumbing, sequences, control flow and quantized ops."""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Callable

#: seed models whose initializers above this many elements are made external (and missing)
_EXTERNAL_ABOVE = 4096

# ---------------------------------------------------------------------- seeds


@dataclass
class Seed:
    name: str
    data: bytes  # the serialized ModelProto
    batch: int  # the batch the model is costed at
    dynamic_batch: bool = False  # whether another batch is valid too
    input_shape: tuple | None = None


def _externalize(model) -> None:
    """Move large initializers to a (missing) external data file; the frontend reads only their dims."""
    from onnx import TensorProto

    for t in model.graph.initializer:
        n = math.prod(t.dims) if t.dims else 1
        if n > _EXTERNAL_ABOVE:
            t.ClearField("raw_data")
            for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
                t.ClearField(f)
            t.data_location = TensorProto.EXTERNAL
            del t.external_data[:]
            e = t.external_data.add()
            e.key, e.value = "location", "weights-not-shipped.bin"


def _torch_export(model, args, *, dynamo: bool = True, dynamic_batch: bool = False, **kw):
    """A ModelProto exported in memory (no file left behind)."""
    import onnx
    import torch

    model = model.eval()
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as d:
        warnings.simplefilter("ignore")
        path = os.path.join(d, "m.onnx")
        if dynamo:
            if dynamic_batch:
                kw["dynamic_shapes"] = tuple({0: torch.export.Dim("batch")} for _ in args)
            prog = torch.onnx.export(model, args, dynamo=True, optimize=False, verbose=False, **kw)
            proto = prog.model_proto
        else:
            if dynamic_batch:
                names = [f"in{i}" for i in range(len(args))]
                kw.update(input_names=names, dynamic_axes={n: {0: "batch"} for n in names})
            torch.onnx.export(model, args, path, dynamo=False, **kw)
            proto = onnx.load(path)
    return proto


def _torch_seeds() -> list[tuple[str, object, int, bool]]:
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(0)

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            y = torch.relu(self.bn(self.c1(x)))
            y = nn.functional.max_pool2d(self.c2(y), 2)
            return torch.softmax(self.fc(y.mean((2, 3))), -1)

    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 2, 64, batch_first=True), 2,
                                enable_nested_tensor=False)
    x32 = torch.randn(1, 3, 32, 32)
    return [
        ("resnet18", _torch_export(torchvision.models.resnet18(), (x32,)), 1, False),
        ("mobilenet_v2", _torch_export(torchvision.models.mobilenet_v2(), (x32,), dynamic_batch=True), 2, True),
        ("transformer", _torch_export(enc, (torch.randn(2, 5, 32),)), 2, False),
        ("cnn_weights_as_inputs", _torch_export(SmallCNN(), (torch.randn(2, 3, 16, 16),), dynamo=False,
                                                dynamic_batch=True, keep_initializers_as_inputs=True,
                                                do_constant_folding=False), 4, True),
    ]


def _model(nodes, name, inputs, outputs, inits=(), opsets=(("", 17),)):
    from onnx import TensorProto, helper

    F = TensorProto.FLOAT
    g = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info(o, F, None) for o in outputs],
                          list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def _init(name, arr):
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(arr), name)


def _seed_contrib_attention() -> tuple[str, object, int, bool]:
    """Contrib attention block (com.microsoft), dynamic batch."""
    import numpy as np
    from onnx import TensorProto, helper

    F = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", F, ["batch", 10, 64])
    inits = [_init("w", np.zeros((64, 192), np.float32)), _init("wb", np.zeros(192, np.float32)),
             _init("g", np.ones(64, np.float32)), _init("bb", np.zeros(64, np.float32))]
    nodes = [
        helper.make_node("Attention", ["x", "w", "wb"], ["att"], domain="com.microsoft", num_heads=4, name="att"),
        helper.make_node("SkipLayerNormalization", ["att", "x", "g", "bb"], ["sln"], domain="com.microsoft",
                         name="sln"),
        helper.make_node("MultiHeadAttention", ["sln", "sln", "sln"], ["mha"], domain="com.microsoft",
                         num_heads=4, name="mha"),
        helper.make_node("GroupQueryAttention", ["mha", "mha", "mha"], ["gqa"], domain="com.microsoft",
                         num_heads=4, kv_num_heads=2, name="gqa"),
        helper.make_node("FastGelu", ["gqa"], ["y"], domain="com.microsoft", name="gelu"),
    ]
    return ("contrib_attention", _model(nodes, "ms", [x], ["y"], inits, (("", 17), ("com.microsoft", 1))), 2, True)


def _seed_shape_plumbing() -> tuple[str, object, int, bool]:
    """Shape plumbing folded to constants: Shape/Gather/Range/ConstantOfShape/Concat/Reshape/Slice."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    F = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", F, ["batch", 4, 6])
    inits = [_init("zero", np.array(0, np.int64)), _init("one", np.array(1, np.int64)),
             _init("ax", np.array([0], np.int64)), _init("m1", np.array([-1], np.int64)),
             _init("w", np.ones((6, 8), np.float32))]
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "one"], ["n"], axis=0, name="gather"),
        helper.make_node("Range", ["zero", "n", "one"], ["r"], name="range"),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["m1", "n1"], ["shp"], axis=0, name="concat"),
        helper.make_node("ConstantOfShape", ["n1"], ["c"], value=numpy_helper.from_array(np.array([1.0], np.float32)),
                         name="cos"),
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
        helper.make_node("Transpose", ["mm"], ["t"], perm=[0, 2, 1], name="tr"),
        helper.make_node("Slice", ["t", "zero1", "n1", "ax"], ["sl"], name="slice"),
        helper.make_node("Softmax", ["sl"], ["sm"], axis=-1, name="softmax"),
        helper.make_node("Gather", ["sm", "r"], ["ga"], axis=2, name="gather2"),
        helper.make_node("Mul", ["ga", "c"], ["y"], name="mul"),
        helper.make_node("Reshape", ["y", "shp"], ["z"], name="reshape"),
    ]
    inits.append(_init("zero1", np.array([0], np.int64)))
    return ("shape_plumbing", _model(nodes, "plumbing", [x], ["z"], inits), 2, True)


def _seed_conv_gemm() -> tuple[str, object, int, bool]:
    """Conv stack written by hand, pooling, gemm, opset 13."""
    import numpy as np
    from onnx import TensorProto, helper

    F = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", F, [2, 3, 12, 12])
    inits = [_init("cw", np.zeros((4, 3, 3, 3), np.float32)), _init("cb", np.zeros(4, np.float32)),
             _init("s", np.ones(4, np.float32)), _init("b", np.zeros(4, np.float32)),
             _init("mean", np.zeros(4, np.float32)), _init("var", np.ones(4, np.float32)),
             _init("gw", np.zeros((5, 4), np.float32)), _init("gb", np.zeros(5, np.float32)),
             _init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], strides=[1, 1], dilations=[1, 1], group=1,
                         pads=[1, 1, 1, 1], kernel_shape=[3, 3], name="conv"),
        helper.make_node("BatchNormalization", ["c", "s", "b", "mean", "var"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Pad", ["r", "pads"], ["p"], mode="constant", name="pad"),
        helper.make_node("MaxPool", ["p"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0],
                         name="maxpool"),
        helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], auto_pad="SAME_UPPER", name="avgpool"),
        helper.make_node("GlobalAveragePool", ["ap"], ["gp"], name="gap"),
        helper.make_node("Flatten", ["gp"], ["f"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], transB=1, name="gemm"),
    ]
    return ("conv_gemm", _model(nodes, "convs", [x], ["y"], inits, (("", 13),)), 2, False)


def _seed_sequence_einsum() -> tuple[str, object, int, bool]:
    """Sequence ops (torch.chunk as SplitToSequence + SequenceAt), Einsum, TopK, CumSum."""
    import numpy as np
    from onnx import TensorProto, helper

    F = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", F, [2, 8, 4])
    inits = [_init("two", np.array(2, np.int64)), _init("i0", np.array(0, np.int64)),
             _init("i1", np.array(1, np.int64)), _init("k", np.array([2], np.int64))]
    nodes = [
        helper.make_node("SplitToSequence", ["x", "two"], ["seq"], axis=1, name="split"),
        helper.make_node("SequenceAt", ["seq", "i0"], ["a"], name="at0"),
        helper.make_node("SequenceAt", ["seq", "i1"], ["b"], name="at1"),
        helper.make_node("Einsum", ["a", "b"], ["e"], equation="bij,bkj->bik", name="einsum"),
        helper.make_node("TopK", ["e", "k"], ["tv", "ti"], axis=-1, name="topk"),
        helper.make_node("CumSum", ["tv", "i1"], ["cs"], name="cumsum"),
        helper.make_node("SequenceConstruct", ["a", "b"], ["seq2"], name="construct"),
        helper.make_node("ConcatFromSequence", ["seq2"], ["cat"], axis=1, name="concat_seq"),
        helper.make_node("ReduceSum", ["cat", "k"], ["y"], keepdims=0, name="reduce"),
    ]
    return ("sequence_einsum", _model(nodes, "seq", [x], ["y", "cs"], inits), 2, False)


def _seed_opset23_attention() -> tuple[str, object, int, bool]:
    """Opset-23 attention on (batch, heads, L, E) inputs."""
    from onnx import TensorProto, helper

    F = TensorProto.FLOAT
    ins = [helper.make_tensor_value_info(n, F, [2, 4, 8, 16]) for n in "qkv"]
    nodes = [helper.make_node("Attention", ["q", "k", "v"], ["o"], name="attention"),
             helper.make_node("Sigmoid", ["o"], ["sg"], name="sigmoid"),
             helper.make_node("Mul", ["o", "sg"], ["y"], name="silu_mul")]
    return ("opset23_attention", _model(nodes, "att23", ins, ["y"], (), (("", 23),)), 2, False)


def _seed_control_flow_function() -> tuple[str, object, int, bool]:
    """Control flow (If with branches reading outer values, a Loop) and a local function."""
    import numpy as np
    from onnx import TensorProto, helper

    F = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", F, [2, 4])
    cond = _init("cond", np.array(True))
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", F, [2, 4])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", F, [2, 4])])
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["v_in", "x"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", F, [2, 4])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", F, [2, 4])])
    fn = helper.make_function("custom.fn", "Gate", ["a"], ["b"],
                              [helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("Mul", ["a", "s"], ["b"])],
                              [helper.make_opsetid("", 17)])
    nodes = [
        helper.make_node("If", ["cond"], ["branch"], then_branch=then_g, else_branch=else_g, name="if"),
        helper.make_node("Loop", ["trip", "cond", "branch"], ["looped"], body=body, name="loop"),
        helper.make_node("Gate", ["looped"], ["gated"], domain="custom.fn", name="gate"),
        helper.make_node("MatMul", ["gated", "w"], ["y"], name="mm"),
    ]
    m = _model(nodes, "control", [x], ["y"], [cond, _init("trip", np.array(3, np.int64)),
                                            _init("w", np.ones((4, 3), np.float32))],
              (("", 17), ("custom.fn", 1)))
    m.functions.append(fn)
    return ("control_flow_function", m, 2, False)


def _seed_quantized() -> tuple[str, object, int, bool]:
    """Quantized ops: DequantizeLinear weights, QLinearMatMul, ConvInteger."""
    import numpy as np
    from onnx import TensorProto, helper

    F = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", F, [2, 16])
    inits = [_init("wq", np.ones((16, 8), np.int8)), _init("ws", np.array(0.1, np.float32)),
             _init("wz", np.array(0, np.int8)), _init("xs", np.array(0.05, np.float32)),
             _init("xz", np.array(0, np.uint8)),
             _init("ys", np.array(0.2, np.float32)), _init("yz", np.array(0, np.uint8)),
             _init("w2", np.ones((8, 4), np.uint8)), _init("cw", np.ones((2, 1, 3, 3), np.uint8))]
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="deq"),
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("QuantizeLinear", ["h", "xs", "xz"], ["hq"], name="q"),
        helper.make_node("QLinearMatMul", ["hq", "xs", "xz", "w2", "xs", "xz", "ys", "yz"], ["yq"], name="qmm"),
        helper.make_node("Reshape", ["yq", "shape"], ["img"], name="reshape"),
        helper.make_node("ConvInteger", ["img", "cw"], ["ci"], name="convint"),
        helper.make_node("Cast", ["ci"], ["y"], to=TensorProto.FLOAT, name="cast"),
    ]
    inits.append(_init("shape", np.array([2, 1, 2, 2], np.int64)))
    return ("quantized", _model(nodes, "quant", [x], ["y"], inits), 2, False)


def _helper_seeds() -> list[tuple[str, object, int, bool]]:
    return [_seed_contrib_attention(), _seed_shape_plumbing(), _seed_conv_gemm(), _seed_sequence_einsum(),
            _seed_opset23_attention(), _seed_control_flow_function(), _seed_quantized()]


def build_seeds(names: Callable[[str], bool] | None = None) -> list[Seed]:
    """The seed models (torch exports take a few seconds in all)."""
    seeds = []
    for name, proto, batch, dyn in _torch_seeds() + _helper_seeds():
        if names is not None and not names(name):
            continue
        _externalize(proto)
        seeds.append(Seed(name, proto.SerializeToString(), batch, dyn))
    return seeds
