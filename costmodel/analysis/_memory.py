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

from dataclasses import asdict, dataclass
from itertools import chain

from .._errors import InvalidInputError
from ..ir import CostGraph

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
        d = {k.replace("_bytes", "_mb"): v / MB for k, v in asdict(self).items() if k.endswith("_bytes")}
        d["total_mb"] = self.total_bytes / MB
        return d


def _buffers(graph: CostGraph) -> tuple[list[int], list[bool]]:
    """Map each node to the node that owns its output buffer; mark allocators."""
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
    import numpy as np

    nodes = graph.nodes
    n = len(nodes)
    if n == 0:
        return 0.0
    owner_l, allocates = _buffers(graph)
    owner = np.asarray(owner_l, np.int64)
    # a buffer lives until the last reader of any node it backs has run; outputs nobody reads, to the end
    last_use = np.arange(n)
    read = np.zeros(n, bool)
    if graph.edges:
        e = np.fromiter(chain.from_iterable(graph.edges), np.int64, 2 * len(graph.edges)).reshape(-1, 2)
        read[e[:, 0]] = True
        np.maximum.at(last_use, owner[e[:, 0]], e[:, 1])
    last_use[owner[~read]] = n
    size = np.array([nd.out_bytes if a else 0 for nd, a in zip(nodes, allocates)], np.float64)
    # live bytes just after step i allocates: everything allocated so far, less what steps before i freed
    freed = np.zeros(n + 1)
    owners = np.unique(owner)
    np.add.at(freed, last_use[owners], size[owners])
    live = np.cumsum(size) - np.concatenate([[0.0], np.cumsum(freed[:n - 1])])
    input_bytes = float(sum(_nbytes(x.shape, x.dtype) for x in graph.inputs))
    return float(input_bytes + max(0.0, float(live.max())))


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


def _saved_owners(graph: CostGraph, owner: list[int]) -> set[int]:
    """Buffers (by owning node) autograd keeps from the forward pass for the backward pass; ``-1``
    stands for the graph's inputs."""
    return set().union(*saved_by(graph, owner))


def saved_activation_bytes(graph: CostGraph) -> float:
    """Bytes autograd keeps from the forward pass for the backward pass."""
    owner, allocates = _buffers(graph)
    saved = _saved_owners(graph, owner)
    total = sum(graph.nodes[o].out_bytes for o in saved if o >= 0 and allocates[o])
    if -1 in saved:
        total += sum(_nbytes(x.shape, x.dtype) for x in graph.inputs)
    return float(total)


def _nbytes(shape, dtype) -> int:
    from ..ir import numel
    from ..ir import dtype_bytes

    return numel(shape) * dtype_bytes(dtype)


def memory_breakdown(graph: CostGraph, *, mode: str | None = None, optimizer: str = "adam") -> MemoryBreakdown:
    """Analytic memory of one inference call or one training step (no framework overhead)."""
    mode = mode or graph.meta.get("mode", "inference")
    if mode not in ("inference", "training"):
        raise InvalidInputError(f"mode must be 'inference' or 'training', got {mode!r}")
    weights = float(graph.weights_bytes)
    if mode == "inference":
        return MemoryBreakdown(weights, peak_activation_bytes(graph), mode=mode)
    opt = optimizer.lower().replace("-", "_").replace("+", "_")
    if opt not in OPTIMIZER_STATE:
        raise InvalidInputError(f"unknown optimizer {optimizer!r}; expected one of {sorted(OPTIMIZER_STATE)}")
    trainable = _trainable_bytes(graph)
    saved = saved_activation_bytes(graph)
    largest = max((n.out_bytes for n in graph.nodes if not n.is_view), default=0)
    # backward holds the saved set plus about two activation-sized gradient buffers
    transient = max(2.0 * largest, OPTIMIZER_TRANSIENT[opt] * trainable)
    return MemoryBreakdown(
        weights_bytes=weights,
        activations_bytes=saved,
        gradients_bytes=trainable,
        optimizer_bytes=OPTIMIZER_STATE[opt] * trainable,
        transient_bytes=transient,
        mode=mode,
    )


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
