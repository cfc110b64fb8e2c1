"""GraphBuilder: what every frontend uses to emit a CostGraph.

A frontend walks its own IR in topological order and, per operator, names the
tensors it reads and writes.  The builder tracks which node produced each
tensor, so edges are the real data dependencies, tracks parameters (counted
once, however often they are used), and costs each node with the shared
formulas of :mod:`costmodel.analysis`.

Every tensor the builder sees is checked against
:data:`~costmodel.ir.MAX_TENSOR_BYTES` (and for negative dimensions)
before any cost is computed, so an absurd dimension is an
:class:`~costmodel.InvalidGraphError` naming the tensor, not a saturated
estimate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

from .._errors import UnsupportedOpWarning
from ..analysis import op_cost
from ..ir import CostGraph, GraphInput, Node, check_tensor, dtype_bytes, is_kind, numel, tensor_ok


@dataclass(slots=True)
class _Tensor:
    shape: tuple[int, ...]
    dtype: str
    producer: int | None  # node id, None for graph inputs / params / constants
    is_param: bool = False
    data: bool = False  # derived from a graph input (False: computable ahead of time from weights/constants)
    #: distinct elements behind a broadcast view (``expand``: stride-0 dimensions) when fewer than the
    #: shape's; ``None``: as many as the shape has
    elems: int | None = None


class GraphBuilder:
    """Incrementally build a :class:`CostGraph`.

    Tensors are identified by any hashable key chosen by the frontend (an ONNX
    value name, an FX node name, a Python object id...).
    """

    def __init__(self, name: str, frontend: str) -> None:
        self.name = name
        self.frontend = frontend
        self._tensors: dict[Hashable, _Tensor] = {}
        self._nodes: list[Node] = []
        self._edges: set[tuple[int, int]] = set()
        self._inputs: list[GraphInput] = []
        self._param_keys: dict[Hashable, int] = {}  # key -> bytes
        self._param_numel: dict[Hashable, int] = {}
        #: trainable parameters (by tensor record: tied weights are one), and those some node reads
        self._trainable: dict[int, _Tensor] = {}  # held, so that an id is never reused
        self._trainable_read: set[int] = set()
        #: frozen parameters (``requires_grad=False``): counted in ``params``, updated by no optimizer
        self._frozen: dict[int, _Tensor] = {}
        self._frozen_keys: set[Hashable] = set()
        self._warned: set[str] = set()

    # ----------------------------------------------------------- registration
    def add_input(self, key: Hashable, shape: Sequence[int], dtype: str, name: str | None = None) -> None:
        check_tensor(shape, dtype, f"input {name if name is not None else key!r}")
        self._tensors[key] = _Tensor(tuple(int(d) for d in shape), dtype, None, data=True)
        self._inputs.append(GraphInput(str(name if name is not None else key), tuple(shape), dtype))

    def add_param(self, key: Hashable, shape: Sequence[int], dtype: str, *, trainable: bool = True,
                  frozen: bool = False) -> None:
        """A weight (``trainable``: a parameter) or a buffer; counted in ``params`` only if ``trainable``.
        A ``frozen`` parameter (``requires_grad=False``: a frozen backbone, the base weights under
        low-rank adapters) is counted in ``params`` but gets no gradient and no optimizer update."""
        shape = tuple(int(d) for d in shape)
        check_tensor(shape, dtype, f"weight {key!r}")
        t = self._tensors[key] = _Tensor(shape, dtype, None, is_param=True)
        self._param_keys[key] = numel(shape) * dtype_bytes(dtype)
        if trainable:
            self._param_numel[key] = numel(shape)
            if frozen:
                self._frozen[id(t)] = t
                self._frozen_keys.add(key)
            else:
                self._trainable[id(t)] = t

    def demote_param(self, key: Hashable, *, buffer: bool) -> None:
        """A weight registered by :meth:`add_param` that is not a parameter of the model: a ``buffer`` (kept
        in ``weights_bytes``, as batch-norm statistics are), else a constant (a tensor the model computes
        from shapes: in neither ``params`` nor ``weights_bytes``).  Call it before a node reads ``key``."""
        t = self._tensors[key]
        self._param_numel.pop(key, None)
        self._trainable.pop(id(t), None)
        self._frozen.pop(id(t), None)
        self._frozen_keys.discard(key)
        if not buffer:
            self._param_keys.pop(key, None)
            t.is_param = False

    def add_constant(self, key: Hashable, shape: Sequence[int], dtype: str) -> None:
        check_tensor(shape, dtype, f"constant {key!r}")
        self._tensors[key] = _Tensor(tuple(int(d) for d in shape), dtype, None)

    def alias(self, key: Hashable, to: Hashable) -> None:
        """Make ``key`` refer to the same tensor as ``to`` (no node emitted)."""
        self._tensors[key] = self._tensors[to]

    def has(self, key: Hashable) -> bool:
        return key in self._tensors

    def shape(self, key: Hashable) -> tuple[int, ...]:
        return self._tensors[key].shape

    def dtype(self, key: Hashable) -> str:
        return self._tensors[key].dtype

    def is_param(self, key: Hashable) -> bool:
        t = self._tensors.get(key)
        return bool(t and t.is_param)

    # ------------------------------------------------------------------ nodes
    def warn_unsupported(self, op: str) -> None:
        if op not in self._warned:
            self._warned.add(op)
            warnings.warn(
                f"{self.frontend}: operator {op!r} is not in the op vocabulary; "
                "it is counted as kind 'other' (no FLOPs)",
                UnsupportedOpWarning,
                stacklevel=3,
            )

    def add_node(
        self,
        op: str,
        kind: str,
        inputs: Sequence[Hashable],
        outputs: Sequence[tuple[Hashable, Sequence[int], str]],
        attrs: dict[str, Any] | None = None,
        *,
        is_view: bool = False,
        scope: str = "",
        aliases: bool | None = None,
        unread: Sequence[int] = (),
    ) -> int:
        """Add an operator reading ``inputs`` (tensor keys) and writing ``outputs``.

        Unknown input keys are ignored (constants the frontend did not
        register).  Returns the new node's id.

        ``aliases`` (default: ``is_view``): the outputs share the first input's
        storage.  A view with more elements than that storage holds (``expand``,
        ``broadcast_to``) is a broadcast: an operator that reads it reads the
        storage's elements, not the shape's, and its ``bytes_read`` counts those
        (``attrs["operand_elems"]``, per operand, when some operand is such a view).
        ``unread``: the positions of operands whose data the kernel does not read (the template of
        ``zeros_like``, the destination of ``fill_`` or ``copy_``): their reads count 0 elements.
        """
        if not is_kind(kind):
            raise ValueError(f"frontend produced unknown op kind {kind!r} for {op}")
        attrs = dict(attrs or {})
        nid = len(self._nodes)
        in_shapes, in_dtypes, is_p = [], [], []
        params = 0
        data = False
        reads_frozen = reads_trainable = False
        operand_elems: list[int] = []
        broadcast = False
        for key in inputs:
            t = self._tensors.get(key)
            if t is None:
                continue
            data = data or t.data
            operand_elems.append(t.elems if t.elems is not None else numel(t.shape))
            broadcast = broadcast or t.elems is not None
            in_shapes.append(t.shape)
            in_dtypes.append(t.dtype)
            is_p.append(t.is_param)
            if t.is_param:
                params += numel(t.shape) if key in self._param_numel else 0
                if id(t) in self._trainable:  # read directly or through a view (``t()`` of a weight)
                    self._trainable_read.add(id(t))
                    reads_trainable = True
                elif id(t) in self._frozen:
                    reads_frozen = True
            if t.producer is not None:
                self._edges.add((t.producer, nid))
        out_shapes, out_dtypes = [], []
        # a view holds at most the elements of the storage it aliases
        held = operand_elems[0] if operand_elems and (is_view if aliases is None else aliases) else None
        for j, (key, shape, dtype) in enumerate(outputs):
            shp = tuple(int(d) for d in shape)
            if not tensor_ok(shp):  # the message is built only for a tensor that fails the check
                check_tensor(shp, dtype, f"output {j} of node {nid} ({op})")
            out_shapes.append(shp)
            out_dtypes.append(dtype)
            elems = held if held is not None and held < numel(shp) else None
            self._tensors[key] = _Tensor(shp, dtype, nid, data=data, elems=elems)
        for i in unread:
            if 0 <= i < len(operand_elems):
                operand_elems[i] = 0
        if (broadcast or unread) and not is_view:
            attrs["operand_elems"] = operand_elems
        if reads_frozen and not reads_trainable:
            # its parameter operands are all frozen: a training step computes no gradient for them
            attrs["frozen"] = True
        if not data:
            attrs["constant"] = True  # reads no graph input: a compiler folds it ahead of time
        flops, macs, rd, wr = op_cost(kind, in_shapes, in_dtypes, out_shapes, out_dtypes, attrs, is_view)
        self._nodes.append(
            Node(
                id=nid,
                op=op,
                kind=kind,
                attrs=attrs,
                in_shapes=in_shapes,
                in_dtypes=in_dtypes,
                param_inputs=is_p,
                out_shapes=out_shapes,
                out_dtypes=out_dtypes,
                flops=flops,
                macs=macs,
                bytes_read=rd,
                bytes_written=wr,
                params=params,
                is_view=is_view,
                scope=scope,
            )
        )
        return nid

    # ------------------------------------------------------------------ build
    def build(self, **meta: Any) -> CostGraph:
        m = {
            "name": self.name,
            "frontend": self.frontend,
            "params": int(sum(self._param_numel.values())),
            "weights_bytes": int(sum(self._param_keys.values())),
            "trainable_bytes": int(sum(self._param_keys[k] for k in self._param_numel if k not in self._frozen_keys)),
            # the parameter tensors a training step updates: trainable ones the graph reads, each once
            # (buffers such as batch-norm statistics, unused and frozen parameters are not updated)
            "trainable_tensors": len(self._trainable_read),
        }
        if self._frozen:
            # frozen parameters: how many, and their bytes (the nodes that read some and no trainable
            # parameter carry ``attrs["frozen"]``)
            m["frozen_params"] = int(sum(self._param_numel[k] for k in self._frozen_keys))
            m["frozen_bytes"] = int(sum(self._param_keys[k] for k in self._frozen_keys))
        m.update({k: v for k, v in meta.items() if v is not None})
        g = CostGraph(self._nodes, sorted(self._edges), self._inputs, m)
        return g.validate()
