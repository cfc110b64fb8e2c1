"""Re-type a graph's floating tensors (fp32 model estimated at fp16, say)."""

from __future__ import annotations

from ..ir import CostGraph, Node, dtype_bytes
from ._opcost import op_cost

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
    for key in ("weights_bytes", "trainable_bytes"):
        if key in meta:
            meta[key] = int(meta[key] * ratio)
    inputs = [type(i)(i.name, i.shape, dtype if i.dtype in FLOAT_DTYPES else i.dtype) for i in graph.inputs]
    return CostGraph(nodes, list(graph.edges), inputs, meta)
