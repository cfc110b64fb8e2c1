"""What the cost models read from every node, read once for several graphs.

The roofline, the liveness memory model and the timeline's operator tables each need a handful of
facts per node (its kind, FLOPs, bytes, first output's shape and dtype, its attributes).  Reading
them is a Python walk over the nodes, and for a batch of built graphs that walk is most of the
cost of an estimate; :func:`node_columns` does it once, as one list comprehension per fact, and
hands the consumers flat arrays over the nodes of all the graphs, in graph order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._vocab import DTYPES as _DTYPE_BYTES, OP_KINDS

_KIND_ID = {k: i for i, k in enumerate(OP_KINDS)}


@dataclass(frozen=True)
class NodeColumns:
    """Per-node facts of several graphs, concatenated in graph order.

    Graph ``g`` owns positions ``offsets[g]:offsets[g + 1]``; ``nodes`` holds the nodes themselves
    (for the rare fact a consumer reads one node at a time)."""

    offsets: np.ndarray  # (G + 1,) int64
    nodes: list
    view: np.ndarray  # bool: re-describes memory, launches nothing
    kind: np.ndarray  # int64 index into OP_KINDS
    flops: np.ndarray  # float64
    nbytes: np.ndarray  # float64: bytes read + written
    numel: np.ndarray  # float64: elements of the first output (0 without one, or for a scalar)
    shaped: np.ndarray  # bool: the first output has a non-empty shape
    out_bytes: np.ndarray  # float64: bytes of all outputs (``Node.out_bytes``)
    dtype0: list  # first output's dtype (``None`` without outputs)
    attrs: list  # each node's attribute dict

    @property
    def num_graphs(self) -> int:
        return len(self.offsets) - 1

    def span(self, g: int) -> slice:
        """The positions of graph ``g``."""
        return slice(int(self.offsets[g]), int(self.offsets[g + 1]))


def node_columns(graphs: Sequence[Any]) -> NodeColumns:
    """:class:`NodeColumns` of ``graphs`` (each a CostGraph)."""
    nodes = [n for g in graphs for n in g.nodes]
    offsets = np.zeros(len(graphs) + 1, np.int64)
    np.cumsum([len(g.nodes) for g in graphs], out=offsets[1:])
    n = len(nodes)
    kind_id, prod, size_of = _KIND_ID, math.prod, _DTYPE_BYTES.get
    shapes = [nd.out_shapes for nd in nodes]
    dts = [nd.out_dtypes for nd in nodes]
    first = [s[0] if s else None for s in shapes]
    count = [prod(f) if f else 0 for f in first]  # a scalar output counts 0 here, 1 in out_bytes
    dtype0 = [d[0] if d else None for d in dts]
    # one output of a known dtype (almost every node): its bytes from the count above; else the property
    out_bytes = [(c if f else 1) * b if len(s) == 1 and len(d) == 1 and (b := size_of(d0)) is not None
                 else nd.out_bytes
                 for nd, s, d, f, c, d0 in zip(nodes, shapes, dts, first, count, dtype0)]
    return NodeColumns(
        offsets=offsets,
        nodes=nodes,
        view=np.fromiter((nd.is_view for nd in nodes), bool, n),
        kind=np.fromiter(map(kind_id.__getitem__, [nd.kind for nd in nodes]), np.int64, n),
        flops=np.fromiter((nd.flops for nd in nodes), np.float64, n),
        nbytes=np.fromiter((nd.bytes_read + nd.bytes_written for nd in nodes), np.float64, n),
        numel=np.asarray(count, np.float64) if n else np.zeros(0),
        shaped=np.fromiter(map(bool, first), bool, n),
        out_bytes=np.asarray(out_bytes, np.float64) if n else np.zeros(0),
        dtype0=dtype0,
        attrs=[nd.attrs for nd in nodes],
    )
