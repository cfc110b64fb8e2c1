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
* Checks the model first (:meth:`_loading._Loading._validate`): every known op's
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
    and ``0.5 * x * (1 + Erf(x / sqrt 2))`` (older exporters) is ``gelu``, as is
    ``0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x**3)))`` (the TorchScript
    exporter's ``GELU(approximate="tanh")``);
  - GroupNorm exported as ``Reshape -> InstanceNormalization -> Reshape ->
    Mul -> Add`` is one ``group_norm``;
  - ``SplitToSequence`` + ``SequenceAt`` (``torch.split``/``chunk``) is one
    ``slice`` node, as ``aten.split`` is;
  - ``ReduceMean`` over exactly the spatial axes is ``avg_pool``;
  - initializers are parameters, counted once however often they are read;
    ``BatchNormalization`` running mean/variance and quantization scales and
    zero points are buffers (not counted in ``params``), as in PyTorch.  An
    initializer that only constants' reads reach is a constant (in neither
    ``params`` nor ``weights_bytes``), as the TorchScript exporter's
    ``Constant`` nodes are: a shape or scale input, a scalar operand
    (``x * 2``), the mask of a fused attention, GroupNorm's identity affine
    (``_params``).  The dynamo exporter stores such constants as initializers.

  ``Transpose``, ``Slice``, ``Split`` and ``Gather`` are copy kernels in ONNX
  runtimes (``is_view=False``; ``Split`` writes every output, read or not), while PyTorch's permute/slice are views; the
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

Modules
-------
``_tables`` (op vocabulary, attributes, dtypes), ``_loading`` (file, checks, data
and weight inputs), ``_shapes`` (shape inference), ``_folding`` (constant folding
and the walk that finds the data nodes), ``_fusion`` (fusion planning),
``_params`` (which initializers are parameters), ``_emission`` (CostGraph nodes); ``_frontend``
assembles them into the per-model
state :class:`_frontend._OnnxFrontend`.
"""

from __future__ import annotations

from ..._errors import InvalidInputError
from .._common import check_batch, parse_shape
from ._frontend import _OnnxFrontend
from ._loading import _dims, _load


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
    fe._settle_params()
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

