"""Mixture-of-experts layers: their grouped GEMMs as one operator each.

``transformers`` runs a mixture-of-experts block's expert projections as grouped GEMMs: the
tokens sorted by expert, ``(S, K)`` against ``(E, K, N)`` weights with per-expert offsets, one
kernel (``torch.nn.functional.grouped_mm`` on a CUDA device of compute capability 8.0 or newer).
On meta or fake tensors that path fails: its shape checks reject fp32 operands, and a CPU
build rejects fp16 as well. transformers then has its own custom operator with the same
signature (``transformers::grouped_mm_fallback``: a fake implementation for shapes, a loop of
``mm`` calls on real tensors), which a capture records as one opaque node, as the GPU runs one
kernel. :func:`grouped_mm_fallback` makes transformers take that operator while a model is
captured; the op-kind table maps it, ``_grouped_mm`` and ``grouped_mm`` to ``matmul``
(``2 S K N`` FLOPs; the weights of the experts that receive tokens are read, see
:func:`costmodel.analysis._opcost.op_cost`).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

#: ATen / transformers base names of grouped GEMMs: ``(S, K) x (E, K, N) -> (S, N)`` with offsets
GROUPED_MM = frozenset({"_grouped_mm", "grouped_mm", "grouped_mm_fallback"})


@contextlib.contextmanager
def grouped_mm_fallback() -> Iterator[None]:
    """Within the block, transformers' mixture-of-experts layers call its custom grouped-GEMM
    operator instead of torch's (a no-op when transformers' MoE integration is not loaded)."""
    moe = sys.modules.get("transformers.integrations.moe")
    original = getattr(moe, "_can_use_grouped_mm", None)
    if original is None:
        yield
        return
    moe._can_use_grouped_mm = lambda *args, **kwargs: False
    try:
        yield
    finally:
        moe._can_use_grouped_mm = original
