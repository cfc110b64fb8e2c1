"""Normalization rules every frontend applies the same way."""

from __future__ import annotations

import math
from typing import Sequence

from .._errors import InvalidInputError
from .._validate import positive_int


def spatial_mean_is_pool(in_rank: int, axes: Sequence[int] | None) -> bool:
    """A mean over all spatial axes of an NC... tensor is global average pooling.

    torchvision writes ``adaptive_avg_pool2d``; ONNX exporters and ATen traces
    often emit ``ReduceMean``/``mean.dim`` over axes (2, 3) for the same
    thing.  Normalizing both to ``avg_pool`` keeps op counts equal across
    frontends.
    """
    if axes is None or in_rank < 3:
        return False
    norm = sorted(a % in_rank for a in axes)
    return norm == list(range(2, in_rank))


def check_batch(batch) -> int:
    """``batch`` if it is a positive ``int``."""
    return positive_int(batch, "batch")


def parse_shape(shape) -> tuple[int, ...]:
    """Accept ``(3, 224, 224)``, ``[3, 224, 224]`` or ``"3,224,224"``."""
    if isinstance(shape, str):
        parts = [p.strip() for p in shape.replace("x", ",").split(",") if p.strip()]
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            raise InvalidInputError(
                f"input shape {shape!r} is not a comma-separated list of integers (e.g. 3,224,224)"
            ) from None
    else:
        try:
            dims = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise InvalidInputError(f"input shape {shape!r} is not a sequence of integers") from None
    if not dims or any(d <= 0 for d in dims):
        raise InvalidInputError(f"input shape {shape!r} must be non-empty with positive dimensions")
    return dims


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    r = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(r):
        dims = {s[len(s) - r + i] for s in shapes if len(s) - r + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def einsum_contraction(equation: str, shapes: Sequence[Sequence[int]], out_numel: int) -> float:
    """Contraction size of an einsum: total multiply-adds / output elements."""
    lhs = equation.replace(" ", "").split("->")[0]
    sizes: dict[str, int] = {}
    ell: list[tuple[int, ...]] = []
    for term, shp in zip(lhs.split(","), shapes):
        shp = list(shp)
        if "..." in term:
            pre, post = term.split("...", 1)
            n_ell = len(shp) - len(pre) - len(post)
            for c, d in zip(pre, shp[: len(pre)]):
                sizes[c] = max(sizes.get(c, 1), int(d))
            for c, d in zip(post, shp[len(shp) - len(post):] if post else []):
                sizes[c] = max(sizes.get(c, 1), int(d))
            ell.append(tuple(shp[len(pre): len(pre) + max(n_ell, 0)]))
        else:
            for c, d in zip(term, shp):
                sizes[c] = max(sizes.get(c, 1), int(d))
    total = math.prod(sizes.values()) if sizes else 1
    if ell:
        b = broadcast_shape(*ell)
        total *= math.prod(b) if b else 1
    return total / out_numel if out_numel else 0.0
