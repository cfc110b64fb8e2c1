"""Grid carbon intensity by region, and energy -> CO2e.

>>> from costmodel.carbon import carbon_g, carbon_intensity_g_per_kwh
>>> carbon_intensity_g_per_kwh("world")
486.0
>>> carbon_g(3.6e6, intensity_g_per_kwh=400.0)   # 1 kWh at 400 g/kWh
400.0

The table (``costmodel/data/carbon_intensity.json``) holds yearly average,
location-based intensities with their source and year; see its ``notes``.
Energy is in joules throughout (1 kWh = 3.6e6 J), as in the rest of costmodel.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import re
from pathlib import Path
from typing import Any

from ._errors import InvalidInputError, ModelLoadError

__all__ = ["J_PER_KWH", "carbon_g", "carbon_intensity_g_per_kwh", "list_regions", "region_info"]

#: joules in one kilowatt-hour
J_PER_KWH = 3.6e6

_TABLE_PATH = Path(__file__).resolve().parent / "data" / "carbon_intensity.json"


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@functools.cache
def _table() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    try:
        data = json.loads(_TABLE_PATH.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{_TABLE_PATH}: expected a readable JSON table, got {e}") from e
    regions = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(regions, dict) or not regions:
        raise ModelLoadError(f"{_TABLE_PATH}: expected a non-empty 'regions' object")
    index: dict[str, str] = {}
    for key, entry in regions.items():
        v = entry.get("g_co2e_per_kwh")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ModelLoadError(f"{_TABLE_PATH}: region {key!r}: expected g_co2e_per_kwh >= 0, got {v!r}")
        for alias in {_norm(a) for a in (key, *entry.get("aliases", ()))}:
            other = index.setdefault(alias, key)
            if other != key:
                raise ModelLoadError(f"{_TABLE_PATH}: alias {alias!r} of {key!r} already belongs to {other!r}")
    return regions, index


def list_regions() -> list[str]:
    """Canonical region keys of the table (``"world"``, ``"us-east-1"``, ``"france"``...)."""
    return list(_table()[0])


def _lookup(region: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(region, str):
        raise InvalidInputError(f"expected a region name, got {type(region).__name__}")
    regions, index = _table()
    key = index.get(_norm(region))
    if key is None:
        choices = list(regions)
        raise InvalidInputError(
            f"expected a known region, got {region!r}; known regions: {', '.join(choices)} "
            f"(aliases such as 'virginia' or 'gb' work; or pass intensity_g_per_kwh)."
            f"{_suggest_region(region, regions)}"
        )
    return key, regions[key]


def _suggest_region(region: str, regions: dict[str, dict[str, Any]]) -> str:
    """``" Did you mean: ...?"`` naming only regions of the list the message shows: a close region
    key, or the region of a close alias (``us-east-1 (alias virginia)``), best first; ``""`` when none
    is close.  Aliases must be near-miss spellings (ratio >= 0.75), not any name sharing a few letters."""
    import difflib

    name = region.strip().lower()
    scored: list[tuple[float, str, str]] = []
    for key, e in regions.items():
        r = difflib.SequenceMatcher(None, name, key.lower()).ratio()
        if r >= 0.6:
            scored.append((r, key, key))
        for alias in e.get("aliases", ()):
            r = difflib.SequenceMatcher(None, name, alias.lower()).ratio()
            if r >= 0.75:
                scored.append((r, key, f"{key} (alias {alias})"))
    out: dict[str, str] = {}
    for _, key, shown in sorted(scored, key=lambda t: -t[0]):
        out.setdefault(key, shown)
    shown = list(out.values())[:3]
    return f" Did you mean: {', '.join(shown)}?" if shown else ""


def region_info(region: str) -> dict[str, Any]:
    """The table entry of ``region`` (intensity, label, year, source, ...), with its canonical ``region`` key."""
    key, entry = _lookup(region)
    return {"region": key, **entry}


def carbon_intensity_g_per_kwh(region: str) -> float:
    """Yearly average grid intensity of ``region`` in g CO2e per kWh.

    Raises:
        InvalidInputError: the region is not in the table; the message lists
            the known regions and suggests close names.
    """
    return float(_lookup(region)[1]["g_co2e_per_kwh"])


def carbon_g(energy_j: float, region: str = "world", intensity_g_per_kwh: float | None = None) -> float:
    """Grams of CO2e emitted producing ``energy_j`` joules of electricity.

    Args:
        energy_j: energy in joules (>= 0).
        region: table region used when ``intensity_g_per_kwh`` is not given.
        intensity_g_per_kwh: explicit intensity (>= 0); overrides ``region``.

    Returns:
        ``energy_j / 3.6e6 * intensity``.
    """
    if not _is_real(energy_j) or not math.isfinite(energy_j) or energy_j < 0:
        raise InvalidInputError(f"expected energy_j to be a finite number of joules >= 0, got {energy_j!r}")
    if intensity_g_per_kwh is None:
        intensity = carbon_intensity_g_per_kwh(region)
    else:
        if not _is_real(intensity_g_per_kwh) or not math.isfinite(intensity_g_per_kwh) or intensity_g_per_kwh < 0:
            raise InvalidInputError(
                f"expected intensity_g_per_kwh to be a finite number >= 0, got {intensity_g_per_kwh!r}"
            )
        intensity = float(intensity_g_per_kwh)
    return float(energy_j) / J_PER_KWH * intensity
