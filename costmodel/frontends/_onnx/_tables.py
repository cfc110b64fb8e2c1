"""ONNX frontend tables: the op vocabulary by (domain, op type), attribute reading, dtypes and
shape helpers shared by the other modules of the frontend."""

from __future__ import annotations

import functools
import math
from typing import Sequence

from ..._errors import ModelLoadError
from .._common import broadcast_shape


# ---------------------------------------------------------------- op tables
_STD_DOMAINS = ("", "ai.onnx")
#: kernels the Relax frontend writes for ``call_tir`` (attributes ``kind``, ``flops``, ``macs``...)
_TIR_DOMAIN = "tvm.tir"
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
    "DequantizeLinear": {0}, "QLinearConv": {3, 8}, "QLinearMatMul": {0, 3}, "ConvInteger": {1},
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
_MAX_SEQ = 65_536  # longest sequence (SplitToSequence pieces) whose element shapes are tracked

#: required inputs of the com.microsoft contrib ops the frontend reads (ONNX has no schema for them;
#: ORT registers SimplifiedLayerNormalization in the default domain too)
_MS_MIN_INPUTS: dict[str, int] = {
    "FusedConv": 2, "FusedMatMul": 2, "FusedGemm": 2, "MatMulNBits": 3, "DynamicQuantizeMatMul": 3,
    "MatMulIntegerToFloat": 4, "Attention": 2, "MultiHeadAttention": 1, "GroupQueryAttention": 1,
    "SkipLayerNormalization": 3, "SkipSimplifiedLayerNormalization": 3, "SimplifiedLayerNormalization": 2,
    "GroupNorm": 3, "Gelu": 1, "FastGelu": 1, "BiasGelu": 2, "QuickGelu": 1, "BiasAdd": 3,
}


def _op(node) -> str | None:
    """The name a node has in the frontend's op tables, matched by (domain, op type).

    Standard ops (domain ``""`` or ``"ai.onnx"``) and the known ``com.microsoft`` contrib ops keep
    their op type; anything else (another domain, a contrib-only op in the default domain) is an
    unknown op: ``None``, which no table holds.
    """
    dom = node.domain or ""
    if dom in _STD_DOMAINS:
        return None if node.op_type in _MS_ONLY else node.op_type
    if dom == _MS and node.op_type in _MS_OPS:
        return node.op_type
    return None


@functools.lru_cache(maxsize=None)
def _schema(op_type: str, opset: int):
    """The ONNX schema of a standard op at the model's opset (its latest one if the op is newer than
    that opset), or ``None`` for an op ONNX does not define."""
    from onnx import defs

    for args in ((op_type, opset, ""), (op_type, "")):
        try:
            return defs.get_schema(*args)
        except Exception:  # noqa: BLE001 - SchemaError: not defined (at that opset)
            continue
    return None


def _opname(node) -> str:
    dom = node.domain or ""
    return f"onnx.{node.op_type}" if dom in _STD_DOMAINS else f"{dom}.{node.op_type}"


def _label(node) -> str:
    """How error messages name a node: its name (or first output) and its op."""
    name = node.name or next((o for o in node.output if o), "") or "<unnamed>"
    return f"node {name!r} ({_opname(node)})"


# ------------------------------------------------------------- attributes
#: AttributeProto.AttributeType -> kind name
_ATTR_KIND = {1: "float", 2: "int", 3: "string", 4: "tensor", 5: "graph", 6: "floats", 7: "ints", 8: "strings",
              9: "tensors", 10: "graphs", 11: "sparse_tensor", 12: "sparse_tensors", 13: "type_proto",
              14: "type_protos"}
_KIND_TEXT = {"int": "an int", "ints": "a list of ints", "float": "a float", "floats": "a list of floats",
              "string": "a string", "strings": "a list of strings", "tensor": "a tensor", "graph": "a graph",
              "tensors": "a list of tensors", "graphs": "a list of graphs", "sparse_tensor": "a sparse tensor",
              "sparse_tensors": "a list of sparse tensors", "type_proto": "a type", "type_protos": "a list of types",
              "undefined": "an attribute of undefined type"}


def read_attribute(node, attr, kind: str):
    """The value of attribute ``attr`` of ``node``, which must be of ``kind`` (``int``, ``ints``,
    ``float``, ``floats``, ``string``, ``strings``, ``tensor``...); :class:`ModelLoadError` naming
    the node, the attribute, the expected and the found kind otherwise."""
    found = _ATTR_KIND.get(int(attr.type), "undefined")
    if found != kind:
        raise ModelLoadError(
            f"{_label(node)}: attribute {attr.name!r} must be {_KIND_TEXT.get(kind, kind)}, "
            f"found {_KIND_TEXT.get(found, found)}"
        )
    if kind == "int":
        return int(attr.i)
    if kind == "ints":
        return [int(v) for v in attr.ints]
    if kind == "float":
        return float(attr.f)
    if kind == "floats":
        return [float(v) for v in attr.floats]
    if kind == "string":
        return attr.s.decode("utf-8", "replace")
    if kind == "strings":
        return [v.decode("utf-8", "replace") for v in attr.strings]
    if kind == "tensor":
        return attr.t
    if kind == "sparse_tensor":
        return attr.sparse_tensor
    return None  # graphs and types: checked, never read here


class _Attrs:
    """A node's attributes, each read with the kind it must have (see :func:`read_attribute`)."""

    __slots__ = ("node", "raw")

    def __init__(self, node) -> None:
        self.node = node
        self.raw = {a.name: a for a in node.attribute}

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def get(self, name: str, kind: str, default=None):
        a = self.raw.get(name)
        return default if a is None else read_attribute(self.node, a, kind)

    def _bad(self, name: str, what: str, value) -> ModelLoadError:
        return ModelLoadError(f"{_label(self.node)}: attribute {name!r} must be {what}, found {value!r}")

    def int(self, name: str, default=None, *, minimum: int | None = None):
        v = self.get(name, "int", default)
        if minimum is not None and v is not None and v < minimum:
            raise self._bad(name, f">= {minimum}", v)
        return v

    def ints(self, name: str, default=None, *, minimum: int | None = None, length: int | None = None):
        """A list of ints; ``length`` is checked unless the list is empty (an empty list means the default)."""
        v = self.get(name, "ints", default)
        if v:
            if minimum is not None and any(x < minimum for x in v):
                raise self._bad(name, f"a list of values >= {minimum}", v)
            if length is not None and len(v) != length:
                raise self._bad(name, f"a list of {length} values", v)
        return v

    def float(self, name: str, default=None):
        return self.get(name, "float", default)

    def floats(self, name: str, default=None):
        return self.get(name, "floats", default)

    def str(self, name: str, default=None):
        return self.get(name, "string", default)

    def tensor(self, name: str, default=None):
        return self.get(name, "tensor", default)

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


def _attrs(node) -> _Attrs:
    return _Attrs(node)


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
