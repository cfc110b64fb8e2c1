"""Cloud GPU prices, and throughput -> dollars per 1k samples or per 1M tokens.

>>> from costmodel.pricing import cost_per_1k_samples_usd, price_per_gpu_hour_usd
>>> cost_per_1k_samples_usd(1000.0, price_per_gpu_hour_usd=3.6)    # $3.6/GPU-h, 1000 samples/s
0.001
>>> price_per_gpu_hour_usd("h100", provider="aws")                  # p5.48xlarge / 8
6.88

The table (``costmodel/data/gpu_prices.json``) holds on-demand LIST prices of
GPU instances as of the date in each row; prices change, so an explicit
``price_per_gpu_hour_usd`` always overrides it.  Devices are matched through
the device database (``"h100"``, ``"a100-40gb"``...) or by the GPU name of
instances whose GPU is not in it (``"A10G"``).
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import re
from pathlib import Path
from typing import Any

from ._errors import CostModelError, InvalidInputError, ModelLoadError, suggest

__all__ = [
    "PROVIDERS",
    "cost_per_1k_samples_usd",
    "cost_per_1m_tokens_usd",
    "instances",
    "price_per_gpu_hour_usd",
]

_TABLE_PATH = Path(__file__).resolve().parent / "data" / "gpu_prices.json"

#: canonical provider names and the other spellings accepted for them
PROVIDERS: dict[str, tuple[str, ...]] = {
    "aws": ("amazon", "ec2", "amazon-web-services"),
    "gcp": ("google", "google-cloud", "gce"),
    "azure": ("microsoft", "microsoft-azure"),
}

_REQUIRED = {
    "provider": str, "instance": str, "gpu": str, "gpus_per_instance": int, "usd_per_hour": float,
    "region": str, "as_of": str, "source": str,
}  # fmt: skip


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@functools.cache
def _table() -> tuple[dict[str, Any], ...]:
    try:
        data = json.loads(_TABLE_PATH.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{_TABLE_PATH}: expected a readable JSON price table, got {e}") from e
    rows = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ModelLoadError(f"{_TABLE_PATH}: expected a non-empty 'instances' list")
    for i, row in enumerate(rows):
        for field, kind in _REQUIRED.items():
            v = row.get(field)
            if kind is str:
                ok = isinstance(v, str) and bool(v)
            else:
                ok = _is_real(v) and v > 0 and (kind is float or isinstance(v, int))
            if not ok:
                raise ModelLoadError(f"{_TABLE_PATH}: instance #{i} ({row.get('instance')!r}): bad {field!r}: {v!r}")
        if row["provider"] not in PROVIDERS:
            raise ModelLoadError(f"{_TABLE_PATH}: instance {row['instance']!r}: unknown provider {row['provider']!r}")
    return tuple(rows)


def _provider(provider: str | None) -> str | None:
    if provider is None:
        return None
    if isinstance(provider, str):
        key = _norm(provider)
        for canonical, aliases in PROVIDERS.items():
            if key in {_norm(canonical), *map(_norm, aliases)}:
                return canonical
    raise InvalidInputError(
        f"expected a provider among {', '.join(PROVIDERS)}, got {provider!r}"
        f"{suggest(str(provider).strip().lower(), PROVIDERS)}"
    )


def _table_gpus() -> list[str]:
    return list(dict.fromkeys(r["gpu"] for r in _table()))


def _device_key(device: Any) -> str:
    """Normalized GPU key of ``device``: its database name if it has one, else its own name."""
    from .devices import Device, get_device

    if isinstance(device, Device):
        return _norm(device.name)
    if not isinstance(device, str) or not device.strip():
        raise InvalidInputError(f"expected a device name or Device, got {device!r}")
    if _norm(device) in {_norm(g) for g in _table_gpus()}:
        return _norm(device)
    try:
        return _norm(get_device(device).name)
    except CostModelError:
        pass
    gpus = _table_gpus()
    raise InvalidInputError(
        f"expected a device with a priced instance, got {device!r}; priced GPUs: {', '.join(gpus)} "
        f"(device-database aliases such as 'h100' or 'a100-40gb' work)."
        f"{suggest(device.strip(), gpus)}"
    )


def _find_instance(instance: str) -> dict[str, Any]:
    if not isinstance(instance, str):
        raise InvalidInputError(f"expected an instance name, got {type(instance).__name__}")
    key = _norm(instance)
    for row in _table():
        if key in {_norm(n) for n in (row["instance"], *row.get("aliases", ()))}:
            return row
    names = [r["instance"] for r in _table()]
    raise InvalidInputError(
        f"expected a priced instance, got {instance!r}; known instances: {', '.join(names)}."
        f"{suggest(instance.strip(), names)}"
    )


def instances(device: Any = None, provider: str | None = None) -> list[dict[str, Any]]:
    """Rows of the price table, optionally filtered, each with ``usd_per_gpu_hour`` added.

    Args:
        device: a device name or alias from the device database (``"h100"``),
            a :class:`~costmodel.devices.Device`, or a GPU name of the table
            (``"A10G"``).  A known device with no priced instance gives ``[]``.
        provider: ``"aws"``, ``"gcp"`` or ``"azure"`` (or an alias such as ``"google"``).

    Returns:
        Copies of the matching rows, cheapest per GPU-hour first.

    Raises:
        InvalidInputError: unknown provider, or a device that is neither in
            the device database nor a GPU of the table.
    """
    prov = _provider(provider)
    dev = None if device is None else _device_key(device)
    out = []
    for row in _table():
        if prov is not None and row["provider"] != prov:
            continue
        if dev is not None and _norm(row["gpu"]) != dev:
            continue
        r = dict(row)
        r["usd_per_gpu_hour"] = row["usd_per_hour"] / row["gpus_per_instance"]
        out.append(r)
    out.sort(key=lambda r: r["usd_per_gpu_hour"])
    return out


def _table_price(device: Any, provider: str | None, instance: str | None) -> float:
    if instance is not None:
        row = _find_instance(instance)
        prov = _provider(provider)
        if prov is not None and row["provider"] != prov:
            raise InvalidInputError(
                f"instance {row['instance']!r} belongs to provider {row['provider']!r}, not {prov!r}"
            )
        if device is not None and _device_key(device) != _norm(row["gpu"]):
            raise InvalidInputError(f"instance {row['instance']!r} has {row['gpu']} GPUs, not {device!r}")
        return row["usd_per_hour"] / row["gpus_per_instance"]
    if device is None:
        raise InvalidInputError("expected a device or an instance to look a price up (or pass price_per_gpu_hour_usd)")
    rows = instances(device, provider)
    if not rows:
        where = f" at {_provider(provider)}" if provider is not None else ""
        priced = [r["gpu"] for r in instances(provider=provider)]
        raise InvalidInputError(
            f"no priced instance has device {device!r}{where}; priced GPUs{where}: "
            f"{', '.join(dict.fromkeys(priced))}; pass price_per_gpu_hour_usd instead"
        )
    return rows[0]["usd_per_gpu_hour"]


def price_per_gpu_hour_usd(device: Any = None, provider: str | None = None, instance: str | None = None) -> float:
    """On-demand dollars per GPU-hour: ``usd_per_hour / gpus_per_instance``.

    With ``instance`` that instance's price; otherwise the cheapest instance
    carrying ``device`` (at ``provider`` if given).

    Raises:
        InvalidInputError: unknown device, provider or instance (the message
            lists the valid ones), an instance that does not match the given
            device or provider, or no priced instance for the device.
    """
    return _table_price(device, provider, instance)


def _resolve_price(price_usd: float | None, device: Any, provider: str | None, instance: str | None) -> float:
    if price_usd is None:
        return _table_price(device, provider, instance)
    if not _is_real(price_usd) or not math.isfinite(price_usd) or price_usd < 0:
        raise InvalidInputError(f"expected price_per_gpu_hour_usd to be a finite number >= 0, got {price_usd!r}")
    return float(price_usd)


def _check_rate(value: Any, what: str) -> float:
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"expected {what} to be a finite number > 0, got {value!r}")
    return float(value)


def _check_gpus(num_gpus: Any) -> int:
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus <= 0:
        raise InvalidInputError(f"expected num_gpus to be a positive integer, got {num_gpus!r}")
    return num_gpus


def cost_per_1k_samples_usd(
    throughput_samples_s: float,
    device: Any = None,
    price_per_gpu_hour_usd: float | None = None,
    provider: str | None = None,
    instance: str | None = None,
    num_gpus: int = 1,
) -> float:
    """Dollars to process 1000 samples at ``throughput_samples_s``.

    ``price * num_gpus / 3600 / throughput * 1000``.

    Args:
        throughput_samples_s: samples per second achieved on ``num_gpus`` GPUs (> 0).
        device: device whose table price to use (cheapest instance) when no
            explicit price is given.
        price_per_gpu_hour_usd: explicit price; overrides the table.
        provider: restrict the table lookup to one provider.
        instance: use this instance's price.
        num_gpus: GPUs the throughput figure occupies.
    """
    rate = _check_rate(throughput_samples_s, "throughput_samples_s")
    price = _resolve_price(price_per_gpu_hour_usd, device, provider, instance) * _check_gpus(num_gpus)
    return price / 3600.0 / rate * 1e3


def cost_per_1m_tokens_usd(
    tokens_s: float,
    device: Any = None,
    price_per_gpu_hour_usd: float | None = None,
    provider: str | None = None,
    instance: str | None = None,
    num_gpus: int = 1,
) -> float:
    """Dollars to process one million tokens at ``tokens_s`` tokens per second.

    ``price * num_gpus / 3600 / tokens_s * 1e6``; arguments as in
    :func:`cost_per_1k_samples_usd`.
    """
    rate = _check_rate(tokens_s, "tokens_s")
    price = _resolve_price(price_per_gpu_hour_usd, device, provider, instance) * _check_gpus(num_gpus)
    return price / 3600.0 / rate * 1e6
