"""Fast meta-tensor execution for the trace frontend (:mod:`.pytorch`).

The trace runs a module on meta tensors under a ``TorchDispatchMode``. Many meta kernels are Python
decompositions (a batch norm about 2 ms a call, a ReLU about 1 ms), so this module memoizes each
functional operator's output layout per argument layout, gives the normalizations their exact output
layouts without their kernels, and swaps a module's parameters in place of ``functional_call``.
"""

from __future__ import annotations

import contextlib

from typing import Any

# Output metadata of functional ATen ops on meta tensors, by (op, argument metadata). Many meta
# kernels are Python decompositions (``native_batch_norm`` ~2 ms a call, ``native_layer_norm``,
# ``addmm``, softmax, GELU ~1 ms), and a network repeats the same op on the same shapes many times
# (resnet50: 53 batch norms, 10 distinct shapes). A meta output depends on nothing but the
# arguments' shapes, strides and dtypes, so it is computed once per key and rebuilt with
# ``empty_strided`` afterwards. Only ops none of whose results alias an argument (no views, no
# in-place or ``out=`` results) are memoized; those always run.
_META_CACHE: dict = {}
_META_CACHE_MAX = 50_000
_UNCACHEABLE = object()


_KEY_TYPES: tuple | None = None


def _key_types() -> tuple:
    global _KEY_TYPES
    if _KEY_TYPES is None:
        import torch

        _KEY_TYPES = (torch.Tensor, (bool, int, float, str, type(None), torch.dtype, torch.device, torch.layout,
                                     torch.memory_format))
    return _KEY_TYPES


def _meta_key(v):
    """A hashable image of one argument (tensors by metadata), or ``_UNCACHEABLE``."""
    tensor, plain = _KEY_TYPES or _key_types()
    if isinstance(v, tensor):
        if not v.is_meta:
            return _UNCACHEABLE
        return (tuple(v.shape), v.stride(), v.dtype, v.storage_offset(), v.requires_grad)
    if isinstance(v, (list, tuple)):
        out = []
        for a in v:
            if isinstance(a, int) and not isinstance(a, bool):
                out.append(a)
                continue
            k = _meta_key(a)
            if k is _UNCACHEABLE:
                return _UNCACHEABLE
            out.append(k)
        return (type(v) is list, tuple(out))
    if isinstance(v, plain):
        return (type(v), v)
    return _UNCACHEABLE


def _functional(func) -> bool:
    """True when no result of ``func`` aliases an argument (memoizing it cannot break a view)."""
    f = _FUNCTIONAL.get(func)
    if f is None:
        schema = getattr(func, "_schema", None)
        f = schema is not None and all(r.alias_info is None for r in schema.returns)
        _FUNCTIONAL[func] = f
    return f


_FUNCTIONAL: dict = {}


def _stat_dtype(dt):
    import torch

    return torch.float32 if dt in (torch.float16, torch.bfloat16) else dt


def _dense(x) -> bool:
    import torch

    if x.is_contiguous():
        return True
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    return fmt is not None and x.is_contiguous(memory_format=fmt)


def _like(x, shape=None, dtype=None):
    """A new tensor on ``x``'s device: ``x``'s shape, strides and dtype, or a contiguous one of ``shape`` and
    ``dtype``. What ``empty_like`` / ``new_empty`` give for a dense ``x``, without their Python meta
    decompositions (which cost more than the rest of a batch norm's trace)."""
    import torch

    if shape is None:
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
    return torch.empty(shape, dtype=dtype, device=x.device)


def _fast_batch_norm(x, training=False):
    """The results of a batch norm over ``x``: output, per-channel mean and inverse std, laid out as the
    meta decomposition lays them out (``x`` is dense, so ``empty_like`` keeps its strides). None (run the
    kernel) for a layout it has not been checked on, or a training step over one value per channel
    (which the kernel refuses)."""
    if x.dim() < 2 or not _dense(x) or (training and x.numel() <= x.shape[1]):
        return None
    sd = _stat_dtype(x.dtype)
    c = (x.shape[1],)
    return _like(x), _like(x, c, sd), _like(x, c, sd)


def _fast_layer_norm(x, normalized_shape):
    """The results of a layer norm over the last ``len(normalized_shape)`` dims of ``x``: laid out as a
    contiguous ``x`` is, whatever ``x``'s layout (the kernel normalizes ``x.contiguous()``; ConvNeXt's
    norms read permuted tensors)."""
    if not isinstance(normalized_shape, (list, tuple)):
        return None
    k = len(normalized_shape)
    if not 0 < k <= x.dim():
        return None
    sd = _stat_dtype(x.dtype)
    stats = tuple(x.shape[:x.dim() - k]) + (1,) * k
    out = _like(x) if x.is_contiguous() else _like(x, tuple(x.shape), x.dtype)  # strides of size-1 dims kept
    return out, _like(x, stats, sd), _like(x, stats, sd)


def _fast_paths() -> dict:
    """Exact output layouts of the normalizations whose meta kernels are slow Python decompositions
    (2-5 ms a call). ``tests/frontends`` checks each against the meta kernel itself."""
    import torch

    a = torch.ops.aten
    return {
        a.native_batch_norm.default: lambda x, w, b, rm, rv, training, *r, **k: _fast_batch_norm(x, training),
        a._native_batch_norm_legit_no_training.default: lambda x, *r, **k: _fast_batch_norm(x),
        a._native_batch_norm_legit.default: lambda x, w, b, rm, rv, training, *r, **k: _fast_batch_norm(x, training),
        # without running statistics only training is valid: otherwise the kernel raises, and so must we
        a._native_batch_norm_legit.no_stats: (lambda x, w, b, training, *r, **k:
                                             _fast_batch_norm(x, training) if training else None),
        a.native_layer_norm.default: lambda x, shape, *r, **k: _fast_layer_norm(x, shape),
        # an in-place activation returns its own operand, unchanged in shape, strides and dtype; their meta
        # kernels are Python decompositions of 0.5-3 ms a call (MobileNet's ReLU6, MobileNetV3's hard swish)
        **{getattr(a, name).default: _same for name in INPLACE_ACTIVATIONS},
        # and a functional one returns a tensor laid out as its dense operand (0.3-3 ms a call as well)
        **{getattr(a, name).default: _activation for name in ACTIVATIONS},
    }


#: elementwise activations of one tensor and scalar arguments
ACTIVATIONS = ("relu", "hardsigmoid", "hardswish", "gelu", "silu", "sigmoid", "tanh", "hardtanh", "leaky_relu",
               "elu", "mish")


def _scalars_only(args) -> bool:
    import torch

    return not any(isinstance(v, torch.Tensor) for v in args)


def _activation(x, *args):
    """An activation's result on a dense ``x`` (contiguous or channels-last): a new tensor with ``x``'s shape,
    strides and dtype, as the kernel lays it out; None (the kernel runs) otherwise."""
    return _like(x) if _scalars_only(args) and _dense(x) else None


#: in-place elementwise activations of one tensor and scalar arguments: what they return is their operand
INPLACE_ACTIVATIONS = ("relu_", "hardtanh_", "clamp_", "clamp_min_", "clamp_max_", "leaky_relu_", "elu_", "celu_",
                       "selu_", "silu_", "mish_", "hardswish_", "hardsigmoid_", "sigmoid_", "tanh_", "gelu_",
                       "threshold_")


def _same(x, *args):
    """An in-place activation's result: ``x`` itself (None, so the kernel runs, where an argument is a tensor)."""
    return x if _scalars_only(args) else None


_FAST: dict | None = None


def _meta_call(func, args, kwargs):
    """``func(*args, **kwargs)`` on meta tensors, memoized for functional ops (see ``_META_CACHE``)."""
    import torch
    import torch.utils._pytree as pytree

    global _FAST
    if _FAST is None:
        _FAST = _fast_paths()
    fast = _FAST.get(func)
    # the shortcuts read their arguments by position, as the dispatcher passes them; anything else runs
    if fast is not None and not kwargs and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
        try:
            out = fast(*args)
        except TypeError:  # fewer positional arguments than the shortcut reads
            out = None
        if out is not None:
            return out
    if not _functional(func):
        return func(*args, **kwargs)
    ka = _meta_key(args)
    kk = _meta_key(tuple(sorted(kwargs.items()))) if kwargs else ()
    if ka is _UNCACHEABLE or kk is _UNCACHEABLE:
        return func(*args, **kwargs)
    key = (func, ka, kk)
    spec = _META_CACHE.get(key)
    if spec is None:
        out = func(*args, **kwargs)
        spec = _out_spec(out)
        if spec is not None:
            if len(_META_CACHE) >= _META_CACHE_MAX:
                _META_CACHE.clear()
            _META_CACHE[key] = spec
        return out
    how, kind, metas = spec
    if how == "tensor":
        return _rebuild(metas)
    if how == "flat":
        return kind(m[1] if m[0] == "value" else _rebuild(m) for m in metas)
    return pytree.tree_unflatten([m[1] if m[0] == "value" else _rebuild(m) for m in metas], kind)


def _tensor_meta(o):
    return (tuple(o.shape), o.stride(), o.dtype, o.storage_offset())


def _out_spec(out):
    """How to rebuild ``out`` (a meta result): ``("tensor", None, meta)``, ``("flat", tuple|list, metas)``
    or ``("tree", treespec, metas)``; None when it holds a tensor that is not on the meta device."""
    import torch
    import torch.utils._pytree as pytree

    if isinstance(out, torch.Tensor):
        return ("tensor", None, _tensor_meta(out)) if out.is_meta else None
    flat = type(out) in (tuple, list) and not any(isinstance(o, (list, tuple, dict)) for o in out)
    leaves, tree = (out, type(out)) if flat else pytree.tree_flatten(out)
    metas = []
    for o in leaves:
        if isinstance(o, torch.Tensor):
            if not o.is_meta:
                return None
            metas.append(_tensor_meta(o))
        else:
            metas.append(("value", o))
    return ("flat" if flat else "tree", tree, metas)


def _rebuild(m):
    import torch

    shape, stride, dtype, offset = m
    t = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    return t.as_strided(shape, stride, offset) if offset else t


def _tensor_leaves(values, out: list) -> None:
    """Append the tensors among ``values`` (nested lists and tuples, as ATen arguments and results
    come) to ``out``, in order: ``pytree.tree_leaves`` without its generality, at every op."""
    import torch

    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            _tensor_leaves(v, out)


def _run_swapped(model, state: dict, args, kwargs) -> bool:
    """Run ``model`` with the tensors of ``state`` in place of its parameters and buffers, put back
    afterwards; what ``functional_call`` does, in a fraction of its time (it validates and
    re-resolves every name on every call). A parametrized module's names are its ``original`` slots,
    so it is swapped like any other. Returns False, having changed nothing, when a name is not a
    parameter or buffer slot of the module: the caller then uses ``functional_call``."""
    slots = []
    mods: dict[str, Any] = {}
    for name, t in state.items():
        path, _, leaf = name.rpartition(".")
        mod = mods.get(path)
        if mod is None:
            try:
                mod = mods[path] = model.get_submodule(path) if path else model
            except AttributeError:
                return False
        table = mod._parameters if leaf in mod._parameters else mod._buffers if leaf in mod._buffers else None
        if table is None or table[leaf] is None:
            return False
        slots.append((table, leaf, t))
    saved = [(table, leaf, table[leaf]) for table, leaf, _ in slots]
    try:
        for table, leaf, t in slots:
            table[leaf] = t
        model(*args, **kwargs)
    finally:
        for table, leaf, t in saved:
            table[leaf] = t
    return True


@contextlib.contextmanager
def preserved_tensor_attributes(model):
    """Put back, on exit, every plain tensor attribute of ``model``'s modules (a tensor, or a list or
    tuple of them, held outside ``_parameters`` and ``_buffers``) that a capture replaced.

    Some modules cache tensors as plain attributes and move them to the device of the input they
    see (torchvision's ``AnchorGenerator`` keeps its cell anchors so). A capture on meta tensors
    would leave them on the meta device, and the next call on real data fails with "Cannot copy out
    of meta tensor"; a capture must not change the user's module."""
    import torch

    def tensors_only(v) -> bool:
        if isinstance(v, torch.Tensor):
            return True
        return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, torch.Tensor) for x in v)

    saved = []
    for mod in model.modules():
        for k, v in vars(mod).items():
            if tensors_only(v):
                saved.append((mod, k, v, list(v) if isinstance(v, list) else None))
    try:
        yield
    finally:
        for mod, k, v, items in saved:
            if items is not None:
                v[:] = items
            mod.__dict__[k] = v


@contextlib.contextmanager
def meta_tensor_attributes(model):
    """Within, every plain tensor attribute of ``model``'s modules that is not on the meta device (the
    constants an FX ``GraphModule`` holds, ``_tensor_constant0``) is a meta tensor of its shape, so a
    trace on meta tensors does not meet a CPU operand; the module's own are put back on exit."""
    import torch

    with preserved_tensor_attributes(model):
        for mod in model.modules():
            for k, v in list(vars(mod).items()):
                if isinstance(v, torch.Tensor) and v.device.type != "meta":
                    mod.__dict__[k] = torch.empty_like(v, device="meta")
        yield


class ObjectKeys:
    """A key per tensor object that stays unique when the object dies and its ``id`` is reused: what the
    trace keys a real run's tensors by without keeping them alive (a detector's run on the CPU makes
    gigabytes of them; a meta run keeps its own, which cost nothing, and keys them by ``id``)."""

    def __init__(self) -> None:
        import weakref

        self._ref = weakref.ref
        self._refs: dict[int, Any] = {}
        self._keys: dict[int, int] = {}
        self._next = 0

    def __call__(self, t) -> int:
        i = id(t)
        r = self._refs.get(i)
        if r is None or r() is not t:
            self._refs[i] = self._ref(t)
            self._next += 1
            self._keys[i] = self._next
        return self._keys[i]
