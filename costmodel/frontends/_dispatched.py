"""Export nodes as ATen dispatches them on a GPU (for :mod:`.pytorch`'s export walker).

``torch.export`` keeps composite operators (``reshape``, ``matmul``, ``linear``, ``einsum``) as one
node each, and records each result's layout as the CPU kernels it ran under fake tensors produce
it. What a GPU runs can differ in both. A composite operator copies an operand it cannot view:
``reshape`` of a permuted tensor (Swin's window partition), ``matmul`` folding batch dimensions
that are not contiguous, ``linear`` on a transposed input (MLP-Mixer's token mixing), which then
also adds its bias in a kernel of its own. And the fused attention kernels write ``(B, T, H, hd)``
and return it as ``(B, H, T, hd)``, so the ``transpose(1, 2).reshape`` after them is a view on a
GPU, where the CPU kernel's contiguous result would need a copy. The walker gives attention
results the GPU layout, views of them the layout that follows, and runs each composite operator
on meta tensors of its operands' shapes and strides under a recording mode, emitting what the
dispatcher ran when that is more kernels than the one node: the operators the trace frontend
records for the same module.
"""

from __future__ import annotations

from collections.abc import Hashable

from ._aten import base_name, lookup
from ._metacall import _tensor_leaves


#: composite operators that export keeps as one node but whose dispatch copies an operand it cannot view
#: (``reshape`` of a permuted tensor, ``matmul`` folding non-contiguous batch dims, ``linear`` on a
#: non-contiguous input, which also adds its bias in a kernel of its own)
MAY_COPY = frozenset({"reshape", "reshape_as", "flatten", "matmul", "linear", "einsum"})
#: those of them that view a contiguous first operand (``linear`` flattens it and runs one ``addmm``)
VIEW_IF_CONTIGUOUS = frozenset({"reshape", "reshape_as", "flatten", "linear"})


def _outputs(o) -> list:
    flat: list = []
    _tensor_leaves((o,), flat)
    return flat


def gpu_layout(target, val):
    """``val`` with the layout a CUDA device gives the operator's result: the fused attention kernels
    write ``(B, T, H, hd)`` and return it as ``(B, H, T, hd)``, so the usual ``transpose(1, 2)``
    and ``reshape`` after them is a view, where the CPU kernel export ran returns a contiguous tensor."""
    import torch

    if base_name(target) != "scaled_dot_product_attention" or not isinstance(val, torch.Tensor) or val.dim() != 4:
        return val
    b, h, t, d = (int(x) for x in val.shape)
    return torch.empty((b, t, h, d), dtype=val.dtype, device="meta").transpose(1, 2)


def _meta_operands(node, vals: dict, grads: set, training: bool):
    """``(args, kwargs, {id(meta tensor): operand key})`` of export node ``node`` with each operand a
    meta tensor of its shape, strides and dtype (``None`` when an operand's value is unknown). In
    training an operand that requires grad and is not a parameter is an autograd intermediate, as in
    eager (an in-place operator may modify it; a leaf that requires grad it may not)."""
    import torch
    import torch.utils._pytree as pytree

    keys: dict[int, Hashable] = {}
    known = True

    def to_meta(a):
        nonlocal known
        if not isinstance(a, torch.fx.Node):
            return a
        v = vals.get(a.name)
        if not isinstance(v, torch.Tensor):
            known = False
            return a
        m = torch.empty_strided(tuple(v.shape), tuple(v.stride()), dtype=v.dtype, device="meta")
        if m.is_floating_point() and (a.name in grads or training and a.op != "placeholder"):
            m.requires_grad_(True)
            if a.name not in grads:
                with torch.enable_grad():
                    m = m.clone()  # not a leaf; clone keeps the strides (before the recording mode)
        keys[id(m)] = a.name
        return m

    args, kwargs = pytree.tree_map(to_meta, (node.args, dict(node.kwargs)))
    return (args, kwargs, keys) if known else None


def meta_run(node, vals: dict, grads: set):
    """Export node ``node``'s result on meta operands (``None`` if it cannot run there)."""
    import torch

    ops = _meta_operands(node, vals, grads, False)
    if ops is None:
        return None
    try:
        with torch.no_grad():
            out = node.target(*ops[0], **ops[1])
    except Exception:  # noqa: BLE001 - keep export's value
        return None
    return out if isinstance(out, torch.Tensor) else None


def emit_dispatched(em, node, vals: dict, scope: str, grads: set) -> bool:
    """Emit what ATen dispatches for export node ``node`` when that is more kernels than the node
    itself: the operator is run on meta tensors with the operands' shapes and strides under a
    recording mode, as the trace frontend would see it (parameters require grad, as in eager, which
    decides whether ``matmul`` folds its batch dimensions; in training every floating operand does).
    Returns False (nothing emitted) when the operands are not all known or the dispatch adds no kernel."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from .pytorch import dtype_name

    first = node.args[0] if node.args else None
    v = vals.get(first.name) if isinstance(first, torch.fx.Node) else None
    if base_name(node.target) in VIEW_IF_CONTIGUOUS and isinstance(v, torch.Tensor) and v.is_contiguous():
        return False  # the fast exit: these never copy a contiguous operand
    ops = _meta_operands(node, vals, grads, em.training)
    if ops is None or not all(em.b.has(k) for k in ops[2].values()):
        return False
    args, kwargs, keys = ops
    calls: list = []
    keep: list = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, a=(), kw=None):
            out = func(*a, **(kw or {}))
            calls.append((func, a, kw or {}, out))
            keep.append(out)
            return out

    try:
        with (torch.enable_grad() if em.training else torch.no_grad()), Recorder():
            out = node.target(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a node the meta kernels cannot run is emitted as export gives it
        return False
    if not isinstance(out, torch.Tensor):
        return False
    hits = [lookup(base_name(f)) for f, *_ in calls]
    kernels = sum(1 for h in hits if h is None or not h[1])
    own = lookup(base_name(node.target))
    if kernels <= (0 if own is not None and own[1] else 1):
        return False
    last = max((i for i, c in enumerate(calls) if any(t is out for t in _outputs(c[3]))), default=-1)
    if last < 0:  # the result is no call's output (an alias of an operand): emitted as export gives it
        return False
    for i, (func, a, kw, o) in enumerate(calls):
        flat_in: list = []
        _tensor_leaves(a, flat_in)
        _tensor_leaves(kw.values(), flat_in)
        in_keys = [keys[id(t)] for t in flat_in if id(t) in keys and em.b.has(keys[id(t)])]
        flat_out = _outputs(o)
        for t in flat_out:  # intermediates: keys of this node's own, unique in the graph
            if i == last and t is out:  # the node's result, also when an in-place call returns its operand
                keys[id(t)] = node.name
            elif id(t) not in keys or i < last and any(t is x for x in flat_in):
                keys[id(t)] = (node.name, "dispatch", len(keys))
        outs = [(keys[id(t)], tuple(int(d) for d in t.shape), dtype_name(t.dtype)) for t in flat_out]
        em.emit(func, a, kw, in_keys, outs, is_contiguous=None, scope=scope)
    return em.b.has(node.name)
