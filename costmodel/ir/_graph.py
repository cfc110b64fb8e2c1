"""CostGraph: the framework-neutral graph every frontend lowers to.

Nodes are operators (never tensors, never parameters).  An edge ``u -> v``
means a tensor produced by ``u`` is read by ``v``; edges follow the real data
dependencies, so skip connections, branches and attention's q/k/v fan-out are
all present.  Nodes are stored in a topological order (every edge goes from a
lower to a higher index), which the liveness and depth analyses rely on.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .._errors import InvalidGraphError, TensorTooLargeError
from ._vocab import CATEGORIES, DTYPES as _DTYPE_BYTES, OP_KINDS, VOCAB_VERSION, category, dtype_bytes

Shape = tuple[int, ...]

#: Version of the serialized graph layout (bump on incompatible change).
GRAPH_FORMAT_VERSION = 1

#: Largest single tensor a graph may hold: 1 TiB.  The largest accelerators hold a few hundred GB, so a
#: tensor beyond this limit comes from a broken file (an absurd dimension), not from a real workload.
MAX_TENSOR_BYTES = 2**40
#: Largest total parameter count a graph may have (ten trillion).
MAX_PARAMS = 10**13


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


#: the widest dtype's bytes per element (complex128): a bound that needs no dtype lookup
_MAX_ELEM_BYTES = 16


def tensor_ok(shape: Sequence[int]) -> bool:
    """True when a tensor of ``shape`` passes :func:`check_tensor` whatever its dtype: the cheap test
    that lets a caller skip building the message. False means "check it" (it may still pass)."""
    return (not shape or min(shape) >= 0) and numel(shape) * _MAX_ELEM_BYTES <= MAX_TENSOR_BYTES


def check_tensor(shape: Sequence[int], dtype: str, what: str) -> None:
    """Raise :class:`InvalidGraphError` if ``shape`` has a negative dimension or the tensor is larger
    than :data:`MAX_TENSOR_BYTES`; ``what`` names the tensor in the message."""
    if any(d < 0 for d in shape):
        raise InvalidGraphError(f"{what} has a negative dimension: shape {tuple(shape)}")
    size = numel(shape) * dtype_bytes(dtype)
    if size > MAX_TENSOR_BYTES:
        raise TensorTooLargeError(
            f"{what} has shape {tuple(shape)} ({dtype}), {size / 2**40:.3g} TiB; no device can hold a tensor "
            f"over {MAX_TENSOR_BYTES // 2**40} TiB (an absurd dimension in the model or the batch size?)"
        )


@dataclass(slots=True)
class Node:
    """One operator.

    ``in_shapes``/``in_dtypes`` list every tensor operand in operator order,
    weights included (``param_inputs`` marks which of them are parameters or
    buffers).  ``is_view`` marks operators that only re-describe memory
    (view, reshape of a contiguous tensor, dropout at inference): they launch
    no kernel and move no bytes.
    """

    id: int
    op: str
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)
    in_shapes: list[Shape] = field(default_factory=list)
    in_dtypes: list[str] = field(default_factory=list)
    param_inputs: list[bool] = field(default_factory=list)
    out_shapes: list[Shape] = field(default_factory=list)
    out_dtypes: list[str] = field(default_factory=list)
    flops: float = 0.0
    macs: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    params: int = 0
    is_view: bool = False
    scope: str = ""

    @property
    def category(self) -> str:
        return category(self.kind)

    @property
    def out_bytes(self) -> int:
        shapes = self.out_shapes
        dts = self.out_dtypes
        if len(shapes) == 1 and len(dts) == 1:  # almost every operator: no generator, no calls
            s = shapes[0]
            b = _DTYPE_BYTES.get(dts[0])
            if b is not None:
                return (math.prod(s) if s else 1) * b
        total = 0
        for s, d in zip(shapes, dts):  # several outputs (a batch norm's output, mean and inverse std)
            b = _DTYPE_BYTES.get(d)
            total += (math.prod(s) if s else 1) * (b if b is not None else dtype_bytes(d))
        return total

    @property
    def arithmetic_intensity(self) -> float:
        moved = self.bytes_read + self.bytes_written
        return self.flops / moved if moved else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_shapes"] = [list(s) for s in self.in_shapes]
        d["out_shapes"] = [list(s) for s in self.out_shapes]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Node":
        d = dict(d)
        d["in_shapes"] = [tuple(s) for s in d.get("in_shapes", [])]
        d["out_shapes"] = [tuple(s) for s in d.get("out_shapes", [])]
        return cls(**d)


@dataclass(slots=True)
class GraphInput:
    name: str
    shape: Shape
    dtype: str


@dataclass
class CostGraph:
    """A featurizable operator graph with per-node costs.

    ``meta`` holds workload facts the frontend knew: ``name``, ``frontend``,
    ``batch``, ``input_shape``, ``dtype``, ``mode`` (``inference`` or
    ``training``), ``params`` (unique parameter count: tied weights counted
    once) and ``weights_bytes`` (parameters and buffers).
    """

    nodes: list[Node]
    edges: list[tuple[int, int]]
    inputs: list[GraphInput] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __repr__(self) -> str:
        return (
            f"CostGraph({self.meta.get('name', '?')!r}, nodes={self.num_nodes}, "
            f"edges={self.num_edges}, gflops={self.flops / 1e9:.3f}, params={self.params})"
        )

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def flops(self) -> float:
        return float(sum(n.flops for n in self.nodes))

    @property
    def macs(self) -> float:
        return float(sum(n.macs for n in self.nodes))

    @property
    def tensor_flops(self) -> float:
        """FLOPs of conv/matmul/attention only (what ``FlopCounterMode`` counts)."""
        return float(sum(n.flops for n in self.nodes if n.category == "compute"))

    @property
    def params(self) -> int:
        if "params" in self.meta:
            return int(self.meta["params"])
        return int(sum(n.params for n in self.nodes))

    @property
    def weights_bytes(self) -> int:
        return int(self.meta.get("weights_bytes", 0))

    @property
    def bytes_moved(self) -> float:
        return float(sum(n.bytes_read + n.bytes_written for n in self.nodes))

    @property
    def num_kernels(self) -> int:
        """Operators that launch work on the device (views and no-ops excluded)."""
        return sum(1 for n in self.nodes if not n.is_view)

    def predecessors(self) -> list[list[int]]:
        preds: list[list[int]] = [[] for _ in self.nodes]
        for s, d in self.edges:
            preds[d].append(s)
        return preds

    def successors(self) -> list[list[int]]:
        succs: list[list[int]] = [[] for _ in self.nodes]
        for s, d in self.edges:
            succs[s].append(d)
        return succs

    # -------------------------------------------------------------- statistics
    def op_counts(self, *, include_views: bool = True) -> dict[str, int]:
        c = Counter(n.kind for n in self.nodes if include_views or not n.is_view)
        return {k: c[k] for k in OP_KINDS if c[k]}

    def category_counts(self) -> dict[str, int]:
        c = Counter(n.category for n in self.nodes)
        return {k: c[k] for k in CATEGORIES if c[k]}

    def flops_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for n in self.nodes:
            if n.flops:
                out[n.kind] = out.get(n.kind, 0.0) + n.flops
        return {k: out[k] for k in OP_KINDS if k in out}

    def depth(self) -> int:
        """Longest path, counted in nodes (0 for an empty graph)."""
        if not self.nodes:
            return 0
        longest = [1] * len(self.nodes)
        for s, d in sorted(self.edges, key=lambda e: e[1]):
            if longest[s] + 1 > longest[d]:
                longest[d] = longest[s] + 1
        # edges sorted by destination are processed after all their sources'
        # own in-edges only if sources have lower index: guaranteed by validate()
        return max(longest)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary, as printed by ``costmodel graph``."""
        kinds = self.op_counts()
        fl = self.flops_by_kind()
        return {
            "name": self.meta.get("name"),
            "frontend": self.meta.get("frontend"),
            "batch": self.meta.get("batch"),
            "input_shape": self.meta.get("input_shape"),
            "dtype": self.meta.get("dtype"),
            "mode": self.meta.get("mode"),
            "nodes": self.num_nodes,
            "edges": self.num_edges,
            "kernels": self.num_kernels,
            "depth": self.depth(),
            "flops": self.flops,
            "macs": self.macs,
            "params": self.params,
            "weights_mb": self.weights_bytes / 2**20,
            "op_kinds": {
                k: {"count": c, "flops": fl.get(k, 0.0)} for k, c in kinds.items()
            },
        }

    # ------------------------------------------------------------- validation
    def validate(self) -> "CostGraph":
        """Check structural invariants; raise ``ValueError`` naming the first violation."""
        n = len(self.nodes)
        for i, node in enumerate(self.nodes):
            if node.id != i:
                raise ValueError(f"node at position {i} has id {node.id}; ids must equal positions")
            if node.kind not in OP_KINDS:
                raise ValueError(f"node {i} ({node.op}) has unknown kind {node.kind!r}")
            for s in node.in_shapes + node.out_shapes:
                if any((not isinstance(d, int)) or d < 0 for d in s):
                    raise ValueError(f"node {i} ({node.op}) has a non-concrete shape {s}")
        seen = set()
        for s, d in self.edges:
            if not (0 <= s < n and 0 <= d < n):
                raise ValueError(f"edge ({s}, {d}) points outside the {n} nodes")
            if s >= d:
                raise ValueError(f"edge ({s}, {d}) is not in topological order")
            if (s, d) in seen:
                raise ValueError(f"edge ({s}, {d}) is duplicated")
            seen.add((s, d))
        return self

    def check_costable(self) -> "CostGraph":
        """Raise :class:`InvalidGraphError` for a graph no device can run or no cost applies to.

        That is a graph without an operator that does work (no nodes, or only views such as
        reshapes, which launch no kernel), a tensor beyond :data:`MAX_TENSOR_BYTES` or more than
        :data:`MAX_PARAMS` parameters.
        """
        name = self.meta.get("name", "the model")
        if not self.nodes:
            raise InvalidGraphError(
                f"graph {name!r} has no operators that read a model input, so there is nothing to cost (no node "
                "reads the inputs, or every node computes on constants only)"
            )
        if all(n.is_view for n in self.nodes):
            views = ", ".join(sorted({n.op for n in self.nodes}))
            raise InvalidGraphError(f"graph {name!r} has only views ({views}), which do no work: there is nothing to cost")
        if self.params > MAX_PARAMS:
            raise InvalidGraphError(
                f"graph {name!r} has {self.params:.3g} parameters; more than the {MAX_PARAMS:.0e} any device can hold"
            )
        for n in self.nodes:
            for k, (s, d) in enumerate(zip(n.in_shapes, n.in_dtypes)):
                if not tensor_ok(s):
                    check_tensor(s, d, f"input {k} of node {n.id} ({n.op})")
            for k, (s, d) in enumerate(zip(n.out_shapes, n.out_dtypes)):
                if not tensor_ok(s):
                    check_tensor(s, d, f"output {k} of node {n.id} ({n.op})")
        return self

    # ---------------------------------------------------------- transformation
    def subgraph(self, keep: Iterable[int]) -> "CostGraph":
        """Keep only the given nodes; dependencies through dropped nodes are bridged."""
        keep_set = set(keep)
        preds = self.predecessors()
        # effective predecessors among kept nodes, computed in topological order
        eff: list[set[int]] = [set() for _ in self.nodes]
        for i in range(len(self.nodes)):
            for p in preds[i]:
                if p in keep_set:
                    eff[i].add(p)
                else:
                    eff[i] |= eff[p]
        new_id = {}
        nodes = []
        for i, node in enumerate(self.nodes):
            if i in keep_set:
                new_id[i] = len(nodes)
                nn = Node.from_dict(node.to_dict())
                nn.id = new_id[i]
                nodes.append(nn)
        edges = sorted({(new_id[p], new_id[i]) for i in sorted(keep_set) for p in eff[i]})
        return CostGraph(nodes, edges, list(self.inputs), dict(self.meta))

    def needs_gradient(self, *, always: bool = False) -> list[bool] | None:
        """Per node of a graph with frozen parameters (``meta["frozen_params"]``): whether its output
        needs a gradient in a training step (it reads a parameter that is not frozen, ``attrs["frozen"]``
        unset, or a tensor that needs one). Autograd runs no backward for the others and saves nothing
        for them: a frozen backbone before its first trainable layer. ``None`` when nothing is frozen,
        unless ``always``: then the mask of any graph (with nothing frozen, the nodes no parameter
        reaches need none: preprocessing of the input, updates of buffers)."""
        if not always and not self.meta.get("frozen_params"):
            return None
        # a buffer (``params`` 0: batch-norm statistics, a step counter) gets no gradient either
        needs = [any(n.param_inputs) and n.params > 0 and not n.attrs.get("frozen") for n in self.nodes]
        for u, v in sorted(self.edges):  # sources first: a node's predecessors are settled before it
            if needs[u]:
                needs[v] = True
        return needs

    def without(self, kinds: Iterable[str] = (), *, views: bool = False) -> "CostGraph":
        """Drop nodes of the given kinds (and view nodes if ``views``), bridging edges."""
        drop = set(kinds)
        return self.subgraph(
            i for i, n in enumerate(self.nodes) if n.kind not in drop and not (views and n.is_view)
        )

    def fold_batchnorm(self) -> "CostGraph":
        """Fold inference batch-norms that directly follow a conv into that conv.

        ONNX exporters and inference compilers do this; PyTorch eager does not.
        Use it to compare graphs across frontends on the same footing.
        """
        succ = self.successors()
        drop = set()
        for i, n in enumerate(self.nodes):
            if n.kind == "conv" and len(succ[i]) == 1:
                j = succ[i][0]
                bn = self.nodes[j]
                if bn.kind == "batch_norm" and not bn.attrs.get("training", False):
                    drop.add(j)
        g = self.subgraph(i for i in range(len(self.nodes)) if i not in drop)
        g.meta = dict(g.meta, batchnorm_folded=True)
        return g

    def fold_constants(self) -> "CostGraph":
        """Drop the nodes that read no graph input (``attrs["constant"]``).

        They compute from weights, buffers and constants alone (position ids,
        attention masks built from ``arange``, a class token expanded to the
        batch): ONNX runtimes and TVM's ``FoldConstant`` evaluate them once
        ahead of time, and the ONNX and Relax frontends never emit them.
        PyTorch eager runs them on every call.  Use it to compare graphs
        across frontends on the same footing.
        """
        keep = [i for i, n in enumerate(self.nodes) if not n.attrs.get("constant")]
        if len(keep) == len(self.nodes):
            return self
        g = self.subgraph(keep)
        g.meta = dict(g.meta, constants_folded=True)
        return g

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GRAPH_FORMAT_VERSION,
            "vocab": VOCAB_VERSION,
            "meta": self.meta,
            "inputs": [
                {"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in self.inputs
            ],
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [list(e) for e in self.edges],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CostGraph":
        if d.get("format") != GRAPH_FORMAT_VERSION or d.get("vocab") != VOCAB_VERSION:
            raise ValueError(
                f"graph was saved with format {d.get('format')} / vocab {d.get('vocab')}; "
                f"this library reads format {GRAPH_FORMAT_VERSION} / vocab {VOCAB_VERSION}"
            )
        return cls(
            nodes=[Node.from_dict(n) for n in d["nodes"]],
            edges=[(int(a), int(b)) for a, b in d["edges"]],
            inputs=[GraphInput(i["name"], tuple(i["shape"]), i["dtype"]) for i in d["inputs"]],
            meta=dict(d["meta"]),
        )

    def save(self, path: str | Path) -> None:
        """Write JSON (gzip-compressed when the name ends in ``.gz``).

        The bytes go to a temporary file of their own in the same folder, which then atomically
        replaces ``path``: a reader sees the old file or the new one, and writers of the same path
        (threads or processes) never write into each other's file.
        """
        path = Path(path)
        data = json.dumps(self.to_dict(), separators=(",", ":")).encode()
        if path.suffix == ".gz":
            data = gzip.compress(data, compresslevel=5)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> "CostGraph":
        path = Path(path)
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return cls.from_dict(json.loads(raw))
