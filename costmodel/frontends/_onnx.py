"""ONNX frontend: an ONNX model (file or ``onnx.ModelProto``) -> CostGraph.

ONNX is also the way in for other frameworks: TensorFlow/Keras models come
through `tf2onnx <https://github.com/onnx/tensorflow-onnx>`_
(``python -m tf2onnx.convert --saved-model DIR --output model.onnx``) and
PaddlePaddle models through `paddle2onnx <https://github.com/PaddlePaddle/Paddle2ONNX>`_;
the resulting graphs are featurized with the same op vocabulary as PyTorch.

What the frontend does
----------------------
* Loads with ``onnx.load(path, load_external_data=False)``: weights are never
  read, so models whose weights live in (possibly missing) external data
  files, or whose initializers were stripped, still load.  Weight shapes come
  from the initializers' ``dims`` or, for weights that are declared as graph
  inputs / value_info only, from those declarations.
* Fixes the dynamic dimensions of the graph inputs from ``batch``,
  ``input_shape`` or ``input_shapes`` (a :class:`DynamicShapeError` says which
  dimension is missing), then runs ``onnx.shape_inference.infer_shapes`` with
  data propagation; shapes it leaves unknown are inferred node by node (with
  ONNX's per-node inference fed with constant-folded shape tensors, and own
  rules for the common ``com.microsoft`` contrib ops).
* Skips shape plumbing.  A node becomes a CostGraph node only if it consumes
  a *data* tensor: a (non-weight) graph input or the output of another counted
  node.  Outputs of ``Shape``/``Size`` and everything computed only from them,
  from constants and from weights are not data (``Constant`` nodes are never
  nodes).  This removes the ``Shape``/``CastLike``/``Expand``/``ConstantOfShape``
  chains that ``torch.onnx.export(..., dynamo=True, optimize=False)`` emits.
* Normalizes the ops to the conventions of the ATen frontend, so a model
  featurized from its ONNX export and from PyTorch gives the same op-kind
  counts and FLOPs:

  - ``MatMul`` + ``Add(bias)`` (how exporters write ``nn.Linear`` on 3-D
    inputs) is one ``matmul`` node, as ``aten.linear`` is;
  - the decomposed attention ``MatMul(q, k^T) -> [scale/mask] -> Softmax ->
    MatMul(., v)`` that exporters emit for ``scaled_dot_product_attention`` is
    one ``attention`` node with inputs q, k, v (plus the mask), the scaling
    ``Mul`` nodes and the transposes that build ``k^T`` included.  Note that
    this also fuses attention written by hand in PyTorch (``q @ k.T``,
    softmax, ``@ v``), which the PyTorch frontend keeps as separate matmul /
    softmax nodes; ONNX inference engines fuse that pattern too;
  - ``x * Sigmoid(x)`` is ``silu``, ``x * HardSigmoid(x)`` is ``hardswish``
    and ``0.5 * x * (1 + Erf(x / sqrt 2))`` (older exporters) is ``gelu``;
  - GroupNorm exported as ``Reshape -> InstanceNormalization -> Reshape ->
    Mul -> Add`` is one ``group_norm``;
  - ``SplitToSequence`` + ``SequenceAt`` (``torch.split``/``chunk``) is one
    ``slice`` node, as ``aten.split`` is;
  - ``ReduceMean`` over exactly the spatial axes is ``avg_pool``;
  - initializers are parameters, counted once however often they are read;
    ``BatchNormalization`` running mean/variance are buffers (not counted in
    ``params``), as in PyTorch.

  ``Transpose``, ``Slice``, ``Split`` and ``Gather`` are copy kernels in ONNX
  runtimes (``is_view=False``), while PyTorch's permute/slice are views; the
  ``layout`` category therefore differs in bytes between the two frontends.

BatchNorm folding
-----------------
Exporters and graph optimizers may fold ``BatchNormalization`` into the
preceding ``Conv`` (``torch.onnx.export(..., dynamo=True)`` optimizes by
default).  Such a graph has no ``batch_norm`` nodes;
:meth:`CostGraph.fold_batchnorm` puts a PyTorch graph on the same footing.
Predictors are trained on the unfused (PyTorch-eager) form, so for the best
fidelity export with ``torch.onnx.export(..., dynamo=True, optimize=False)``.

Control flow (``If``/``Loop``/``Scan``) is counted as one ``other`` node with a
warning; operators outside the vocabulary become ``other`` nodes with one
:class:`UnsupportedOpWarning` per operator type.
"""

from __future__ import annotations

import ast
import math
import warnings
from pathlib import Path
from typing import Any, Hashable, Iterable, Sequence

from .._errors import DynamicShapeError, InvalidInputError, ModelLoadError, suggest
from ._builder import GraphBuilder, _Tensor
from ._common import broadcast_shape, einsum_contraction, check_batch, parse_shape, spatial_mean_is_pool

# ---------------------------------------------------------------- op tables
_STD_DOMAINS = ("", "ai.onnx")
_MS = "com.microsoft"

_KIND: dict[str, str] = {}
_VIEW: set[str] = set()


def _reg(kind: str, names: str, view: bool = False) -> None:
    for n in names.split():
        _KIND[n] = kind
        if view:
            _VIEW.add(n)


_reg("conv", "Conv ConvInteger QLinearConv FusedConv")
_reg("conv_transpose", "ConvTranspose")
_reg("matmul", "MatMul Gemm MatMulInteger QLinearMatMul Einsum FusedMatMul FusedGemm MatMulNBits "
     "DynamicQuantizeMatMul MatMulIntegerToFloat")
_reg("attention", "Attention MultiHeadAttention GroupQueryAttention")
_reg("batch_norm", "BatchNormalization")
_reg("layer_norm", "LayerNormalization SkipLayerNormalization")
_reg("rms_norm", "RMSNormalization SimplifiedLayerNormalization SkipSimplifiedLayerNormalization")
_reg("group_norm", "GroupNormalization GroupNorm")
_reg("instance_norm", "InstanceNormalization MeanVarianceNormalization")
_reg("relu", "Relu")
_reg("gelu", "Gelu FastGelu BiasGelu QuickGelu")
_reg("silu", "Swish")
_reg("sigmoid", "Sigmoid")
_reg("tanh", "Tanh")
_reg("hardswish", "HardSwish HardSigmoid")
_reg("clamp", "Clip")
_reg("softmax", "Softmax LogSoftmax")
_reg("activation", "Elu LeakyRelu PRelu Mish Softplus Selu Celu Softsign Shrink ThresholdedRelu")
_reg("max_pool", "MaxPool GlobalMaxPool")
_reg("avg_pool", "AveragePool GlobalAveragePool LpPool GlobalLpPool")
_reg("add", "Add Sub Sum BiasAdd")
_reg("mul", "Mul Div")
_reg("elementwise", "Pow Sqrt Exp Log Erf Where Equal Less Greater LessOrEqual GreaterOrEqual Not And Or "
     "Xor Neg Abs Reciprocal Floor Ceil Round Sign Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh "
     "Atanh Mod BitShift BitwiseAnd BitwiseOr BitwiseXor BitwiseNot IsNaN IsInf Max Min Mean Trilu "
     "ConstantOfShape Range EyeLike RandomNormal RandomUniform RandomNormalLike RandomUniformLike "
     "Bernoulli QuantizeLinear DequantizeLinear DynamicQuantizeLinear OneHot LRN")
_reg("reduction", "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum "
     "ReduceLogSumExp ReduceSumSquare ArgMax ArgMin TopK CumSum LpNormalization")
_reg("reshape", "Reshape Flatten Squeeze Unsqueeze Identity Expand", view=True)
_reg("transpose", "Transpose")
_reg("concat", "Concat ConcatFromSequence")
_reg("slice", "Slice Split SplitToSequence")
_reg("pad", "Pad")
_reg("copy", "Cast CastLike Tile DepthToSpace SpaceToDepth ReverseSequence")
_reg("resize", "Resize Upsample GridSample")
_reg("gather", "Gather GatherElements GatherND ScatterND ScatterElements Scatter Compress")
_reg("dropout", "Dropout")

#: com.microsoft contrib ops we know (others in that domain are unsupported)
_MS_OPS = frozenset(
    "FusedConv FusedMatMul FusedGemm MatMulNBits DynamicQuantizeMatMul MatMulIntegerToFloat Attention "
    "MultiHeadAttention GroupQueryAttention SkipLayerNormalization SkipSimplifiedLayerNormalization "
    "SimplifiedLayerNormalization GroupNorm Gelu FastGelu BiasGelu QuickGelu BiasAdd".split()
)
#: ops ORT registers in the default domain that ONNX itself does not define
_ORT_DEFAULT_DOMAIN = frozenset({"SimplifiedLayerNormalization"})
#: contrib ops that exist only in com.microsoft (the others are also standard ONNX ops)
_MS_ONLY = _MS_OPS - {"Attention", "Gelu", "SimplifiedLayerNormalization"}

#: sequence ops handled by the frontend (element shapes tracked per sequence value)
_SEQ_OPS = frozenset({"SplitToSequence", "SequenceConstruct", "SequenceAt", "ConcatFromSequence"})

#: subgraph-carrying ops: counted as ``other`` with a warning
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})

#: input positions that are attribute-like (shapes, axes, pads, scalars): not operands
_ATTR_INPUTS: dict[str, frozenset[int]] = {
    k: frozenset(v)
    for k, v in {
        "Reshape": {1}, "Expand": {1}, "Tile": {1}, "Squeeze": {1}, "Unsqueeze": {1},
        "Slice": {1, 2, 3, 4}, "Split": {1}, "Pad": {1, 2, 3}, "Resize": {1, 2, 3}, "Upsample": {1},
        "TopK": {1}, "Clip": {1, 2}, "Dropout": {1, 2}, "CumSum": {1}, "OneHot": {1, 2},
        "ConstantOfShape": {0}, "Range": {0, 1, 2}, "ReduceMean": {1}, "ReduceSum": {1},
        "ReduceMax": {1}, "ReduceMin": {1}, "ReduceProd": {1}, "ReduceL1": {1}, "ReduceL2": {1},
        "ReduceLogSum": {1}, "ReduceLogSumExp": {1}, "ReduceSumSquare": {1}, "CastLike": {1},
        "QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2}, "ConvInteger": {2, 3},
        "MatMulInteger": {2, 3}, "QLinearConv": {1, 2, 4, 5, 6, 7}, "QLinearMatMul": {1, 2, 4, 5, 6, 7},
    }.items()
}

#: operand positions of ops whose weight is not input 1 (builder order: x, w, bias)
_OPERANDS: dict[str, tuple[int, ...]] = {
    "QLinearConv": (0, 3, 8),
    "QLinearMatMul": (0, 3),
    "ConvInteger": (0, 1),
    "MatMulInteger": (0, 1),
}

#: non-data ops whose output is only a re-description of a weight (it stays that weight)
_PASS_OPS = frozenset(
    "Identity Transpose Reshape Flatten Squeeze Unsqueeze Cast CastLike DequantizeLinear".split()
)

#: weight positions used to recognise weights declared as graph inputs (stripped models)
_WEIGHT_POS: dict[str, frozenset[int]] = {
    k: frozenset(v)
    for k, v in {
        "Conv": {1, 2}, "ConvTranspose": {1, 2}, "BatchNormalization": {1, 2, 3, 4},
        "LayerNormalization": {1, 2}, "InstanceNormalization": {1, 2}, "GroupNormalization": {1, 2},
        "RMSNormalization": {1}, "SimplifiedLayerNormalization": {1}, "Gemm": {1, 2}, "PRelu": {1},
        "MatMul": {1}, "Gather": {0}, "SkipLayerNormalization": {2, 3, 4},
        "SkipSimplifiedLayerNormalization": {2}, "FusedConv": {1, 2}, "com.microsoft.Attention": {1, 2},
    }.items()
}

#: integer initializers at these positions are quantized weights (counted as parameters)
_QWEIGHT_POS = {
    "DequantizeLinear": {0}, "QLinearConv": {3}, "QLinearMatMul": {0, 3}, "ConvInteger": {1},
    "MatMulInteger": {0, 1}, "DynamicQuantizeMatMul": {1}, "MatMulIntegerToFloat": {1}, "MatMulNBits": {1},
}

#: ops whose first output has the shape of their first input (fallback shape rule)
_SAME_SHAPE = frozenset(
    "Relu Gelu FastGelu BiasGelu QuickGelu Sigmoid Tanh HardSwish HardSigmoid Clip Softmax LogSoftmax "
    "Elu LeakyRelu PRelu Mish Softplus Selu Celu Softsign Shrink ThresholdedRelu Swish Sqrt Exp Log Erf "
    "Neg Abs Reciprocal Floor Ceil Round Sign Sin Cos Tan Not IsNaN IsInf Identity Dropout "
    "BatchNormalization LayerNormalization SkipLayerNormalization SimplifiedLayerNormalization "
    "SkipSimplifiedLayerNormalization RMSNormalization GroupNormalization GroupNorm InstanceNormalization "
    "MeanVarianceNormalization LpNormalization BiasAdd CumSum Trilu QuantizeLinear DequantizeLinear".split()
)

_INT_TYPES = frozenset({"int64", "int32", "int16", "int8", "uint8", "int4", "bool"})
_QUANT_TYPES = frozenset({"int8", "uint8", "int4"})
_VALUE_LIMIT = 100_000  # largest constant tensor (elements) kept for constant folding

# ------------------------------------------------------------------- dtypes
_ONNX_DTYPES = {
    1: "fp32", 2: "uint8", 3: "int8", 4: "int16", 5: "int16", 6: "int32", 7: "int64", 8: "int64",
    9: "bool", 10: "fp16", 11: "fp64", 12: "int32", 13: "int64", 14: "complex64", 15: "complex64",
    16: "bf16", 17: "fp8", 18: "fp8", 19: "fp8", 20: "fp8", 21: "int4", 22: "int4", 23: "int4",
    24: "fp8",
}


def dtype_name(elem_type: int | None) -> str:
    """ONNX ``TensorProto`` element type -> vocabulary dtype name (``fp32``, ``int64``...)."""
    return _ONNX_DTYPES.get(int(elem_type or 1), "fp32")


def _is_float(dt: str) -> bool:
    return dt in ("fp32", "fp16", "bf16", "fp64", "fp8", "tf32")


# ---------------------------------------------------------------- helpers
def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


def _attrs(node) -> dict[str, Any]:
    from onnx import AttributeProto, helper

    out = {}
    for a in node.attribute:
        if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            continue
        try:
            v = helper.get_attribute_value(a)
        except Exception:  # noqa: BLE001 - exotic attribute types are irrelevant here
            continue
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _subgraph_refs(node) -> list[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing scope."""
    from onnx import AttributeProto

    refs: list[str] = []
    for a in node.attribute:
        graphs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs) if a.type == AttributeProto.GRAPHS else []
        for g in graphs:
            defined = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                for i in list(n.input) + _subgraph_refs(n):
                    if i and i not in defined:
                        refs.append(i)
                defined.update(o for o in n.output if o)
    return list(dict.fromkeys(refs))


def _sym_pads(pads: Sequence[int], rank: int) -> list[int]:
    pads = [int(p) for p in pads]
    if len(pads) == 2 * rank and pads[:rank] == pads[rank:]:
        return pads[:rank]
    return pads


def _matmul_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    if not a or not b:
        return None
    a2 = (1, *a) if len(a) == 1 else tuple(a)
    b2 = (*b, 1) if len(b) == 1 else tuple(b)
    batch = broadcast_shape(a2[:-2], b2[:-2])
    if batch is None:
        return None
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


# -------------------------------------------------------------------- loading
def _load(model) -> tuple[Any, str]:
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "onnx_model"
    if not isinstance(model, (str, Path)):
        raise InvalidInputError(
            f"expected a path to an .onnx file or an onnx.ModelProto, got {type(model).__name__}"
        )
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelLoadError(f"no such file: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not an ONNX model file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except DecodeError as e:
        raise ModelLoadError(
            f"could not parse {path} as an ONNX model (truncated or corrupt file, or not ONNX): {e}"
        ) from None
    except Exception as e:  # noqa: BLE001 - any reader failure is a load error
        raise ModelLoadError(f"could not read {path} as an ONNX model: {type(e).__name__}: {e}") from None
    if not proto.graph.node or not proto.opset_import or proto.ir_version <= 0:
        raise ModelLoadError(
            f"{path} is not an ONNX model (it parses but has no graph/opset; truncated or a different format?)"
        )
    return proto, path.stem


def _dims(vi) -> list[int | str | None] | None:
    """Declared dims of a ValueInfo: int, dim_param name, or None (unknown); None if no shape."""
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_value") and d.dim_value == 0:
            out.append(0)
        else:
            out.append(d.dim_param or None)
    return out


# ---------------------------------------------------------- constant folding
def _np_dtype(elem_type: int):
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(int(elem_type))


def _eval_node(node, a: dict, vals: dict, types: dict, opset: int):
    """Evaluate a node on constant inputs with numpy; ``None`` if unsupported."""
    import numpy as np

    op = node.op_type
    ins = list(node.input)

    def v(i):
        return vals.get(ins[i]) if i < len(ins) and ins[i] else None

    if op in ("Shape", "Size"):
        shp = types.get(ins[0], (None, None))[0]
        if not _known(shp):
            return None
        if op == "Size":
            return [np.array(_numel(shp), dtype=np.int64)]
        r = len(shp)
        start, end = a.get("start", 0), a.get("end", r)
        start, end = max(0, start + r if start < 0 else start), min(r, end + r if end < 0 else end)
        return [np.array(shp[start:end], dtype=np.int64)]
    args = [v(i) for i in range(len(ins))]
    need = {
        "Identity": 1, "Cast": 1, "CastLike": 1, "Neg": 1, "Abs": 1, "Sqrt": 1, "Floor": 1, "Ceil": 1,
        "Not": 1, "Reciprocal": 1, "Transpose": 1, "Flatten": 1, "ConstantOfShape": 1, "Squeeze": 1,
        "Unsqueeze": 1, "Gather": 2, "Reshape": 2, "Expand": 2, "Tile": 2, "Range": 3, "Where": 3,
        "Slice": 1, "Concat": len(ins), "Add": 2, "Sub": 2, "Mul": 2, "Div": 2, "Mod": 2, "Equal": 2,
        "Less": 2, "Greater": 2, "LessOrEqual": 2, "GreaterOrEqual": 2, "And": 2, "Or": 2, "Pow": 2,
        "Max": len(ins), "Min": len(ins), "ReduceProd": 1, "ReduceSum": 1,
    }.get(op)
    if need is None or any(x is None for x in args[:need]):
        return None
    x = args[0]
    try:
        if op == "Identity":
            return [x]
        if op == "Cast":
            return [x.astype(_np_dtype(a["to"]))]
        if op == "CastLike":
            et = types.get(ins[1], (None, None))[1]
            return [x.astype(_np_dtype(et))] if et else None
        if op in ("Neg", "Abs", "Sqrt", "Floor", "Ceil", "Not", "Reciprocal"):
            f = {"Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Floor": np.floor, "Ceil": np.ceil,
                 "Not": np.logical_not, "Reciprocal": np.reciprocal}[op]
            return [np.asarray(f(x)).astype(x.dtype)]
        if op == "Transpose":
            return [np.transpose(x, a.get("perm"))]
        if op == "Flatten":
            ax = a.get("axis", 1) % max(x.ndim, 1) if x.ndim else 0
            return [x.reshape(_numel(x.shape[:ax]), -1)]
        if op == "ConstantOfShape":
            fill = a.get("value")
            from onnx import numpy_helper

            base = numpy_helper.to_array(fill).reshape(-1)[0] if fill is not None else np.float32(0)
            return [np.full(tuple(int(d) for d in x), base, dtype=np.asarray(base).dtype)]
        if op in ("Squeeze", "Unsqueeze"):
            axes = a.get("axes")
            if axes is None and len(ins) > 1 and ins[1]:
                if args[1] is None:
                    return None
                axes = [int(t) for t in np.asarray(args[1]).reshape(-1)]
            if op == "Squeeze":
                if axes is None:
                    return [np.squeeze(x)]
                return [np.squeeze(x, axis=tuple(int(t) % x.ndim for t in axes))]
            r = x.ndim + len(axes)
            out = x
            for ax in sorted(int(t) % r for t in axes):
                out = np.expand_dims(out, ax)
            return [out]
        if op == "Gather":
            return [np.take(x, args[1].astype(np.int64), axis=a.get("axis", 0))]
        if op == "Reshape":
            shape = [int(t) for t in np.asarray(args[1]).reshape(-1)]
            if not a.get("allowzero", 0):
                shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
            return [x.reshape(shape)]
        if op == "Expand":
            shp = np.broadcast_shapes(x.shape, tuple(int(t) for t in args[1]))
            return [np.broadcast_to(x, shp).copy()]
        if op == "Tile":
            return [np.tile(x, [int(t) for t in args[1]])]
        if op == "Range":
            return [np.arange(args[0], args[1], args[2]).astype(np.asarray(args[0]).dtype)]
        if op == "Where":
            return [np.where(args[0], args[1], args[2])]
        if op == "Slice":
            if opset < 10:
                starts, ends, axes, steps = a.get("starts"), a.get("ends"), a.get("axes"), None
            else:
                if args[1] is None or args[2] is None:
                    return None
                starts, ends = list(args[1]), list(args[2])
                axes = list(args[3]) if len(args) > 3 and args[3] is not None else None
                steps = list(args[4]) if len(args) > 4 and args[4] is not None else None
            axes = axes if axes is not None else list(range(len(starts)))
            steps = steps if steps is not None else [1] * len(starts)
            sl = [slice(None)] * x.ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                sl[int(ax) % x.ndim] = slice(int(s), int(e), int(st))
            return [x[tuple(sl)]]
        if op == "Concat":
            return [np.concatenate([np.atleast_1d(t) for t in args], axis=a.get("axis", 0))]
        if op in ("Add", "Sub", "Mul", "Mod", "Pow"):
            f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Mod": np.mod, "Pow": np.power}[op]
            return [np.asarray(f(x, args[1])).astype(x.dtype)]
        if op == "Div":
            if np.issubdtype(x.dtype, np.integer):
                return [np.trunc(x / args[1]).astype(x.dtype)]
            return [np.asarray(x / args[1]).astype(x.dtype)]
        if op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or"):
            f = {"Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
                 "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or}[op]
            return [f(x, args[1])]
        if op in ("Max", "Min"):
            f = np.maximum if op == "Max" else np.minimum
            out = args[0]
            for t in args[1:]:
                out = f(out, t)
            return [out]
        if op in ("ReduceProd", "ReduceSum"):
            axes = a.get("axes")
            if axes is None and len(args) > 1 and args[1] is not None:
                axes = [int(t) for t in np.asarray(args[1]).reshape(-1)]
            f = np.prod if op == "ReduceProd" else np.sum
            return [np.asarray(f(x, axis=tuple(axes) if axes else None, keepdims=bool(a.get("keepdims", 1))))]
    except Exception:  # noqa: BLE001 - folding is best effort
        return None
    return None


# ------------------------------------------------------------------ frontend
class _OnnxFrontend:
    def __init__(self, proto, name: str, mode: str) -> None:
        import onnx

        if proto.functions:
            try:
                import onnx.inliner

                proto = onnx.inliner.inline_local_functions(proto)
            except Exception:  # noqa: BLE001 - fall back to treating calls as unsupported ops
                pass
        self.proto = proto
        self.g = proto.graph
        self.mode = mode
        self.training = mode == "training"
        self.opsets = {(o.domain or ""): int(o.version) for o in proto.opset_import}
        if "ai.onnx" in self.opsets:
            self.opsets.setdefault("", self.opsets["ai.onnx"])
        self.opset = self.opsets.get("", 1)
        self.b = GraphBuilder(name, "onnx")
        self.types: dict[str, tuple[tuple | None, int | None]] = {}  # name -> (shape|None, elem_type)
        self.vals: dict[str, Any] = {}  # small constant tensors (numpy)
        self.data: set[str] = set()
        self.weights: set[str] = set()  # names that are weights or re-descriptions of one
        self.resolve: dict[str, Hashable] = {}  # onnx name -> builder key
        self.counted: list = []
        self.seq_shapes: dict[str, list[tuple[int, ...]]] = {}  # sequence value -> element shapes
        self.seq_etype: dict[str, int | None] = {}
        self.seq_keys: dict[str, list[Hashable]] = {}  # sequence value -> builder keys of its elements
        self.unknown_root: dict[str, Any] = {}  # value -> node where shape inference first failed

    # ------------------------------------------------------------- inputs
    def _classify(self):
        """Split graph inputs into data inputs and weights.

        Weights are initializers, inputs the torch exporter marks as
        parameters/buffers, and static-shaped inputs read only at weight
        positions (conv/gemm weights, norm scales, a rank-2 MatMul B or
        embedding table): that is how stripped models declare their weights.
        Names read but defined nowhere are weights if ``value_info`` gives
        their shape.
        """
        g = self.g
        inits = {t.name: t for t in g.initializer}
        for st in g.sparse_initializer:
            inits.setdefault(st.values.name, st)
        self.inits = inits
        uses: dict[str, list[tuple[str, int]]] = {}
        produced: set[str] = set()
        for n in g.node:
            op = f"{_MS}.{n.op_type}" if n.domain == _MS and n.op_type == "Attention" else n.op_type
            for i, name in enumerate(n.input):
                if name:
                    uses.setdefault(name, []).append((op, i))
            for name in _subgraph_refs(n):
                uses.setdefault(name, []).append((n.op_type, -1))
            produced.update(o for o in n.output if o)
        graph_inputs = [vi for vi in g.input if vi.name not in inits]
        weight_inputs, data_inputs = [], []
        for vi in graph_inputs:
            kind = next((p.value for p in vi.metadata_props
                         if p.key == "pkg.torch.export.graph_signature.InputSpec.kind"), None)
            if kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                weight_inputs.append(vi)
                continue
            dims = _dims(vi)
            u = uses.get(vi.name, [])
            static = dims is not None and all(isinstance(d, int) and d > 0 for d in dims)
            at_weight_pos = bool(u) and all(i in _WEIGHT_POS.get(op, ()) for op, i in u)
            if static and at_weight_pos and (len(dims) == 2 or all(op not in ("MatMul", "Gather") for op, _ in u)):
                weight_inputs.append(vi)
            else:
                data_inputs.append(vi)
        if not data_inputs and weight_inputs:  # nothing left to feed: the heuristic was wrong
            data_inputs = [vi for vi in weight_inputs if not any(
                p.key == "pkg.torch.export.graph_signature.InputSpec.kind" for p in vi.metadata_props)]
            weight_inputs = [vi for vi in weight_inputs if vi not in data_inputs]
        # weights referenced but never defined: stripped initializers declared only in value_info
        defined = set(inits) | {vi.name for vi in g.input} | produced
        vinfo = {vi.name: vi for vi in g.value_info}
        dangling = []
        for name in uses:
            if name not in defined:
                if name in vinfo and _known(_dims(vinfo[name])):
                    dangling.append(vinfo[name])
                else:
                    op = next(op for op, _ in uses[name])
                    raise ModelLoadError(
                        f"tensor {name!r} (read by a {op} node) is not produced by any node and is neither a "
                        "graph input nor an initializer; the file may be truncated or its weights stripped "
                        "without shapes"
                    )
        self.data_inputs = data_inputs
        self.weight_inputs = weight_inputs + dangling

    def _fix_shapes(self, batch, input_shape, input_shapes) -> dict[str, tuple[int, ...]]:
        names = [vi.name for vi in self.data_inputs]
        if input_shapes:
            for k in input_shapes:
                if k not in names:
                    raise InvalidInputError(
                        f"input_shapes names {k!r}, which is not an input of the model "
                        f"(inputs: {', '.join(names) or 'none'}).{suggest(k, names)}"
                    )
        if input_shape is not None and len(names) != 1:
            raise InvalidInputError(
                f"input_shape is for models with one input; this one has {len(names)} "
                f"({', '.join(names)}): pass input_shapes={{name: full shape incl. batch}}"
            )
        fixed: dict[str, tuple[int, ...]] = {}
        for vi in self.data_inputs:
            dims = _dims(vi)
            given = None
            if input_shapes and vi.name in input_shapes:
                given = parse_shape(input_shapes[vi.name])
                if batch is not None and given and given[0] != batch:
                    raise InvalidInputError(
                        f"input_shapes[{vi.name!r}] = {given} has batch {given[0]}, but batch={batch}"
                    )
            elif input_shape is not None:
                given = (batch, *input_shape) if batch is not None else (None, *input_shape)
            if dims is None:
                if given is None or None in given:
                    raise DynamicShapeError(
                        f"input {vi.name!r} has no declared shape; {self._how(vi.name, None, [0])}"
                    )
                fixed[vi.name] = tuple(given)  # type: ignore[arg-type]
                continue
            if given is not None and len(given) != len(dims):
                raise InvalidInputError(
                    f"input {vi.name!r} has rank {len(dims)} (shape {self._fmt(dims)}), but the given shape "
                    f"{tuple(d if d is not None else '?' for d in given)} has rank {len(given)}"
                    + (" (input_shape excludes the batch dimension)" if input_shapes is None else "")
                )
            out: list[int] = []
            missing: list[tuple[int, Any]] = []
            for i, d in enumerate(dims):
                want = given[i] if given is not None else (batch if i == 0 else None)
                if isinstance(d, int) and d > 0:
                    if want is not None and want != d:
                        what = "batch dimension" if i == 0 else f"dimension {i}"
                        raise InvalidInputError(
                            f"input {vi.name!r} has a fixed {what} of size {d} (shape {self._fmt(dims)}); "
                            f"it cannot be set to {want}. Re-export the model with a dynamic {what} to change it."
                        )
                    out.append(d)
                elif want is not None:
                    out.append(int(want))
                else:
                    missing.append((i, d))
            if missing:
                what = " and ".join(f"{i}" + (f" ({d!r})" if isinstance(d, str) else "") for i, d in missing)
                plural = "s" if len(missing) > 1 else ""
                raise DynamicShapeError(
                    f"input {vi.name!r} has dynamic dimension{plural} {what} (shape {self._fmt(dims)}) and no "
                    f"value was given; {self._how(vi.name, dims, [i for i, _ in missing])}"
                )
            fixed[vi.name] = tuple(out)
        return fixed

    @staticmethod
    def _fmt(dims) -> str:
        return "(" + ", ".join(str(d) if d is not None else "?" for d in dims) + ")"

    def _how(self, name: str, dims, missing: list[int]) -> str:
        """How to give the missing dimensions (``missing``: their indices; ``dims`` None: no shape at all)."""
        parts = []
        if dims is None or 0 in missing:
            parts.append("batch=N (CLI: --batch N)")
        if dims is None or any(i > 0 for i in missing):
            rest = [str(d) if isinstance(d, int) and d > 0 else "?" for d in (dims or [])[1:]]
            example = ",".join(rest) if rest else "3,224,224"
            if len(self.data_inputs) == 1:
                parts.append(f"the shape without the batch dimension, input_shape=({example.replace(',', ', ')}) "
                             f"(CLI: --input {example})" + (", giving each ? a size" if "?" in example else ""))
            else:
                parts.append(f"input_shapes={{{name!r}: (batch, {', '.join(rest) or '...'})}} with the full "
                             "shape of every input")
        return "pass " + " and ".join(parts)

    # ------------------------------------------------------ shape inference
    def _infer(self, fixed: dict[str, tuple[int, ...]]):
        import onnx
        from onnx import TensorProto, helper, numpy_helper, shape_inference

        g = self.g
        light = onnx.ModelProto()
        light.ir_version = max(self.proto.ir_version, 4)  # weights may be inputs without initializers
        light.opset_import.extend(self.proto.opset_import)
        lg = light.graph
        lg.name = g.name
        lg.node.extend(g.node)
        for vi in self.data_inputs:
            lg.input.append(helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, list(fixed[vi.name])))
        for vi in self.weight_inputs:
            lg.input.append(vi)
        for name, t in self.inits.items():
            if isinstance(t, TensorProto):
                dims, et = list(t.dims), t.data_type
                small = _numel(dims) <= 4096 and t.data_location != TensorProto.EXTERNAL
                if small:
                    try:
                        arr = numpy_helper.to_array(t)
                        if arr.size == _numel(dims):
                            lg.initializer.append(t)
                            if arr.size <= _VALUE_LIMIT:
                                self.vals[name] = arr
                            continue
                    except Exception:  # noqa: BLE001 - stripped data: declare the type only
                        pass
                lg.input.append(helper.make_tensor_value_info(name, et, dims))
            else:  # sparse
                lg.input.append(helper.make_tensor_value_info(name, t.values.data_type, list(t.dims)))
        for o in g.output:
            et = o.type.tensor_type.elem_type if o.type.HasField("tensor_type") else 0
            lg.output.append(
                helper.make_tensor_value_info(o.name, et, None) if et else helper.make_empty_tensor_value_info(o.name)
            )
        inferred = light
        for kwargs in ({"strict_mode": False, "data_prop": True}, {"strict_mode": False}):
            try:
                inferred = shape_inference.infer_shapes(light, **kwargs)
                break
            except Exception:  # noqa: BLE001 - fall back to per-node inference
                continue
        ig = inferred.graph
        for vi in list(ig.input) + list(ig.value_info) + list(ig.output):
            if vi.type.HasField("tensor_type"):
                dims = _dims(vi)
                shape = tuple(d if isinstance(d, int) else None for d in dims) if dims is not None else None
                self.types[vi.name] = (shape, vi.type.tensor_type.elem_type or None)
        for t in ig.initializer:
            self.types[t.name] = (tuple(int(d) for d in t.dims), t.data_type)
        # static shapes the file declares for values inference could not type (outputs of custom ops)
        for vi in g.value_info:
            dims = _dims(vi) if vi.type.HasField("tensor_type") else None
            if _known(dims) and not _known(self._shape(vi.name)):
                self.types[vi.name] = (tuple(dims), vi.type.tensor_type.elem_type or None)

    def _shape(self, name: str):
        return self.types.get(name, (None, None))[0]

    def _etype(self, name: str):
        return self.types.get(name, (None, None))[1]

    def _infer_node(self, node, a: dict) -> None:
        """Fill unknown output types of one node (per-node ONNX inference, then own rules)."""
        from onnx import defs, helper, numpy_helper, shape_inference

        op, dom = node.op_type, node.domain or ""
        if dom in _STD_DOMAINS and op not in _ORT_DEFAULT_DOMAIN:
            try:
                schema = defs.get_schema(op, self.opset, "")
                itypes = {}
                for i in node.input:
                    if not i:
                        continue
                    shp, et = self.types.get(i, (None, None))
                    if et is None:
                        raise KeyError(i)
                    itypes[i] = helper.make_tensor_type_proto(et, list(shp) if shp is not None else None)
                idata = {i: numpy_helper.from_array(self.vals[i], i) for i in node.input if i in self.vals}
                out = shape_inference.infer_node_outputs(
                    schema, node, itypes, idata, opset_imports=list(self.proto.opset_import),
                    ir_version=self.proto.ir_version,
                )
                for name, tp in out.items():
                    if not tp.HasField("tensor_type"):
                        continue
                    tt = tp.tensor_type
                    shape = None
                    if tt.HasField("shape"):
                        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
                    old = self.types.get(name, (None, None))
                    if not _known(old[0]):
                        self.types[name] = (shape, tt.elem_type or old[1])
            except Exception:  # noqa: BLE001 - fall through to own rules
                pass
        outs = [o for o in node.output if o]
        if not outs or _known(self._shape(outs[0])):
            return
        ins = [self._shape(i) if i else None for i in node.input]
        in_et = self._etype(node.input[0]) if node.input and node.input[0] else None
        shape = None
        x = ins[0] if ins else None
        if op in _SAME_SHAPE:
            shape = x
        elif (op in ("FusedMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat") and len(ins) > 1
              and _known(x) and _known(ins[1])):
            a_s, b_s = list(x), list(ins[1])
            if a.get("transA") and len(a_s) >= 2:
                a_s[-2], a_s[-1] = a_s[-1], a_s[-2]
            if a.get("transB") and len(b_s) >= 2:
                b_s[-2], b_s[-1] = b_s[-1], b_s[-2]
            shape = _matmul_shape(a_s, b_s)
            in_et = 1 if op != "FusedMatMul" else in_et
        elif op == "FusedGemm" and len(ins) > 1 and _known(x) and _known(ins[1]):
            m = x[1] if a.get("transA") else x[0]
            n = ins[1][0] if a.get("transB") else ins[1][1]
            shape = (m, n)
        elif op == "MatMulNBits" and _known(x):
            shape = (*x[:-1], int(a.get("N", 0)))
        elif op == "FusedConv" and len(ins) > 1 and _known(x) and _known(ins[1]):
            shape = self._conv_out(x, ins[1], a)
        elif op in ("Attention", "MultiHeadAttention", "GroupQueryAttention") and _known(x):
            shape = self._attn_out_shape(node, a)
        if _known(shape):
            et = self._etype(outs[0]) or in_et
            self.types[outs[0]] = (tuple(shape), et)

    @staticmethod
    def _conv_out(x, w, a) -> tuple[int, ...] | None:
        r = len(x) - 2
        k = list(w[2:])
        s = list(a.get("strides") or [1] * r)
        d = list(a.get("dilations") or [1] * r)
        ap = a.get("auto_pad", "NOTSET")
        pads = list(a.get("pads") or [0] * (2 * r))
        out = [x[0], w[0]]
        for i in range(r):
            if ap in ("SAME_UPPER", "SAME_LOWER"):
                out.append(-(-x[2 + i] // s[i]))
            else:
                out.append((x[2 + i] + pads[i] + pads[i + r] - d[i] * (k[i] - 1) - 1) // s[i] + 1)
        return tuple(out)

    def _attn_out_shape(self, node, a):
        op = node.op_type
        q = self._shape(node.input[0])
        if op == "Attention" and (node.domain or "") == _MS:
            w = self._shape(node.input[1]) if len(node.input) > 1 else None
            hs = a.get("qkv_hidden_sizes")
            dv = hs[2] if hs else (w[1] // 3 if _known(w) else None)
            return (q[0], q[1], dv) if dv else None
        if op == "Attention":  # ai.onnx opset 23
            v = self._shape(node.input[2])
            if len(q) == 4 and _known(v):
                return (*q[:-1], v[-1])
            hq, hkv = a.get("q_num_heads"), a.get("kv_num_heads")
            if _known(v) and hq and hkv:
                return (q[0], q[1], v[-1] // hkv * hq)
            return None
        n = a.get("num_heads", 1)
        if op == "MultiHeadAttention":
            if len(q) == 5:
                return (q[0], q[1], q[2] * q[4])
            k = self._shape(node.input[1]) if len(node.input) > 1 and node.input[1] else None
            v = self._shape(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if _known(k) and len(k) == 5:
                return (q[0], q[1], k[2] * k[4])
            if _known(v):
                return (q[0], q[1], v[-1] if len(v) == 3 else v[1] * v[3])
            return tuple(q)
        # GroupQueryAttention
        nkv = a.get("kv_num_heads", n)
        has_k = len(node.input) > 1 and node.input[1]
        h = q[-1] // (n + 2 * nkv) if not has_k else q[-1] // n
        return (q[0], q[1], n * h)

    # ------------------------------------------------------------------ walk
    def _toposort(self, nodes) -> list:
        avail = set(self.inits) | {vi.name for vi in self.g.input} | {vi.name for vi in self.weight_inputs}
        ok = True
        seen = set(avail)
        for n in nodes:
            if any(i and i not in seen for i in list(n.input) + _subgraph_refs(n)):
                ok = False
                break
            seen.update(n.output)
        if ok:
            return list(nodes)
        produced = {o: idx for idx, n in enumerate(nodes) for o in n.output if o}
        deps = [{produced[i] for i in list(n.input) + _subgraph_refs(n) if i in produced} for n in nodes]
        order, done = [], set()
        for start in range(len(nodes)):
            stack = [(start, False)]
            while stack:
                idx, expanded = stack.pop()
                if idx in done:
                    continue
                if expanded:
                    done.add(idx)
                    order.append(nodes[idx])
                    continue
                stack.append((idx, True))
                stack.extend((d, False) for d in deps[idx] if d not in done)
        return order

    def _register_weights(self) -> None:
        from onnx import TensorProto

        b = self.b
        qweights, buffers = set(), set()
        for n in self.g.node:
            for i, name in enumerate(n.input):
                if i in _QWEIGHT_POS.get(n.op_type, ()):
                    qweights.add(name)
                if n.op_type == "BatchNormalization" and i in (3, 4):
                    buffers.add(name)  # running statistics: buffers in PyTorch, not parameters
        for vi in self.weight_inputs:
            for p in vi.metadata_props:
                if p.key == "pkg.torch.export.graph_signature.InputSpec.kind" and p.value != "PARAMETER":
                    buffers.add(vi.name)
        for name, t in self.inits.items():
            if isinstance(t, TensorProto):
                dims, et = [int(d) for d in t.dims], t.data_type
            else:
                dims, et = [int(d) for d in t.dims], t.values.data_type
            dt = dtype_name(et)
            trainable = _is_float(dt) or (dt in _QUANT_TYPES and name in qweights and _numel(dims) > 1)
            trainable = trainable and name not in buffers
            b.add_param(name, dims, dt, trainable=trainable)
            self.types.setdefault(name, (tuple(dims), et))
            self.weights.add(name)
            self.resolve[name] = name
        for vi in self.weight_inputs:
            dims = _dims(vi)
            if not _known(dims):
                raise DynamicShapeError(
                    f"weight {vi.name!r} is declared with a dynamic shape {self._fmt(dims or [])}; "
                    "weights need static shapes"
                )
            dt = dtype_name(vi.type.tensor_type.elem_type)
            b.add_param(vi.name, dims, dt, trainable=(_is_float(dt) or vi.name in qweights) and vi.name not in buffers)
            self.types[vi.name] = (tuple(dims), vi.type.tensor_type.elem_type)
            self.weights.add(vi.name)
            self.resolve[vi.name] = vi.name

    def walk(self, fixed: dict[str, tuple[int, ...]]) -> None:
        from onnx import helper

        b = self.b
        self._register_weights()
        for vi in self.data_inputs:
            et = vi.type.tensor_type.elem_type
            b.add_input(vi.name, fixed[vi.name], dtype_name(et))
            self.types[vi.name] = (fixed[vi.name], et)
            self.data.add(vi.name)
            self.resolve[vi.name] = vi.name
        used = set(o.name for o in self.g.output)
        for n in self.g.node:
            used.update(i for i in n.input if i)
            used.update(_subgraph_refs(n))
        self.used = used
        self.graph_outputs = {o.name for o in self.g.output}
        for node in self._toposort(self.g.node):
            op, dom = node.op_type, node.domain or ""
            a = _attrs(node)
            outs = [o for o in node.output if o]
            if op == "Constant" and dom in _STD_DOMAINS:
                self._constant(node, a)
                continue
            ins = list(node.input) + _subgraph_refs(node)
            if op in ("Shape", "Size", "SequenceLength") and dom in _STD_DOMAINS:
                relevant: list[str] = []
            elif op == "CastLike":
                relevant = ins[:1]
            else:
                relevant = ins
            if any(i in self.data for i in relevant if i):
                if op in _SEQ_OPS and dom in _STD_DOMAINS:
                    self._seq_types(node, a)
                elif any(not _known(self._shape(o)) for o in outs):
                    self._infer_node(node, a)
                    self._check_shapes(node)
                self.data.update(outs)
                self.counted.append((node, a))
                for o in outs:
                    self.resolve[o] = o
                continue
            # not data: constant-fold small tensors and track re-descriptions of weights
            if op == "SequenceLength" and node.input[0] in self.seq_shapes:
                import numpy as np

                self.vals[outs[0]] = np.array(len(self.seq_shapes[node.input[0]]), dtype=np.int64)
                self.types[outs[0]] = ((), 7)
                continue
            if dom in _STD_DOMAINS:
                res = _eval_node(node, a, self.vals, self.types, self.opset)
                if res is not None:
                    for o, arr in zip(outs, res):
                        if arr.size <= _VALUE_LIMIT:
                            self.vals[o] = arr
                            et = helper.np_dtype_to_tensor_dtype(arr.dtype)
                            if not _known(self._shape(o)):
                                self.types[o] = (tuple(int(d) for d in arr.shape), et)
            if any(not _known(self._shape(o)) for o in outs if o in self.used):
                self._infer_node(node, a)
            w = [i for i in (ins[:1] if op == "CastLike" else ins) if i in self.weights]
            if w and outs:
                src = self.resolve[w[0]]
                if op in _PASS_OPS and len(w) == 1:
                    self.resolve[outs[0]] = src
                    self.weights.add(outs[0])
                else:
                    shp, et = self.types.get(outs[0], (None, None))
                    if _known(shp) and et and _is_float(dtype_name(et)):
                        b.add_constant(outs[0], shp, dtype_name(et))
                        self.resolve[outs[0]] = outs[0]

    def _constant(self, node, a: dict) -> None:
        from onnx import AttributeProto, helper, numpy_helper

        out = node.output[0]
        arr = None
        for at in node.attribute:
            try:
                if at.name == "value" and at.type == AttributeProto.TENSOR:
                    t = at.t
                    dims, et = tuple(int(d) for d in t.dims), t.data_type
                    self.types[out] = (dims, et)
                    if _numel(dims) <= _VALUE_LIMIT:
                        arr = numpy_helper.to_array(t)
                    if _numel(dims) > 1:
                        self.b.add_constant(out, dims, dtype_name(et))
                        self.resolve[out] = out
                elif at.name == "sparse_value":
                    self.types[out] = (tuple(int(d) for d in at.sparse_tensor.dims), at.sparse_tensor.values.data_type)
                else:
                    v = helper.get_attribute_value(at)
                    import numpy as np

                    dt = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                          "value_ints": np.int64}.get(at.name)
                    if dt is not None:
                        arr = np.asarray(v, dtype=dt)
                        self.types[out] = (tuple(arr.shape), helper.np_dtype_to_tensor_dtype(arr.dtype))
            except Exception:  # noqa: BLE001 - undecodable constant: type only
                continue
        if arr is not None:
            self.vals[out] = arr

    def _seq_types(self, node, a: dict) -> None:
        """Element shapes of sequence values (torch.split/chunk export as SplitToSequence + SequenceAt)."""
        op = node.op_type
        ins, out = list(node.input), node.output[0]
        if op == "SplitToSequence":
            x, et = self.types.get(ins[0], (None, None))
            if not _known(x):
                return
            axis = int(a.get("axis", 0)) % max(len(x), 1)
            split = self.vals.get(ins[1]) if len(ins) > 1 and ins[1] else None
            n = x[axis]
            if split is None:
                sizes = [1] * n
            elif split.ndim == 0:
                step = int(split)
                sizes = [min(step, n - i) for i in range(0, n, step)] if step > 0 else [n]
            else:
                sizes = [int(t) for t in split.reshape(-1)]
            keep = split is not None or a.get("keepdims", 1)
            shapes = []
            for sz in sizes:
                shp = list(x)
                shp[axis] = sz
                if not keep:
                    del shp[axis]
                shapes.append(tuple(shp))
            self.seq_shapes[out], self.seq_etype[out] = shapes, et
        elif op == "SequenceConstruct":
            shapes = [self._shape(i) for i in ins]
            if all(_known(s_) for s_ in shapes):
                self.seq_shapes[out] = [tuple(s_) for s_ in shapes]
                self.seq_etype[out] = self._etype(ins[0]) if ins else None
        elif op == "SequenceAt":
            shapes = self.seq_shapes.get(ins[0])
            pos = self.vals.get(ins[1]) if len(ins) > 1 else None
            if shapes is not None and pos is not None and -len(shapes) <= int(pos) < len(shapes):
                if not _known(self._shape(out)):
                    self.types[out] = (shapes[int(pos)], self.seq_etype.get(ins[0]) or self._etype(out))
        elif op == "ConcatFromSequence":
            shapes = self.seq_shapes.get(ins[0])
            if not _known(self._shape(out)) and shapes:
                axis = int(a.get("axis", 0))
                if a.get("new_axis", 0):
                    r = len(shapes[0]) + 1
                    shp = list(shapes[0])
                    shp.insert(axis % r, len(shapes))
                else:
                    r = len(shapes[0])
                    shp = list(shapes[0])
                    shp[axis % r] = sum(s_[axis % r] for s_ in shapes)
                self.types[out] = (tuple(shp), self.seq_etype.get(ins[0]))

    # --------------------------------------------------------------- fusion
    def _plan(self) -> None:
        """Find the multi-node patterns that are one operator in PyTorch."""
        self.prod = {}
        self.cons: dict[str, list[int]] = {}
        for idx, (node, _) in enumerate(self.counted):
            for o in node.output:
                if o:
                    self.prod[o] = idx
            for i in list(node.input) + _subgraph_refs(node):
                if i:
                    self.cons.setdefault(i, []).append(idx)
        self.absorbed: set[int] = set()
        self.fused: dict[int, tuple] = {}
        for idx, (node, a) in enumerate(self.counted):
            if node.op_type in ("Softmax",) and (node.domain or "") in _STD_DOMAINS:
                self._plan_attention(idx, node, a)
        for idx, (node, a) in enumerate(self.counted):
            if idx in self.absorbed or idx in self.fused:
                continue
            dom = node.domain or ""
            if dom not in _STD_DOMAINS:
                continue
            if node.op_type == "MatMul":
                self._plan_linear(idx, node)
            elif node.op_type in ("Sigmoid", "HardSigmoid"):
                self._plan_gated(idx, node, a)
            elif node.op_type == "Erf":
                self._plan_erf_gelu(idx, node)
            elif node.op_type == "InstanceNormalization":
                self._plan_group_norm(idx, node)

    def _single_use(self, name: str) -> bool:
        return len(self.cons.get(name, ())) == 1 and name not in self.graph_outputs

    def _is_scalar_const(self, name: str) -> bool:
        if not name or name in self.data:
            return False
        shp = self._shape(name)
        return shp is not None and _known(shp) and _numel(shp) == 1

    def _scoreish(self, name: str) -> bool:
        """Could ``name`` be the attention scores (a product of the q @ k^T chain)?"""
        p = self.prod.get(name)
        return p is not None and self._node(p).op_type in ("MatMul", "Mul", "Div", "Add", "Where", "Cast")

    def _node(self, idx):
        return self.counted[idx][0]

    def _free(self, idx) -> bool:
        return idx not in self.absorbed and idx not in self.fused

    def _strip_scalar_scaling(self, start: str, chain: list) -> tuple[str, list]:
        """Walk back through single-use ``x * c`` / ``x / c`` (scalar c) producers.

        Returns the unscaled tensor and the producer nodes passed, so the
        attention fusion can absorb the ``1/sqrt(d)`` scaling exporters emit.
        """
        cur, passed = start, []
        while True:
            p = self.prod.get(cur)
            if p is None or not self._single_use(cur) or not self._free(p) or p in chain or p in passed:
                break
            pn = self._node(p)
            if pn.op_type in ("Mul", "Div") and (pn.domain or "") in _STD_DOMAINS:
                x, cst = pn.input[0], pn.input[1]
                if pn.op_type == "Mul" and x not in self.data:
                    x, cst = cst, x
                if x in self.data and self._is_scalar_const(cst):
                    passed.append(p)
                    cur = x
                    continue
            break
        return cur, passed

    def _plan_attention(self, s_idx: int, s, a: dict) -> None:
        sm_in = self._shape(s.input[0])
        axis = a.get("axis", -1 if self.opset >= 13 else 1)
        if not _known(sm_in) or len(sm_in) < 2 or axis % len(sm_in) != len(sm_in) - 1:
            return
        chain = [s_idx]
        extra: list[str] = []
        t = s.input[0]
        m1 = None
        while True:
            p = self.prod.get(t)
            if p is None or not self._single_use(t) or not self._free(p):
                return
            pn = self._node(p)
            if (pn.domain or "") not in _STD_DOMAINS:
                return
            op = pn.op_type
            if op == "MatMul":
                m1 = p
                break
            if op in ("Mul", "Div"):
                x, c = pn.input[0], pn.input[1]
                if op == "Mul" and x not in self.data:
                    x, c = c, x
                if x not in self.data or not self._is_scalar_const(c):
                    return
                t = x
            elif op in ("Add", "Where"):
                cands = [pn.input[0], pn.input[1]] if op == "Add" else [pn.input[1], pn.input[2]]
                scores = [x for x in cands if self._scoreish(x)]
                if not scores:
                    return
                t = scores[-1] if op == "Where" else scores[0]
                for m in pn.input:
                    if m == t:
                        continue
                    pm = self.prod.get(m)
                    if op == "Add" and pm is not None and self._single_use(m) and self._free(pm):
                        mn = self._node(pm)  # a boolean mask made additive: Where(mask, 0, -inf)
                        if mn.op_type == "Where" and all(self._is_scalar_const(c) for c in mn.input[1:]):
                            chain.append(pm)
                            m = mn.input[0]
                    extra.append(m)
            elif op in ("Cast", "Identity"):
                t = pn.input[0]
            else:
                return
            chain.append(p)
        mm1 = self._node(m1)
        chain.append(m1)
        # downstream: Softmax -> [Cast/Dropout/Identity/NaN guard] -> MatMul(., v)
        u = s.output[0]
        while True:
            guard = self._nan_guard(u)
            if guard is not None:  # Where(IsNaN(p), 0, p): rows that were fully masked
                chain.extend(guard[:2])
                u = guard[2]
                continue
            if not self._single_use(u):
                return
            c = self.cons[u][0]
            cn = self._node(c)
            if not self._free(c) or (cn.domain or "") not in _STD_DOMAINS:
                return
            if cn.op_type in ("Cast", "Dropout", "Identity"):
                chain.append(c)
                u = cn.output[0]
                continue
            if cn.op_type == "MatMul" and cn.input[0] == u:
                m2 = c
                break
            return
        mm2 = self._node(m2)
        q1, kt, v = mm1.input[0], mm1.input[1], mm2.input[1]
        sq, sk, sv = self._shape(q1), self._shape(kt), self._shape(v)
        if not (_known(sq) and _known(sk) and _known(sv)) or min(len(sq), len(sk), len(sv)) < 2:
            return
        e, slen = sk[-2], sk[-1]
        if sq[-1] != e or sv[-2] != slen:
            return
        # q side: fold scalar scaling
        q0, muls = self._strip_scalar_scaling(q1, chain)
        chain.extend(muls)
        # k side: fold scalar scaling, then the transposes/reshapes that built k^T
        k0, muls = self._strip_scalar_scaling(kt, chain)
        chain.extend(muls)
        target = (*sk[:-2], slen, e)
        path, cur, found = [], k0, None
        for _ in range(8):
            if self._shape(cur) == target and cur != k0:
                found = cur
                break
            p = self.prod.get(cur)
            if p is None or not self._single_use(cur) or not self._free(p) or p in chain:
                break
            pn = self._node(p)
            if pn.op_type not in ("Transpose", "Reshape") or (pn.domain or "") not in _STD_DOMAINS:
                break
            path.append(p)
            cur = pn.input[0]
        else:
            if self._shape(cur) == target:
                found = cur
        if found is not None and self._shape(found) == target:
            chain.extend(path)
            k_in, k_view = found, None
        else:
            k_in, k_view = k0, target
        self.absorbed.update(i for i in chain if i != m2)
        self.fused[m2] = ("attention", q0, k_in, k_view, v, [x for x in extra if x])

    def _nan_guard(self, p: str) -> tuple[int, int, str] | None:
        """``(isnan, where, out)`` if ``p`` is only read by ``Where(IsNaN(p), c, p)``."""
        users = self.cons.get(p, [])
        if len(users) != 2 or p in self.graph_outputs:
            return None
        ops = {self._node(i).op_type: i for i in users}
        if set(ops) != {"IsNaN", "Where"} or not all(self._free(i) for i in users):
            return None
        isn, wh = ops["IsNaN"], ops["Where"]
        flag, wn = self._node(isn).output[0], self._node(wh)
        if not self._single_use(flag) or list(wn.input) != [flag, wn.input[1], p]:
            return None
        if not self._is_scalar_const(wn.input[1]):
            return None
        return isn, wh, wn.output[0]

    def _plan_linear(self, idx: int, node) -> None:
        w = node.input[1]
        if w not in self.weights:
            return
        out = node.output[0]
        if not self._single_use(out):
            return
        c = self.cons[out][0]
        cn = self._node(c)
        if cn.op_type != "Add" or (cn.domain or "") not in _STD_DOMAINS or not self._free(c):
            return
        bias = cn.input[1] if cn.input[0] == out else cn.input[0]
        so, sb = self._shape(out), self._shape(bias)
        if bias not in self.weights or not _known(so) or not _known(sb) or not so:
            return
        if _numel(sb) != so[-1] or (sb and sb[-1] != so[-1]):
            return
        self.absorbed.add(idx)
        self.fused[c] = ("linear", node, cn)

    def _plan_gated(self, idx: int, node, a: dict) -> None:
        x, out = node.input[0], node.output[0]
        if node.op_type == "HardSigmoid":
            if abs(a.get("alpha", 0.2) - 1 / 6) > 1e-4 or abs(a.get("beta", 0.5) - 0.5) > 1e-4:
                return
        if not self._single_use(out):
            return
        c = self.cons[out][0]
        cn = self._node(c)
        if cn.op_type != "Mul" or (cn.domain or "") not in _STD_DOMAINS or not self._free(c):
            return
        if set(cn.input) != {x, out}:
            return
        self.absorbed.add(idx)
        self.fused[c] = ("gated", node, cn)

    def _scaled(self, name: str, ops=("Mul", "Div")) -> tuple[int, str] | None:
        """``(producer index, x)`` if ``name`` is ``x * c`` or ``x / c`` for a scalar constant ``c``."""
        p = self.prod.get(name)
        if p is None or not self._free(p):
            return None
        pn = self._node(p)
        if pn.op_type not in ops or (pn.domain or "") not in _STD_DOMAINS or len(pn.input) != 2:
            return None
        x, c = pn.input[0], pn.input[1]
        if pn.op_type == "Mul" and x not in self.data:
            x, c = c, x
        if x in self.data and self._is_scalar_const(c):
            return p, x
        return None

    def _plan_group_norm(self, idx: int, node) -> None:
        """GroupNorm as exporters write it: Reshape(N, G, -1) -> InstanceNormalization(ones, zeros)
        -> Reshape back -> [Mul(gamma) -> Add(beta)]; one ``group_norm`` as in PyTorch."""
        r_in = node.input[0]
        p = self.prod.get(r_in)
        if p is None or not self._single_use(r_in) or not self._free(p):
            return
        rn = self._node(p)
        if rn.op_type != "Reshape" or len(node.input) < 3 or node.input[1] in self.weights:
            return
        x = rn.input[0]
        sx, sr = self._shape(x), self._shape(r_in)
        if not (_known(sx) and _known(sr)) or len(sx) < 3 or len(sr) < 3 or sr[0] != sx[0] or sx[1] % sr[1]:
            return
        groups = sr[1]
        out = node.output[0]
        if not self._single_use(out):
            return
        r2 = self.cons[out][0]
        r2n = self._node(r2)
        if r2n.op_type != "Reshape" or not self._free(r2) or self._shape(r2n.output[0]) != sx:
            return
        absorbed, last, extra = [p, idx], r2, []
        for op in ("Mul", "Add"):
            o = self._node(last).output[0]
            if not self._single_use(o):
                break
            c = self.cons[o][0]
            cn = self._node(c)
            if cn.op_type != op or not self._free(c):
                break
            w = cn.input[1] if cn.input[0] == o else cn.input[0]
            sw = self._shape(w)
            if w not in self.weights or not _known(sw) or _numel(sw) != sx[1]:
                break
            absorbed.append(last)
            last = c
            extra.append(w)
        self.absorbed.update(absorbed)
        self.fused[last] = ("group_norm", x, extra, groups)

    def _plan_erf_gelu(self, idx: int, node) -> None:
        """``0.5 * x * (1 + erf(x / sqrt(2)))`` (how older exporters write GELU) -> one ``gelu``."""
        d = node.input[0]
        sc = self._scaled(d)
        if sc is None or not self._single_use(d):
            return
        p_div, x = sc
        e_out = node.output[0]
        if not self._single_use(e_out):
            return
        add = self.cons[e_out][0]
        an = self._node(add)
        if an.op_type != "Add" or not self._free(add):
            return
        other = an.input[1] if an.input[0] == e_out else an.input[0]
        if not self._is_scalar_const(other) or not self._single_use(an.output[0]):
            return
        m1 = self.cons[an.output[0]][0]
        mn = self._node(m1)
        if mn.op_type != "Mul" or not self._free(m1):
            return
        y = mn.input[1] if mn.input[0] == an.output[0] else mn.input[0]
        absorbed = [p_div, idx, add]
        final = m1
        if y == x:  # (x * (1 + erf)) * 0.5
            out = mn.output[0]
            if self._single_use(out):
                m2 = self.cons[out][0]
                m2n = self._node(m2)
                c = m2n.input[1] if m2n.input[0] == out else m2n.input[0]
                if m2n.op_type == "Mul" and self._free(m2) and self._is_scalar_const(c):
                    absorbed.append(m1)
                    final = m2
        else:  # (x * 0.5) * (1 + erf)
            sy = self._scaled(y, ("Mul",))
            if sy is None or sy[1] != x or not self._single_use(y):
                return
            absorbed.append(sy[0])
        self.absorbed.update(absorbed)
        self.fused[final] = ("gelu", x, self._node(final))

    # ------------------------------------------------------------- emission
    def _key(self, name: str) -> Hashable | None:
        if not name:
            return None
        k = self.resolve.get(name)
        if k is None or not self.b.has(k):
            return None
        return k

    def _operands(self, node, positions: Iterable[int] | None = None) -> list[Hashable]:
        skip = _ATTR_INPUTS.get(node.op_type, frozenset())
        names = list(node.input)
        pos = list(positions) if positions is not None else [i for i in range(len(names)) if i not in skip]
        keys = []
        for i in pos:
            if i >= len(names):
                continue
            name = names[i]
            k = self._key(name)
            if k is None:
                continue
            if name not in self.data and name not in self.weights:
                shp = self._shape(name)
                if shp is not None and _known(shp) and _numel(shp) <= 1:
                    continue  # a scalar constant: an attribute in PyTorch
            keys.append(k)
        for name in _subgraph_refs(node):
            k = self._key(name)
            if k is not None and k not in keys:
                keys.append(k)
        return keys

    def _outputs(self, node, kind: str) -> list[tuple[Hashable, tuple[int, ...], str]]:
        outs = []
        for j, o in enumerate(node.output):
            if not o or (j > 0 and o not in self.used):
                continue
            shp, et = self.types.get(o, (None, None))
            if not _known(shp):
                if kind == "other":  # unsupported op anyway: unknown dims count as 1
                    shp = tuple(d if isinstance(d, int) else 1 for d in shp or ())
                    warnings.warn(
                        f"onnx: the output shape of node {node.name or o!r} ({node.op_type}) is unknown; "
                        f"assuming {shp}",
                        UserWarning,
                        stacklevel=4,
                    )
                else:
                    root = self.unknown_root.get(o, node)
                    cause = ""
                    if root is not node:
                        cause = (f"; it depends on node {root.name or root.output[0]!r} ({self._opname(root)}), "
                                 "whose output shape could not be inferred")
                    raise ModelLoadError(
                        f"could not infer the shape of output {o!r} of node {node.name or o!r} "
                        f"({self._opname(node)}): {self._fmt(shp) if shp is not None else 'unknown'}{cause}. "
                        "Shapes that depend on data values (NonZero, loops...) cannot be featurized; give "
                        "concrete input shapes or simplify the model (e.g. with onnxsim)"
                    )
            if et is None:
                first = next((i for i in node.input if i and self._etype(i)), None)
                et = self._etype(first) if first else 1
            outs.append((o, tuple(int(d) for d in shp), dtype_name(et)))
        return outs

    @staticmethod
    def _opname(node) -> str:
        dom = node.domain or ""
        return f"onnx.{node.op_type}" if dom in _STD_DOMAINS else f"{dom}.{node.op_type}"

    def _supported(self, node) -> bool:
        op, dom = node.op_type, node.domain or ""
        if dom in _STD_DOMAINS and op in _CONTROL_FLOW:
            return False
        if dom in _STD_DOMAINS and op in _SEQ_OPS:
            return True
        return (dom in _STD_DOMAINS and op in _KIND and op not in _MS_ONLY) or (dom == _MS and op in _MS_OPS)

    def _check_shapes(self, node) -> None:
        """After inference: guess the outputs of unsupported ops, remember where unknown shapes start."""
        if node.op_type in _SEQ_OPS:
            return
        for j, o in enumerate(node.output):
            if not o or (j > 0 and o not in self.used) or _known(self._shape(o)):
                continue
            roots = [self.unknown_root[i] for i in node.input if i in self.unknown_root]
            if roots:
                self.unknown_root[o] = roots[0]
                continue
            first = next((i for i in node.input if i in self.data and _known(self._shape(i))), None)
            if not self._supported(node) and self._shape(o) is None and first is not None:
                shp = self._shape(first)
                warnings.warn(
                    f"onnx: the output shape of node {node.name or o!r} ({self._opname(node)}) is unknown; "
                    f"assuming the shape of its input, {shp}",
                    UserWarning,
                    stacklevel=4,
                )
                self.types[o] = (shp, self._etype(o) or self._etype(first))
                continue
            self.unknown_root[o] = node

    def _view(self, key: Hashable, shape: Sequence[int]) -> Hashable:
        """A key for the same tensor seen with another shape (attention's (..., L, E) operands)."""
        t = self.b._tensors[key]
        vkey = ("view", key, tuple(int(d) for d in shape))
        self.b._tensors[vkey] = _Tensor(tuple(int(d) for d in shape), t.dtype, t.producer, t.is_param)
        return vkey

    def _scope(self, node) -> str:
        for p in node.metadata_props:
            if p.key == "pkg.torch.onnx.name_scopes":
                try:
                    scopes = ast.literal_eval(p.value)
                    if len(scopes) >= 2:
                        return str(scopes[-2])
                except (ValueError, SyntaxError):
                    pass
        return node.name

    def emit(self) -> None:
        for idx, (node, a) in enumerate(self.counted):
            if idx in self.absorbed:
                continue
            if idx in self.fused:
                self._emit_fused(idx, self.fused[idx])
            else:
                self._emit(node, a)

    def _emit_fused(self, idx: int, spec: tuple) -> None:
        b = self.b
        node = self._node(idx)
        scope = self._scope(node)
        if spec[0] == "attention":
            _, q, k, k_view, v, extra = spec
            qk, kk, vk = self._key(q), self._key(k), self._key(v)
            if qk is None or kk is None or vk is None:
                return self._emit(node, self.counted[idx][1])
            if k_view is not None:
                kk = self._view(kk, k_view)
            ins = [qk, kk, vk] + [x for x in (self._key(e) for e in extra) if x is not None]
            outs = self._outputs(node, "attention")
            b.add_node("onnx.MatMul+Softmax+MatMul", "attention", ins, outs, {}, scope=scope)
        elif spec[0] == "linear":
            _, mm, add = spec
            ins = self._operands(mm) + [k for k in self._operands(add) if k != self._key(mm.output[0])]
            sa = self._shape(mm.input[0])
            k = float(sa[-1]) if sa else 1.0
            b.add_node("onnx.MatMul+Add", "matmul", ins, self._outputs(add, "matmul"), {"k": k}, scope=scope)
        elif spec[0] == "group_norm":
            _, x, ws, groups = spec
            ins = [k for k in [self._key(x)] + [self._key(w) for w in ws] if k is not None]
            b.add_node("onnx.InstanceNormalization(GroupNorm)", "group_norm", ins,
                       self._outputs(node, "group_norm"), {"groups": groups}, scope=scope)
        elif spec[0] == "gelu":
            _, x, last = spec
            xk = self._key(x)
            b.add_node("onnx.Erf(GELU)", "gelu", [xk] if xk is not None else [], self._outputs(last, "gelu"),
                       {"approximate": "none"}, scope=scope)
        elif spec[0] == "gated":
            _, gate, mul = spec
            kind = "silu" if gate.op_type == "Sigmoid" else "hardswish"
            ins = self._operands(gate)
            b.add_node(f"onnx.{gate.op_type}+Mul", kind, ins, self._outputs(mul, kind), {}, scope=scope)

    def _emit(self, node, a: dict) -> None:
        b = self.b
        op, dom = node.op_type, node.domain or ""
        if op in _SEQ_OPS and dom in _STD_DOMAINS and self._emit_seq(node, a):
            return
        opname = self._opname(node)
        scope = self._scope(node)
        if not self._supported(node) or op in _SEQ_OPS:
            b.warn_unsupported(opname)
            b.add_node(opname, "other", self._operands(node), self._outputs(node, "other"), {}, scope=scope)
            return
        kind = _KIND[op]
        view = op in _VIEW
        attrs: dict[str, Any] = {}
        in_keys: list[Hashable] | None = None
        ins = list(node.input)

        def shp(i):
            return self._shape(ins[i]) if i < len(ins) and ins[i] else None

        if kind in ("conv", "conv_transpose"):
            pos = _OPERANDS.get(op, (0, 1, 2))
            in_keys = self._operands(node, pos)
            x, w = shp(pos[0]), shp(pos[1])
            r = len(x) - 2 if x else (len(w) - 2 if w else 2)
            attrs["stride"] = list(a.get("strides") or [1] * r)
            attrs["padding"] = self._padding(a, x, w, r, kind)
            attrs["dilation"] = list(a.get("dilations") or [1] * r)
            attrs["groups"] = int(a.get("group", 1) or 1)
            if w:
                attrs["kernel"] = list(w[2:])
        elif kind == "matmul":
            pos = _OPERANDS.get(op)
            in_keys = self._operands(node, pos)
            attrs["k"] = self._matmul_k(node, a)
        elif kind == "attention":
            return self._emit_attention(node, a, opname, scope)
        elif kind == "batch_norm":
            tm = a.get("training_mode")
            attrs["training"] = bool(tm) if tm is not None else self.training
        elif kind in ("max_pool", "avg_pool"):
            x = shp(0)
            r = len(x) - 2 if x else 2
            if op.startswith("Global"):
                attrs["output_size"] = [1] * r
            else:
                k = list(a.get("kernel_shape") or [])
                if k:
                    attrs["kernel"] = k
                attrs["stride"] = list(a.get("strides") or [1] * len(k))
                p = self._padding(a, x, None, len(k), kind)
                if p:
                    attrs["padding"] = p
        elif kind == "reduction":
            if op.startswith("Reduce"):
                axes = self._axes(node, a)
            elif op == "CumSum" and len(ins) > 1 and ins[1] in self.vals:
                axes = [int(self.vals[ins[1]].reshape(-1)[0])]
            else:  # ArgMax/ArgMin/TopK/LpNormalization
                axes = [int(a.get("axis", -1 if op in ("TopK", "LpNormalization") else 0))]
            x = shp(0)
            if op == "ReduceMean" and x and spatial_mean_is_pool(len(x), axes):
                kind = "avg_pool"
                attrs["output_size"] = [1] * (len(x) - 2)
            elif axes is not None:
                attrs["axes"] = axes
        elif kind == "softmax":
            attrs["axes"] = [int(a.get("axis", -1 if self.opset >= 13 else 1))]
        elif kind == "dropout":
            train = self.training
            if len(ins) > 2 and ins[2] in self.vals:
                train = bool(self.vals[ins[2]].reshape(-1)[0])
            elif "is_test" in a:
                train = not a["is_test"]
            view = not train
            if train:
                kind = "elementwise"
        elif kind == "copy" and op in ("Cast", "CastLike"):
            ie = self._etype(ins[0])
            oe = self._etype(node.output[0])
            if ie is not None and ie == oe:
                view = True
            else:
                attrs["cast"] = True
        elif op == "Gather":
            data_in, idx_in = ins[0], ins[1] if len(ins) > 1 else ""
            if data_in in self.weights:
                kind = "embedding"
            elif idx_in not in self.data and shp(1) == ():
                kind = "slice"
            attrs["axis"] = int(a.get("axis", 0))
        elif kind == "pad":
            if len(ins) > 1 and ins[1] in self.vals:
                pads = [int(t) for t in self.vals[ins[1]].reshape(-1)]
                attrs["padding"] = pads
            elif "pads" in a:
                attrs["padding"] = list(a["pads"])
            attrs["mode"] = a.get("mode", "constant")
        elif kind == "resize":
            attrs["mode"] = a.get("mode", "nearest")
        elif kind == "transpose" and "perm" in a:
            attrs["perm"] = list(a["perm"])
        elif kind == "concat":
            attrs["axis"] = int(a.get("axis", 0))
        if in_keys is None:
            in_keys = self._operands(node)
        b.add_node(opname, kind, in_keys, self._outputs(node, kind), attrs, is_view=view, scope=scope)

    def _emit_seq(self, node, a: dict) -> bool:
        """Sequence ops; False if the element shapes are unknown (then counted as ``other``)."""
        b = self.b
        op, ins, out = node.op_type, list(node.input), node.output[0]
        if op == "SplitToSequence":
            shapes, xk = self.seq_shapes.get(out), self._key(ins[0])
            if shapes is None or xk is None:
                return False
            dt = dtype_name(self.seq_etype.get(out))
            outs = [((out, i), s_, dt) for i, s_ in enumerate(shapes)]
            b.add_node("onnx.SplitToSequence", "slice", [xk], outs, {"axis": int(a.get("axis", 0))},
                       scope=self._scope(node))
            self.seq_keys[out] = [k for k, _, _ in outs]
            return True
        if op == "SequenceConstruct":
            keys = [self._key(i) for i in ins]
            if any(k is None for k in keys):
                return False
            self.seq_keys[out] = keys  # type: ignore[assignment]
            return True
        if op == "SequenceAt":
            keys = self.seq_keys.get(ins[0])
            pos = self.vals.get(ins[1]) if len(ins) > 1 else None
            if keys is None or pos is None or not -len(keys) <= int(pos) < len(keys):
                return False
            b.alias(out, keys[int(pos)])
            return True
        if op == "ConcatFromSequence":
            keys = self.seq_keys.get(ins[0])
            if keys is None:
                return False
            b.add_node("onnx.ConcatFromSequence", "concat", keys, self._outputs(node, "concat"),
                       {"axis": int(a.get("axis", 0))}, scope=self._scope(node))
            return True
        return False

    def _padding(self, a, x, w, r, kind) -> list[int]:
        ap = a.get("auto_pad", "NOTSET")
        if ap == "VALID":
            return [0] * r
        if ap in ("SAME_UPPER", "SAME_LOWER") and x and len(x) == r + 2:
            k = list(w[2:]) if w else list(a.get("kernel_shape") or [1] * r)
            s = list(a.get("strides") or [1] * r)
            d = list(a.get("dilations") or [1] * r)
            begin, end = [], []
            for i in range(r):
                if kind == "conv_transpose":
                    total = max(0, (k[i] - 1) * d[i] + 1 - s[i])
                else:
                    out = -(-x[2 + i] // s[i])
                    total = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - x[2 + i])
                lo = total // 2 if ap == "SAME_UPPER" else total - total // 2
                begin.append(lo)
                end.append(total - lo)
            return _sym_pads(begin + end, r)
        return _sym_pads(a.get("pads") or [0] * (2 * r), r)

    def _axes(self, node, a) -> list[int] | None:
        if "axes" in a:
            return [int(t) for t in a["axes"]]
        if len(node.input) > 1 and node.input[1]:
            v = self.vals.get(node.input[1])
            if v is not None:
                return [int(t) for t in v.reshape(-1)]
            return None
        x = self._shape(node.input[0])
        if a.get("noop_with_empty_axes"):
            return []
        return list(range(len(x))) if x is not None else None

    def _matmul_k(self, node, a) -> float:
        op = node.op_type
        ins = list(node.input)
        if op == "Einsum":
            shapes = [self._shape(i) or () for i in ins]
            out = self._shape(node.output[0])
            return einsum_contraction(a.get("equation", ""), shapes, _numel(out) if _known(out) else 0)
        if op == "MatMulNBits":
            return float(a.get("K", 1))
        pos = _OPERANDS.get(op, (0, 1))
        sa = self._shape(ins[pos[0]]) or ()
        if not sa:
            return 1.0
        if op in ("Gemm", "FusedGemm"):
            return float(sa[0] if a.get("transA") else sa[-1])
        if op == "FusedMatMul" and a.get("transA") and len(sa) >= 2:
            return float(sa[-2])
        return float(sa[-1])

    def _emit_attention(self, node, a, opname, scope) -> None:
        """Fused attention ops; operands are presented as (..., L, E) q, k, v."""
        b = self.b
        ins = list(node.input)
        dom = node.domain or ""
        outs = self._outputs(node, "attention")

        def key(i):
            return self._key(ins[i]) if i < len(ins) and ins[i] else None

        def shape(i):
            return self._shape(ins[i]) if i < len(ins) and ins[i] else None

        rest: list[Hashable] = []
        if node.op_type == "Attention" and dom == _MS:
            x, w = shape(0), shape(1)
            n = int(a.get("num_heads", 1))
            hs = a.get("qkv_hidden_sizes") or ([w[1] // 3] * 3 if w else None)
            if not (_known(x) and hs):
                return self._other(node, opname, scope)
            bsz, s = x[0], x[1]
            proj = (*x[:-1], sum(hs))
            pkey = ("proj", ins[0], node.output[0])
            et = self._etype(ins[0]) or 1
            b.add_node(f"{opname}.qkv_proj", "matmul", [k for k in (key(0), key(1), key(2)) if k is not None],
                       [(pkey, proj, dtype_name(et))], {"k": float(x[-1])}, scope=scope)
            past = shape(4)
            total = s + (past[3] if _known(past) and len(past) == 5 else 0)
            q = self._view(pkey, (bsz, n, s, hs[0] // n))
            k = self._view(pkey, (bsz, n, total, hs[1] // n))
            v = self._view(pkey, (bsz, n, total, hs[2] // n))
            rest = [k_ for k_ in (key(3), key(4), key(5)) if k_ is not None]
        elif node.op_type == "Attention":  # ai.onnx opset 23
            sq, sk, sv = shape(0), shape(1), shape(2)
            if not (_known(sq) and _known(sk) and _known(sv)):
                return self._other(node, opname, scope)
            if len(sq) == 4:
                hq, hkv = sq[1], sk[1]
                bsz, length, e = sq[0], sq[2], sq[3]
                slen, ev = sk[2], sv[3]
            else:
                hq = int(a.get("q_num_heads", 1))
                hkv = int(a.get("kv_num_heads", hq))
                bsz, length, e = sq[0], sq[1], sq[2] // hq
                slen, ev = sk[1], sv[2] // hkv
            past = shape(4)
            slen += past[2] if _known(past) and len(past) == 4 else 0
            q = self._view(key(0), (bsz, hq, length, e))
            k = self._view(key(1), (bsz, hq, slen, e))
            v = self._view(key(2), (bsz, hq, slen, ev))
            rest = [k_ for k_ in (key(3), key(4), key(5)) if k_ is not None]
        else:
            n = int(a.get("num_heads", 1))
            sq = shape(0)
            if not _known(sq):
                return self._other(node, opname, scope)
            bsz, length = sq[0], sq[1]
            sk, sv = shape(1), shape(2)
            if node.op_type == "GroupQueryAttention":
                nkv = int(a.get("kv_num_heads", n))
                if sk is None:  # packed qkv
                    h = sq[2] // (n + 2 * nkv)
                    slen = length
                    qk_ = kk_ = vk_ = key(0)
                else:
                    h = sq[2] // n
                    slen = sk[1]
                    qk_, kk_, vk_ = key(0), key(1), key(2)
                past = shape(3)
                slen += past[2] if _known(past) and len(past) == 4 else 0
                q = self._view(qk_, (bsz, n, length, h))
                k = self._view(kk_, (bsz, n, slen, h))
                v = self._view(vk_, (bsz, n, slen, h))
                rest = [k_ for k_ in (key(3), key(4)) if k_ is not None]
            else:  # MultiHeadAttention
                if len(sq) == 5:  # packed qkv (B, L, N, 3, H)
                    h = sq[4]
                    q = self._view(key(0), (bsz, n, length, h))
                    k = self._view(key(0), (bsz, n, length, h))
                    v = self._view(key(0), (bsz, n, length, h))
                else:
                    h = sq[2] // n
                    q = self._view(key(0), (bsz, n, length, h))
                    if _known(sk) and len(sk) == 5:  # packed kv (B, S, N, 2, H)
                        k = self._view(key(1), (bsz, n, sk[1], sk[4]))
                        v = self._view(key(1), (bsz, n, sk[1], sk[4]))
                    elif _known(sk) and _known(sv):
                        slen = sk[2] if len(sk) == 4 else sk[1]
                        hv = sv[3] if len(sv) == 4 else sv[2] // n
                        past = shape(6)
                        slen += past[2] if _known(past) and len(past) == 4 and len(sk) == 3 else 0
                        k = self._view(key(1), (bsz, n, slen, h))
                        v = self._view(key(2), (bsz, n, slen, hv))
                    else:
                        return self._other(node, opname, scope)
                rest = [k_ for k_ in (key(3), key(4), key(5), key(6), key(7)) if k_ is not None]
        b.add_node(opname, "attention", [q, k, v] + rest, outs, {}, scope=scope)

    def _other(self, node, opname, scope) -> None:
        self.b.warn_unsupported(opname)
        self.b.add_node(opname, "other", self._operands(node), self._outputs(node, "other"), {}, scope=scope)

    # --------------------------------------------------------------- build
    def graph_dtype(self, fixed) -> str:
        for vi in self.data_inputs:
            dt = dtype_name(vi.type.tensor_type.elem_type)
            if _is_float(dt):
                return dt
        for name in self.inits:
            et = self.types.get(name, (None, None))[1]
            if et and _is_float(dtype_name(et)):
                return dtype_name(et)
        return "fp32"


# ------------------------------------------------------------------------ api
def from_onnx(
    model,
    *,
    batch: int | None = None,
    input_shape=None,
    input_shapes: dict[str, tuple] | None = None,
    name: str | None = None,
    mode: str = "inference",
):
    """Featurize an ONNX model into a :class:`~costmodel.CostGraph`.

    Args:
        model: path to an ``.onnx`` file, or an ``onnx.ModelProto``.  Weights
            are never read (external data files may be missing).
        batch: value of the first (batch) dimension of inputs whose first
            dimension is dynamic.
        input_shape: for a single-input model, the input shape without the
            batch dimension (``(3, 224, 224)`` or ``"3,224,224"``); fills its
            dynamic dimensions.
        input_shapes: ``{input name: full shape incl. batch}`` for models with
            several inputs.
        name: graph name (default: the file's stem or the graph's name).
        mode: ``"inference"`` or ``"training"`` (batch-norm / dropout
            semantics when the graph does not say).

    Raises:
        ModelLoadError: missing, unreadable, truncated or non-ONNX file.
        DynamicShapeError: an input dimension is dynamic and no value was given.
    """
    if mode not in ("inference", "training"):
        raise InvalidInputError(f"mode must be 'inference' or 'training', got {mode!r}")
    if batch is not None:
        batch = check_batch(batch)
    if input_shape is not None:
        input_shape = parse_shape(input_shape)
    if input_shapes is not None and not isinstance(input_shapes, dict):
        raise InvalidInputError(
            f"input_shapes must be a dict of input name -> shape, got {type(input_shapes).__name__}"
        )
    proto, default_name = _load(model)
    fe = _OnnxFrontend(proto, name or default_name, mode)
    fe._classify()
    fixed = fe._fix_shapes(batch, input_shape, input_shapes)
    fe._infer(fixed)
    return _featurize(fe, fixed, mode, batch)


def _featurize(fe: "_OnnxFrontend", fixed: dict[str, tuple[int, ...]], mode: str, batch: int | None = None):
    """Walk, fuse and emit a typed frontend; the CostGraph with its metadata."""
    fe.walk(fixed)
    fe._plan()
    fe.emit()
    first = next((fixed[vi.name] for vi in fe.data_inputs if len(fixed[vi.name]) >= 1), None)
    meta = {
        "batch": int(first[0]) if first else (batch or 1),
        "input_shape": list(first[1:]) if first else None,
        "dtype": fe.graph_dtype(fixed),
        "mode": mode,
        "opset": fe.opset,
    }
    if fe.proto.producer_name:
        meta["producer"] = f"{fe.proto.producer_name} {fe.proto.producer_version}".strip()
    return fe.b.build(**meta)


def from_typed_proto(proto, *, name: str, mode: str = "inference"):
    """Featurize a proto in which every value is declared with a static type (what the Relax
    frontend writes): types come from the declarations, ONNX shape inference is skipped."""
    from onnx import numpy_helper

    fe = _OnnxFrontend(proto, name, mode)
    fe._classify()
    fixed = {vi.name: tuple(_dims(vi)) for vi in fe.data_inputs}
    g = proto.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type"):
            fe.types[vi.name] = (tuple(_dims(vi)), vi.type.tensor_type.elem_type or None)
    for n in g.node:  # scalar / shape constants: their values drive attribute-like inputs
        if n.op_type == "Constant":
            fe.vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return _featurize(fe, fixed, mode)
