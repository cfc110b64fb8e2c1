"""Re-type a graph's floating tensors (fp32 model estimated at fp16, say)."""

from __future__ import annotations

from .._errors import InvalidInputError
from ..ir import CostGraph, Node, dtype_bytes, numel
from ._opcost import _stored_elems, op_cost
from ._stepctx import AUTOCAST_DTYPES

FLOAT_DTYPES = ("fp32", "fp16", "bf16", "fp64")


def cast_graph(graph: CostGraph, dtype: str) -> CostGraph:
    """Return a copy whose floating tensors (weights included) are ``dtype``.

    Mirrors ``model.to(dtype)``: integer tensors (token ids, indices) keep
    their type; FLOPs are unchanged, bytes and weight sizes scale.
    """
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"can only cast to a floating dtype {FLOAT_DTYPES}, got {dtype!r}")
    old = graph.meta.get("dtype", "fp32")
    if old == dtype:
        return graph

    def conv(ds):
        return [dtype if d in FLOAT_DTYPES else d for d in ds]

    nodes = []
    for n in graph.nodes:
        d = n.to_dict()
        d["in_dtypes"] = conv(n.in_dtypes)
        d["out_dtypes"] = conv(n.out_dtypes)
        nn = Node.from_dict(d)
        if nn.kind == "copy" and nn.attrs.get("cast") and nn.in_dtypes[:1] == nn.out_dtypes[:1]:
            nn.is_view = True  # the cast became a no-op
        nn.flops, nn.macs, nn.bytes_read, nn.bytes_written = op_cost(
            nn.kind, nn.in_shapes, nn.in_dtypes, nn.out_shapes, nn.out_dtypes, nn.attrs, nn.is_view
        )
        nodes.append(nn)
    ratio = dtype_bytes(dtype) / dtype_bytes(old) if old in FLOAT_DTYPES else 1.0
    meta = dict(graph.meta, dtype=dtype)
    for key in ("weights_bytes", "trainable_bytes", "frozen_bytes"):
        if key in meta:
            meta[key] = int(meta[key] * ratio)
    inputs = [type(i)(i.name, i.shape, dtype if i.dtype in FLOAT_DTYPES else i.dtype) for i in graph.inputs]
    return CostGraph(nodes, list(graph.edges), inputs, meta)


# ------------------------------------------------------------------------------------------ autocast
#: operators CUDA autocast runs in the lower precision (``torch.amp``'s fp16 list): GEMMs, convolutions,
#: fused attention
_AMP_LOWER_KINDS = frozenset({"conv", "conv_transpose", "matmul", "attention"})
#: operators CUDA autocast runs in fp32 whatever their inputs (its fp32 list; matched by kind, or by the
#: operator's name for the pointwise math and reductions that share a kind with operators it leaves alone)
_AMP_FP32_KINDS = frozenset({"layer_norm", "group_norm"})
_AMP_FP32_OPS = frozenset({
    "softmax", "_softmax", "log_softmax", "_log_softmax", "exp", "expm1", "log", "log1p", "log2", "log10", "pow",
    "rsqrt", "reciprocal", "sum", "prod", "cumsum", "cumprod", "norm", "linalg_vector_norm", "frobenius_norm",
    "logsumexp", "softplus", "erfinv", "acos", "asin", "cosh", "sinh", "tan", "dist", "cdist", "pdist",
    "cosine_similarity", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "nll_loss", "nll_loss2d",
    "cross_entropy", "cross_entropy_loss", "binary_cross_entropy_with_logits", "kl_div", "renorm",
})
#: operators that keep their first input's dtype whatever the others' (a batch norm's statistics and
#: affine weights stay fp32 while its activations are fp16)
_AMP_FIRST_INPUT_KINDS = frozenset({"batch_norm", "instance_norm", "rms_norm"})


def _base_op(op: str) -> str:
    """``aten.log_softmax.default`` -> ``log_softmax``; ``Softmax`` (ONNX) -> ``softmax``."""
    name = op.split("::")[-1]
    parts = name.split(".")
    if parts[0] in ("aten", "torch", "prims") and len(parts) > 1:
        parts = parts[1:]
    return parts[0].lower()


def _amp_policy(node: Node) -> str:
    """``"lower"``, ``"fp32"`` or ``"keep"`` (the node runs in the dtypes its inputs have)."""
    if node.is_view:
        return "keep"
    if node.kind in _AMP_LOWER_KINDS:
        return "lower"
    base = _base_op(node.op)
    if base.endswith("_") and not base.startswith("_"):
        return "keep"  # in-place operators are never autocast
    if node.kind in _AMP_FP32_KINDS or base in _AMP_FP32_OPS:
        return "fp32"
    return "keep"


def _operand_sources(graph: CostGraph, preds: list[list[int]]) -> list[list[tuple[int, int] | None]]:
    """For every node, where each operand comes from: ``(producer, output index)``, or ``None`` for a
    parameter, a graph input or a constant. The graph's edges do not say which operand an edge feeds,
    so operands are matched to the predecessors' outputs by shape and dtype, in operand order. Where a
    graph input and a predecessor's output have the same shape and dtype, which operand is which cannot
    be told; the dtypes the operator reads are the same either way."""
    out = []
    for i, n in enumerate(graph.nodes):
        free = [(p, k) for p in sorted(set(preds[i])) for k in range(len(graph.nodes[p].out_shapes))]
        src: list[tuple[int, int] | None] = []
        for shape, dt, is_p in zip(n.in_shapes, n.in_dtypes, n.param_inputs):
            hit = None
            if not is_p:
                for j, (p, k) in enumerate(free):
                    q = graph.nodes[p]
                    if tuple(q.out_shapes[k]) == tuple(shape) and (k >= len(q.out_dtypes) or q.out_dtypes[k] == dt):
                        hit = free.pop(j)
                        break
            src.append(hit)
        out.append(src)
    return out


def _is_gemm_bias(graph: CostGraph, n: Node, sources, policies: list[str]) -> bool:
    """Whether ``n`` adds a parameter to a GEMM's output (through views only): a linear layer's bias
    where the frontend split ``linear`` into a matmul and an ``add``. Autocast casts ``linear``'s
    arguments, bias included, so the addition runs in the lower precision."""
    if n.kind != "add" or not any(n.param_inputs) or all(n.param_inputs):
        return False
    for s, is_p in zip(sources[n.id], n.param_inputs):
        if is_p:
            continue
        while s is not None and graph.nodes[s[0]].is_view:
            s = next((x for x in sources[s[0]] if x is not None), None)
        if s is None or policies[s[0]] != "lower" or graph.nodes[s[0]].kind not in ("matmul", "conv"):
            return False
    return True


def autocast_graph(graph: CostGraph, dtype: str) -> CostGraph:
    """The graph as ``torch.autocast("cuda", dtype)`` runs it: a copy with CUDA autocast's policy applied.

    - Convolutions, GEMMs and fused attention run in ``dtype``: each floating operand in another dtype
      is cast first, a new ``copy`` node (``attrs["autocast"]``) right before the operator, weights
      included (autocast casts each weight once per forward pass; a weight read by two operators is
      cast for each here).
    - Operators on autocast's fp32 list (softmax, layer and group norm, exp, log, pow, sums, losses...)
      cast lower-precision operands to fp32 and return fp32; in-place operators are never cast.
    - A parameter added to a GEMM's output (a linear layer's bias, where the frontend split ``linear``
      into a matmul and an ``add``) is cast with the layer, as autocast casts ``linear``'s arguments.
    - Every other operator follows its inputs: its output takes the widest floating dtype among its
      operands that hold more than one element (PyTorch's type promotion; a residual ``add`` of an fp16
      and an fp32 tensor is fp32), or its first input's for batch and instance norm.

    The weights stay fp32 (``meta["dtype"]`` too); ``meta["autocast"]`` records ``dtype``. FLOPs are
    unchanged; bytes follow the new dtypes. The graph must be fp32 (autocast of a half-precision model
    changes little, and is not what mixed precision means).
    """
    if dtype not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast dtype must be one of {', '.join(AUTOCAST_DTYPES)}, got {dtype!r}")
    if graph.meta.get("dtype", "fp32") != "fp32":
        raise ValueError(f"autocast applies to an fp32 graph; this one is {graph.meta.get('dtype')!r} "
                         "(build it with dtype='fp32')")
    if graph.meta.get("autocast"):
        raise ValueError(f"the graph is already autocast to {graph.meta['autocast']!r}")
    preds = graph.predecessors()
    sources = _operand_sources(graph, preds)
    new_out: list[list[str]] = []  # each original node's output dtypes under autocast
    nodes: list[Node] = []
    edges: list[tuple[int, int]] = []
    new_id: list[int] = []  # original node -> its id in the new graph
    policies: list[str] = []
    for i, n in enumerate(graph.nodes):
        policy = _amp_policy(n)
        in_dtypes = [new_out[s[0]][s[1]] if s is not None and s[1] < len(new_out[s[0]]) else d
                     for s, d in zip(sources[i], n.in_dtypes)]
        if policy == "keep" and _is_gemm_bias(graph, n, sources, policies):
            policy = "lower"  # a linear layer's bias, added after its GEMM: autocast cast it with the layer
        policies.append(policy)
        target = dtype if policy == "lower" else "fp32" if policy == "fp32" else None
        casts: list[tuple[int, int]] = []  # (operand, cast node id)
        # the storage elements of its operands when some is a broadcast view
        elems = _stored_elems(n.in_shapes, n.attrs) if "operand_elems" in n.attrs else None
        if target is not None:
            for k, d in enumerate(in_dtypes):
                if d in FLOAT_DTYPES and d != target and d != "fp64":
                    cid = len(nodes)
                    c = _cast_node(n, k, cid, d, target, elems)
                    nodes.append(c)
                    s = sources[i][k]
                    if s is not None:
                        edges.append((new_id[s[0]], cid))
                    casts.append((k, cid))
                    in_dtypes[k] = target
        cast_ops = {k for k, _ in casts}
        nid = len(nodes)
        # outputs
        floats = [d for d, shp in zip(in_dtypes, n.in_shapes) if d in FLOAT_DTYPES and len(shp) > 0]
        if target is not None:
            out_dt = target
        elif n.kind in _AMP_FIRST_INPUT_KINDS and in_dtypes and in_dtypes[0] in FLOAT_DTYPES:
            out_dt = in_dtypes[0]
        elif floats:
            out_dt = max(floats, key=lambda d: (dtype_bytes(d), d == "fp32"))
        else:
            out_dt = None  # no floating operand: the outputs keep their dtypes
        first_only = n.kind in _AMP_FIRST_INPUT_KINDS or n.kind in _AMP_FP32_KINDS
        outs = [out_dt if (out_dt is not None and d in FLOAT_DTYPES and d != "fp64" and (k == 0 or not first_only))
                else d for k, d in enumerate(n.out_dtypes)]
        new_out.append(outs)
        d = n.to_dict()
        d.update(id=nid, in_dtypes=in_dtypes, out_dtypes=outs,
                 param_inputs=[p and k not in cast_ops for k, p in enumerate(n.param_inputs)])
        if elems is not None and cast_ops:
            d["attrs"] = _cast_operands_dense(d["attrs"], n.in_shapes, elems, cast_ops)
        nn = Node.from_dict(d)
        nn.flops, nn.macs, nn.bytes_read, nn.bytes_written = op_cost(
            nn.kind, nn.in_shapes, nn.in_dtypes, nn.out_shapes, nn.out_dtypes, nn.attrs, nn.is_view)
        nodes.append(nn)
        new_id.append(nid)
        # edges: from each cast; from each predecessor that still feeds an operand directly (or fed none
        # that was matched: an edge the operands do not explain is kept as it was)
        fed_cast = {sources[i][k][0] for k in cast_ops if sources[i][k] is not None}
        fed_direct = {s[0] for k, s in enumerate(sources[i]) if s is not None and k not in cast_ops}
        for p in sorted(set(preds[i])):
            if p in fed_direct or p not in fed_cast:
                edges.append((new_id[p], nid))
        edges += [(cid, nid) for _, cid in casts]
    meta = dict(graph.meta, autocast=dtype)
    return CostGraph(nodes, sorted(set(edges)), list(graph.inputs), meta)


def _cast_node(n: Node, k: int, cid: int, d: str, target: str, elems: list[int] | None) -> Node:
    """The cast autocast inserts before operand ``k`` of ``n`` (from ``d`` to ``target``)."""
    shape = n.in_shapes[k]
    attrs = {"cast": True, "autocast": True}
    if n.param_inputs[k] and n.attrs.get("frozen"):
        attrs["frozen"] = True  # the cast of a frozen weight gets no gradient either
    if elems is not None and elems[k] < numel(shape):
        attrs["operand_elems"] = [elems[k]]  # reads the broadcast's storage, writes it dense
    c = Node(id=cid, op="aten._to_copy", kind="copy", attrs=attrs,
             in_shapes=[shape], in_dtypes=[d], param_inputs=[n.param_inputs[k]],
             out_shapes=[shape], out_dtypes=[target], scope=n.scope,
             # the cast of a weight reads a parameter (gradients flow through it); a node whose
             # parameter operands are all buffers reads none
             params=numel(shape) if n.param_inputs[k] and n.params > 0 else 0)
    c.flops, c.macs, c.bytes_read, c.bytes_written = op_cost("copy", [shape], [d], [shape], [target], c.attrs)
    return c


def _cast_operands_dense(attrs: dict, in_shapes, elems: list[int], cast_ops: set[int]) -> dict:
    """``attrs`` with the operands autocast casts counted dense (a cast writes a full copy)."""
    dense = [numel(shp) if k in cast_ops else e for k, (shp, e) in enumerate(zip(in_shapes, elems))]
    out = {key: v for key, v in attrs.items() if key != "operand_elems"}
    if any(e < numel(shp) for shp, e in zip(in_shapes, dense)):
        out["operand_elems"] = dense
    return out


def apply_autocast(graph: CostGraph, autocast: str | None) -> CostGraph:
    """``graph`` as autocast runs it: unchanged without autocast or when it already is; a request
    :func:`autocast_graph` refuses (a half-precision graph, another autocast dtype) is an
    :class:`~costmodel.InvalidInputError`."""
    if autocast is None or graph.meta.get("autocast") == autocast:
        return graph
    try:
        return autocast_graph(graph, autocast)
    except ValueError as e:
        raise InvalidInputError(f"autocast={autocast!r}: {e}") from None
