"""Normalization rules every frontend applies the same way."""

from __future__ import annotations

from typing import Sequence

from .._errors import InvalidInputError


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
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise InvalidInputError(f"batch must be a positive integer, got {batch!r}")
    if batch <= 0:
        raise InvalidInputError(f"batch must be a positive integer, got {batch}")
    return batch


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
