"""Analytic memory model: weights + live activations (inference) and the
training extras (gradients, optimizer state, activations saved for backward).

Inference peak is found by liveness over the graph's topological order: each
operator allocates its outputs; a buffer is freed after the last operator
that reads it (or any view of it) has run.  Views and in-place operators
alias their input's buffer instead of allocating.  This is what PyTorch's
caching allocator sees in eager mode, minus allocator rounding, which
:func:`allocator_reserved_bytes` adds back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

from .._errors import InvalidInputError
from ..ir import OP_KINDS, CostGraph

MB = 2**20

#: optimizer state per parameter, in units of the parameter's own size
OPTIMIZER_STATE = {"sgd": 0.0, "sgd_momentum": 1.0, "momentum": 1.0, "adam": 2.0, "adamw": 2.0}
#: transient buffers of the optimizer step (foreach kernels build temporaries
#: about the size of the parameters they update)
OPTIMIZER_TRANSIENT = {"sgd": 0.0, "sgd_momentum": 0.0, "momentum": 0.0, "adam": 1.0, "adamw": 1.0}

# Kinds whose backward needs their *inputs* saved, and kinds that save their output.
_SAVES_INPUTS = frozenset(
    "conv conv_transpose matmul attention batch_norm layer_norm group_norm instance_norm rms_norm "
    "gelu silu hardswish activation clamp max_pool avg_pool mul elementwise embedding gather resize".split()
)
_SAVES_OUTPUT = frozenset("relu sigmoid tanh softmax attention".split())
_KIND_MAX_POOL, _KIND_ELEMENTWISE = OP_KINDS.index("max_pool"), OP_KINDS.index("elementwise")


@functools.lru_cache(maxsize=1)
def _kind_saves():
    """The two kind sets above as flags per index into OP_KINDS (what the array version reads)."""
    import numpy as np

    return np.array([k in _SAVES_INPUTS for k in OP_KINDS]), np.array([k in _SAVES_OUTPUT for k in OP_KINDS])


@functools.lru_cache(maxsize=1)
def _tensor_kinds():
    import numpy as np

    from ..ir import TENSOR_KINDS

    return np.array([k in TENSOR_KINDS for k in OP_KINDS])


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes of each part of a workload's device memory (allocator view)."""

    weights_bytes: float
    activations_bytes: float  # peak of live activations (inference) / saved activations (training)
    gradients_bytes: float = 0.0
    optimizer_bytes: float = 0.0
    transient_bytes: float = 0.0
    mode: str = "inference"

    @property
    def total_bytes(self) -> float:
        return (
            self.weights_bytes
            + self.activations_bytes
            + self.gradients_bytes
            + self.optimizer_bytes
            + self.transient_bytes
        )

    def to_mb(self) -> dict[str, float]:
        d = {k[:-6] + "_mb": getattr(self, k) / MB for k in _BYTE_FIELDS}
        d["total_mb"] = self.total_bytes / MB
        return d


_BYTE_FIELDS = tuple(f.name for f in fields(MemoryBreakdown) if f.name.endswith("_bytes"))


def _buffers(graph: CostGraph) -> tuple[list[int], list[bool]]:
    """Map each node to the node that owns its output buffer; mark allocators (one graph, as lists; the
    liveness scans use the array version, :func:`_owners_many`)."""
    nodes = graph.nodes
    owner = list(range(len(nodes)))
    allocates = [True] * len(nodes)
    # only views and in-place operators alias a buffer: their predecessors are all that is looked up
    preds: dict[int, list[int]] = {i: [] for i, n in enumerate(nodes)
                                   if n.is_view or (n.attrs and n.attrs.get("inplace"))}
    if not preds:
        return owner, allocates
    for s, d in graph.edges:
        p = preds.get(d)
        if p is not None:
            p.append(s)
    for i, p in preds.items():  # in graph order, so a chain of views resolves to its first owner
        if p:
            # first data predecessor in operand order is the aliased tensor
            owner[i] = owner[p[0]] if len(p) == 1 else owner[_first_pred(graph, i, p)]
            allocates[i] = False
        else:
            # a view of a graph input / parameter: nothing new on the device
            allocates[i] = nodes[i].kind == "copy"  # empty()-style allocation
    return owner, allocates


def _owners_many(graphs, cols, which):
    """:func:`_buffers` of the graphs ``which`` (indices into ``graphs`` and the node columns ``cols``) at
    once, over arrays: each of their nodes' owning node and allocation flag, by position in ``cols``
    (positions of other graphs are left as their own owners)."""
    import numpy as np

    n = len(cols.view)
    owner = np.arange(n)
    allocates = np.ones(n, bool)
    alias = cols.view | cols.inplace
    # the chosen graphs' edges, by position in the columns
    e_lo, e_hi = cols.edge_offsets[which], cols.edge_offsets[np.asarray(which) + 1]
    rows = np.concatenate([np.arange(a, b) for a, b in zip(e_lo.tolist(), e_hi.tolist())]) if len(which) else \
        np.zeros(0, np.int64)
    shift = np.repeat(cols.offsets[which], e_hi - e_lo)
    edges = cols.edges[rows] + shift[:, None]
    into = edges[alias[edges[:, 1]]]
    # each aliasing node's first predecessor in edge order, and how many it has
    into = into[np.argsort(into[:, 1], kind="stable")]  # grouped by node, edge order kept within a node
    dst, first, count_dst = np.unique(into[:, 1], return_index=True, return_counts=True)
    count = np.zeros(n, np.int64)
    count[dst] = count_dst
    parent = owner.copy()
    parent[dst] = into[first, 0]
    multi = np.flatnonzero(count_dst > 1)
    if len(multi):  # several operands (an in-place add): the one whose shape it takes
        graph_of = np.searchsorted(cols.offsets, dst[multi], side="right") - 1
        for j, g in zip(multi.tolist(), graph_of.tolist()):
            i, off = int(dst[j]), int(cols.offsets[g])
            p = (into[first[j]:first[j] + count_dst[j], 0] - off).tolist()
            parent[i] = off + _first_pred(graphs[g], i - off, p)
    # chains of views resolve to the buffer's owner (predecessors come first: pointer jumping finds it)
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    mask = np.zeros(n, bool)
    for g in which:
        mask[cols.span(g)] = True
    alias &= mask
    allocates[alias] = False
    orphans = alias & (count == 0)  # a view of a graph input / parameter: nothing new, unless an empty()
    allocates[orphans] = cols.kind[orphans] == OP_KINDS.index("copy")
    return parent, allocates, edges


def _peak_activation_many(graphs, cols, which) -> list[float]:
    """:func:`peak_activation_bytes` of the graphs ``which`` at once (node columns ``cols``). Sizes are
    whole bytes, so the running sums over all of them are exact and each graph's equals its own scan."""
    import numpy as np

    owner, allocates, e = _owners_many(graphs, cols, which)
    n = len(owner)
    # a buffer lives until the last reader of any node it backs has run; outputs nobody reads, to the end
    # of their graph (never freed within it: the position n stands for that)
    last_use = np.arange(n)
    read = np.zeros(n, bool)
    read[e[:, 0]] = True
    np.maximum.at(last_use, owner[e[:, 0]], e[:, 1])
    last_use[owner[~read]] = n
    size = np.where(allocates, cols.out_bytes, 0.0)
    freed = np.zeros(n + 1)
    owners = np.flatnonzero(owner == np.arange(n))
    np.add.at(freed, last_use[owners], size[owners])
    S, F = np.cumsum(size), np.cumsum(freed[:n])
    out = []
    for g in which:
        a, b = int(cols.offsets[g]), int(cols.offsets[g + 1])
        if a == b:
            out.append(0.0)
            continue
        s0 = S[a - 1] if a else 0.0
        f0 = F[a - 1] if a else 0.0
        # live bytes just after step i allocates: allocated so far, less what steps before i freed
        live = (S[a:b] - s0) - (np.concatenate([[f0], F[a:b - 1]]) - f0)
        input_bytes = float(sum(_nbytes(x.shape, x.dtype) for x in graphs[g].inputs))
        out.append(float(input_bytes + max(0.0, float(live.max()))))
    return out


def _first_pred(graph: CostGraph, i: int, preds: list[int]) -> int:
    # match the first non-parameter operand shape to a predecessor's output
    node = graph.nodes[i]
    for shp, is_p in zip(node.in_shapes, node.param_inputs):
        if is_p:
            continue
        for p in sorted(preds):
            if shp in graph.nodes[p].out_shapes:
                return p
        break
    return min(preds)


def peak_activation_bytes(graph: CostGraph) -> float:
    """Peak bytes of live activations during one forward pass (inputs included)."""
    from ..ir import node_columns

    return _peak_activation_many([graph], node_columns([graph]), [0])[0]


def _saved_many(graphs, cols, which) -> tuple[list[float], list[float]]:
    """For the training graphs ``which`` (indices into ``graphs`` and the node columns ``cols``), at once
    over arrays: the bytes autograd keeps from the forward pass (:func:`saved_activation_bytes`) and
    the largest operator output (views excluded). Sizes are whole bytes, so the sums are exact."""
    import numpy as np

    owner, allocates, e = _owners_many(graphs, cols, which)
    n = len(owner)
    kind = cols.kind
    flags_in, flags_out = _kind_saves()
    saves_inputs, saves_output = flags_in[kind], flags_out[kind]
    own = saves_output | (kind == _KIND_MAX_POOL)
    for i in np.flatnonzero(kind == _KIND_ELEMENTWISE).tolist():  # dropout keeps its mask
        if cols.nodes[i].op.endswith("dropout"):
            own[i] = True
    for g in which:  # frozen parameters: an operator whose output needs no gradient saves nothing, and a
        needs = graphs[g].needs_gradient()  # frozen GEMM or convolution keeps its weight, not its input
        if needs is not None:
            span = cols.span(g)
            needs = np.asarray(needs, bool)
            frozen_tensor = np.asarray([bool(a.get("frozen")) for a in cols.attrs[span]]) & _tensor_kinds()[kind[span]]
            saves_inputs[span] &= needs & ~frozen_tensor
            own[span] &= needs
    marked = np.zeros(n, bool)
    reads = e[saves_inputs[e[:, 1]]]
    marked[owner[reads[:, 0]]] = True
    marked[owner[np.flatnonzero(own)]] = True
    # an operator that saves its inputs but has no predecessor reads the graph's inputs
    no_preds = saves_inputs & (np.bincount(e[:, 1], minlength=n) == 0)
    keep = np.where(marked & allocates, cols.out_bytes, 0.0)
    outputs = np.where(cols.view, 0.0, cols.out_bytes)
    saved, largest = [], []
    for g in which:
        span = cols.span(g)
        total = float(keep[span].sum())
        if no_preds[span].any():
            total += sum(_nbytes(x.shape, x.dtype) for x in graphs[g].inputs)
        saved.append(float(total))
        largest.append(float(outputs[span].max()) if span.stop > span.start else 0.0)
    return saved, largest


def saved_by(graph: CostGraph, owner: list[int]) -> list[set[int]]:
    """Per node, the buffers (by owning node) its backward function keeps from the forward pass;
    ``-1`` stands for the graph's inputs."""
    preds = graph.predecessors()
    out: list[set[int]] = []
    for i, node in enumerate(graph.nodes):
        saved: set[int] = set()
        if node.kind in _SAVES_INPUTS:
            if preds[i]:
                saved.update(owner[p] for p in preds[i])
            else:
                saved.add(-1)
        if node.kind in _SAVES_OUTPUT:
            saved.add(owner[i])
        if node.kind == "max_pool" or (node.kind == "elementwise" and node.op.endswith("dropout")):
            saved.add(owner[i])  # indices / masks
        out.append(saved)
    return out


def saved_activation_bytes(graph: CostGraph) -> float:
    """Bytes autograd keeps from the forward pass for the backward pass."""
    from ..ir import node_columns

    return _saved_many([graph], node_columns([graph]), [0])[0][0]


def _nbytes(shape, dtype) -> int:
    from ..ir import numel
    from ..ir import dtype_bytes

    return numel(shape) * dtype_bytes(dtype)


def memory_breakdown(graph: CostGraph, *, mode: str | None = None, optimizer: str = "adam") -> MemoryBreakdown:
    """Analytic memory of one inference call or one training step (no framework overhead)."""
    return memory_breakdown_many([graph], modes=[mode], optimizer=optimizer)[0]


def memory_breakdown_many(graphs, *, modes, optimizer: str = "adam", columns=None) -> list[MemoryBreakdown]:
    """:func:`memory_breakdown` of several graphs (``modes[g]``: ``None`` reads the graph's own);
    ``columns``: their :func:`~costmodel.ir.node_columns`, when the caller has them already."""
    modes = [m or graph.meta.get("mode", "inference") for m, graph in zip(modes, graphs)]
    for mode in modes:
        if mode not in ("inference", "training"):
            raise InvalidInputError(f"mode must be 'inference' or 'training', got {mode!r}")
    inference = [g for g, m in enumerate(modes) if m == "inference"]
    training = [g for g, m in enumerate(modes) if m == "training"]
    # the liveness scans of all inference graphs run as one, and the saved-activation sums of all
    # training graphs, over the node columns (read here unless the caller has them)
    if columns is None and graphs:
        from ..ir import node_columns

        columns = node_columns(graphs)
    peaks = dict(zip(inference, _peak_activation_many(graphs, columns, inference))) if inference else {}
    kept = dict(zip(training, zip(*_saved_many(graphs, columns, training)))) if training else {}
    out = []
    for g, graph in enumerate(graphs):
        mode = modes[g]
        weights = float(graph.weights_bytes)
        if mode == "inference":
            out.append(MemoryBreakdown(weights, peaks[g], mode=mode))
            continue
        opt = optimizer.lower().replace("-", "_").replace("+", "_")
        if opt not in OPTIMIZER_STATE:
            raise InvalidInputError(f"unknown optimizer {optimizer!r}; expected one of {sorted(OPTIMIZER_STATE)}")
        trainable = _trainable_bytes(graph)
        saved, largest = kept[g]
        # backward holds the saved set plus about two activation-sized gradient buffers
        transient = max(2.0 * largest, OPTIMIZER_TRANSIENT[opt] * trainable)
        out.append(MemoryBreakdown(
            weights_bytes=weights,
            activations_bytes=saved,
            gradients_bytes=trainable,
            optimizer_bytes=OPTIMIZER_STATE[opt] * trainable,
            transient_bytes=transient,
            mode=mode,
        ))
    return out


def _trainable_bytes(graph: CostGraph) -> float:
    """Bytes of trainable parameters (buffers such as BN running stats excluded)."""
    return float(graph.meta.get("trainable_bytes", graph.weights_bytes))


def allocator_reserved_bytes(allocated: float) -> float:
    """What PyTorch's caching allocator reserves to serve ``allocated`` bytes.

    Large blocks are carved from 2 MiB-rounded segments and the allocator keeps
    freed blocks cached; a flat 15 % plus one 20 MiB segment is a simple,
    documented allowance for that rounding and fragmentation.
    """
    return allocated * 1.15 + 20 * MB
