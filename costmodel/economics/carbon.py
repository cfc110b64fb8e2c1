"""Grid carbon intensity by region, and energy -> CO2e.

>>> from costmodel.economics import carbon_g, carbon_intensity_g_per_kwh
>>> carbon_intensity_g_per_kwh("world")
486.0
>>> carbon_g(3.6e6, intensity_g_per_kwh=400.0)   # 1 kWh at 400 g/kWh
400.0

The table (``costmodel/data/carbon_intensity.json``) holds yearly average,
location-based intensities with their source and year; see its ``notes``.
Energy is in joules throughout (1 kWh = 3.6e6 J), as in the rest of costmodel.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

from .._errors import ModelLoadError
from .._tables import PACKAGE_DIR, NameTable, load_table, name_table, table_section
from .._validate import is_number, non_negative_number

__all__ = ["J_PER_KWH", "carbon_g", "carbon_intensity_g_per_kwh", "check_pue", "list_regions", "region_info"]

#: joules in one kilowatt-hour
J_PER_KWH = 3.6e6

_TABLE = "data/carbon_intensity.json"


@functools.cache
def _table() -> NameTable:
    where = str(PACKAGE_DIR / _TABLE)
    regions = table_section(load_table(_TABLE), "regions", dict, where)
    for key, entry in regions.items():
        v = entry.get("g_co2e_per_kwh")
        if not is_number(v) or v < 0:
            raise ModelLoadError(f"{where}: region {key!r}: expected g_co2e_per_kwh >= 0, got {v!r}")
    return name_table(regions, where)


def list_regions() -> list[str]:
    """Canonical region keys of the table (``"world"``, ``"us-east-1"``, ``"france"``...)."""
    return list(_table().entries)


def _lookup(region: str) -> tuple[str, dict[str, Any]]:
    table = _table()
    key = table.find(
        region, "a region name", expected="a known region", listing="known regions",
        hint="aliases such as 'virginia' or 'gb' work; or pass intensity_g_per_kwh",
        suggest_with=lambda name: _suggest_region(name, table.entries),
    )
    return key, table.entries[key]


def _suggest_region(region: str, regions: dict[str, dict[str, Any]]) -> str:
    """``" Did you mean: ...?"`` naming only regions of the list the message shows: a close region
    key, or the region of a close alias (``us-east-1 (alias virginia)``), best first; ``""`` when none
    is close.  Aliases must be near-miss spellings (ratio >= 0.75), not any name sharing a few letters."""
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
    energy = non_negative_number(energy_j, "energy_j", unit="joules")
    if intensity_g_per_kwh is None:
        intensity = carbon_intensity_g_per_kwh(region)
    else:
        intensity = non_negative_number(intensity_g_per_kwh, "intensity_g_per_kwh")
    return energy / J_PER_KWH * intensity


def check_pue(pue) -> float:
    """``pue`` (power usage effectiveness: the data centre's total energy over its IT equipment's) as a
    float >= 1, the factor between the GPU's energy and the energy the grid supplies for it.

    Raises:
        InvalidInputError: not a finite number >= 1.
    """
    import math

    from .._errors import InvalidInputError

    ok = isinstance(pue, (int, float)) and not isinstance(pue, bool) and math.isfinite(pue) and pue >= 1.0
    if not ok:
        raise InvalidInputError(f"pue must be a number >= 1 (the facility's energy over its IT equipment's: 1 counts "
                                f"the GPU alone, large cloud data centres report about 1.1, typical ones 1.5-1.6), "
                                f"got {pue!r}")
    return float(pue)
