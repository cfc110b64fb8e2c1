"""One loader for the JSON tables shipped with costmodel, and the name index they share.

The device database (``devices/devices.json``), the transformer registry
(``llm/registry.json``), the grid carbon table (``data/carbon_intensity.json``)
and the GPU price table (``data/gpu_prices.json``) are JSON files whose entries
have a canonical name and aliases.  Names match case- and
punctuation-insensitively: :func:`normalize_name` keeps letters and digits
only, and :func:`name_table` maps every normalized name or alias to its
canonical key, refusing an alias that two entries claim.  Errors name the
file, the bad value and the valid choices.

Only the standard library is imported here, so the packages that load a table
stay cheap to import.
"""

from __future__ import annotations

import functools
import json
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import InvalidInputError, ModelLoadError, suggest

__all__ = [
    "PACKAGE_DIR",
    "NameTable",
    "alias_index",
    "load_table",
    "name_table",
    "normalize_name",
    "table_section",
    "unknown_name_error",
]

#: the ``costmodel`` package directory; table paths are relative to it
PACKAGE_DIR = Path(__file__).resolve().parent


def normalize_name(name: str) -> str:
    """Lowercase ``name`` and drop everything but letters and digits (``"H100-80GB"`` -> ``"h10080gb"``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def load_table(relpath: str, what: str = "JSON table", error: type[Exception] = ModelLoadError) -> Any:
    """The parsed JSON file ``relpath`` of the package (``"data/gpu_prices.json"``), read once.

    The result is shared between callers: do not modify it.

    Raises:
        ``error``: the file is missing or not valid JSON; the message names the
            file and says it expected ``"a readable " + what``.
    """
    return _load(PACKAGE_DIR / relpath, what, error)


@functools.cache
def _load(path: Path, what: str, error: type[Exception]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: expected a readable {what}, got {e}") from e


def table_section(data: Any, key: str, kind: type, where: str, error: type[Exception] = ModelLoadError) -> Any:
    """``data[key]``, checked to be a non-empty ``kind`` (``dict`` or ``list``) inside a JSON object."""
    if not isinstance(data, dict):
        raise error(f"{where}: expected a JSON object, got {type(data).__name__}")
    value = data.get(key)
    if not isinstance(value, kind) or not value:
        noun = "object" if kind is dict else "list"
        raise error(f"{where}: expected a non-empty {key!r} {noun}, got {reprlib.repr(value)}")
    return value


def alias_index(names: Mapping[str, Iterable[str]], where: str, error: type[Exception] = ModelLoadError) -> dict[str, str]:
    """Map every normalized name and alias of ``names`` (canonical key -> aliases) to its canonical key.

    Raises:
        ``error``: an alias with no letter or digit, or one that two keys claim.
    """
    index: dict[str, str] = {}
    for key, aliases in names.items():
        for norm in dict.fromkeys(normalize_name(n) for n in (key, *aliases)):
            if not norm:
                raise error(f"{where}: {key!r} has a name or alias with no letter or digit")
            other = index.setdefault(norm, key)
            if other != key:
                raise error(f"{where}: {key!r}: name or alias {norm!r} already belongs to {other!r}")
    return index


def _aliases(key: str, entry: Any) -> Iterable[str]:
    return entry.get("aliases", ()) if isinstance(entry, Mapping) else ()


@dataclass(frozen=True)
class NameTable:
    """Entries keyed by canonical name (file order), and the normalized name/alias index."""

    entries: dict[str, Any]
    index: dict[str, str]

    def key(self, name: str) -> str | None:
        """The canonical key ``name`` (any case and punctuation, or an alias) stands for, else ``None``."""
        return self.index.get(normalize_name(name))

    def find(self, name: Any, noun: str, *, suggest_with: Callable[[str], str] | None = None,
             **unknown: Any) -> str:
        """The canonical key of ``name``.

        Raises:
            InvalidInputError: ``name`` is not a string (``"expected <noun>, got int"``), or no entry
                has it: :func:`unknown_name_error` with the keyword arguments ``unknown`` (and
                ``suggestions=suggest_with(name)`` where that is given).
        """
        if not isinstance(name, str):
            raise InvalidInputError(f"expected {noun}, got {type(name).__name__}")
        key = self.key(name)
        if key is None:
            if suggest_with is not None:
                unknown["suggestions"] = suggest_with(name)
            raise unknown_name_error(name, self.entries, **unknown)
        return key


def name_table(
    entries: Mapping[str, Any],
    where: str,
    aliases: Callable[[str, Any], Iterable[str]] = _aliases,
    error: type[Exception] = ModelLoadError,
) -> NameTable:
    """A :class:`NameTable` of ``entries``; ``aliases(key, entry)`` gives an entry's other names
    (default: its ``"aliases"`` list)."""
    index = alias_index({key: tuple(aliases(key, e)) for key, e in entries.items()}, where, error)
    return NameTable(dict(entries), index)


def unknown_name_error(
    value: str,
    choices: Iterable[str],
    *,
    expected: str,
    listing: str,
    hint: str = "",
    near: Iterable[str] | None = None,
    fold_case: bool = True,
    suggestions: str | None = None,
    error: type[Exception] = InvalidInputError,
) -> Exception:
    """The error for a name no entry has: ``"expected <expected>, got 'x'; <listing>: a, b (<hint>).
    Did you mean: a?"``.

    Args:
        value: the name given.
        choices: the names the message lists.
        near: the names to suggest from (default ``choices``).
        fold_case: compare the lowercased ``value`` (the choices are lowercase names).
        suggestions: a ready-made ``" Did you mean: ...?"`` (or ``""``) instead.
    """
    choices = list(choices)
    if suggestions is None:
        probe = value.strip().lower() if fold_case else value.strip()
        suggestions = suggest(probe, choices if near is None else near)
    note = f" ({hint})" if hint else ""
    return error(f"expected {expected}, got {value!r}; {listing}: {', '.join(choices)}{note}.{suggestions}")
