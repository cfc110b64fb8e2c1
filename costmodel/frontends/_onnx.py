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
  dimension is missing), then runs ``onnx.shape_inference.infer_shapes``
  (without ONNX's data propagation, which materializes shape tensors of any
  length); shapes it leaves unknown are inferred node by node (with ONNX's
  per-node inference fed with constant-folded shape tensors, and own rules for
  the common ``com.microsoft`` contrib ops).
* Checks the model first (:meth:`_OnnxFrontend._validate`): every known op's
  inputs, outputs and attribute kinds against its schema, one producer per
  value, no cycle, known element types and no tensor beyond what a device can
  hold.  Ops are matched by (domain, op type): an op of an unknown domain is an
  unknown op (``other``), whatever its name.  A malformed model is a
  :class:`~costmodel.ModelLoadError` naming the node, input or attribute; a
  cyclic graph, one without operators that do work, or one with absurd
  dimensions is an :class:`~costmodel.InvalidGraphError`.
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
import functools
import graphlib
import heapq
import math
import warnings
from pathlib import Path
from typing import Any, Hashable, Iterable, Sequence

from .._errors import DynamicShapeError, InvalidGraphError, InvalidInputError, ModelLoadError, suggest
from ..ir import MAX_PARAMS, check_tensor
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


def _check_stored(t, what: str) -> None:
    """A tensor that stores its data in the file must store as much as its dims say (weights that were
    stripped, or live in an external file, store nothing here and are not checked)."""
    from onnx import TensorProto, checker

    if t.data_location == TensorProto.EXTERNAL:
        return
    if not t.raw_data and not any(len(getattr(t, f)) for f in (
            "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")):
        return
    try:
        checker.check_tensor(t)
    except checker.ValidationError as e:
        raise ModelLoadError(f"{what} does not hold the data its shape {tuple(t.dims)} needs: {e}") from None


# ---------------------------------------------------------- constant folding
def _np_dtype(elem_type: int):
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(int(elem_type))


def _fits(shape) -> bool:
    """Whether a folded constant of this shape is small enough to compute (and keep)."""
    return all(int(d) >= 0 for d in shape) and _numel([int(d) for d in shape]) <= _VALUE_LIMIT


def _eval_node(node, a: _Attrs, vals: dict, types: dict, opset: int):
    """Evaluate a node on constant inputs with numpy; ``None`` if unsupported.

    Only results of at most ``_VALUE_LIMIT`` elements are computed: the size of a result is
    checked before numpy allocates it, so a huge shape tensor cannot exhaust memory here.
    """
    import numpy as np

    op = node.op_type
    ins = list(node.input)

    def v(i):
        return vals.get(ins[i]) if i < len(ins) and ins[i] else None

    if op in ("Shape", "Size"):
        shp = types.get(ins[0], (None, None))[0] if ins and ins[0] else None
        if not _known(shp):
            return None
        if op == "Size":
            return [np.array(_numel(shp), dtype=np.int64)]
        r = len(shp)
        start, end = a.int("start", 0), a.int("end", r)
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
    if need is None or len(args) < need or any(x is None for x in args[:need]):
        return None
    x = args[0]
    try:
        if op in ("Where", "Max", "Min", "Add", "Sub", "Mul", "Div", "Mod", "Pow", "Equal", "Less", "Greater",
                  "LessOrEqual", "GreaterOrEqual", "And", "Or"):
            if not _fits(np.broadcast_shapes(*(np.shape(t) for t in args[:need]))):
                return None
        if op == "Identity":
            return [x]
        if op == "Cast":
            return [x.astype(_np_dtype(a.int("to")))]
        if op == "CastLike":
            et = types.get(ins[1], (None, None))[1]
            return [x.astype(_np_dtype(et))] if et else None
        if op in ("Neg", "Abs", "Sqrt", "Floor", "Ceil", "Not", "Reciprocal"):
            f = {"Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Floor": np.floor, "Ceil": np.ceil,
                 "Not": np.logical_not, "Reciprocal": np.reciprocal}[op]
            return [np.asarray(f(x)).astype(x.dtype)]
        if op == "Transpose":
            return [np.transpose(x, a.ints("perm") or None)]
        if op == "Flatten":
            ax = a.int("axis", 1) % max(x.ndim, 1) if x.ndim else 0
            return [x.reshape(_numel(x.shape[:ax]), -1)]
        if op == "ConstantOfShape":
            shape = tuple(int(d) for d in np.asarray(x).reshape(-1))
            if not _fits(shape):
                return None
            fill = a.tensor("value")
            from onnx import numpy_helper

            base = numpy_helper.to_array(fill).reshape(-1)[0] if fill is not None else np.float32(0)
            return [np.full(shape, base, dtype=np.asarray(base).dtype)]
        if op in ("Squeeze", "Unsqueeze"):
            axes = a.ints("axes")
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
            return [np.take(x, args[1].astype(np.int64), axis=a.int("axis", 0))]
        if op == "Reshape":
            shape = [int(t) for t in np.asarray(args[1]).reshape(-1)]
            if not a.int("allowzero", 0):
                shape = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(shape)]
            return [x.reshape(shape)]
        if op == "Expand":
            shp = np.broadcast_shapes(x.shape, tuple(int(t) for t in np.asarray(args[1]).reshape(-1)))
            return [np.broadcast_to(x, shp).copy()] if _fits(shp) else None
        if op == "Tile":
            reps = [int(t) for t in np.asarray(args[1]).reshape(-1)]
            if len(reps) != x.ndim or not _fits([d * r for d, r in zip(x.shape, reps)]):
                return None
            return [np.tile(x, reps)]
        if op == "Range":
            start, limit, delta = (float(np.asarray(t).reshape(-1)[0]) for t in args[:3])
            if delta == 0 or not all(map(math.isfinite, (start, limit, delta))):
                return None
            if max(0, math.ceil((limit - start) / delta)) > _VALUE_LIMIT:
                return None
            return [np.arange(args[0], args[1], args[2]).astype(np.asarray(args[0]).dtype)]
        if op == "Where":
            return [np.where(args[0], args[1], args[2])]
        if op == "Slice":
            if opset < 10:
                starts, ends, axes, steps = a.ints("starts"), a.ints("ends"), a.ints("axes"), None
                if starts is None or ends is None:
                    return None
            else:
                if len(args) < 3 or args[1] is None or args[2] is None:
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
            return [np.concatenate([np.atleast_1d(t) for t in args], axis=a.int("axis", 0))]
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
            axes = a.ints("axes")
            if axes is None and len(args) > 1 and args[1] is not None:
                axes = [int(t) for t in np.asarray(args[1]).reshape(-1)]
            f = np.prod if op == "ReduceProd" else np.sum
            return [np.asarray(f(x, axis=tuple(axes) if axes else None, keepdims=bool(a.int("keepdims", 1))))]
    except ModelLoadError:
        raise
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

    # ---------------------------------------------------------- validation
    def _validate(self) -> None:
        """Check the model at the boundary; the rest of the frontend trusts what is checked here.

        * every node of a known op: its input count, required inputs and outputs, and the kinds of its
          attributes (the ONNX schema at the model's opset for standard ops; the required inputs of
          the contrib ops the frontend reads).  Ops of other domains are unknown ops: nothing is read
          from them;
        * every value has one producer, and the graph is acyclic (``self.order``: the nodes in
          topological order);
        * graph inputs and initializers have known element types, no negative dimension and no
          tensor beyond what a device can hold; all initializers together stay under
          :data:`~costmodel.ir._graph.MAX_PARAMS` elements.
        """
        from onnx import TensorProto

        g = self.g
        if "" not in self.opsets and any((n.domain or "") in _STD_DOMAINS for n in g.node):
            raise ModelLoadError("the model declares no opset version for the default ONNX domain ''")
        for dom, ver in self.opsets.items():
            if ver < 1:
                raise ModelLoadError(f"the model imports opset {ver} of domain {dom or 'ai.onnx'!r}; versions start at 1")
        for n in g.node:
            self._check_node(n)
        defined: dict[str, str] = {}
        for vi in g.input:
            defined.setdefault(vi.name, "graph input")
        for t in list(g.initializer) + [st.values for st in g.sparse_initializer]:
            defined.setdefault(t.name, "initializer")
        producer: dict[str, Any] = {}
        for n in g.node:
            for o in n.output:
                if not o:
                    continue
                if o in producer:
                    raise ModelLoadError(
                        f"value {o!r} is produced by both {_label(producer[o])} and {_label(n)}; every value "
                        "must have exactly one producer"
                    )
                if o in defined:
                    raise ModelLoadError(f"{_label(n)} writes {o!r}, which is already a {defined[o]} of the graph")
                producer[o] = n
        valid = set(TensorProto.DataType.values())
        for vi in g.input:
            if not vi.type.HasField("tensor_type"):
                continue
            tt = vi.type.tensor_type
            if tt.elem_type not in valid:
                raise ModelLoadError(f"graph input {vi.name!r} has unknown element type {tt.elem_type}")
            for k, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value < 0:
                    raise InvalidGraphError(
                        f"graph input {vi.name!r} has a negative dimension {k} ({d.dim_value}): shape "
                        f"{self._fmt(_dims(vi) or [])}"
                    )
        total = 0
        for t in g.initializer:
            if t.data_type not in valid or t.data_type == TensorProto.UNDEFINED:
                raise ModelLoadError(f"initializer {t.name!r} has unknown element type {t.data_type}")
            check_tensor(list(t.dims), dtype_name(t.data_type), f"initializer {t.name!r}")
            _check_stored(t, f"initializer {t.name!r}")
            total += _numel(list(t.dims))
        for st in g.sparse_initializer:
            check_tensor(list(st.dims), dtype_name(st.values.data_type), f"sparse initializer {st.values.name!r}")
            total += _numel(list(st.dims))
        if total > MAX_PARAMS:
            raise InvalidGraphError(
                f"the initializers hold {total:.3g} elements; more than the {MAX_PARAMS:.0e} parameters any device "
                "can hold (an absurd dimension?)"
            )
        self.order = self._toposort(list(g.node))

    def _check_node(self, node) -> None:
        """Inputs, outputs and attribute kinds of one node (see :meth:`_validate`)."""
        from onnx.defs import OpSchema

        op = _op(node)
        if op is None:
            return  # an unknown op: counted as ``other``, nothing is read from it
        ins, outs = list(node.input), list(node.output)
        schema = _schema(node.op_type, self.opset) if (node.domain or "") in _STD_DOMAINS else None
        if schema is None:
            need = _MS_MIN_INPUTS.get(op)
            if need is not None:
                if len(ins) < need or not all(ins[:need]):
                    raise ModelLoadError(
                        f"{_label(node)} has inputs {ins}; it needs at least {need}, and the first {need} "
                        "must not be empty"
                    )
                if not outs or not outs[0]:
                    raise ModelLoadError(f"{_label(node)} has no output")
            return
        single = OpSchema.FormalParameterOption.Single
        lo, hi = schema.min_input, schema.max_input
        if not lo <= len(ins) <= hi:
            takes = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi < 2**20 else f"at least {lo}"
            raise ModelLoadError(
                f"{_label(node)} has {len(ins)} inputs; {node.op_type} (opset {schema.since_version}) takes {takes}"
            )
        for i, fp in enumerate(schema.inputs[: len(ins)]):
            if fp.option == single and not ins[i]:
                raise ModelLoadError(f"{_label(node)}: input {i} ({fp.name}) is required but empty")
        if len(outs) < schema.min_output or len(outs) > schema.max_output:
            raise ModelLoadError(
                f"{_label(node)} has {len(outs)} outputs; {node.op_type} (opset {schema.since_version}) has "
                f"{schema.min_output} to {schema.max_output}"
            )
        for i, fp in enumerate(schema.outputs[: len(outs)]):
            if fp.option == single and not outs[i]:
                raise ModelLoadError(f"{_label(node)}: output {i} ({fp.name}) is required but empty")
        raw = {a.name: a for a in node.attribute}
        if op == "Constant" and "value" in raw and raw["value"].type == raw["value"].TENSOR:
            _check_stored(raw["value"].t, f"the value of {_label(node)}")
        for name, sa in schema.attributes.items():
            at = raw.get(name)
            if at is None:
                if sa.required:
                    raise ModelLoadError(f"{_label(node)}: attribute {name!r} is required")
                continue
            read_attribute(node, at, _ATTR_KIND.get(int(sa.type), "undefined"))

    # ------------------------------------------------------------- inputs
    def _classify(self):
        """Split graph inputs into data inputs and weights.

        Weights are initializers (a graph input with an initializer of the same name is that
        initializer), inputs the torch exporter marks as parameters/buffers, and static-shaped inputs
        that are not data by how they are read:

        * an input that feeds a weight or bias slot (Conv/ConvTranspose W and B, Gemm B and C,
          BatchNormalization scale/B/mean/var, a norm's scale and bias, PRelu's slope...), also
          through ops that only re-describe it (the TorchScript exporter writes a weight equal to
          another one as ``Identity(other weight)``);
        * an input read only at weight positions where data may also go (a rank-2 MatMul B, an
          embedding table);
        * an input without a batch-like leading dimension when the first data input has one: its
          leading dimension is fixed while the first input's is dynamic, or it differs from the first
          input's (rank-0 inputs have none).

        That is how models exported with ``export_params=False`` or ``keep_initializers_as_inputs=True``
        declare their weights; they are not re-batched and count as parameters.  Names read but
        defined nowhere are weights if ``value_info`` gives their shape.
        """
        self._validate()
        g = self.g
        inits = {t.name: t for t in g.initializer}
        for st in g.sparse_initializer:
            inits.setdefault(st.values.name, st)
        self.inits = inits
        uses: dict[str, list[tuple[str | None, int, Any]]] = {}
        produced: set[str] = set()
        for n in g.node:
            op = _op(n)
            if op == "Attention" and n.domain == _MS:
                op = f"{_MS}.Attention"
            for i, name in enumerate(n.input):
                if name:
                    uses.setdefault(name, []).append((op, i, n))
            for name in _subgraph_refs(n):
                uses.setdefault(name, []).append((op, -1, n))
            produced.update(o for o in n.output if o)

        def slot_uses(name: str, depth: int = 0) -> list[tuple[str | None, int]]:
            out = []
            for op, i, n in uses.get(name, []):
                if op in _PASS_OPS and i == 0 and depth < 8:
                    for o in n.output:
                        if o:
                            out.extend(slot_uses(o, depth + 1))
                else:
                    out.append((op, i))
            return out

        def kind_of(vi) -> str | None:
            return next((p.value for p in vi.metadata_props if p.key == "pkg.torch.export.graph_signature.InputSpec.kind"),
                        None)

        def static(dims) -> bool:
            return dims is not None and all(isinstance(d, int) and d > 0 for d in dims)

        graph_inputs = [vi for vi in g.input if vi.name not in inits]
        weight_inputs, data_inputs = [], []
        for vi in graph_inputs:
            kind = kind_of(vi)
            if kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                weight_inputs.append(vi)
                continue
            dims = _dims(vi)
            if kind == "USER_INPUT" or not static(dims):
                data_inputs.append(vi)
                continue
            direct = [(op, i) for op, i, _ in uses.get(vi.name, [])]
            through = slot_uses(vi.name)
            strict = any(i in _WEIGHT_POS.get(op, ()) and op not in ("MatMul", "Gather") for op, i in through)
            only_weight = bool(direct) and all(i in _WEIGHT_POS.get(op, ()) for op, i in direct)
            if strict or (only_weight and (len(dims) == 2 or all(op not in ("MatMul", "Gather") for op, _ in direct))):
                weight_inputs.append(vi)
            else:
                data_inputs.append(vi)
        first = _dims(data_inputs[0]) if data_inputs else None
        if first is None or len(first) >= 1:
            lead = first[0] if first else None  # None or a str: dynamic
            keep = data_inputs[:1]
            for vi in data_inputs[1:]:
                dims = _dims(vi)
                batch_like = bool(dims) and (dims[0] == lead or not isinstance(dims[0], int))
                if kind_of(vi) != "USER_INPUT" and static(dims) and not batch_like:
                    weight_inputs.append(vi)
                else:
                    keep.append(vi)
            data_inputs = keep
        if not data_inputs and weight_inputs:  # nothing left to feed: the heuristic was wrong
            data_inputs = [vi for vi in weight_inputs if kind_of(vi) is None]
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
                    n = uses[name][0][2]
                    raise ModelLoadError(
                        f"tensor {name!r} (read by {_label(n)}) is not produced by any node and is neither a "
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
        for vi in self.data_inputs:
            check_tensor(fixed[vi.name], dtype_name(vi.type.tensor_type.elem_type), f"input {vi.name!r}")
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
        lg.node.extend(self.order)
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
        # No data propagation (``data_prop=True``): ONNX materializes every 1-D tensor it could read as a
        # shape, and a broken file's 2**31-long vector (or a Range over a huge dimension) exhausts memory.
        # Shapes that depend on such values are inferred node by node in :meth:`walk`, fed with the
        # frontend's own constant folding, which computes small tensors only.
        try:
            inferred = shape_inference.infer_shapes(light, strict_mode=False)
        except Exception:  # noqa: BLE001 - fall back to per-node inference
            inferred = light
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

    def _infer_node(self, node, a: _Attrs) -> None:
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
        op = _op(node)  # own rules: only for ops matched by (domain, op type)
        ins = [self._shape(i) if i else None for i in node.input]
        in_et = self._etype(node.input[0]) if node.input and node.input[0] else None
        shape = None
        x = ins[0] if ins else None
        if op in _SAME_SHAPE:
            shape = x
        elif (op in ("FusedMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat") and len(ins) > 1
              and _known(x) and _known(ins[1])):
            a_s, b_s = list(x), list(ins[1])
            if a.int("transA", 0) and len(a_s) >= 2:
                a_s[-2], a_s[-1] = a_s[-1], a_s[-2]
            if a.int("transB", 0) and len(b_s) >= 2:
                b_s[-2], b_s[-1] = b_s[-1], b_s[-2]
            shape = _matmul_shape(a_s, b_s)
            in_et = 1 if op != "FusedMatMul" else in_et
        elif op == "FusedGemm" and len(ins) > 1 and _known(x) and _known(ins[1]) and len(x) == len(ins[1]) == 2:
            m = x[1] if a.int("transA", 0) else x[0]
            n = ins[1][0] if a.int("transB", 0) else ins[1][1]
            shape = (m, n)
        elif op == "MatMulNBits" and _known(x):
            shape = (*x[:-1], a.int("N", 0, minimum=0))
        elif op == "FusedConv" and len(ins) > 1 and _known(x) and _known(ins[1]):
            shape = self._conv_out(node, x, ins[1], a)
        elif op in ("Attention", "MultiHeadAttention", "GroupQueryAttention") and _known(x):
            self._attn_check(node, a)
            shape = self._attn_out_shape(node, a)
        if _known(shape):
            et = self._etype(outs[0]) or in_et
            self.types[outs[0]] = (tuple(shape), et)

    def _spatial(self, node, a: _Attrs, x, w) -> tuple[int, list[int], list[int], list[int], list[int] | None]:
        """Validated ``(spatial rank, strides, dilations, pads, kernel_shape)`` of a conv or pool.

        The input must be (batch, channels, spatial...) and a weight of the same rank; strides,
        dilations and kernel sizes are >= 1, pads >= 0, and each list has one entry per spatial axis
        (pads two) when the input's rank is known.
        """
        if x is not None and len(x) < 3:
            raise ModelLoadError(
                f"{_label(node)}: input {node.input[0]!r} has shape {self._fmt(x)}; {node.op_type} needs "
                "(batch, channels, spatial...) input"
            )
        if x is not None and w is not None and len(w) != len(x):
            raise ModelLoadError(
                f"{_label(node)}: weight shape {self._fmt(w)} does not match input shape {self._fmt(x)} (ranks differ)"
            )
        r = len(x) - 2 if x is not None else (len(w) - 2 if w is not None and len(w) >= 3 else None)
        k = a.ints("kernel_shape", minimum=1, length=r)
        s = a.ints("strides", minimum=1, length=r)
        d = a.ints("dilations", minimum=1, length=r)
        pads = a.ints("pads", minimum=0, length=None if r is None else 2 * r)
        if r is None:
            r = len(k or s or d or []) or (len(pads) // 2 if pads else 2)
        return r, s or [1] * r, d or [1] * r, pads or [0] * (2 * r), k

    def _conv_out(self, node, x, w, a: _Attrs) -> tuple[int, ...] | None:
        r, s, d, pads, _ = self._spatial(node, a, x, w)
        k = list(w[2:])
        ap = a.str("auto_pad", "NOTSET")
        out = [x[0], w[0]]
        for i in range(r):
            if ap in ("SAME_UPPER", "SAME_LOWER"):
                out.append(-(-x[2 + i] // s[i]))
            else:
                out.append((x[2 + i] + pads[i] + pads[i + r] - d[i] * (k[i] - 1) - 1) // s[i] + 1)
        return tuple(out)

    def _attn_check(self, node, a: _Attrs) -> None:
        """Head counts and input ranks of a fused attention op (:class:`ModelLoadError` naming the node)."""
        ins = list(node.input)

        def need(i: int, what: str, ranks: tuple[int, ...]) -> None:
            shp = self._shape(ins[i]) if i < len(ins) and ins[i] else None
            if shp is not None and len(shp) not in ranks:
                raise ModelLoadError(
                    f"{_label(node)}: {what} (input {i}, {ins[i]!r}) must have rank "
                    f"{' or '.join(map(str, ranks))}, found shape {self._fmt(shp)}"
                )

        for name in ("num_heads", "kv_num_heads", "q_num_heads"):
            a.int(name, minimum=1)
        op = node.op_type
        if op == "Attention" and (node.domain or "") == _MS:
            need(0, "the input", (3,))
            need(1, "the weights", (2,))
            need(4, "past", (5,))
            a.ints("qkv_hidden_sizes", minimum=0, length=3)
        elif op == "Attention":  # ai.onnx opset 23: (B, H, L, E) or (B, L, H*E) for q, k and v alike
            need(0, "the query", (3, 4))
            q = self._shape(ins[0])
            r = (len(q),) if q is not None else (3, 4)
            need(1, "the key", r)
            need(2, "the value", r)
            need(4, "past_key", (4,))
        elif op == "MultiHeadAttention":
            need(0, "the query", (3, 5))
            need(1, "the key", (3, 4, 5))
            need(2, "the value", (3, 4))
            need(6, "past_key", (4,))
        else:  # GroupQueryAttention
            need(0, "the query", (3,))
            need(1, "the key", (3,))
            need(2, "the value", (3,))
            need(3, "past_key", (4,))

    def _attn_out_shape(self, node, a):
        op = node.op_type
        q = self._shape(node.input[0])
        if op == "Attention" and (node.domain or "") == _MS:
            w = self._shape(node.input[1]) if len(node.input) > 1 else None
            hs = a.ints("qkv_hidden_sizes")
            dv = hs[2] if hs else (w[1] // 3 if _known(w) else None)
            return (q[0], q[1], dv) if dv else None
        if op == "Attention":  # ai.onnx opset 23
            v = self._shape(node.input[2]) if len(node.input) > 2 else None
            if len(q) == 4 and _known(v):
                return (*q[:-1], v[-1])
            hq, hkv = a.int("q_num_heads"), a.int("kv_num_heads")
            if _known(v) and hq and hkv:
                return (q[0], q[1], v[-1] // hkv * hq)
            return None
        n = a.int("num_heads", 1)
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
        nkv = a.int("kv_num_heads", n)
        has_k = len(node.input) > 1 and node.input[1]
        h = q[-1] // (n + 2 * nkv) if not has_k else q[-1] // n
        return (q[0], q[1], n * h)

    # ------------------------------------------------------------------ walk
    @staticmethod
    def _toposort(nodes) -> list:
        """The nodes in topological order (their own order when it is one; otherwise each node as early
        as its inputs allow, ties broken by file order).  A cycle is an :class:`InvalidGraphError`
        naming the nodes on it."""
        produced = {o: idx for idx, n in enumerate(nodes) for o in n.output if o}
        deps = [{produced[i] for i in list(n.input) + _subgraph_refs(n) if i in produced} for n in nodes]
        if all(d < idx for idx, ds in enumerate(deps) for d in ds):
            return list(nodes)
        ts = graphlib.TopologicalSorter({idx: ds for idx, ds in enumerate(deps)})
        try:
            ts.prepare()
        except graphlib.CycleError as e:
            cycle = e.args[1]  # [a, b, ..., a]: each one feeds the next
            path = " -> ".join(_label(nodes[i]) for i in cycle)
            raise InvalidGraphError(
                f"the graph has a cycle: {path}; an ONNX graph must be acyclic (an input wired to the output "
                "of a node that depends on it?)"
            ) from None
        order: list = []
        ready: list[int] = []
        while ts.is_active():
            for idx in ts.get_ready():
                heapq.heappush(ready, idx)
            idx = heapq.heappop(ready)
            order.append(nodes[idx])
            ts.done(idx)
        return order

    def _register_weights(self) -> None:
        from onnx import TensorProto

        b = self.b
        qweights, buffers = set(), set()
        for n in self.g.node:
            for i, name in enumerate(n.input):
                if i in _QWEIGHT_POS.get(_op(n), ()):
                    qweights.add(name)
                if _op(n) == "BatchNormalization" and i in (3, 4):
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
        for node in self.order:
            op, dom = _op(node), node.domain or ""
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
            if op == "SequenceLength" and node.input and node.input[0] in self.seq_shapes:
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

    def _constant(self, node, a: _Attrs) -> None:
        from onnx import AttributeProto, helper, numpy_helper

        out = node.output[0]
        arr = None
        for at in node.attribute:
            if at.name == "value" and at.type == AttributeProto.TENSOR:
                check_tensor([int(d) for d in at.t.dims], dtype_name(at.t.data_type), f"the value of {_label(node)}")
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

    def _seq_types(self, node, a: _Attrs) -> None:
        """Element shapes of sequence values (torch.split/chunk export as SplitToSequence + SequenceAt).

        Sequences of more than ``_MAX_SEQ`` elements, or whose split sizes are not a scalar or a
        list of non-negative sizes, stay unknown (the op is then counted as ``other``).
        """
        op = node.op_type
        ins, out = list(node.input), node.output[0]
        if op == "SplitToSequence":
            x, et = self.types.get(ins[0], (None, None))
            if not _known(x) or not x:
                return
            axis = a.int("axis", 0) % len(x)
            split = self.vals.get(ins[1]) if len(ins) > 1 and ins[1] else None
            n = x[axis]
            if split is None:
                if n > _MAX_SEQ:
                    return
                sizes = [1] * n
            elif split.ndim == 0:
                step = int(split)
                if step > 0 and -(-n // step) > _MAX_SEQ:
                    return
                sizes = [min(step, n - i) for i in range(0, n, step)] if step > 0 else [n]
            elif split.ndim == 1 and split.size <= _MAX_SEQ:
                sizes = [int(t) for t in split]
                if any(sz < 0 for sz in sizes):
                    return
            else:
                return
            keep = split is not None or a.int("keepdims", 1)
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
            pos = self._seq_pos(node)
            if shapes is not None and pos is not None and -len(shapes) <= pos < len(shapes):
                if not _known(self._shape(out)):
                    self.types[out] = (shapes[pos], self.seq_etype.get(ins[0]) or self._etype(out))
        elif op == "ConcatFromSequence":
            shapes = self.seq_shapes.get(ins[0])
            if not _known(self._shape(out)) and shapes and len({len(s_) for s_ in shapes}) == 1:
                axis = a.int("axis", 0)
                r = len(shapes[0]) + (1 if a.int("new_axis", 0) else 0)
                if r == 0:
                    return
                shp = list(shapes[0])
                if a.int("new_axis", 0):
                    shp.insert(axis % r, len(shapes))
                else:
                    shp[axis % r] = sum(s_[axis % r] for s_ in shapes)
                self.types[out] = (tuple(shp), self.seq_etype.get(ins[0]))

    def _seq_pos(self, node) -> int | None:
        """The constant position a ``SequenceAt`` reads (``None`` if not a known scalar)."""
        pos = self.vals.get(node.input[1]) if len(node.input) > 1 else None
        if pos is None or pos.size != 1 or not (pos.dtype.kind in "iu"):
            return None
        return int(pos.reshape(-1)[0])

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

    def _plan_attention(self, s_idx: int, s, a: _Attrs) -> None:
        sm_in = self._shape(s.input[0])
        axis = a.int("axis", -1 if self.opset >= 13 else 1)
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

    def _plan_gated(self, idx: int, node, a: _Attrs) -> None:
        x, out = node.input[0], node.output[0]
        if node.op_type == "HardSigmoid":
            if not (abs(a.float("alpha", 0.2) - 1 / 6) <= 1e-4 and abs(a.float("beta", 0.5) - 0.5) <= 1e-4):
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
        skip = _ATTR_INPUTS.get(_op(node), frozenset())
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
                    shp = tuple(d if isinstance(d, int) and d >= 0 else 1 for d in shp or ())
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
        return _opname(node)

    def _supported(self, node) -> bool:
        op, dom = node.op_type, node.domain or ""
        if dom in _STD_DOMAINS and op in _CONTROL_FLOW:
            return False
        if dom in _STD_DOMAINS and op in _SEQ_OPS:
            return True
        return (dom in _STD_DOMAINS and op in _KIND and op not in _MS_ONLY) or (dom == _MS and op in _MS_OPS)

    def _check_shapes(self, node) -> None:
        """After inference: guess the outputs of unsupported ops, remember where unknown shapes start."""
        if _op(node) in _SEQ_OPS:
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
        check_tensor(shape, t.dtype, f"a view of {key!r}")
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

    def _emit(self, node, a: _Attrs) -> None:
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
            r, strides, dilations, _, _ = self._spatial(node, a, x, w)
            attrs["stride"] = strides
            attrs["padding"] = self._padding(node, a, x, w, r, kind)
            attrs["dilation"] = dilations
            attrs["groups"] = a.int("group", 1, minimum=1)
            if w:
                attrs["kernel"] = list(w[2:])
        elif kind == "matmul":
            pos = _OPERANDS.get(op)
            in_keys = self._operands(node, pos)
            attrs["k"] = self._matmul_k(node, a)
        elif kind == "attention":
            return self._emit_attention(node, a, opname, scope)
        elif kind == "batch_norm":
            tm = a.int("training_mode")
            attrs["training"] = bool(tm) if tm is not None else self.training
        elif kind in ("max_pool", "avg_pool"):
            x = shp(0)
            r = len(x) - 2 if x else 2
            if op.startswith("Global"):
                attrs["output_size"] = [1] * r
            else:
                k = self._spatial(node, a, x, None)[4] or []  # validates kernel_shape, strides, pads
                if k:
                    attrs["kernel"] = k
                attrs["stride"] = a.ints("strides") or [1] * len(k)
                p = self._padding(node, a, x, None, len(k), kind)
                if p:
                    attrs["padding"] = p
        elif kind == "reduction":
            if op.startswith("Reduce"):
                axes = self._axes(node, a)
            elif op == "CumSum" and len(ins) > 1 and ins[1] in self.vals and self.vals[ins[1]].size == 1:
                axes = [int(self.vals[ins[1]].reshape(-1)[0])]
            else:  # ArgMax/ArgMin/TopK/LpNormalization
                axes = [a.int("axis", -1 if op in ("TopK", "LpNormalization") else 0)]
            x = shp(0)
            if op == "ReduceMean" and x and spatial_mean_is_pool(len(x), axes):
                kind = "avg_pool"
                attrs["output_size"] = [1] * (len(x) - 2)
            elif axes is not None:
                attrs["axes"] = axes
        elif kind == "softmax":
            attrs["axes"] = [a.int("axis", -1 if self.opset >= 13 else 1)]
        elif kind == "dropout":
            train = self.training
            if len(ins) > 2 and ins[2] in self.vals:
                train = bool(self.vals[ins[2]].reshape(-1)[0])
            elif "is_test" in a:
                train = not a.int("is_test")
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
            attrs["axis"] = a.int("axis", 0)
        elif kind == "pad":
            if len(ins) > 1 and ins[1] in self.vals:
                pads = [int(t) for t in self.vals[ins[1]].reshape(-1)]
                attrs["padding"] = pads
            elif "pads" in a:
                attrs["padding"] = a.ints("pads")
            attrs["mode"] = a.str("mode", "constant")
        elif kind == "resize":
            attrs["mode"] = a.str("mode", "nearest")
        elif kind == "transpose" and "perm" in a:
            attrs["perm"] = a.ints("perm")
        elif kind == "concat":
            attrs["axis"] = a.int("axis", 0)
        if in_keys is None:
            in_keys = self._operands(node)
        b.add_node(opname, kind, in_keys, self._outputs(node, kind), attrs, is_view=view, scope=scope)

    def _emit_seq(self, node, a: _Attrs) -> bool:
        """Sequence ops; False if the element shapes are unknown (then counted as ``other``)."""
        b = self.b
        op, ins, out = node.op_type, list(node.input), node.output[0]
        if op == "SplitToSequence":
            shapes, xk = self.seq_shapes.get(out), self._key(ins[0])
            if shapes is None or xk is None:
                return False
            dt = dtype_name(self.seq_etype.get(out))
            outs = [((out, i), s_, dt) for i, s_ in enumerate(shapes)]
            b.add_node("onnx.SplitToSequence", "slice", [xk], outs, {"axis": a.int("axis", 0)},
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
            pos = self._seq_pos(node)
            if keys is None or pos is None or not -len(keys) <= pos < len(keys):
                return False
            b.alias(out, keys[pos])
            return True
        if op == "ConcatFromSequence":
            keys = self.seq_keys.get(ins[0])
            if keys is None:
                return False
            b.add_node("onnx.ConcatFromSequence", "concat", keys, self._outputs(node, "concat"),
                       {"axis": a.int("axis", 0)}, scope=self._scope(node))
            return True
        return False

    def _padding(self, node, a: _Attrs, x, w, r, kind) -> list[int]:
        _, s, d, _, k_attr = self._spatial(node, a, x, w)
        ap = a.str("auto_pad", "NOTSET")
        if ap == "VALID":
            return [0] * r
        if ap in ("SAME_UPPER", "SAME_LOWER") and x and len(x) == r + 2:
            k = list(w[2:]) if w else list(k_attr or [1] * r)
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
        return _sym_pads(a.ints("pads") or [0] * (2 * r), r)

    def _axes(self, node, a) -> list[int] | None:
        if "axes" in a:
            return a.ints("axes")
        if len(node.input) > 1 and node.input[1]:
            v = self.vals.get(node.input[1])
            if v is not None:
                return [int(t) for t in v.reshape(-1)]
            return None
        x = self._shape(node.input[0])
        if a.int("noop_with_empty_axes", 0):
            return []
        return list(range(len(x))) if x is not None else None

    def _matmul_k(self, node, a) -> float:
        op = node.op_type
        ins = list(node.input)
        if op == "Einsum":
            shapes = [self._shape(i) or () for i in ins]
            out = self._shape(node.output[0])
            return einsum_contraction(a.str("equation", ""), shapes, _numel(out) if _known(out) else 0)
        if op == "MatMulNBits":
            return float(a.int("K", 1, minimum=0))
        pos = _OPERANDS.get(op, (0, 1))
        sa = self._shape(ins[pos[0]]) or ()
        if not sa:
            return 1.0
        if op in ("Gemm", "FusedGemm"):
            return float(sa[0] if a.int("transA", 0) else sa[-1])
        if op == "FusedMatMul" and a.int("transA", 0) and len(sa) >= 2:
            return float(sa[-2])
        return float(sa[-1])

    def _emit_attention(self, node, a: _Attrs, opname, scope) -> None:
        """Fused attention ops; operands are presented as (..., L, E) q, k, v."""
        b = self.b
        ins = list(node.input)
        dom = node.domain or ""
        self._attn_check(node, a)
        outs = self._outputs(node, "attention")

        def key(i):
            return self._key(ins[i]) if i < len(ins) and ins[i] else None

        def shape(i):
            return self._shape(ins[i]) if i < len(ins) and ins[i] else None

        def view(k, shp):
            return None if k is None else self._view(k, shp)

        rest: list[Hashable] = []
        if node.op_type == "Attention" and dom == _MS:
            x, w = shape(0), shape(1)
            n = a.int("num_heads", 1)
            hs = a.ints("qkv_hidden_sizes") or ([w[1] // 3] * 3 if w else None)
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
            q = view(pkey, (bsz, n, s, hs[0] // n))
            k = view(pkey, (bsz, n, total, hs[1] // n))
            v = view(pkey, (bsz, n, total, hs[2] // n))
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
                hq = a.int("q_num_heads", 1)
                hkv = a.int("kv_num_heads", hq)
                bsz, length, e = sq[0], sq[1], sq[2] // hq
                slen, ev = sk[1], sv[2] // hkv
            past = shape(4)
            slen += past[2] if _known(past) and len(past) == 4 else 0
            q = view(key(0), (bsz, hq, length, e))
            k = view(key(1), (bsz, hq, slen, e))
            v = view(key(2), (bsz, hq, slen, ev))
            rest = [k_ for k_ in (key(3), key(4), key(5)) if k_ is not None]
        else:
            n = a.int("num_heads", 1)
            sq = shape(0)
            if not _known(sq):
                return self._other(node, opname, scope)
            bsz, length = sq[0], sq[1]
            sk, sv = shape(1), shape(2)
            if node.op_type == "GroupQueryAttention":
                nkv = a.int("kv_num_heads", n)
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
                q = view(qk_, (bsz, n, length, h))
                k = view(kk_, (bsz, n, slen, h))
                v = view(vk_, (bsz, n, slen, h))
                rest = [k_ for k_ in (key(3), key(4)) if k_ is not None]
            else:  # MultiHeadAttention
                if len(sq) == 5:  # packed qkv (B, L, N, 3, H)
                    h = sq[4]
                    q = view(key(0), (bsz, n, length, h))
                    k = view(key(0), (bsz, n, length, h))
                    v = view(key(0), (bsz, n, length, h))
                else:
                    h = sq[2] // n
                    q = view(key(0), (bsz, n, length, h))
                    if _known(sk) and len(sk) == 5:  # packed kv (B, S, N, 2, H)
                        k = view(key(1), (bsz, n, sk[1], sk[4]))
                        v = view(key(1), (bsz, n, sk[1], sk[4]))
                    elif _known(sk) and _known(sv):
                        slen = sk[2] if len(sk) == 4 else sk[1]
                        hv = sv[3] if len(sv) == 4 else sv[2] // n
                        past = shape(6)
                        slen += past[2] if _known(past) and len(past) == 4 and len(sk) == 3 else 0
                        k = view(key(1), (bsz, n, slen, h))
                        v = view(key(2), (bsz, n, slen, hv))
                    else:
                        return self._other(node, opname, scope)
                rest = [k_ for k_ in (key(3), key(4), key(5), key(6), key(7)) if k_ is not None]
        if q is None or k is None or v is None:  # an operand is a folded constant the graph does not hold
            return self._other(node, opname, scope)
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
        ModelLoadError: missing, unreadable, truncated or non-ONNX file, or a malformed graph: a
            node with too few inputs or an attribute of the wrong kind, a value with two producers,
            a name read but defined nowhere (the message names the node, input or attribute).
        InvalidGraphError: a graph with a cycle, without operators that do work, or with a tensor
            beyond what any device can hold (over 1 TiB; more than 10**13 parameters).
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
    return fe.b.build(**meta).check_costable()


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
