"""Cloud GPU prices, and throughput -> dollars per 1k samples or per 1M tokens.

>>> from costmodel.economics import cost_per_1k_samples_usd, price_per_gpu_hour_usd
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
from typing import Any

from .._errors import CostModelError, InvalidInputError, ModelLoadError, suggest
from .._tables import (
    PACKAGE_DIR,
    NameTable,
    alias_index,
    load_table,
    name_table,
    normalize_name,
    table_section,
    unknown_name_error,
)
from .._validate import is_number, non_negative_number, positive_int, positive_number

__all__ = [
    "PROVIDERS",
    "cost_per_1k_samples_usd",
    "cost_per_1m_tokens_usd",
    "instances",
    "price_per_gpu_hour_usd",
]

_TABLE = "data/gpu_prices.json"

#: canonical provider names and the other spellings accepted for them
PROVIDERS: dict[str, tuple[str, ...]] = {
    "aws": ("amazon", "ec2", "amazon-web-services"),
    "gcp": ("google", "google-cloud", "gce"),
    "azure": ("microsoft", "microsoft-azure"),
}
_PROVIDER_INDEX = alias_index(PROVIDERS, "costmodel.economics.pricing.PROVIDERS")

_REQUIRED = {
    "provider": str, "instance": str, "gpu": str, "gpus_per_instance": int, "usd_per_hour": float,
    "region": str, "as_of": str, "source": str,
}  # fmt: skip


def _check_row(row: Any, i: int, where: str) -> None:
    if not isinstance(row, dict):
        raise ModelLoadError(f"{where}: instance #{i}: expected an object, got {type(row).__name__}")
    for field, kind in _REQUIRED.items():
        v = row.get(field)
        if kind is str:
            ok = isinstance(v, str) and bool(v)
        else:
            ok = is_number(v) and v > 0 and (kind is float or isinstance(v, int))
        if not ok:
            raise ModelLoadError(f"{where}: instance #{i} ({row.get('instance')!r}): bad {field!r}: {v!r}")
    if row["provider"] not in PROVIDERS:
        raise ModelLoadError(f"{where}: instance {row['instance']!r}: unknown provider {row['provider']!r}")


@functools.cache
def _instances() -> NameTable:
    """The price table's rows keyed by instance name, in file order, with their aliases indexed."""
    where = str(PACKAGE_DIR / _TABLE)
    rows = table_section(load_table(_TABLE, "JSON price table"), "instances", list, where)
    by_name: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        _check_row(row, i, where)
        if by_name.setdefault(row["instance"], row) is not row:
            raise ModelLoadError(f"{where}: instance #{i}: {row['instance']!r} appears twice")
    return name_table(by_name, where)


def _table() -> tuple[dict[str, Any], ...]:
    return tuple(_instances().entries.values())


def _provider(provider: str | None) -> str | None:
    if provider is None:
        return None
    key = _PROVIDER_INDEX.get(normalize_name(provider)) if isinstance(provider, str) else None
    if key is None:
        raise InvalidInputError(
            f"expected a provider among {', '.join(PROVIDERS)}, got {provider!r}"
            f"{suggest(str(provider).strip().lower(), PROVIDERS)}"
        )
    return key


def _table_gpus() -> list[str]:
    return list(dict.fromkeys(r["gpu"] for r in _table()))


def _device_key(device: Any) -> str:
    """Normalized GPU key of ``device``: its database name if it has one, else its own name."""
    from ..devices import Device, get_device

    if isinstance(device, Device):
        return normalize_name(device.name)
    if not isinstance(device, str) or not device.strip():
        raise InvalidInputError(f"expected a device name or Device, got {device!r}")
    if normalize_name(device) in {normalize_name(g) for g in _table_gpus()}:
        return normalize_name(device)
    try:
        return normalize_name(get_device(device).name)
    except CostModelError:
        pass
    raise unknown_name_error(
        device, _table_gpus(), expected="a device with a priced instance", listing="priced GPUs",
        hint="device-database aliases such as 'h100' or 'a100-40gb' work", fold_case=False,
    )


def _find_instance(instance: str) -> dict[str, Any]:
    table = _instances()
    key = table.find(instance, "an instance name", expected="a priced instance", listing="known instances",
                     fold_case=False)
    return table.entries[key]


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
    sl = None if device is None else mig_slice_share(device)
    if sl is not None:  # a MIG slice: its GPU's instances, at the slice's share of the GPU
        gpu, name, share = sl
        return [{**r, "usd_per_gpu_hour": r["usd_per_gpu_hour"] * share, "mig_slice": name, "mig_share": share}
                for r in instances(gpu, provider)]
    dev = None if device is None else _device_key(device)
    out = []
    for row in _table():
        if prov is not None and row["provider"] != prov:
            continue
        if dev is not None and normalize_name(row["gpu"]) != dev:
            continue
        r = dict(row)
        r["usd_per_gpu_hour"] = row["usd_per_hour"] / row["gpus_per_instance"]
        out.append(r)
    out.sort(key=lambda r: r["usd_per_gpu_hour"])
    return out


def mig_slice_share(device: Any) -> tuple[Any, str, float] | None:
    """``(gpu, slice name, share)`` for a MIG slice (a slice device, or a name that resolves to one), else
    ``None``. The share is what the slice takes of its GPU: the larger of its compute slices' and its memory
    slices' fractions (a ``1g.35gb`` takes a quarter of an H200's memory, so four fit, not seven)."""
    from ..devices import Device, get_device, slice_profile

    if isinstance(device, str):
        if normalize_name(device) in {normalize_name(g) for g in _table_gpus()}:
            return None
        try:
            device = get_device(device)
        except CostModelError:
            return None
    if not isinstance(device, Device) or (sl := slice_profile(device)) is None:
        return None
    gpu, prof = sl  # a compute instance holds its whole GPU instance
    return gpu, device.name.split(" MIG ")[1], max(prof.compute_fraction, prof.memory_fraction)


def _table_price(device: Any, provider: str | None, instance: str | None) -> float:
    if instance is not None:
        row = _find_instance(instance)
        prov = _provider(provider)
        if prov is not None and row["provider"] != prov:
            raise InvalidInputError(
                f"instance {row['instance']!r} belongs to provider {row['provider']!r}, not {prov!r}"
            )
        sl = None if device is None else mig_slice_share(device)
        key = None if device is None else _device_key(sl[0] if sl else device)
        if key is not None and key != normalize_name(row["gpu"]):
            raise InvalidInputError(f"instance {row['instance']!r} has {row['gpu']} GPUs, not {device!r}")
        return row["usd_per_hour"] / row["gpus_per_instance"] * (sl[2] if sl else 1.0)
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


def _cost_usd(units: float, rate: float, rate_name: str, price_usd: float | None, device: Any,
              provider: str | None, instance: str | None, num_gpus: int) -> float:
    """Dollars for ``units`` of work done at ``rate`` per second on ``num_gpus`` GPUs: the explicit
    ``price_usd`` per GPU-hour, else the table's."""
    rate = positive_number(rate, rate_name)
    if price_usd is None:
        price = _table_price(device, provider, instance)
    else:
        price = non_negative_number(price_usd, "price_per_gpu_hour_usd")
    price *= positive_int(num_gpus, "num_gpus")
    return price / 3600.0 / rate * units


def cost_per_1k_samples_usd(throughput_samples_s: float, device: Any = None,
                            price_per_gpu_hour_usd: float | None = None, provider: str | None = None,
                            instance: str | None = None, num_gpus: int = 1) -> float:
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
    return _cost_usd(1e3, throughput_samples_s, "throughput_samples_s", price_per_gpu_hour_usd, device, provider,
                     instance, num_gpus)


def cost_per_1m_tokens_usd(tokens_s: float, device: Any = None, price_per_gpu_hour_usd: float | None = None,
                           provider: str | None = None, instance: str | None = None, num_gpus: int = 1) -> float:
    """Dollars to process one million tokens at ``tokens_s`` tokens per second.

    ``price * num_gpus / 3600 / tokens_s * 1e6``; arguments as in
    :func:`cost_per_1k_samples_usd`.
    """
    return _cost_usd(1e6, tokens_s, "tokens_s", price_per_gpu_hour_usd, device, provider, instance, num_gpus)


def check_pricing(device: Any, *, region: str = "world", intensity_g_per_kwh: float | None = None,
                  price_per_gpu_hour_usd: float | None = None, provider: str | None = None,
                  instance: str | None = None) -> None:
    """Check an estimate's carbon and price arguments before any work: the region (or an explicit
    intensity >= 0), an explicit price >= 0, or the provider and instance (known, and matching
    ``device``). Raises :class:`~costmodel.InvalidInputError` naming the bad value and the valid ones."""
    from .carbon import carbon_g

    carbon_g(0.0, region, intensity_g_per_kwh=intensity_g_per_kwh)
    if price_per_gpu_hour_usd is not None:
        non_negative_number(price_per_gpu_hour_usd, "price_per_gpu_hour_usd")
    elif provider is not None or instance is not None:
        _table_price(device, provider, instance)
