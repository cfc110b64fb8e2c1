"""Naming a predictor that answered in place of the library's first choice.

When the caller names no predictor, the registry answers with the first
predictor of its preference order that is available (a learned one when its
shipped artifact and dependencies are there, else the next, the analytic
model last).  An estimate made that way rests on the fallback, and says so:
:func:`default_fallback_note` gives the line its ``assumptions`` carry.
"""

from __future__ import annotations


def _why_unavailable(cls) -> str:
    missing = getattr(cls, "_missing", None)
    if callable(missing):
        mods = missing()
        if mods:
            return f"needs {', '.join(mods)}"
    return "no usable shipped artifact"


def default_fallback_note(pred) -> str | None:
    """The assumption of an estimate by ``pred`` when it answered because the predictors before it
    in the default order were not available; ``None`` when ``pred`` is the first choice (or not in
    the default order at all)."""
    from ._base import _DEFAULT_ORDER, _REGISTRY, _ensure_builtin

    _ensure_builtin()
    name = getattr(pred, "name", None)
    if name not in _DEFAULT_ORDER:
        return None
    before = _DEFAULT_ORDER[: _DEFAULT_ORDER.index(name)]
    skipped = [f"{c}: {_why_unavailable(_REGISTRY[c])}" for c in before if c in _REGISTRY]
    if not skipped:
        return None
    return (f"the default predictor is not available ({'; '.join(skipped)}); "
            f"the {name} predictor answered instead")


def with_notes(est, notes) -> object:
    """``est`` with ``notes`` put first among its assumptions (``est`` itself when there are none)."""
    notes = [n for n in notes if n]
    if notes:
        est.assumptions = list(dict.fromkeys([*notes, *est.assumptions]))
    return est
