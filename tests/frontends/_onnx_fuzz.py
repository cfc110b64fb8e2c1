"""A seeded mutation fuzzer for the ONNX frontend.

Shared by ``tests/frontends/test_onnx_fuzz.py`` (a few hundred mutants) and
``benchmarks/fuzz_onnx.py`` (thousands); it is not part of the installed
package.

* :func:`build_seeds` makes small seed models: torch exports (a ResNet-18 and a
  MobileNetV2 at 32x32, a two-layer transformer encoder, a CNN exported by the
  TorchScript exporter with its weights as graph inputs) and protos written
  with ``onnx.helper`` (contrib attention ops, shape plumbing folded to
  constants, sequence ops, opset-23 attention).  Large initializers are moved
  to an external data file that does not exist: the frontend never reads
  weights, and mutants stay a few kB.
* :func:`make_mutant` applies one to three mutations to a seed: delete a node,
  rewire an input (also to a node's own output or a later one: cycles),
  drop or add inputs, garbage attributes (wrong kinds, huge or negative
  values), unknown ops and domains, bad dims and dtypes on inputs and
  initializers, bad constant values, broken opsets and outputs, truncated and
  flipped bytes.  A mutant is fully determined by ``(fuzz seed, index)``.
* :class:`Runner` runs mutants in a worker process under a watchdog: a mutant
  that runs past the time limit or past the memory limit is recorded as a
  hang and the worker is replaced.  :func:`check_mutant` is what the worker
  runs: ``costmodel.estimate`` must return finite, non-negative latency,
  memory and energy, or raise a ``CostModelError``; anything else is unclean.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
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


def _helper_seeds() -> list[tuple[str, object, int, bool]]:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    F = TensorProto.FLOAT
    out = []

    def model(nodes, name, inputs, outputs, inits=(), opsets=(("", 17),)):
        g = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info(o, F, None) for o in outputs],
                              list(inits))
        return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])

    def init(name, arr):
        return numpy_helper.from_array(np.asarray(arr), name)

    # contrib attention block (com.microsoft), dynamic batch
    x = helper.make_tensor_value_info("x", F, ["batch", 10, 64])
    inits = [init("w", np.zeros((64, 192), np.float32)), init("wb", np.zeros(192, np.float32)),
             init("g", np.ones(64, np.float32)), init("bb", np.zeros(64, np.float32))]
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
    out.append(("contrib_attention", model(nodes, "ms", [x], ["y"], inits,
                                           (("", 17), ("com.microsoft", 1))), 2, True))

    # shape plumbing folded to constants: Shape/Gather/Range/ConstantOfShape/Concat/Reshape/Slice
    x = helper.make_tensor_value_info("x", F, ["batch", 4, 6])
    inits = [init("zero", np.array(0, np.int64)), init("one", np.array(1, np.int64)),
             init("ax", np.array([0], np.int64)), init("m1", np.array([-1], np.int64)),
             init("w", np.ones((6, 8), np.float32))]
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
    inits.append(init("zero1", np.array([0], np.int64)))
    out.append(("shape_plumbing", model(nodes, "plumbing", [x], ["z"], inits), 2, True))

    # conv stack written by hand, pooling, gemm, opset 13
    x = helper.make_tensor_value_info("x", F, [2, 3, 12, 12])
    inits = [init("cw", np.zeros((4, 3, 3, 3), np.float32)), init("cb", np.zeros(4, np.float32)),
             init("s", np.ones(4, np.float32)), init("b", np.zeros(4, np.float32)),
             init("mean", np.zeros(4, np.float32)), init("var", np.ones(4, np.float32)),
             init("gw", np.zeros((5, 4), np.float32)), init("gb", np.zeros(5, np.float32)),
             init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))]
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
    out.append(("conv_gemm", model(nodes, "convs", [x], ["y"], inits, (("", 13),)), 2, False))

    # sequence ops (torch.chunk as SplitToSequence + SequenceAt), Einsum, TopK, CumSum
    x = helper.make_tensor_value_info("x", F, [2, 8, 4])
    inits = [init("two", np.array(2, np.int64)), init("i0", np.array(0, np.int64)),
             init("i1", np.array(1, np.int64)), init("k", np.array([2], np.int64))]
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
    out.append(("sequence_einsum", model(nodes, "seq", [x], ["y", "cs"], inits), 2, False))

    # opset-23 attention on (batch, heads, L, E) inputs
    ins = [helper.make_tensor_value_info(n, F, [2, 4, 8, 16]) for n in "qkv"]
    nodes = [helper.make_node("Attention", ["q", "k", "v"], ["o"], name="attention"),
             helper.make_node("Sigmoid", ["o"], ["sg"], name="sigmoid"),
             helper.make_node("Mul", ["o", "sg"], ["y"], name="silu_mul")]
    out.append(("opset23_attention", model(nodes, "att23", ins, ["y"], (), (("", 23),)), 2, False))

    # control flow (If with branches reading outer values, a Loop) and a local function
    x = helper.make_tensor_value_info("x", F, [2, 4])
    cond = init("cond", np.array(True))
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
    m = model(nodes, "control", [x], ["y"], [cond, init("trip", np.array(3, np.int64)),
                                            init("w", np.ones((4, 3), np.float32))],
              (("", 17), ("custom.fn", 1)))
    m.functions.append(fn)
    out.append(("control_flow_function", m, 2, False))

    # quantized ops: DequantizeLinear weights, QLinearMatMul, ConvInteger
    x = helper.make_tensor_value_info("x", F, [2, 16])
    inits = [init("wq", np.ones((16, 8), np.int8)), init("ws", np.array(0.1, np.float32)),
             init("wz", np.array(0, np.int8)), init("xs", np.array(0.05, np.float32)), init("xz", np.array(0, np.uint8)),
             init("ys", np.array(0.2, np.float32)), init("yz", np.array(0, np.uint8)),
             init("w2", np.ones((8, 4), np.uint8)), init("cw", np.ones((2, 1, 3, 3), np.uint8))]
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="deq"),
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("QuantizeLinear", ["h", "xs", "xz"], ["hq"], name="q"),
        helper.make_node("QLinearMatMul", ["hq", "xs", "xz", "w2", "xs", "xz", "ys", "yz"], ["yq"], name="qmm"),
        helper.make_node("Reshape", ["yq", "shape"], ["img"], name="reshape"),
        helper.make_node("ConvInteger", ["img", "cw"], ["ci"], name="convint"),
        helper.make_node("Cast", ["ci"], ["y"], to=TensorProto.FLOAT, name="cast"),
    ]
    inits.append(init("shape", np.array([2, 1, 2, 2], np.int64)))
    out.append(("quantized", model(nodes, "quant", [x], ["y"], inits), 2, False))
    return out


def build_seeds(names: Callable[[str], bool] | None = None) -> list[Seed]:
    """The seed models (torch exports take a few seconds in all)."""
    seeds = []
    for name, proto, batch, dyn in _torch_seeds() + _helper_seeds():
        if names is not None and not names(name):
            continue
        _externalize(proto)
        seeds.append(Seed(name, proto.SerializeToString(), batch, dyn))
    return seeds


# ------------------------------------------------------------------ mutations

_HUGE = [2**31, 2**32 + 1, 2**40, 2**62, -(2**63)]
_BAD_INTS = [0, -1, -7, 3, 1000, *_HUGE]
_OPS = (
    "Attention MultiHeadAttention GroupQueryAttention Range Gather Shape Size Reshape Slice Split SplitToSequence "
    "SequenceAt SequenceConstruct SequenceLength ConcatFromSequence Einsum Conv ConvTranspose Gemm MatMul "
    "BatchNormalization MaxPool AveragePool GlobalAveragePool Resize Pad Concat Softmax ReduceMean ReduceSum TopK "
    "CumSum Loop If Scan Constant ConstantOfShape Expand Tile Squeeze Unsqueeze Transpose Flatten Where Cast "
    "CastLike Dropout GroupNormalization LayerNormalization InstanceNormalization SkipLayerNormalization "
    "MatMulNBits FusedMatMul FusedGemm FusedConv QLinearConv QLinearMatMul ConvInteger MatMulInteger "
    "DequantizeLinear QuantizeLinear OneHot NonZero Compress Identity Relu Add Mul Sigmoid HardSigmoid Erf LpPool "
    "GatherND ScatterND ArgMax Clip LeakyRelu PRelu Trilu EyeLike RandomNormalLike Upsample DepthToSpace"
).split()
_DOMAINS = ["", "ai.onnx", "com.microsoft", "com.unknown", "ai.onnx.ml", "pkg.custom"]


@dataclass
class Mutant:
    seed: str
    index: int
    steps: list[str]
    data: bytes
    batch: int
    as_file: bool = False
    predictor: str | None = "analytic"
    input_shape: tuple | None = None

    def describe(self) -> str:
        how = "file" if self.as_file else "proto"
        return (f"seed model {self.seed!r}, mutant #{self.index} ({how}, batch={self.batch}, "
                f"predictor={self.predictor or 'default'}): " + "; ".join(self.steps))


def _value_names(m) -> list[str]:
    g = m.graph
    names = [i.name for i in g.input] + [t.name for t in g.initializer]
    for n in g.node:
        names.extend(o for o in n.output if o)
    return names


def _pick_node(m, rng, pred=None):
    nodes = [n for n in m.graph.node if pred is None or pred(n)]
    return rng.choice(nodes) if nodes else None


def _node_label(n) -> str:
    return f"node {n.name or (n.output[0] if n.output else '?')!r} ({n.domain + '.' if n.domain else ''}{n.op_type})"


def _garbage_attribute(name: str, rng: random.Random):
    import numpy as np
    from onnx import AttributeProto, helper, numpy_helper

    kind = rng.choice(["int", "ints", "float", "floats", "string", "strings", "tensor", "empty", "undefined",
                       "huge_ints", "nan"])
    if kind == "int":
        return helper.make_attribute(name, rng.choice(_BAD_INTS)), f"int {name}"
    if kind == "ints":
        return helper.make_attribute(name, [rng.choice(_BAD_INTS) for _ in range(rng.randint(1, 5))]), f"ints {name}"
    if kind == "huge_ints":
        return helper.make_attribute(name, [rng.choice(_HUGE)] * rng.randint(1, 8)), f"huge ints {name}"
    if kind == "float":
        return helper.make_attribute(name, rng.choice([1.5, -2.5, 0.0, 1e30])), f"float {name}"
    if kind == "nan":
        return helper.make_attribute(name, rng.choice([float("nan"), float("inf"), -float("inf")])), f"nan {name}"
    if kind == "floats":
        return helper.make_attribute(name, [1.5, -0.5, 3.0][: rng.randint(1, 3)]), f"floats {name}"
    if kind == "string":
        return helper.make_attribute(name, rng.choice(["garbage", "", "SAME_UPPER", "\xff"])), f"string {name}"
    if kind == "strings":
        return helper.make_attribute(name, ["a", "b"]), f"strings {name}"
    if kind == "tensor":
        arr = np.asarray(rng.choice([[1, 2], 3.5, [[0.0]]]))
        return helper.make_attribute(name, numpy_helper.from_array(arr)), f"tensor {name}"
    if kind == "empty":
        return helper.make_attribute(name, [], attr_type=rng.choice([AttributeProto.INTS, AttributeProto.FLOATS])), \
            f"empty list {name}"
    a = AttributeProto()  # declared type and stored field disagree
    a.name, a.type, a.i = name, rng.choice([AttributeProto.UNDEFINED, AttributeProto.INTS, AttributeProto.GRAPH]), 3
    return a, f"mistyped {name}"


def _schema_attr_names(n) -> list[str]:
    try:
        from onnx import defs

        return sorted(defs.get_schema(n.op_type, 23, n.domain if n.domain != "ai.onnx" else "").attributes)
    except Exception:  # noqa: BLE001 - contrib / unknown op
        return ["num_heads", "kv_num_heads", "qkv_hidden_sizes", "axis", "K", "N", "transA", "transB"]


def _set_dims(shape_proto, dims) -> None:
    del shape_proto.dim[:]
    for d in dims:
        dd = shape_proto.dim.add()
        if isinstance(d, str):
            dd.dim_param = d
        elif d is not None:
            dd.dim_value = d


def _bad_dims(old: list, rng: random.Random) -> list:
    kind = rng.choice(["zero", "negative", "huge", "param", "rank_down", "rank_up", "empty", "all_huge"])
    dims = list(old) or [1]
    i = rng.randrange(len(dims))
    if kind == "zero":
        dims[i] = 0
    elif kind == "negative":
        dims[i] = rng.choice([-1, -5, -(2**40)])
    elif kind == "huge":
        dims[i] = rng.choice(_HUGE[:-1])
    elif kind == "all_huge":
        dims = [2**31] * len(dims)
    elif kind == "param":
        dims[i] = rng.choice(["N", "", None])
    elif kind == "rank_down":
        dims = dims[:-1]
    elif kind == "rank_up":
        dims = dims + [rng.choice([1, 3, 2**20])]
    else:
        dims = []
    return dims


def _mutate_proto(m, rng: random.Random) -> str:  # noqa: C901 - one branch per mutation
    """Apply one random mutation to ``m`` in place; returns what was done."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = m.graph
    op = rng.choice(["delete_node", "rewire_input", "cycle", "drop_input", "extra_input", "attr_type", "attr_type",
                     "attr_value", "unknown_op", "domain", "swap_op", "input_dims", "init_dims", "dtype",
                     "const_value", "opset", "outputs", "dup_output", "remove_input", "value_info", "empty_graph",
                     "attr_type", "drop_input", "swap_op", "input_type", "huge_data_dim", "function"])
    nodes = list(g.node)
    if op == "delete_node" and nodes:
        n = rng.choice(nodes)
        g.node.remove(n)
        return f"deleted {_node_label(n)}"
    if op == "rewire_input":
        n = _pick_node(m, rng, lambda n: len(n.input) > 0)
        if n is not None:
            j = rng.randrange(len(n.input))
            new = rng.choice(_value_names(m) + ["", "no_such_value"])
            old, n.input[j] = n.input[j], new
            return f"rewired input {j} of {_node_label(n)} from {old!r} to {new!r}"
    if op == "cycle" and len(nodes) > 1:
        i = rng.randrange(len(nodes))
        n = nodes[i]
        later = [o for k in range(i, len(nodes)) for o in nodes[k].output if o]
        if n.input and later:
            j = rng.randrange(len(n.input))
            new = rng.choice(later)
            n.input[j] = new
            return f"rewired input {j} of {_node_label(n)} to {new!r} (own or later output: a cycle)"
    if op == "drop_input":
        n = _pick_node(m, rng, lambda n: len(n.input) > 0)
        if n is not None:
            if rng.random() < 0.5:
                k = rng.randrange(len(n.input))
                del n.input[k:]
                return f"kept {k} inputs of {_node_label(n)}"
            j = rng.randrange(len(n.input))
            n.input[j] = ""
            return f"blanked input {j} of {_node_label(n)}"
    if op == "extra_input":
        n = _pick_node(m, rng)
        if n is not None:
            names = _value_names(m)
            k = rng.randint(1, 4)
            n.input.extend(rng.choice(names) for _ in range(k))
            return f"added {k} inputs to {_node_label(n)}"
    if op == "attr_type":
        n = _pick_node(m, rng)
        if n is not None:
            names = [a.name for a in n.attribute] or _schema_attr_names(n)
            if names:
                name = rng.choice(names)
                for a in list(n.attribute):
                    if a.name == name:
                        n.attribute.remove(a)
                attr, what = _garbage_attribute(name, rng)
                n.attribute.append(attr)
                return f"set attribute of {_node_label(n)} to {what}"
    if op == "attr_value":
        n = _pick_node(m, rng, lambda n: any(a.ints or a.HasField("i") for a in n.attribute))
        if n is not None:
            a = rng.choice([a for a in n.attribute if a.ints or a.HasField("i")])
            if a.ints:
                for k in range(len(a.ints)):
                    a.ints[k] = rng.choice(_BAD_INTS[:-1])
            else:
                a.i = rng.choice(_BAD_INTS[:-1])
            return f"bad values in attribute {a.name} of {_node_label(n)}"
    if op == "unknown_op":
        n = _pick_node(m, rng)
        if n is not None:
            n.op_type = rng.choice(["FooBar", "", "Conv2d", "relu", "\u00e9", "Custom" * 20])
            return f"renamed op of node {n.name!r} to {n.op_type!r}"
    if op == "domain":
        n = _pick_node(m, rng)
        if n is not None:
            n.domain = rng.choice(_DOMAINS)
            return f"moved {_node_label(n)} to domain {n.domain!r}"
    if op == "swap_op":
        n = _pick_node(m, rng)
        if n is not None:
            n.op_type = rng.choice(_OPS)
            if rng.random() < 0.3:
                n.domain = rng.choice(_DOMAINS)
            return f"changed node {n.name!r} to {n.domain + '.' if n.domain else ''}{n.op_type}"
    if op == "input_dims":
        ins = [i for i in g.input if i.type.HasField("tensor_type")]
        if ins:
            vi = rng.choice(ins)
            tt = vi.type.tensor_type
            if rng.random() < 0.15:
                tt.ClearField("shape")
                return f"removed the shape of input {vi.name!r}"
            dims = _bad_dims([d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim], rng)
            _set_dims(tt.shape, dims)
            return f"set dims of input {vi.name!r} to {dims}"
    if op == "init_dims" and g.initializer:
        t = rng.choice(list(g.initializer))
        dims = [d for d in _bad_dims(list(t.dims), rng) if isinstance(d, int)]
        del t.dims[:]
        t.dims.extend(dims)
        return f"set dims of initializer {t.name!r} to {dims}"
    if op == "dtype":
        et = rng.choice([0, 2, 7, 8, 9, 10, 11, 14, 16, 17, 21, 25, 99, -3])
        if g.initializer and rng.random() < 0.5:
            t = rng.choice(list(g.initializer))
            t.data_type = et
            return f"set dtype of initializer {t.name!r} to {et}"
        if g.input:
            vi = rng.choice(list(g.input))
            vi.type.tensor_type.elem_type = et
            return f"set dtype of input {vi.name!r} to {et}"
    if op == "const_value":
        cands = [n for n in nodes if n.op_type == "Constant"]
        small = [t for t in g.initializer if t.data_location != TensorProto.EXTERNAL]
        vals = rng.choice([[-1], [0], [2**31], [2**40], [-(2**40)], [3, -1, 2**33], [7] * 9, []])
        arr = np.asarray(vals, dtype=np.int64)
        if rng.random() < 0.5 and cands:
            n = rng.choice(cands)
            del n.attribute[:]
            n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(arr)))
            return f"set value of {_node_label(n)} to {vals}"
        if small:
            t = rng.choice(small)
            new = numpy_helper.from_array(arr.astype(np.float32) if t.data_type == TensorProto.FLOAT else arr, t.name)
            t.CopyFrom(new)
            return f"set initializer {t.name!r} to {vals}"
    if op == "opset":
        if rng.random() < 0.3:
            del m.opset_import[:]
            return "removed the opset imports"
        v = rng.choice([1, 6, 9, 11, 13, 17, 23, 26, 999, -1])
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = v
        return f"set the default opset to {v}"
    if op == "outputs":
        kind = rng.choice(["none", "input", "missing"])
        if kind == "none":
            del g.output[:]
        elif kind == "input" and g.input:
            del g.output[:]
            g.output.append(helper.make_tensor_value_info(g.input[0].name, TensorProto.FLOAT, None))
        else:
            g.output.append(helper.make_tensor_value_info("no_such_output", TensorProto.FLOAT, None))
        return f"graph outputs: {kind}"
    if op == "dup_output" and len(nodes) > 1:
        a, b = rng.sample(nodes, 2)
        if a.output and (b.output or g.input):
            src = rng.choice(list(b.output) + [g.input[0].name] if g.input else list(b.output))
            a.output[0] = src
            return f"output 0 of {_node_label(a)} renamed to {src!r} (defined twice)"
    if op == "remove_input" and g.input:
        vi = rng.choice(list(g.input))
        g.input.remove(vi)
        return f"removed graph input {vi.name!r}"
    if op == "value_info":
        names = [o for n in nodes for o in n.output if o]
        if names:
            name = rng.choice(names)
            dims = _bad_dims([2, 3], rng)
            g.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
            _set_dims(g.value_info[-1].type.tensor_type.shape, dims)
            return f"declared value {name!r} with dims {dims}"
    if op == "empty_graph":  # drop everything computed from the first input: no operator reads the data
        x = g.input[0].name if g.input else "x"
        tainted, keep = {x}, []
        for n in nodes:
            if any(i in tainted for i in n.input):
                tainted.update(o for o in n.output if o)
            else:
                keep.append(n)
        del g.node[:]
        g.node.extend(keep)
        del g.output[:]
        outs = [o for n in keep for o in n.output if o][-1:]
        g.output.extend(helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs)
        return f"removed every node computed from {x!r}"
    if op == "input_type" and g.input:  # a graph input that is not a tensor
        vi = rng.choice(list(g.input))
        kind = rng.choice(["sequence", "optional", "empty"])
        if kind == "sequence":
            vi.type.CopyFrom(helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2])))
        elif kind == "optional":
            vi.type.CopyFrom(helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2])))
        else:
            vi.ClearField("type")
        return f"made input {vi.name!r} of {kind} type"
    if op == "huge_data_dim" and g.input:  # a legal but huge data dimension (the model stays under 1 TiB)
        vi = g.input[0]
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]
        if len(dims) >= 2:
            dims[rng.randrange(1, len(dims))] = rng.choice([2**20, 2**26, 2**31])
            _set_dims(vi.type.tensor_type.shape, dims)
            return f"set dims of input {vi.name!r} to {dims}"
    if op == "function" and m.functions:  # break a local function
        f = rng.choice(list(m.functions))
        kind = rng.choice(["drop_body", "rename_output", "recursive"])
        if kind == "drop_body":
            del f.node[:]
        elif kind == "rename_output" and f.node:
            f.node[-1].output[0] = "nowhere"
        else:
            f.node.append(helper.make_node(f.name, list(f.output), ["again"], domain=f.domain))
        return f"local function {f.name!r}: {kind}"
    return "no-op"


def make_mutant(seed: Seed, fuzz_seed: int, index: int, *, default_every: int = 0) -> Mutant:
    """The ``index``-th mutant of ``seed`` for a fuzz seed (deterministic)."""
    import onnx

    rng = random.Random(f"{fuzz_seed}:{seed.name}:{index}")
    batch = seed.batch
    if seed.dynamic_batch and rng.random() < 0.3:
        batch = rng.choice([1, 3, 32])
    predictor = None if default_every and index % default_every == default_every - 1 else "analytic"
    if rng.random() < 0.12:  # byte-level damage: always through a file
        data = bytearray(seed.data)
        if rng.random() < 0.5:
            cut = rng.randrange(len(data))
            return Mutant(seed.name, index, [f"truncated to {cut} of {len(data)} bytes"], bytes(data[:cut]), batch,
                          True, predictor)
        k = rng.randint(1, 8)
        for _ in range(k):
            p = rng.randrange(len(data))
            data[p] ^= 1 << rng.randrange(8)
        return Mutant(seed.name, index, [f"flipped {k} bits"], bytes(data), batch, True, predictor)
    m = onnx.ModelProto()
    m.ParseFromString(seed.data)
    steps = [_mutate_proto(m, rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    return Mutant(seed.name, index, steps, m.SerializeToString(), batch, rng.random() < 0.25, predictor)


def mutants(seeds: list[Seed], n: int, fuzz_seed: int = 0, *, default_every: int = 0):
    """``n`` mutants spread round-robin over the seeds."""
    for i in range(n):
        yield make_mutant(seeds[i % len(seeds)], fuzz_seed, i // len(seeds), default_every=default_every)


# -------------------------------------------------------------------- checker


@dataclass
class Outcome:
    kind: str  # "estimate", "clean", "unclean", "bad_result", "hang"
    what: str = ""  # error class / exception type / bad field
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind in ("estimate", "clean")


def _finite_non_negative(v) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f >= 0


def check_mutant(data: bytes, as_file: bool, batch: int, predictor, input_shape=None, workdir=None) -> Outcome:
    """Estimate one mutant; a finite non-negative estimate or a CostModelError is fine, anything else is not."""
    import onnx

    import costmodel
    from costmodel._errors import CostModelError

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if as_file:
                path = Path(workdir or tempfile.gettempdir()) / "mutant.onnx"
                path.write_bytes(data)
                src = str(path)
            else:
                src = onnx.ModelProto()
                src.ParseFromString(data)
            est = costmodel.estimate(src, batch=batch, input_shape=input_shape, device="h100", predictor=predictor)
        bad = [k for k in ("latency_ms", "memory_mb", "energy_j") if not _finite_non_negative(getattr(est, k))]
        if bad:
            vals = ", ".join(f"{k}={getattr(est, k)!r}" for k in bad)
            return Outcome("bad_result", bad[0], vals, time.perf_counter() - t0)
        return Outcome("estimate", "", "", time.perf_counter() - t0)
    except CostModelError as e:
        return Outcome("clean", type(e).__name__, str(e)[:300], time.perf_counter() - t0)
    except BaseException as e:  # noqa: BLE001 - everything else is what the fuzzer looks for
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(tb)
                      if "costmodel" in f.filename), f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?")
        return Outcome("unclean", type(e).__name__, f"{str(e)[:200]} [at {where}]", time.perf_counter() - t0)


def _serve() -> None:
    """The worker loop: read pickled jobs on stdin, write pickled outcomes to the original stdout."""
    import pickle
    import sys

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the libraries print goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    with tempfile.TemporaryDirectory(prefix="onnx-fuzz-") as d:
        while True:
            try:
                job = pickle.load(inp)
            except EOFError:
                return
            if job is None:
                return
            o = check_mutant(*job, workdir=d)
            pickle.dump((o.kind, o.what, o.detail, o.seconds), out)  # plain data: this module is __main__ here
            out.flush()


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class Runner:
    """Runs mutants in a worker process under a watchdog (time and memory); the worker is replaced after a hang."""

    timeout_s: float = 10.0
    max_rss_mb: float = 3000.0
    _proc: object = field(default=None, repr=False)
    _warm: list = field(default_factory=list, repr=False)

    def _start(self) -> None:
        import subprocess
        import sys

        import costmodel

        root = str(Path(costmodel.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      env=env)

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None

    def warm_up(self, *predictors) -> None:
        """Load these predictors in the worker now (and in every worker that replaces it), so that
        loading is not charged to a mutant's time limit."""
        self._warm = list(predictors)
        self._ensure()

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._start()
        from onnx import TensorProto, helper

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warm", [x],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
                              opset_imports=[helper.make_opsetid("", 17)])
        for p in self._warm:
            self._call(m.SerializeToString(), False, 1, p, None, max(120.0, self.timeout_s))

    def run(self, mutant: Mutant) -> Outcome:
        return self.run_raw(mutant.data, mutant.as_file, mutant.batch, mutant.predictor, mutant.input_shape)

    def run_raw(self, data: bytes, as_file: bool, batch: int, predictor, input_shape=None) -> Outcome:
        self._ensure()
        return self._call(data, as_file, batch, predictor, input_shape, self.timeout_s)

    def _call(self, data: bytes, as_file: bool, batch: int, predictor, input_shape, limit: float) -> Outcome:
        import pickle
        import select

        if self._proc is None or self._proc.poll() is not None:
            self._start()
        t0 = time.perf_counter()
        try:
            pickle.dump((data, as_file, batch, predictor, input_shape), self._proc.stdin)
            self._proc.stdin.flush()
        except OSError:
            pass  # the worker is gone: reported below
        while True:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.05)
            if ready:
                try:
                    return Outcome(*pickle.load(self._proc.stdout))
                except (EOFError, OSError, pickle.UnpicklingError):
                    code = self._proc.wait(5)
                    self._proc = None
                    return Outcome("unclean", "WorkerDied", f"the worker process died (exit code {code})",
                                   time.perf_counter() - t0)
            elapsed = time.perf_counter() - t0
            rss = _rss_mb(self._proc.pid)
            if elapsed > limit or rss > self.max_rss_mb:
                self._kill()
                why = f"no answer after {limit:g} s" if elapsed > limit else f"memory grew past {self.max_rss_mb:g} MB"
                return Outcome("hang", "hang", why, elapsed)

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.close()
                self._proc.wait(10)
            except Exception:  # noqa: BLE001 - a stuck worker is killed
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def unclean(results: list[tuple[Mutant, Outcome]]) -> list[str]:
    """One line per mutant whose outcome is neither an estimate nor a clean error."""
    return [f"{o.kind} {o.what}: {o.detail} -- {m.describe()}" for m, o in results if not o.ok]


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--serve"]:
        _serve()
