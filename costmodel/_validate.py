"""Argument checks shared by the public functions: counts, rates, flags and choices.

Each check returns the value (converted where that is the point: a rate comes
back as a ``float``) or raises :class:`~costmodel.InvalidInputError` with
``"expected <what> to be ..., got <value>"``.  Booleans are never numbers here.

``where`` puts a prefix before the message (a file, an entry of a work file:
``"specs.json vision[0]: expected ..."``); an empty ``what`` leaves the subject
out (``"expected a positive integer, got 0"``) for callers that name the
argument themselves, as argparse does.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from ._errors import InvalidInputError, suggest

__all__ = [
    "int_at_least",
    "is_int",
    "is_number",
    "non_negative_number",
    "one_of",
    "positive_int",
    "positive_ints",
    "positive_number",
    "true_or_false",
]


#: ``positive_ints(given=...)`` left out: the message names the bad element
_ELEMENT = object()


def _error(what: str, kind: str, value: Any, where: str = "") -> InvalidInputError:
    subject = f"{what} to be " if what else ""
    prefix = f"{where}: " if where else ""
    return InvalidInputError(f"{prefix}expected {subject}{kind}, got {value!r}")


def is_number(x: Any) -> bool:
    """A finite real number that is not a ``bool``."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def is_int(x: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(x, int) and not isinstance(x, bool)


def positive_int(value: Any, what: str, *, where: str = "") -> int:
    """``value`` if it is an ``int`` > 0 (not a ``bool``)."""
    if not is_int(value) or value <= 0:
        raise _error(what, "a positive integer", value, where)
    return value


def positive_ints(values: Iterable[Any], what: str, *, where: str = "", given: Any = _ELEMENT) -> list[int]:
    """``list(values)`` if it holds one or more ``int`` > 0; the message names the first bad one, or
    ``given`` (what the values were parsed from, such as ``"3,0,224"``) where that is passed."""
    values = list(values)
    if not values:
        raise _error(what, "one or more positive integers", values if given is _ELEMENT else given, where)
    for v in values:
        if not is_int(v) or v <= 0:
            raise _error(what, "positive integers", v if given is _ELEMENT else given, where)
    return values


def int_at_least(value: Any, what: str, lo: int, hi: int | None = None, *, where: str = "", note: str = "",
                 or_none: bool = False) -> int | None:
    """``value`` if it is an ``int`` (not a ``bool``) >= ``lo`` (and <= ``hi``); ``note`` follows the range
    in the message (``"(the CPUs this process may use)"``); ``or_none``: ``None`` passes too."""
    if or_none and value is None:
        return None
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        kind = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
        kind = f"{kind} {note}" if note else kind
        raise _error(what, f"None or {kind}" if or_none else kind, value, where)
    return value


def positive_number(value: Any, what: str, *, where: str = "") -> float:
    """``float(value)`` if it is a finite number > 0."""
    if not is_number(value) or value <= 0:
        raise _error(what, "a finite number > 0", value, where)
    return float(value)


def non_negative_number(value: Any, what: str, unit: str = "", *, where: str = "",
                        or_none: bool = False) -> float | None:
    """``float(value)`` if it is a finite number >= 0; ``unit`` names it in the message (``"joules"``);
    ``or_none``: ``None`` passes too."""
    if or_none and value is None:
        return None
    if not is_number(value) or value < 0:
        of = f" of {unit}" if unit else ""
        kind = f"a finite number{of} >= 0"
        raise _error(what, f"None or {kind}" if or_none else kind, value, where)
    return float(value)


def true_or_false(value: Any, what: str, *, where: str = "") -> bool:
    """``value`` if it is a ``bool``."""
    if not isinstance(value, bool):
        raise _error(what, "True or False", value, where)
    return value


def one_of(value: Any, choices: Iterable[str], what: str) -> str:
    """``value`` if it is one of ``choices``; the message lists them and suggests close ones."""
    choices = list(choices)
    if isinstance(value, str) and value in choices:
        return value
    near = suggest(value.strip().lower(), choices) if isinstance(value, str) else ""
    raise InvalidInputError(f"expected {what} among {', '.join(choices)}, got {value!r}{near}")
