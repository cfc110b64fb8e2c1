"""Skinny matrix products on a GPU: a kernel start plus one stream of the operands.

A matrix product whose activation has one row (a classifier at batch 1, a decoder's projections in a
decode step at batch 1), or at most 32 rows in fp16/bf16 (tensor-core tiles are taller than that, so 2
and 32 rows run the same kernel), does almost no arithmetic per byte: cuBLAS streams the weight once
through a GEMV-like kernel. The H200's operator profiles time 54 such kernels in the packaged
architectures (``costmodel/data/h200/ops``, 0.9 to 411 MB) and they follow one line::

    time = STREAM_START_US + bytes / (STREAM_SHARE * bandwidth)

with a 3.55 µs start and 0.848 of the datasheet bandwidth (least squares of the relative error,
``costmodel.predictors.fit_stream_line``): 12.3 % mean error on those 54, 11.0 % on the 26 of the later
architectures (``benchmarks/data/h200_ops``), which the line was not fitted on. VGG-16's first
classifier layer at batch 1 (411 MB of fp32 weights) took 98.4 µs; the line gives 104.6.

The efficiency network never learned these kernels: whole-model rows where they matter are
host-bound, so the fit through the composition got no gradient from them, and it put VGG-16's 411 MB
layer at 323 µs (a quarter of the bandwidth). The timeline therefore costs these rows (forward
operators on a GPU) by the line instead of the network. On another GPU the start stays and the
share applies to its bandwidth.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

#: the kernel's start (µs) and the share of the datasheet bandwidth its stream reaches, fitted to the
#: packaged architectures' skinny products in the H200's operator profiles (see the module docstring)
STREAM_START_US = 3.55
STREAM_SHARE = 0.848
#: the most activation rows a product may have and still be costed by the line, per dtype
#: (fp32 beyond one row picks SGEMM kernels the profiles time 4-5x slower than the line)
MAX_ROWS = {"fp32": 1, "fp16": 32, "bf16": 32}


def skinny_rows(node) -> int | None:
    """The activation rows of a matrix product ``node`` if the line costs it, else ``None``."""
    if node.kind != "matmul" or not node.out_shapes or not node.out_shapes[0]:
        return None
    out = node.out_shapes[0]
    rows = math.prod(out[:-1]) if len(out) > 1 else 1
    if rows > 32:  # the most any dtype allows (MAX_ROWS): most products stop here
        return None
    dtype = next((d for d in (*node.out_dtypes, *node.in_dtypes) if d in MAX_ROWS), None)
    if dtype is None or rows > MAX_ROWS[dtype]:
        return None
    return int(rows)


def stream_us(nbytes: float, bandwidth_bytes_s: float) -> float:
    """The line's time (µs) for a product that moves ``nbytes``."""
    return STREAM_START_US + nbytes / (STREAM_SHARE * bandwidth_bytes_s) * 1e6


def operator_streams(nodes, positions: np.ndarray, is_matmul: np.ndarray, row_op: np.ndarray, backward: np.ndarray,
                     bandwidth_bytes_s: float) -> np.ndarray | None:
    """Per row of operator tables: the line's time where it costs the row (the forward row of a skinny
    matrix product), NaN elsewhere; ``None`` where none qualifies. ``nodes[positions[j]]`` is operator
    ``j``, ``is_matmul[j]`` whether it is a matrix product (the only kind the line can cost, so no other
    node is looked at), ``row_op`` / ``backward`` each row's operator and phase."""
    op = None
    for j in np.flatnonzero(is_matmul).tolist() if bandwidth_bytes_s else []:
        n = nodes[positions[j]]
        if skinny_rows(n) is not None:
            op = np.full(len(is_matmul), np.nan) if op is None else op
            op[j] = stream_us(n.bytes_read + n.bytes_written, bandwidth_bytes_s)
    return None if op is None else np.where(backward, np.nan, op[row_op])


def fit_stream_line(kernels: Iterable[tuple[float, float]], bandwidth_bytes_s: float) -> tuple[float, float]:
    """``(start_us, share)`` of the line through measured ``(bytes, device_us)`` kernels, by least
    squares of the relative error (what :data:`STREAM_START_US` and :data:`STREAM_SHARE` came from)."""
    k = np.asarray(list(kernels), float)
    if k.ndim != 2 or len(k) < 2:
        raise ValueError("fit_stream_line needs at least two (bytes, device_us) kernels")
    y = k[:, 1]
    a = np.stack([np.ones(len(k)), k[:, 0] / bandwidth_bytes_s], 1) / y[:, None]
    (start, inv), *_ = np.linalg.lstsq(a, np.ones(len(k)), rcond=None)
    return float(start), float(1e6 / inv)


def stream_column_of(tables) -> np.ndarray:
    """The :attr:`~._optable.OpTable.stream_us` of several tables, stacked (NaN where a table has none)."""
    cols = [np.full(len(t.bound_s), np.nan) if t.stream_us is None else t.stream_us for t in tables]
    return np.concatenate(cols) if cols else np.zeros(0)


def with_streams(device_us: np.ndarray, eff: np.ndarray, rows) -> tuple[np.ndarray, np.ndarray]:
    """Rows' device times and efficiencies with the stream line in place of the network where it costs a
    row (``rows.stream_us``, NaN elsewhere; ``None``: none)."""
    s = rows.stream_us
    if s is None:
        return device_us, eff
    line = np.isfinite(s)
    t = np.where(line, s, 1.0)
    return np.where(line, s, device_us), np.where(line, np.minimum(1.0, rows.bound_s * 1e6 / t), eff)


def skinny_kernels(op_rows: Iterable[dict]) -> list[tuple[float, float]]:
    """``(bytes, device_us)`` of the forward skinny matrix products in operator-profile rows (``collect
    --ops``'s ``ops.jsonl``), each (model, batch, dtype, shapes) once: what the line is fitted to."""
    out, seen = [], set()
    for r in op_rows:
        if r.get("kind") != "matmul" or r.get("phase") != "forward" or not r.get("device_us"):
            continue
        shape = (r.get("out_shapes") or [[]])[0]
        if not shape:
            continue
        rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
        if r.get("dtype") not in MAX_ROWS or rows > MAX_ROWS[r["dtype"]]:
            continue
        key = (r.get("model"), r.get("batch"), r.get("dtype"), str(r.get("in_shapes")))
        if key not in seen:
            seen.add(key)
            out.append((float(r["bytes"]), float(r["device_us"])))
    return out
