"""PyTorch frontend: ``nn.Module`` + example inputs -> CostGraph.

Two capture methods, both free of real compute:

``export`` (default)
    ``torch.export.export`` on fake tensors.  Keeps high-level ATen operators
    (``conv2d``, ``linear``, ``scaled_dot_product_attention``), so a fused
    attention stays one node whatever device the graph is later costed for.
``trace``
    Runs the module once under a ``TorchDispatchMode`` with parameters and
    inputs on the ``meta`` device and records every ATen operator as it
    executes.  Works on any Python control flow (where export and FX symbolic
    tracing both give up), is ~20x faster than export, and records the
    operators eager mode really dispatches (``addmm``, ``native_batch_norm``;
    ``scaled_dot_product_attention`` as the fused kernel a GPU runs, not the
    math backend meta tensors would take).  Many meta kernels are
    slow Python decompositions (a batch norm ~2 ms, a ReLU ~1 ms), so the
    trace computes each functional op's output layout once per argument
    layout and rebuilds it afterwards, and the normalizations get exact
    layouts without their kernels (resnet50: ~40 ms instead of ~150 ms).

``method="export"`` falls back to ``trace`` (with a warning) when export
fails; the graph then says so (``meta["capture"]`` is the method that built
it, ``meta["assumptions"]`` names the fallback, and estimates repeat it).
FX symbolic tracing is deliberately not the fallback: it fails on the
same data-dependent Python that breaks export and yields module-level nodes
instead of operators.

Captures hold one process-wide lock: ``torch.export`` keeps global state
(it patches ``nn.Module.__call__`` and ``__getattr__`` while it traces, and
its mode stacks are shared), so two exports in two threads break each other,
and a trace running beside an export can be routed through its tracer.
Featurizing from several threads therefore gives the same graphs as
featurizing serially.

Inference captures record what PyTorch's fused inference paths run
(``nn.MultiheadAttention``'s ``_native_multi_head_attention``), which PyTorch
itself declines on meta tensors and under tracing; see :mod:`._fastpath`.

Models are never run on real data: a model built under ``torch.device("meta")``
(a 7B LLM, say) is featurized without allocating its weights.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from typing import Any, Callable, Hashable, Sequence

from .._errors import InvalidInputError, ModelLoadError, TensorTooLargeError
from ._aten import IGNORED, base_name, lookup
from ._builder import GraphBuilder
from ._fastpath import cuda_attention, inference_fast_paths
from ._moe import GROUPED_MM, grouped_mm_fallback
from ._capture_rules import fallback_note, fft_flops, index_attrs, rnn_scopes, with_rnn_launches
from ._ssm import fused_flops
from ._cudnn_rnn import cudnn_rnn_kernels
from ._metacall import (_META_CACHE, ObjectKeys, _meta_call, _run_swapped, _tensor_leaves,
                        preserved_tensor_attributes)
from ._scopes import ScopeRecorder, recording_scopes
from ._dispatched import MAY_COPY, emit_dispatched, gpu_layout, meta_run
from ._common import einsum_contraction, check_batch, parse_shape, spatial_mean_is_pool

_DTYPE_NAMES = {
    "float32": "fp32",
    "float": "fp32",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "float64": "fp64",
    "double": "fp64",
    "int64": "int64",
    "long": "int64",
    "int32": "int32",
    "int": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "bool": "bool",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "complex64": "complex64",
}

METHODS = ("export", "trace")

#: held while a module is captured (export or trace): see the module docstring
_CAPTURE_LOCK = threading.RLock()


def clear_layout_cache() -> None:
    """Forget the meta-tensor output layouts the trace has memoized (it keeps at most 50,000; this
    frees them now, or times a trace as if the process had never traced anything)."""
    with _CAPTURE_LOCK:
        _META_CACHE.clear()


_DTYPE_MEMO: dict = {}


def dtype_name(dt) -> str:
    n = _DTYPE_MEMO.get(dt)
    if n is None:
        s = str(dt).replace("torch.", "")
        n = _DTYPE_MEMO[dt] = _DTYPE_NAMES.get(s, s)
    return n


def torch_dtype(name: str):
    import torch

    table = {
        "fp32": torch.float32,
        "fp16": torch.float16,
        "bf16": torch.bfloat16,
        "fp64": torch.float64,
        "int64": torch.int64,
        "int32": torch.int32,
        "int8": torch.int8,
    }
    if name not in table:
        raise InvalidInputError(f"unsupported dtype {name!r}; expected one of {sorted(table)}")
    return table[name]


_SIGNATURES: dict = {}


def _signature(func):
    """``(argument names, {name: default})`` of an op's schema, read once per op."""
    sig = _SIGNATURES.get(func)
    if sig is None:
        schema = getattr(func, "_schema", None)
        if schema is None:
            sig = ((), {})
        else:
            sig = (tuple(a.name for a in schema.arguments),
                   {a.name: a.default_value for a in schema.arguments if a.has_default_value()})
        _SIGNATURES[func] = sig
    return sig


def _named_args(func, args, kwargs) -> dict[str, Any]:
    names, defaults = _signature(func)
    out = dict(defaults)
    out.update(zip(names, args))
    if kwargs:
        out.update(kwargs)
    return out


def _norm_attrs(kind: str, named: dict) -> dict:
    """What says how many rows a norm reduces: a group norm's group count, a layer norm's normalized shape."""
    if kind == "group_norm":
        g = named.get("group", named.get("num_groups"))  # native_group_norm / group_norm
        return {"groups": g} if isinstance(g, int) and g > 0 else {}
    ns = _ints(named.get("normalized_shape"))
    return {"normalized_shape": ns} if ns is not None else {}


def _ints(v) -> list[int] | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        try:
            return [int(x) for x in v]
        except (TypeError, ValueError):
            return None
    try:
        return [int(v)]
    except (TypeError, ValueError):
        return None


class _Emitter:
    """Shared ATen-op -> builder logic for the export and trace walkers."""

    def __init__(self, builder: GraphBuilder, training: bool) -> None:
        self.b = builder
        self.training = training

    def emit(self, func, args: tuple, kwargs: dict, in_keys: list[Hashable],
             outputs: list[tuple[Hashable, Sequence[int], str]], *,
             is_contiguous: Callable[[Hashable], bool] | None = None, scope: str = "") -> None:
        base = base_name(func)
        if base in IGNORED or not outputs and base not in ("copy_",):
            return
        if base in _LIKE_SECOND and len(in_keys) > 1:
            in_keys = in_keys[:1]  # the second operand lends a dtype or a shape: no data read, no buffer
        hit = lookup(base)
        if hit is None:
            self.b.warn_unsupported(f"aten.{base}")
            kind, view, inplace = "other", False, False
        else:
            kind, view, inplace = hit
        named = _named_args(func, args, kwargs)
        in_shapes = [self.b.shape(k) for k in in_keys if self.b.has(k)]
        attrs: dict[str, Any] = {}
        if inplace:
            attrs["inplace"] = True
        if (fused := fused_flops(base, in_shapes, [o[1] for o in outputs])) is not None:
            attrs["flops"] = fused  # a fused kernel's own arithmetic (Mamba's selective scan, an RNN's gates)
        elif (fft := fft_flops(base, named, in_shapes, [o[1] for o in outputs])) is not None:
            attrs["flops"] = fft

        if kind in ("conv", "conv_transpose"):
            if named.get("transposed") is True:
                kind = "conv_transpose"
            for a in ("stride", "padding", "dilation"):
                v = _ints(named.get(a))
                if v is not None:
                    attrs[a] = v
            attrs["groups"] = int(named.get("groups", 1) or 1)
            if len(in_shapes) >= 2:
                attrs["kernel"] = list(in_shapes[1][2:])
        elif kind in ("gather", "embedding"):
            attrs.update(index_attrs(kind, base, named, in_shapes))
        elif kind == "matmul":
            attrs["k"] = self._matmul_k(base, named, in_keys, in_shapes, outputs)
            if base in GROUPED_MM and len(in_shapes) >= 2 and len(in_shapes[0]) == 2 and len(in_shapes[1]) == 3:
                attrs["experts"] = int(in_shapes[1][0])  # (S, K) x (E, K, N): one GEMM per expert, one kernel
        elif kind in ("max_pool", "avg_pool"):
            k = _ints(named.get("kernel_size"))
            if k:
                rank = len(in_shapes[0]) - 2 if in_shapes else len(k)
                attrs["kernel"] = k * rank if len(k) == 1 and rank > 1 else k
                s = _ints(named.get("stride"))
                attrs["stride"] = s if s else attrs["kernel"]
                p = _ints(named.get("padding"))
                if p:
                    attrs["padding"] = p
            else:
                o = _ints(named.get("output_size"))
                if o:
                    attrs["output_size"] = o
        elif kind == "batch_norm":
            training = named.get("training")
            if base == "_native_batch_norm_legit_no_training":
                training = False
            attrs["training"] = bool(training) if training is not None else self.training
        elif kind == "dropout":
            train = named.get("train", self.training)
            rate = named.get("p")
            # eval mode, or a rate of 0 (timm's and torchvision's default): eager returns the input itself,
            # with no kernel, no mask and nothing saved for backward
            view = not bool(train) or (isinstance(rate, (int, float)) and float(rate) == 0.0)
            if not view:
                kind = "elementwise"
        elif kind == "reduction" and base == "mean" and in_shapes:
            dims = _ints(named.get("dim"))
            if spatial_mean_is_pool(len(in_shapes[0]), dims):
                kind = "avg_pool"
            elif dims is not None:
                attrs["axes"] = dims
        elif kind == "reduction":
            dims = _ints(named.get("dim"))
            if dims is not None:
                attrs["axes"] = dims
        elif kind == "copy":
            if base in ("contiguous",) and is_contiguous is not None and in_keys and is_contiguous(in_keys[0]):
                view = True  # already contiguous: returns self, no kernel
            elif base in ("to", "_to_copy", "type_as") and in_keys and self.b.has(in_keys[0]):
                if outputs and self.b.dtype(in_keys[0]) == outputs[0][2] and not named.get("copy"):
                    view = True  # same dtype: no cast kernel
                else:
                    attrs["cast"] = True
        elif kind == "softmax":
            d = _ints(named.get("dim"))
            if d is not None:
                attrs["axes"] = d
        elif kind in ("group_norm", "layer_norm"):
            attrs.update(_norm_attrs(kind, named))

        # parameters first-class: report which inputs are weights
        # empty_like and friends allocate (no kernel runs): their outputs alias no input
        self.b.add_node(f"aten.{base}", kind, in_keys, outputs, attrs, is_view=view, scope=scope,
                        aliases=view and not base.startswith(("empty", "new_empty", "scalar_tensor")),
                        unread=_unread(base, len(in_keys)))

    def _matmul_k(self, base, named, in_keys, in_shapes, outputs) -> float:
        def shp(name):
            v = named.get(name)
            return None if v is None else self._shape_of(v, in_keys, in_shapes)

        first = {
            "linear": "input",
            "addmm": "mat1",
            "_addmm_activation": "mat1",
            "mm": "self",
            "bmm": "self",
            "matmul": "self",
            "baddbmm": "batch1",
            "addbmm": "batch1",
            "mv": "self",
            "addmv": "mat",
            "dot": "self",
            "_scaled_mm": "self",
            "_grouped_mm": "self",
            "grouped_mm": "input",
            "grouped_mm_fallback": "input",
        }.get(base)
        if base == "einsum":
            out_n = math.prod(outputs[0][1]) if outputs else 0
            eq = named.get("equation", "")
            shapes = [s for s in in_shapes]
            return einsum_contraction(eq, shapes, out_n)
        s = shp(first) if first else None
        if s is None:
            s = in_shapes[0] if in_shapes else (1,)
        return float(s[-1]) if s else 1.0

    def _shape_of(self, v, in_keys, in_shapes):
        # v is the argument object; find its key among in_keys by identity of position
        key = self.key_for(v)
        if key is not None and self.b.has(key):
            return self.b.shape(key)
        return None

    key_for: Callable[[Any], Hashable | None] = staticmethod(lambda v: None)


# ---------------------------------------------------------------------- inputs
def make_inputs(model, inputs=None, *, input_shape=None, batch: int | None = None, dtype: str | None = None):
    """Normalize user inputs to ``(args_tuple, kwargs_dict, batch)``.

    ``inputs`` may be a tensor, a tuple/list of tensors, or a dict of keyword
    tensors.  Otherwise ``input_shape`` (without the batch dimension) and
    ``batch`` build one floating input on the model's device.
    """
    import torch

    if inputs is not None:
        if isinstance(inputs, torch.Tensor):
            args, kwargs = (inputs,), {}
        elif isinstance(inputs, dict):
            args, kwargs = (), dict(inputs)
        elif isinstance(inputs, (tuple, list)):
            args, kwargs = tuple(inputs), {}
        else:
            raise InvalidInputError(
                f"inputs must be a tensor, a tuple of tensors or a dict of tensors, got {type(inputs).__name__}"
            )
        vals = list(args) + list(kwargs.values())
        first = next((t for t in vals if isinstance(t, torch.Tensor)), None)
        b = int(first.shape[0]) if first is not None and first.dim() > 0 else 1
        lead = vals[0] if vals else None
        if isinstance(lead, (list, tuple)) and lead and all(isinstance(t, torch.Tensor) for t in lead):
            b = len(lead)  # a list of images (a torchvision detector's input): one sample each
        return args, kwargs, b
    if input_shape is None:
        raise InvalidInputError(
            "a PyTorch model needs example inputs or an input shape (e.g. input_shape=(3, 224, 224))"
        )
    batch = check_batch(1 if batch is None else batch)
    shape = parse_shape(input_shape)
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    fdt = torch_dtype(dtype) if dtype else (p.dtype if p is not None and p.is_floating_point() else torch.float32)
    x = torch.empty((batch, *shape), dtype=fdt, device=device)
    # no values: a model that needs data gets seeded ones when it is run (``_from_trace(real=True)``)
    x._costmodel_placeholder = True
    return (x,), {}, batch


# ---------------------------------------------------------------------- export
def _val_outputs(node) -> list[tuple[Hashable, Sequence[int], str]] | None:
    import torch

    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        return [(node.name, tuple(int(d) for d in val.shape), dtype_name(val.dtype))]
    if isinstance(val, (tuple, list)):
        outs = []
        for i, v in enumerate(val):
            if isinstance(v, torch.Tensor):
                outs.append(((node.name, i), tuple(int(d) for d in v.shape), dtype_name(v.dtype)))
        return outs
    return None


def _export_quietly(export, model, args, kwargs):
    """``torch.export.export`` without the partial graph it prints to stderr when it fails (thousands of
    lines for a detector, whose trace then takes over); whatever else it writes there is passed on."""
    import io
    import sys

    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            return export(model, args, kwargs, strict=False)
    except Exception as e:
        partial = getattr(e, "partial_fx_graph", None)
        text = buf.getvalue()
        # printed once by each of export's wrappers it passes through
        buf = io.StringIO(text.replace(f"{partial}\n", "") if partial is not None else text)
        raise
    finally:
        sys.stderr.write(buf.getvalue())


def _from_export(model, args, kwargs, builder: GraphBuilder, training: bool) -> None:
    import operator

    import torch
    import torch.utils._pytree as pytree
    from torch.export import export
    from torch.export.graph_signature import InputKind

    ep = _export_quietly(export, model, args, kwargs)
    sig = ep.graph_signature
    specs = {s.arg.name: s for s in sig.input_specs if hasattr(s.arg, "name")}
    # tied weights appear under several targets but are one tensor
    state = ep.state_dict
    params_by_target: dict[Any, str] = {}
    em = _Emitter(builder, training)
    vals: dict[Hashable, Any] = {}
    grads: set[str] = set()  # the operands that require grad in eager: parameters
    relaid: set[str] = set()  # results whose layout on a GPU differs from export's (and their views)

    def key_for(v):
        return v.name if isinstance(v, torch.fx.Node) else None

    em.key_for = key_for

    def is_contig(key):
        v = vals.get(key)
        try:
            return bool(v.is_contiguous())
        except Exception:
            return False

    for node in ep.graph.nodes:
        if node.op == "placeholder":
            val = node.meta.get("val")
            if not isinstance(val, torch.Tensor):
                continue
            shape, dt = tuple(int(d) for d in val.shape), dtype_name(val.dtype)
            spec = specs.get(node.name)
            kind = spec.kind if spec is not None else InputKind.USER_INPUT
            vals[node.name] = val
            if kind == InputKind.PARAMETER:
                grads.add(node.name)
                t = state.get(spec.target)
                ident = id(t) if t is not None else spec.target
                if ident in params_by_target:  # tied weights: same tensor, counted once
                    builder.alias(node.name, params_by_target[ident])
                else:
                    builder.add_param(node.name, shape, dt, trainable=True,
                                      frozen=t is not None and not getattr(t, "requires_grad", True))
                    params_by_target[ident] = node.name
            elif kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
                builder.add_param(node.name, shape, dt, trainable=False)
            else:
                builder.add_input(node.name, shape, dt)
        elif node.op == "call_function":
            if node.target is operator.getitem:
                parent, idx = node.args[0], node.args[1]
                if isinstance(parent, torch.fx.Node) and builder.has((parent.name, idx)):
                    builder.alias(node.name, (parent.name, idx))
                    vals[node.name] = node.meta.get("val")
                continue
            if not isinstance(node.target, torch._ops.OpOverload):
                continue
            outs = _val_outputs(node)
            if not outs:
                continue
            flat = pytree.tree_leaves((node.args, node.kwargs))
            in_keys = [a.name for a in flat if isinstance(a, torch.fx.Node) and builder.has(a.name)]
            stack = node.meta.get("nn_module_stack") or {}
            scope = list(stack.values())[-1][0] if stack else ""
            val = node.meta.get("val")
            hit = lookup(base_name(node.target))
            if relaid and hit is not None and hit[1] and any(k in relaid for k in in_keys):
                # a view of a tensor whose layout export got otherwise than a GPU: view it again
                again = meta_run(node, vals, set())
                val = again if again is not None else val
                relaid.add(node.name)
            vals[node.name] = gpu_layout(node.target, val)
            if vals[node.name] is not val:
                relaid.add(node.name)
            inplace = training and hit is not None and hit[2]  # autograd may save the operand first
            if ((base_name(node.target) in MAY_COPY or inplace or _unfused_attention(node, vals))
                    and emit_dispatched(em, node, vals, scope, grads)):
                continue
            em.emit(node.target, node.args, node.kwargs, in_keys, outs, is_contiguous=is_contig, scope=scope)




#: ``x.op(other)`` operators that take only ``other``'s dtype or shape: their result is ``x``'s buffer (a
#: view) or a cast of ``x`` alone, so ``other`` is neither read nor an owner of the result
_LIKE_SECOND = frozenset({"type_as", "expand_as", "view_as", "reshape_as"})
#: operators whose tensor operands only lend a shape, dtype and device: their kernel writes, reads nothing
_TEMPLATED = frozenset({"zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "new_zeros", "new_ones",
                        "new_full"})
#: operators that write their first operand without reading it
_OVERWRITE = frozenset({"fill", "fill_", "zero", "zero_", "copy_"})


def _unread(base: str, n_in: int) -> tuple[int, ...]:
    """The operands (by position among the node's tensor inputs) whose data ``base``'s kernel does not read."""
    if base in _TEMPLATED:
        return tuple(range(n_in))
    if base in _OVERWRITE and (n_in == 2 or n_in == 1 and base != "copy_"):
        return (0,)
    return ()


def _unfused_attention(node, vals: dict) -> bool:
    """An SDPA node whose query is not 4-D: no fused kernel takes it (flash, memory-efficient and cuDNN
    attention all need ``(B, H, L, E)``), so PyTorch runs its math path on every device; export keeps
    one node, which the walker then emits as dispatched."""
    import torch

    if base_name(node.target) != "scaled_dot_product_attention" or not node.args:
        return False
    q = vals.get(node.args[0].name) if isinstance(node.args[0], torch.fx.Node) else None
    return isinstance(q, torch.Tensor) and q.dim() != 4


# ----------------------------------------------------------------------- trace
def _operand(t, real: bool, gen):
    """An operand as the trace runs it: on meta tensors, its meta twin; on a real run, the user's own values,
    or, for an input built without values (or a meta one), values seeded as the measuring protocol seeds its
    inputs (fp32, then cast): a detector's boxes, and so its graph, follow them."""
    import torch

    if not isinstance(t, torch.Tensor):
        return t
    if not real:
        return torch.empty_like(t, device="meta") if t.device.type != "meta" else t
    if t.device.type != "meta" and not getattr(t, "_costmodel_placeholder", False):
        return t
    if t.is_floating_point():
        return torch.randn(t.shape, generator=gen).to(device=t.device if t.device.type != "meta" else "cpu",
                                                      dtype=t.dtype)
    return torch.zeros(t.shape, dtype=t.dtype)


def _meta_like(t):
    """``torch.empty_like(t, device="meta")``; for a contiguous ``t`` (nearly every parameter and buffer)
    without the layout search ``empty_like`` makes."""
    import torch

    if type(t) in (torch.Tensor, torch.nn.Parameter) and not t.is_quantized and t.is_contiguous():
        return torch.empty(t.shape, dtype=t.dtype, device="meta")
    return torch.empty_like(t, device="meta")  # a subclass, a quantized or a strided tensor: as it lays out


def _from_trace(model, args, kwargs, builder: GraphBuilder, training: bool, *, real: bool = False,
                fused: bool = True, scopes: ScopeRecorder | None = None) -> None:
    """Record ATen ops while running the module once.

    With ``real=False`` parameters and inputs are meta tensors (no compute).
    ``real=True`` is the last resort for models that branch on tensor values:
    it runs once on the CPU with the module's own weights and random inputs.
    """
    import torch
    import torch.utils._pytree as pytree
    from torch.func import functional_call
    from torch.utils._python_dispatch import TorchDispatchMode

    # meta copies of parameters and buffers; ids identify them during the trace (a real run's tensors are
    # not kept alive, so they get keys that survive the reuse of an id)
    kid = ObjectKeys() if real else id
    meta_state: dict[str, torch.Tensor] = {}
    seen_storage: dict[int, torch.Tensor] = {}
    keep: list[torch.Tensor] = []
    named = list(model.named_parameters(remove_duplicate=False))
    for name, p in named:
        sid = id(p)
        if sid in seen_storage:  # tied weights
            meta_state[name] = seen_storage[sid]
            continue
        m = p if real else _meta_like(p).requires_grad_(p.requires_grad)
        seen_storage[sid] = m
        meta_state[name] = m
        builder.add_param(kid(m), tuple(m.shape), dtype_name(m.dtype), trainable=True, frozen=not p.requires_grad)
        keep.append(m)
    for name, buf in model.named_buffers(remove_duplicate=False):
        if buf is None:
            continue
        m = buf if real else _meta_like(buf)
        meta_state[name] = m
        builder.add_param(kid(m), tuple(m.shape), dtype_name(m.dtype), trainable=False)
        keep.append(m)

    gen = torch.Generator().manual_seed(0)

    def to_meta(t):
        return _operand(t, real, gen)

    args = pytree.tree_map(to_meta, args)
    kwargs = pytree.tree_map(to_meta, kwargs)
    for i, t in enumerate(pytree.tree_leaves((args, kwargs))):
        if isinstance(t, torch.Tensor):
            builder.add_input(kid(t), tuple(t.shape), dtype_name(t.dtype), name=f"input_{i}")
            keep.append(t)
    em = _Emitter(builder, training)
    em.key_for = lambda v: kid(v) if isinstance(v, torch.Tensor) else None
    scope_of = scopes.current if scopes is not None else (lambda: "")

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            flat_in: list = []
            _tensor_leaves(args, flat_in)
            if kwargs:
                _tensor_leaves(kwargs.values(), flat_in)
            if not real and kwargs.get("device") is not None and torch.device(kwargs["device"]).type != "meta":
                kwargs = dict(kwargs, device=torch.device("meta"))  # a factory or copy to a fixed device
            if not real and any(not t.is_meta for t in flat_in):
                # a constant the code made on a fixed device (a compiled graph's torch.as_tensor(...,
                # device=cpu)): its meta twin, so that it meets the meta operands
                args, kwargs = pytree.tree_map(to_meta, (args, kwargs))
                flat_in = []
                _tensor_leaves(args, flat_in)
                _tensor_leaves(kwargs.values(), flat_in)
            out = func(*args, **kwargs) if real else _meta_call(func, args, kwargs)
            in_keys = [k for k in map(kid, flat_in) if builder.has(k)]
            outs = []
            flat_out: list = []
            _tensor_leaves((out,), flat_out)
            for o in flat_out:
                if not real:
                    keep.append(o)
                outs.append((kid(o), tuple(o.shape), dtype_name(o.dtype)))
            em.emit(func, args, kwargs, in_keys, outs, is_contiguous=None, scope=scope_of())
            return out

    was_training = model.training
    model.train(training)
    try:
        ctx = torch.enable_grad() if training else torch.no_grad()
        # on meta tensors SDPA would take the math backend; a GPU runs one fused kernel
        with ctx, (cuda_attention() if fused and not real else contextlib.nullcontext()), Recorder():
            if not _run_swapped(model, meta_state, args, kwargs):
                functional_call(model, meta_state, args, kwargs, tie_weights=True, strict=False)
    finally:
        model.train(was_training)


# ------------------------------------------------------------------------- api
def from_torch(
    model,
    inputs=None,
    *,
    input_shape=None,
    batch: int | None = None,
    dtype: str | None = None,
    mode: str = "inference",
    method: str = "export",
    name: str | None = None,
    fused: bool = True,
):
    """Featurize an ``nn.Module`` into a :class:`~costmodel.CostGraph`.

    Args:
        model: the module. Build it under ``torch.device("meta")`` to avoid
            allocating weights.
        inputs: example inputs (tensor, tuple, or dict of keyword tensors).
            Their values are never read; meta tensors are fine.
        input_shape: alternatively, one input's shape without the batch dim.
        batch: batch size used with ``input_shape`` (default 1).
        dtype: floating dtype of the input built from ``input_shape``.
        mode: ``"inference"`` (eval mode, no grad) or ``"training"``.
        method: ``"export"`` (default, falls back to ``"trace"``) or ``"trace"``.
        fused: record the kernels PyTorch's fused paths run on a GPU (the default: fused
            multi-head attention at inference, SDPA as one fused kernel in the trace, recurrent layers as
            cuDNN's kernels);
            ``False`` records what the capture sees, as graphs were built before (the operator
            profiles collected then are mapped onto such graphs).
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise InvalidInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if mode not in ("inference", "training"):
        raise InvalidInputError(f"mode must be 'inference' or 'training', got {mode!r}")
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    args, kwargs, b = make_inputs(model, inputs, input_shape=input_shape, batch=batch, dtype=dtype)
    training = mode == "training"
    gname = name or type(model).__name__
    first = next((t for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor)), None)
    meta = {
        "batch": b,
        "input_shape": list(first.shape[1:]) if first is not None else None,
        "dtype": _graph_dtype(model, first),
        "mode": mode,
    }
    asked, rnn = method, rnn_scopes(model)
    method = "trace" if rnn else method  # torch.export keeps a whole RNN layer as one operator no rule costs
    with _CAPTURE_LOCK, grouped_mm_fallback():
        builder, used, export_error, calls = _capture(model, args, kwargs, gname, training, method, fused)
    # Python module calls of one forward, as the hooks counted them (the timeline's host lane)
    meta["module_calls"] = calls
    if used != method:
        note = fallback_note(gname, method, used, export_error)
        meta["capture_fallback"] = {"requested": method, "error": export_error, "note": note}
        meta["assumptions"] = [note]
    cudnn = fused and used == "trace"  # the graphs record cuDNN's kernels
    return with_rnn_launches(builder.build(capture=used, **meta), rnn, asked, cudnn=cudnn)




def _first_line(e: Exception, n: int) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:n]}"


def _capture(model, args, kwargs, gname: str, training: bool, method: str, fused: bool = True):
    """``(builder, method used, export error or None, submodule calls of one forward)``; called with
    the capture lock held."""
    used = method
    export_error = None
    builder = GraphBuilder(gname, "torch")
    if method == "export":
        was_training = model.training
        model.train(training)
        try:
            with (inference_fast_paths(fused and not training), recording_scopes(model) as scopes,
                  preserved_tensor_attributes(model)):
                _from_export(model, args, kwargs, builder, training)
        except TensorTooLargeError:  # the workload's size, which a trace would meet as well
            raise
        except Exception as e:  # noqa: BLE001 - any export failure falls back
            export_error = _first_line(e, 200)
            warnings.warn(
                f"torch.export failed for {gname} ({export_error}); falling back to a dispatch-level trace",
                stacklevel=3,
            )
            used = "trace"
            builder = GraphBuilder(gname, "torch")
        finally:
            model.train(was_training)
    if used == "trace":
        try:
            with (inference_fast_paths(fused and not training), recording_scopes(model) as scopes,
                  preserved_tensor_attributes(model), cudnn_rnn_kernels("steps" if fused else None)):
                _from_trace(model, args, kwargs, builder, training, fused=fused, scopes=scopes)
        except InvalidInputError:
            raise
        except Exception as e:
            on_meta = any(p.device.type == "meta" for p in model.parameters())
            if on_meta or not _needs_data(e):
                hint = (
                    " (the model branches on tensor values: build it with real weights on the CPU "
                    "so it can run once on real data)"
                    if _needs_data(e)
                    else _shape_hint(e, training)
                )
                first = f"; torch.export had failed before it: {export_error}" if export_error else ""
                raise ModelLoadError(
                    f"could not trace {gname} on meta tensors: {_first_line(e, 300)}{hint}{first}"
                ) from e
            builder = GraphBuilder(gname, "torch")
            with inference_fast_paths(fused and not training), recording_scopes(model) as scopes:
                _from_trace(model, args, kwargs, builder, training, real=True, fused=fused, scopes=scopes)
            used = "trace-real"
    return builder, used, export_error, scopes.calls


def _shape_hint(e: Exception, training: bool) -> str:
    """What to change when the model itself refuses the workload's shapes (PyTorch raises the same on
    any device)."""
    msg = str(e)
    if training and "more than 1 value per channel" in msg:
        return (" (PyTorch refuses this on every device: a training step's batch norm needs more than one value "
                "per channel, and this batch leaves one; use a larger batch)")
    if training and "targets should not be none" in msg:
        return (" (a detector's training step takes its targets, boxes and labels, beside the images; costmodel "
                "costs detectors' inference)")
    if "can't be greater than actual input size" in msg or "Output size is too small" in msg:
        return " (the input is too small for the model's kernels and strides: pass a larger input_shape)"
    return ""


def _needs_data(e: Exception) -> bool:
    if type(e).__name__ in ("DynamicOutputShapeException", "DataDependentOutputException"):
        return True
    msg = str(e)
    low = msg.lower()
    # nonzero() and other value-sized operators (unique, masked_select) have no meta kernel; a packed
    # sequence's lengths must be "a 1D CPU int64 tensor, but got 1D meta Long tensor"
    return ("meta tensor" in msg or "data-dependent" in low or "data-independent" in low or "item()" in msg
            or "no fake impl or meta kernel" in low or "cpu int64 tensor, but got" in low)


def _graph_dtype(model, first) -> str:
    import torch

    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    if p is not None:
        return dtype_name(p.dtype)
    if first is not None and isinstance(first, torch.Tensor) and first.is_floating_point():
        return dtype_name(first.dtype)
    return "fp32"
