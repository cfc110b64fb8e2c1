"""Argument checks shared by the public functions: counts, rates, flags and choices.

Each check returns the value (converted where that is the point: a rate comes
back as a ``float``) or raises :class:`~costmodel.InvalidInputError` with
``"expected <what> to be ..., got <value>"``.  Booleans are never numbers here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from ._errors import InvalidInputError, suggest

__all__ = ["is_number", "non_negative_number", "one_of", "positive_int", "positive_number", "true_or_false"]


def is_number(x: Any) -> bool:
    """A finite real number that is not a ``bool``."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def positive_int(value: Any, what: str) -> int:
    """``value`` if it is an ``int`` > 0 (not a ``bool``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"expected {what} to be a positive integer, got {value!r}")
    return value


def positive_number(value: Any, what: str) -> float:
    """``float(value)`` if it is a finite number > 0."""
    if not is_number(value) or value <= 0:
        raise InvalidInputError(f"expected {what} to be a finite number > 0, got {value!r}")
    return float(value)


def non_negative_number(value: Any, what: str, unit: str = "") -> float:
    """``float(value)`` if it is a finite number >= 0; ``unit`` names it in the message (``"joules"``)."""
    if not is_number(value) or value < 0:
        of = f" of {unit}" if unit else ""
        raise InvalidInputError(f"expected {what} to be a finite number{of} >= 0, got {value!r}")
    return float(value)


def true_or_false(value: Any, what: str) -> bool:
    """``value`` if it is a ``bool``."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"expected {what} to be True or False, got {value!r}")
    return value


def one_of(value: Any, choices: Iterable[str], what: str) -> str:
    """``value`` if it is one of ``choices``; the message lists them and suggests close ones."""
    choices = list(choices)
    if isinstance(value, str) and value in choices:
        return value
    near = suggest(value.strip().lower(), choices) if isinstance(value, str) else ""
    raise InvalidInputError(f"expected {what} among {', '.join(choices)}, got {value!r}{near}")
