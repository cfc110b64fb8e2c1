"""Per-operator FLOPs, MACs and bytes for every op kind of the vocabulary.

The formulas depend only on the op kind, operand shapes/dtypes and normalized
attributes, never on the frontend, so the same model costs the same through
ONNX, ATen and Relax.

Conventions (the ones ``torch.utils.flop_counter`` and most papers use):

* dense ops count ``FLOPs = 2 * MACs``; bias additions are not counted;
* fused attention counts its two matmuls (``QK^T`` and ``PV``); the softmax in
  between is a few FLOPs per score and is left out, as FlopCounterMode does;
* pointwise ops count a small, fixed number of FLOPs per output element
  (:data:`POINTWISE_FLOPS`), reductions one FLOP per input element;
* bytes are the ideal traffic of one kernel: every operand read once, every
  result written once.  Lookups (embedding/gather) read only the rows they
  gather, plus their index.  Views move nothing.  An operand that is a broadcast view
  (``expand``: stride-0 dimensions) is read as the elements of its storage,
  which the frontend records in ``attrs["operand_elems"]``; a lookup's index
  that is such a view is read at its storage's size too.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..ir import dtype_bytes, numel

#: FLOPs per output element of pointwise kinds (an order-of-magnitude model of
#: the arithmetic in each function; transcendental functions count a few).
POINTWISE_FLOPS: dict[str, float] = {
    "relu": 1,
    "clamp": 2,
    "gelu": 8,
    "silu": 4,
    "sigmoid": 4,
    "tanh": 6,
    "hardswish": 4,
    "softmax": 5,
    "activation": 4,
    "add": 1,
    "mul": 1,
    "elementwise": 1,
}

#: FLOPs per element of normalization kinds
NORM_FLOPS: dict[str, float] = {
    "batch_norm": 2,  # inference: folded scale and shift
    "layer_norm": 8,
    "group_norm": 8,
    "instance_norm": 8,
    "rms_norm": 4,
}
_TRAIN_BATCH_NORM_FLOPS = 8


def _bytes(shape: Sequence[int], dtype: str) -> int:
    return numel(shape) * dtype_bytes(dtype)


def op_cost(
    kind: str,
    in_shapes: Sequence[Sequence[int]],
    in_dtypes: Sequence[str],
    out_shapes: Sequence[Sequence[int]],
    out_dtypes: Sequence[str],
    attrs: dict[str, Any],
    is_view: bool = False,
) -> tuple[float, float, float, float]:
    """Return ``(flops, macs, bytes_read, bytes_written)`` of one operator."""
    if is_view:
        return 0.0, 0.0, 0.0, 0.0
    out0 = out_shapes[0] if out_shapes else ()
    n_out = numel(out0) if out_shapes else 0
    macs = 0.0
    flops = 0.0

    if kind == "conv" and len(in_shapes) >= 2:
        w = in_shapes[1]
        cout = w[0] if w else 1
        macs = n_out * (numel(w) / cout if cout else 0)
        flops = 2 * macs
    elif kind == "conv_transpose" and len(in_shapes) >= 2:
        w = in_shapes[1]
        cin = w[0] if w else 1
        macs = numel(in_shapes[0]) * (numel(w) / cin if cin else 0)
        flops = 2 * macs
    elif kind == "matmul" and in_shapes:
        k = attrs.get("k")
        if k is None:
            a = in_shapes[0]
            k = a[-1] if a else 1
        macs = float(n_out) * k
        flops = 2 * macs
    elif kind == "attention" and len(in_shapes) >= 3:
        q, kk, v = in_shapes[0], in_shapes[1], in_shapes[2]
        if len(q) >= 2 and len(kk) >= 2 and len(v) >= 1:
            length, e = q[-2], q[-1]
            s, ev = kk[-2], v[-1]
            groups = numel(q[:-2])
            macs = float(groups) * length * s * (e + ev)
            flops = 2 * macs
    elif kind in NORM_FLOPS:
        per = NORM_FLOPS[kind]
        if kind == "batch_norm" and attrs.get("training"):
            per = _TRAIN_BATCH_NORM_FLOPS
        flops = per * (numel(in_shapes[0]) if in_shapes else n_out)
    elif kind in POINTWISE_FLOPS:
        flops = POINTWISE_FLOPS[kind] * n_out
    elif kind in ("max_pool", "avg_pool"):
        kernel = attrs.get("kernel")
        if kernel:
            flops = float(n_out) * math.prod(kernel)
        else:  # global / adaptive pooling reads every input element once
            flops = float(numel(in_shapes[0])) if in_shapes else float(n_out)
    elif kind == "reduction":
        flops = float(numel(in_shapes[0])) if in_shapes else 0.0
    if attrs.get("flops") is not None:  # a fused operator that states its own arithmetic
        flops = float(attrs["flops"])
    if attrs.get("macs") is not None:  # ... and its multiply-accumulates (a TIR kernel's contraction)
        macs = float(attrs["macs"])

    written = float(sum(_bytes(s, d) for s, d in zip(out_shapes, out_dtypes)))
    stored = _stored_elems(in_shapes, attrs)
    if kind == "gather" and attrs.get("scatter"):
        # a scatter (scatter_add, index_add, index_put...) reads its destination, the index and the values
        read = float(sum(e * dtype_bytes(d) for e, d in zip(stored, in_dtypes)))
    elif kind in ("embedding", "gather"):
        # gathered rows plus the index tensor(s) at their storage's size; the table itself is not streamed
        idx = sum(e * dtype_bytes(d) for e, d in zip(stored, in_dtypes) if d.startswith(("int", "uint")))
        read = written + idx
        if attrs.get("bag_rows") and out_shapes and out_shapes[0]:
            # an embedding bag pools one row per index into each bag: the rows read are the indices, and the
            # pooling adds them
            row = out_shapes[0][-1] * dtype_bytes(out_dtypes[0])
            read = float(attrs["bag_rows"]) * row + idx
            flops = max(flops, float(attrs["bag_rows"]) * out_shapes[0][-1])
    elif kind == "slice":
        read = written
    else:
        if kind == "matmul" and attrs.get("experts") and len(stored) >= 2 and in_shapes[0]:
            stored = list(stored)
            stored[1] = stored[1] * experts_hit(int(in_shapes[0][0]), int(attrs["experts"]))
        read = float(sum(e * dtype_bytes(d) for e, d in zip(stored, in_dtypes)))
    return float(flops), float(macs), float(read), written


def experts_hit(rows: int, experts: int) -> float:
    """Expected share of a grouped GEMM's ``experts`` that receive at least one of its ``rows``
    (token-expert pairs) when routing spreads them evenly: ``1 - (1 - 1/E)^rows``. A grouped GEMM
    reads the weights of those experts only, which matters when a decode step routes a few tokens
    (8 pairs over 8 experts: 66 % of the weights); a prefill's thousands of pairs read them all."""
    if experts <= 1:
        return 1.0
    return 1.0 - (1.0 - 1.0 / experts) ** max(rows, 0)


def _stored_elems(in_shapes: Sequence[Sequence[int]], attrs: dict[str, Any]) -> list[int]:
    """Elements each operand's kernel reads: its storage's size for a broadcast view, else its shape's."""
    elems = attrs.get("operand_elems")
    if elems is not None and len(elems) == len(in_shapes):
        return [min(numel(s), int(e)) for s, e in zip(in_shapes, elems)]
    return [numel(s) for s in in_shapes]
