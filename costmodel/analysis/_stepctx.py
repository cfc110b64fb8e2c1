"""How a traced step runs a module: its parameters swapped in for the whole step, and mixed precision."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from .._errors import InvalidInputError
from ..ir import AUTOCAST_DTYPES


def check_autocast(autocast: str | None) -> str | None:
    """``autocast`` if it is ``None`` or one of :data:`AUTOCAST_DTYPES`; else a clear error."""
    if autocast is not None and autocast not in AUTOCAST_DTYPES:
        raise InvalidInputError(f"autocast must be None or one of {', '.join(AUTOCAST_DTYPES)}; got {autocast!r}")
    return autocast


def autocast_to(amp: str | None, device: str):
    """``torch.autocast`` to ``amp`` on ``device``'s tensors, or nothing. The trace's fake tensors live
    on the CPU device, whose autocast casts the same operator families as CUDA's (matmuls and
    convolutions down, reductions and losses up)."""
    import torch

    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


def reparametrized(module, mapping):
    """The module with the tensors of ``mapping`` in place of its own for the duration (what
    ``functional_call`` does for one call)."""
    from torch.nn.utils.stateless import _reparametrize_module

    return _reparametrize_module(module, mapping, tie_weights=True)


def direct_call(module, inputs):
    """``module`` called on a tensor, a tuple of positional tensors or a mapping of keyword tensors."""
    if isinstance(inputs, Mapping):
        return module(**dict(inputs))
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    return module(*inputs)
