"""The backward pass of a training step, as kernels: which operators need a gradient, what each one's
backward launches (from the autograd formulas), and how the gradients of a tensor read several times,
or read in slices, are gathered (what the CPU profiler shows PyTorch's autograd run)."""

from __future__ import annotations

import numpy as np

from ..ir import OP_KINDS

_KIND_ID = {k: i for i, k in enumerate(OP_KINDS)}

#: backward kernels of a forward operator, from the autograd formulas: ``(kernels, bytes per kernel as
#: a multiple of the forward operator's bytes)``.  Tensor kinds and binary elementwise operators launch
#: one kernel per operand that needs a gradient (set in :func:`backward_plans`); an ``add`` passes its
#: gradient through and a ``concat`` hands out slices of it (no kernel); a unary activation reads the
#: gradient and one saved tensor and writes one (1.5x the forward's two tensors); a normalization
#: reduces first and then writes (about twice its forward).
_BWD_SPEC = {
    "add": (0, 1.0), "concat": (0, 1.0),
    "relu": (1, 1.5), "gelu": (1, 1.5), "silu": (1, 1.5), "sigmoid": (1, 1.5), "tanh": (1, 1.5),
    "hardswish": (1, 1.5), "clamp": (1, 1.5), "activation": (1, 1.5), "softmax": (1, 1.5),
    "avg_pool": (1, 1.0), "reduction": (1, 1.0), "reshape": (1, 1.0), "transpose": (1, 1.0), "slice": (1, 1.0),
    "pad": (1, 1.0), "copy": (1, 1.0), "dropout": (1, 1.0), "resize": (1, 1.5),
}
_BWD_PER_OPERAND = frozenset({"conv", "conv_transpose", "matmul", "mul", "elementwise"})


# per kind: backward kernels and bytes scale of :data:`_BWD_SPEC` (``(1, 2.0)`` for the kinds it leaves out)
_BWD_K = np.array([_BWD_SPEC.get(k, (1, 2.0))[0] for k in OP_KINDS], np.int64)
_BWD_F = np.array([_BWD_SPEC.get(k, (1, 2.0))[1] for k in OP_KINDS])
_BWD_OPERAND = np.array([k in _BWD_PER_OPERAND for k in OP_KINDS])


def frozen_mask(graphs, cols) -> np.ndarray | None:
    """Per node position of ``cols``: whether the node's parameter operands are all frozen
    (``attrs["frozen"]``, set by the frontend for parameters with ``requires_grad=False``), so that a
    training step computes no gradient for them; ``None`` when no graph has a frozen parameter."""
    which = [g for g, gr in enumerate(graphs) if gr.meta.get("frozen_params")]
    if not which:
        return None
    mask = np.zeros(len(cols.view), bool)
    for g in which:
        lo, hi = int(cols.offsets[g]), int(cols.offsets[g + 1])
        mask[lo:hi] = [bool(a.get("frozen")) for a in cols.attrs[lo:hi]]
    return mask


def buffer_only_mask(cols) -> np.ndarray | None:
    """Per node position of ``cols``: whether the node reads buffers and no parameter (a batch norm's
    step counter ``num_batches_tracked += 1``, a registered index table): buffers get no gradient, so
    such a node seeds no backward kernel; ``None`` when there is none."""
    cand = np.flatnonzero(cols.param_count > 0).tolist()
    hits = [i for i in cand if cols.nodes[i].params == 0]
    if not hits:
        return None
    mask = np.zeros(len(cols.view), bool)
    mask[hits] = True
    return mask


def backward_plans(cols, which, positions: np.ndarray, frozen: np.ndarray | None = None):
    """The backward kernels of a training step of each graph ``which`` (indices into the node columns
    ``cols``), in the order autograd runs them: each graph's operators (its nodes that are not views)
    in reverse order, each with its gradient sums first, then its own kernels.

    An operator whose output needs no gradient (it reads no trainable parameter and nothing that needs
    one: an input image's preprocessing, the layers of a frozen backbone before the first trainable
    one) has no kernels, nor has a copy that no operator reads (autograd's
    saved copy of an in-place activation's input), which is no extra reader of its operand either.
    Otherwise a convolution, GEMM or binary elementwise operator launches one kernel per operand that
    needs a gradient (at most two: the input's and the weight's; a convolution on the input image only its weight's), attention two, an ``add`` of a
    parameter one of half its bytes (a reduction over the output gradient), the others what
    :data:`_BWD_SPEC` says. A tensor read by several operators (through views) gets one gradient sum
    per extra reader: it reads two, writes one, one FLOP per element (kind 1; its bytes a multiple of the
    operator's output bytes, kind 0's of its forward bytes); the gradients of slices are put back into
    the whole shape first (:func:`_reader_counts`).

    ``positions``: the column positions of every graph's operators, whose indices the plans return;
    ``frozen``: :func:`frozen_mask` (a frozen operator's parameters get no gradient kernel: a frozen
    linear layer under a trainable one computes its input's gradient only), with
    :func:`buffer_only_mask`'s operators (buffers get no gradient either).
    Returns, concatenated over ``which`` in order, each kernel's operator index, bytes scale and kind,
    how many kernels each graph has, and each kernel's elements as a multiple of its operator's output
    elements (a kind-1 kernel's work). Arrays throughout; the one sequential step, which tensors need
    a gradient, is a single pass over the edges in source order."""
    n = len(cols.view)
    which = np.asarray(which, np.int64)
    e_lo, e_hi = cols.edge_offsets[which], cols.edge_offsets[which + 1]
    rows = np.concatenate([np.arange(a, b) for a, b in zip(e_lo.tolist(), e_hi.tolist())]) if len(which) else \
        np.zeros(0, np.int64)
    e = cols.edges[rows] + np.repeat(cols.offsets[which], e_hi - e_lo)[:, None]
    e = np.unique(e[:, 0] * n + e[:, 1])  # each (source, reader) once, sorted by source
    src, dst = e // n, e % n
    # needs a gradient: holds a parameter, or reads a tensor that needs one (sources come first in a DAG)
    has_param = cols.param_count > 0
    if frozen is not None:
        has_param = has_param & ~frozen
    grad_l = has_param.tolist()
    for s_, d_ in zip(src.tolist(), dst.tolist()):
        if grad_l[s_]:
            grad_l[d_] = True
    grad = np.asarray(grad_l, bool)
    # views resolve to the operator that made the buffer: their first (lowest) predecessor's owner
    first = np.full(n, n)
    np.minimum.at(first, dst, src)
    chain = cols.view & (first < n)
    owner = _roots(np.where(chain, first, np.arange(n)))
    # a copy nothing reads, other than a graph's last node, is one autograd saves for the backward (the
    # operand of an in-place activation whose formula needs its input): no gradient flows through it
    saved = (cols.kind == _KIND_ID["copy"]) & ~cols.view & (np.bincount(src, minlength=n) == 0)
    ends = cols.offsets[which + 1]
    saved[ends[ends > cols.offsets[which]] - 1] = False  # a graph's last node is its output (empty graphs have none)
    g_src = grad[src]
    live = g_src & ~cols.view[dst] & ~saved[dst]
    readers, cuts, cut_of, cut_scale = _reader_counts(cols, src[live], owner, first, n)
    grad_preds = np.bincount(dst[g_src], minlength=n)
    # the operators of the graphs in ``which``, each graph's in reverse order (autograd's)
    lo, hi = np.searchsorted(positions, cols.offsets[which]), np.searchsorted(positions, cols.offsets[which + 1])
    gid = np.repeat(np.arange(len(which)), hi - lo)
    J = np.concatenate([np.arange(b - 1, a - 1, -1) for a, b in zip(lo.tolist(), hi.tolist())]) if len(which) \
        else np.zeros(0, np.int64)
    node = positions[J]
    kind = cols.kind[node]
    has_p = has_param[node]
    k = _BWD_K[kind].copy()
    f = _BWD_F[kind].copy()
    per_op = _BWD_OPERAND[kind]
    k[per_op] = np.clip(grad_preds[node][per_op] + has_p[per_op], 1, 2)
    f[per_op] = 1.0
    att = kind == _KIND_ID["attention"]
    k[att], f[att] = 2, 1.0
    bias = (kind == _KIND_ID["add"]) & has_p
    k[bias], f[bias] = 1, 0.5  # the broadcast parameter's gradient: a reduction over the output gradient
    k[~grad[node] | saved[node] | ((cols.flops[node] <= 0) & (cols.nbytes[node] <= 0))] = 0
    extra = np.maximum(readers[node] - 1, 0)
    # per operator, in autograd's order: the gradients its readers' slices scatter into its shape (kind 1),
    # its gradient sums (kind 1), then its own kernels (kind 0); sort keys keep that order
    at = np.full(n, -1)
    at[node] = np.arange(len(J))
    c_row = at[cut_of] if len(cut_of) else np.zeros(0, np.int64)
    keep = c_row >= 0
    c_row, c_scale, c_elem = c_row[keep], cut_scale[keep], cuts[keep]
    p_sum, p_own = np.repeat(np.arange(len(J)), extra), np.repeat(np.arange(len(J)), k)
    key = np.concatenate([3 * c_row, 3 * p_sum + 1, 3 * p_own + 2])
    order = np.argsort(key, kind="stable")
    out_j = np.concatenate([J[c_row], J[p_sum], J[p_own]])[order]
    out_scale = np.concatenate([c_scale, np.full(len(p_sum), 3.0), f[p_own]])[order]
    out_elem = np.concatenate([c_elem, np.ones(len(p_sum)), np.ones(len(p_own))])[order]
    out_what = np.concatenate([np.ones(len(c_row) + len(p_sum), np.int64), np.zeros(len(p_own), np.int64)])[order]
    per_graph = np.bincount(gid[np.concatenate([c_row, p_sum, p_own])], minlength=len(which))
    return out_j, out_scale, out_what, per_graph, out_elem


def _reader_counts(cols, src, owner, first, n: int):
    """How autograd gathers the gradients of the reads ``src`` (the sources of the edges along which a
    gradient flows back: one entry per (source, reader) pair) into each buffer's owner. Returns the reads
    per owner, then the kernels that put sliced gradients back into the owner's shape: each one's
    elements as a share of the owner's first output, its owner and its bytes scale (multiples of the
    owner's output bytes).

    A read through no slicing view is one gradient of the whole tensor; the owner sums them. A tensor
    cut by one ``split``/``chunk``/``unbind`` (a view with several outputs) gets its pieces' gradients
    back in one ``cat`` (reads the pieces, writes the whole: twice its bytes), which is one gradient to
    sum however many readers took pieces. Each single slice (``select``, ``slice``, ``narrow``) that a
    gradient flows through is scattered back on its own: a zero tensor of the whole shape (one fill,
    the whole bytes once) and a copy into its part (the slice's bytes twice), and each of its reads is a
    whole-size gradient the owner then sums (what the CPU profiler shows PyTorch's backward run)."""
    slicing = cols.view & (cols.kind == _KIND_ID["slice"]) & (first < n)
    # the nearest slicing view between a read and the buffer's owner (or the owner itself)
    through = cols.view & ~slicing & (first < n)
    up = _roots(np.where(through, first, np.arange(n)))
    cut = up[src]
    via = slicing[cut]
    readers = np.bincount(owner[src[~via]], minlength=n)
    empty = np.zeros(0, np.int64)
    if not via.any():
        return readers, np.zeros(0), empty, np.zeros(0)
    c_all = cut[via]
    multi = np.zeros(n, bool)
    cand = np.flatnonzero(slicing)
    multi[cand] = [len(cols.nodes[i].out_shapes) > 1 for i in cand.tolist()]
    single = c_all[~multi[c_all]]
    readers += np.bincount(owner[single], minlength=n)  # each read of a slice: one whole-size gradient
    cs = np.unique(c_all)
    readers += np.bincount(owner[cs[multi[cs]]], minlength=n)  # a split: one gradient, its cat's
    o = owner[cs]
    whole_b = np.maximum(cols.out_bytes[o], 1.0)
    whole_n = np.maximum(cols.numel[o], 1.0)
    part = np.minimum(cols.out_bytes[cs] / whole_b, 1.0)
    m = multi[cs]
    # a split: its cat (the whole, read and written); a slice: a fill (the whole written), then its copy
    rows_o = np.concatenate([o[m], o[~m], o[~m]])
    first_row = np.concatenate([np.zeros(m.sum()), np.zeros((~m).sum()), np.ones((~m).sum())])
    order = np.lexsort((first_row, np.concatenate([cs[m], cs[~m], cs[~m]])))
    scale = np.concatenate([np.full(m.sum(), 2.0), np.ones((~m).sum()), 2.0 * part[~m]])[order]
    elems = np.concatenate([np.ones(m.sum()), np.ones((~m).sum()),
                            np.minimum(cols.numel[cs[~m]] / whole_n[~m], 1.0)])[order]
    return readers, elems, rows_o[order], scale


def _roots(parent: np.ndarray) -> np.ndarray:
    """Each node's root along ``parent`` (a node that is its own parent ends a chain), by pointer jumping."""
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            return parent
        parent = nxt
