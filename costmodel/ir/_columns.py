"""What the cost models read from every node, read once for several graphs.

The roofline, the liveness memory model and the timeline's operator tables each need a handful of
facts per node (its kind, FLOPs, bytes, first output's shape and dtype, a few attributes, the
edges).  Reading them is a walk over Python objects, and for a batch of built graphs that walk is
most of the cost of an estimate: not the Python work itself but fetching the objects (a node, its
shape lists and tuples, its attribute dict) from memory.  :func:`node_columns` reads everything
one graph at a time, so that each graph's objects are fetched once and then read from the cache,
and hands the consumers flat arrays over the nodes of all the graphs, in graph order.

The walk runs in the compiled module ``costmodel._nodes`` when the package was built with it
(``pip install .`` builds it), about ten times faster than the same walk in Python; without it, or
for a node that holds something the compiled reader leaves alone (a shape dimension that is not an
``int``, a dtype without a width), the Python reader here answers.  Both give the same columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain
from typing import Any, Sequence

import numpy as np

from .._errors import InvalidGraphError
from ._vocab import DTYPES as _DTYPE_BYTES, OP_KINDS

_KIND_ID = {k: i for i, k in enumerate(OP_KINDS)}


@dataclass(frozen=True)
class NodeColumns:
    """Per-node facts of several graphs, concatenated in graph order.

    Graph ``g`` owns node positions ``offsets[g]:offsets[g + 1]`` and edge rows
    ``edge_offsets[g]:edge_offsets[g + 1]`` of ``edges`` (whose node ids are the graph's own);
    ``nodes`` holds the nodes themselves (for the rare fact a consumer reads one node at a time)."""

    offsets: np.ndarray  # (G + 1,) int64
    nodes: list
    view: np.ndarray  # bool: re-describes memory, launches nothing
    kind: np.ndarray  # int64 index into OP_KINDS
    flops: np.ndarray  # float64
    nbytes: np.ndarray  # float64: bytes read + written
    numel: np.ndarray  # float64: elements of the first output (0 without one, or for a scalar)
    shaped: np.ndarray  # bool: the first output has a non-empty shape
    channels: np.ndarray  # int64: the first output's dimension 1 (0 where it has fewer than 2)
    out_bytes: np.ndarray  # float64: bytes of all outputs (``Node.out_bytes``)
    dtype0: list  # first output's dtype (``None`` without outputs)
    attrs: list  # each node's attribute dict
    kernel_area: np.ndarray  # float64: product of the last two ``kernel`` sizes (1 without a kernel)
    stride: np.ndarray  # float64: the largest ``stride`` (1 without one)
    groups: np.ndarray  # int64: ``groups`` (1 without, or when it is 0)
    inplace: np.ndarray  # bool: the ``inplace`` attribute is set
    param_count: np.ndarray | None  # int64: operands that are parameters or buffers (None: not read)
    edges: np.ndarray  # (E, 2) int64, each graph's own node ids
    edge_offsets: np.ndarray  # (G + 1,) int64
    scopes: list  # per graph: the set of its nodes' module scopes

    @property
    def num_graphs(self) -> int:
        return len(self.offsets) - 1

    def span(self, g: int) -> slice:
        """The positions of graph ``g``."""
        return slice(int(self.offsets[g]), int(self.offsets[g + 1]))

    def graph_edges(self, g: int) -> np.ndarray:
        """Graph ``g``'s edges, ``(m, 2)``."""
        return self.edges[int(self.edge_offsets[g]):int(self.edge_offsets[g + 1])]


def _kernel_area(k) -> float:
    return float(math.prod(k[-2:])) if k else 1.0


def _stride(s) -> float:
    return float(max(s)) if s else 1.0


#: the compiled reader's interface version (``READER_VERSION`` of ``costmodel._nodes``)
_READER_VERSION = 3
_NATIVE: Any = None  # the compiled module, False once it is known to be unavailable


def compiled_reader():
    """The compiled node reader (``costmodel._nodes``), or ``None`` when this installation has none."""
    global _NATIVE
    if _NATIVE is None:
        from .._ext import load_extension

        mod, _ = load_extension("_nodes", "READER_VERSION", _READER_VERSION)
        _NATIVE = mod if mod is not None else False
    return _NATIVE or None


def node_columns(graphs: Sequence[Any], *, params: bool = True) -> NodeColumns:
    """:class:`NodeColumns` of ``graphs`` (each a CostGraph); ``params=False`` leaves ``param_count``
    out (``None``), which only training steps read."""
    graphs = graphs if isinstance(graphs, (list, tuple)) else list(graphs)
    native = compiled_reader()
    out = native.read_nodes(graphs, _KIND_ID, _DTYPE_BYTES, params) if native is not None else None
    cols = _from_buffers(graphs, out) if out is not None else python_node_columns(graphs, params=params)
    return _check_work(graphs, cols)


def _check_work(graphs: Sequence[Any], cols: NodeColumns) -> NodeColumns:
    """``cols``, after checking that every node's FLOPs and bytes are finite numbers >= 0 (a graph file
    edited by hand or a frontend's overflow would otherwise give NaN or infinite costs, or negative work
    that lowers them); the error names the graph (``graph_index``: its position in ``graphs``) and node."""
    ok = np.isfinite(cols.flops) & np.isfinite(cols.nbytes) & (cols.flops >= 0) & (cols.nbytes >= 0)
    if ok.all():
        return cols
    i = int(np.flatnonzero(~ok)[0])
    g = int(np.searchsorted(cols.offsets, i, side="right")) - 1
    n = cols.nodes[i]
    err = InvalidGraphError(f"node {n.id} ({n.op}) of graph {graphs[g].meta.get('name')!r} has {n.flops!r} FLOPs "
                            f"and {n.bytes_read!r} bytes read, {n.bytes_written!r} written; each must be a finite "
                            "number >= 0")
    err.graph_index = g
    raise err


def _unknown_kind(graphs: Sequence[Any], offsets: np.ndarray, kind: np.ndarray) -> InvalidGraphError:
    i = int(np.flatnonzero(kind < 0)[0])
    g = graphs[int(np.searchsorted(offsets, i, side="right")) - 1]
    bad = g.nodes[i - int(offsets[graphs.index(g)])]
    return InvalidGraphError(f"node {bad.id} ({bad.op}) of graph {g.meta.get('name')!r} has unknown kind "
                             f"{bad.kind!r}; expected one of {', '.join(OP_KINDS)}")


def _from_buffers(graphs: Sequence[Any], out: tuple) -> NodeColumns:
    """The compiled reader's buffers as :class:`NodeColumns` (numpy arrays over them, no copies)."""
    (offsets, nodes, view, kind, flops, nbytes, numel, shaped, channels, out_bytes, dtype0, attrs, karea,
     stride, groups, inplace, edges, edge_offsets, scopes, param_count) = out
    i64, f64 = np.int64, np.float64
    offsets = np.frombuffer(offsets, i64)
    kind = np.frombuffer(kind, i64)
    if len(kind) and kind.min() < 0:
        raise _unknown_kind(graphs, offsets, kind)
    return NodeColumns(
        offsets=offsets, nodes=nodes, view=np.frombuffer(view, bool), kind=kind,
        flops=np.frombuffer(flops, f64), nbytes=np.frombuffer(nbytes, f64), numel=np.frombuffer(numel, f64),
        shaped=np.frombuffer(shaped, bool), channels=np.frombuffer(channels, i64),
        out_bytes=np.frombuffer(out_bytes, f64), dtype0=dtype0, attrs=attrs,
        kernel_area=np.frombuffer(karea, f64), stride=np.frombuffer(stride, f64),
        groups=np.frombuffer(groups, i64), inplace=np.frombuffer(inplace, bool),
        param_count=None if param_count is None else np.frombuffer(param_count, i64), edges=np.frombuffer(edges, i64).reshape(-1, 2),
        edge_offsets=np.frombuffer(edge_offsets, i64),
        scopes=scopes)


def python_node_columns(graphs: Sequence[Any], *, params: bool = True) -> NodeColumns:
    """:func:`node_columns` read in Python (what the compiled reader computes, and its fallback)."""
    kind_id, prod = _KIND_ID, math.prod
    cols: dict[str, list] = {k: [] for k in ("nodes", "view", "kind", "flops", "nbytes", "count", "first_len",
                                              "channels", "dtype0", "n_out", "n_dt", "attrs", "karea", "stride",
                                              "groups", "inplace", "edges", "pcount")}
    offsets, edge_offsets, scopes = [0], [0], []
    for g in graphs:
        # every fact of this graph's nodes while they are in the cache
        nodes = g.nodes
        shapes = [nd.out_shapes for nd in nodes]
        dts = [nd.out_dtypes for nd in nodes]
        first = [s[0] if s else None for s in shapes]
        attrs = [nd.attrs for nd in nodes]
        cols["nodes"] += nodes
        cols["view"] += [nd.is_view for nd in nodes]
        try:
            cols["kind"] += [kind_id[nd.kind] for nd in nodes]
        except KeyError:
            bad = next(nd for nd in nodes if nd.kind not in kind_id)
            raise InvalidGraphError(f"node {bad.id} ({bad.op}) of graph {g.meta.get('name')!r} has unknown kind "
                                    f"{bad.kind!r}; expected one of {', '.join(OP_KINDS)}") from None
        cols["flops"] += [nd.flops for nd in nodes]
        cols["nbytes"] += [nd.bytes_read + nd.bytes_written for nd in nodes]
        cols["count"] += [prod(f) if f else 0 for f in first]  # a scalar output counts 0 here, 1 in out_bytes
        cols["first_len"] += [-1 if f is None else len(f) for f in first]
        cols["channels"] += [f[1] if f and len(f) > 1 else 0 for f in first]
        cols["dtype0"] += [d[0] if d else None for d in dts]
        cols["n_out"] += map(len, shapes)
        cols["n_dt"] += map(len, dts)
        cols["attrs"] += attrs
        cols["karea"] += [_kernel_area(a.get("kernel")) if a else 1.0 for a in attrs]
        cols["stride"] += [_stride(a.get("stride")) if a else 1.0 for a in attrs]
        cols["groups"] += [(a.get("groups", 1) or 1) if a else 1 for a in attrs]
        cols["inplace"] += [bool(a and a.get("inplace")) for a in attrs]
        if params:
            cols["pcount"] += [sum(map(bool, nd.param_inputs)) for nd in nodes]
        cols["edges"].append(g.edges)
        scopes.append({nd.scope for nd in nodes})
        offsets.append(offsets[-1] + len(nodes))
        edge_offsets.append(edge_offsets[-1] + len(g.edges))
    n, n_edges = offsets[-1], edge_offsets[-1]
    nodes, dtype0 = cols["nodes"], cols["dtype0"]
    numel = np.asarray(cols["count"], np.float64) if n else np.zeros(0)
    first_len = np.asarray(cols["first_len"], np.int64) if n else np.zeros(0, np.int64)
    shaped = first_len > 0
    # one output of a known dtype (almost every node): its bytes from the count above; else the property
    width = np.fromiter(map(_DTYPE_BYTES.get, dtype0, [0] * n), np.float64, n)
    simple = (np.asarray(cols["n_out"], np.int64) == 1) & (np.asarray(cols["n_dt"], np.int64) == 1) & (width > 0) \
        if n else np.zeros(0, bool)
    out_bytes = np.where(first_len == 0, 1.0, numel) * width  # a scalar holds one element
    for i in np.flatnonzero(~simple).tolist():
        out_bytes[i] = nodes[i].out_bytes
    edges = np.fromiter(chain.from_iterable(chain.from_iterable(cols["edges"])), np.int64, 2 * n_edges)
    return NodeColumns(
        offsets=np.asarray(offsets, np.int64),
        nodes=nodes,
        view=np.asarray(cols["view"], bool) if n else np.zeros(0, bool),
        kind=np.asarray(cols["kind"], np.int64) if n else np.zeros(0, np.int64),
        flops=np.asarray(cols["flops"], np.float64) if n else np.zeros(0),
        nbytes=np.asarray(cols["nbytes"], np.float64) if n else np.zeros(0),
        numel=numel,
        shaped=shaped,
        channels=np.asarray(cols["channels"], np.int64) if n else np.zeros(0, np.int64),
        out_bytes=out_bytes,
        dtype0=dtype0,
        attrs=cols["attrs"],
        kernel_area=np.asarray(cols["karea"], np.float64) if n else np.zeros(0),
        stride=np.asarray(cols["stride"], np.float64) if n else np.zeros(0),
        groups=np.asarray(cols["groups"], np.int64) if n else np.zeros(0, np.int64),
        inplace=np.asarray(cols["inplace"], bool) if n else np.zeros(0, bool),
        param_count=(np.asarray(cols["pcount"], np.int64) if n else np.zeros(0, np.int64)) if params else None,
        edges=edges.reshape(-1, 2),
        edge_offsets=np.asarray(edge_offsets, np.int64),
        scopes=scopes,
    )
