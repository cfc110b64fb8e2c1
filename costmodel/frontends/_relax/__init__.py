"""TVM Relax frontend: a ``tvm.IRModule`` (Relax) -> CostGraph.

Modules come from ``tvm.relax.frontend.torch.from_exported_program``,
``from_fx`` or ``tvm.relax.frontend.onnx.from_onnx`` (or are written in
TVMScript).  TVM removed Relay in 0.20, so Relax is the only graph IR a
current TVM (0.27) compiler holds; there is no Relay frontend.

How it works
------------
The frontend walks the dataflow bindings of a Relax function in order:

* shapes and dtypes come from each variable's struct info (``R.Tensor((1, 64,
  112, 112), "float32")``); symbolic dimensions are bound from ``bindings=``
  (``{"n": 8}``) or, for a leading dimension of a data input, from ``batch=``;
* edges are real variable uses, so skip connections survive;
* tuples are tracked element-wise (``R.nn.batch_norm`` returns a tuple; a
  ``TupleGetItem`` is the element itself, not a node), and bindings whose
  value never reaches the function's result are dropped (the ``zeros_like``
  index tensor the importer builds for ``max_pool2d_with_indices``, say);
* calls to other Relax functions of the module are inlined; a ``call_tir`` of a
  PrimFunc of the module (what ``LegalizeOps``, ``FuseOps`` + ``FuseTIR`` make)
  is one node whose kind comes from the PrimFunc's name and FLOPs from its TIR
  (``_tir``); packed calls and external kernels are ``other`` nodes (one
  warning per callee).

Each ``relax.*`` operator is mapped to the ONNX operator with the same
semantics, and the result goes through the ONNX frontend's normalization
passes, so a model reaches the same op vocabulary by all three routes
(PyTorch, ONNX, Relax): ``reshape -> matmul -> add(bias)`` is one ``matmul``
(``nn.Linear``), the decomposed scaled-dot-product attention (scaled q and
k^T, optional additive mask, softmax, the "safe softmax" guard that zeroes
fully-masked rows, ``@ v``) is one ``attention`` node, ``x * sigmoid(x)`` is
``silu``, a mean over the spatial axes is ``avg_pool``.  Two Relax-specific
rewrites run first: a batched matmul written as ``reshape`` to 3-D, matmul,
``reshape`` back (how the importer lowers 4-D ``torch.matmul``) is put back
on the 4-D tensors, and ``broadcast_to`` to the shape a tensor already has
is dropped.

Weights are the function parameters after ``attrs["num_input"]`` (imports
with ``keep_params_as_input=True``) or non-scalar float constants
(``keep_params_as_input=False``); constants read at batch-norm statistics
positions are buffers, as in PyTorch.  Weight values are never read.
"""

from __future__ import annotations

import warnings

from ..._errors import ModelLoadError, UnsupportedOpWarning
from ._rewrites import _canonicalize
from ._walker import _RelaxWalker


# --------------------------------------------------------------------------- entry point
def to_onnx_proto(mod, *, func: str = "main", bindings: dict[str, int] | None = None, batch: int | None = None,
                  mode: str = "inference"):
    """The ONNX form of a Relax function (weights dims-only); used by :func:`from_relax`."""
    from onnx import helper

    w = _RelaxWalker(mod, func, bindings or {}, batch, mode)
    fn = mod[func]
    w.bind_symbols_from_inputs(fn)
    w.run()
    _canonicalize(w)
    if w.explicit_inputs or w.const_inputs:
        # the data parameters are known (``num_input``, or the weights are constants): a second input of another
        # leading size (text tokens beside an image) must not be guessed to be a weight and folded away
        for vi in w.inputs:
            if vi.name not in w.weights:
                vi.metadata_props.add(key="pkg.torch.export.graph_signature.InputSpec.kind", value="USER_INPUT")
    for vi in w.const_inputs:
        et = vi.type.tensor_type.elem_type
        kind = "PARAMETER" if et in (1, 10, 11, 16) and vi.name not in w.buffers else "CONSTANT_TENSOR"
        vi.metadata_props.add(key="pkg.torch.export.graph_signature.InputSpec.kind", value=kind)
    graph = helper.make_graph(w.nodes, func, w.inputs + w.const_inputs, w.outputs, initializer=w.inits,
                              value_info=[w.value_info[k] for k in w.value_info])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("tvm.relax", 1),
                                                        helper.make_opsetid("tvm.tir", 1)],
                              producer_name="tvm.relax")
    proto.ir_version = 10
    return proto


def from_relax(mod, *, func: str = "main", name: str | None = None, bindings: dict[str, int] | None = None,
               batch: int | None = None, mode: str = "inference"):
    """Featurize a Relax function of a ``tvm.IRModule`` into a :class:`~costmodel.CostGraph`.

    Args:
        mod: a ``tvm.IRModule`` holding Relax functions, or a ``relax.Function``.
        func: which function to featurize (default ``"main"``).
        name: graph name (default: the function name).
        bindings: values of symbolic shape variables, ``{"n": 8}``.
        batch: value of a symbolic leading dimension of the data inputs.
        mode: ``"inference"`` or ``"training"``.

    Raises:
        InvalidInputError: not a Relax module, or no such function (the message lists them).
        DynamicShapeError: a symbolic dimension without a value.
    """
    from ..._errors import InvalidInputError
    from ..._validate import is_int
    from .._common import check_batch
    from .._onnx import from_typed_proto

    try:
        import tvm
        from tvm import relax
    except ImportError as e:  # pragma: no cover - exercised only without TVM
        raise ModelLoadError("the Relax frontend needs TVM: pip install apache-tvm") from e
    if mode not in ("inference", "training"):
        raise InvalidInputError(f"mode must be 'inference' or 'training', got {mode!r}")
    if batch is not None:
        batch = check_batch(batch)
    if isinstance(mod, relax.Function):
        mod = tvm.IRModule({func: mod})
    if not isinstance(mod, tvm.IRModule):
        raise InvalidInputError(f"expected a tvm.IRModule or relax.Function, got {type(mod).__name__}")
    names = [gv.name_hint for gv, f in mod.functions_items() if isinstance(f, relax.Function)]
    if func not in names:
        raise InvalidInputError(f"the module has no Relax function {func!r}; its Relax functions are {sorted(names)}")
    if bindings is not None and not (isinstance(bindings, dict) and all(
            isinstance(k, str) and is_int(v) and v > 0
            for k, v in bindings.items())):
        raise InvalidInputError(f"bindings must map shape-variable names to positive ints, got {bindings!r}")
    proto = to_onnx_proto(mod, func=func, bindings=bindings, batch=batch, mode=mode)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"onnx: operator .*tvm\.relax", category=UnsupportedOpWarning)
        g = from_typed_proto(proto, name=name or func, mode=mode)
    g.meta["frontend"] = "relax"
    g.meta.pop("opset", None)
    g.meta["producer"] = f"tvm {tvm.__version__}"
    return g


__all__ = ["from_relax", "to_onnx_proto"]
