"""Device database: the hardware figures (peaks, bandwidth, memory, power, MIG)
the cost predictors read, kept as data in ``devices.json``.

>>> from costmodel.devices import get_device
>>> h100 = get_device("h100")              # case/punctuation-insensitive aliases
>>> h100.peak_flops("bf16")                # dense tensor-core FLOP/s
989400000000000.0
>>> get_device("h200", measured=True).source   # figures measured on a real H200
'measured'

Importing this package loads only the standard library; the JSON file is read
on first use.
"""

from __future__ import annotations

from .._errors import UnknownDeviceError
from ._db import (
    DTYPE_KEYS,
    HARDWARE_FEATURE_NAMES,
    Device,
    DeviceDatabaseError,
    MigProfile,
    PeakTflops,
    get_device,
    list_devices,
    load_measured_profile,
    measured_profile,
    normalize_device_name,
)

__all__ = [
    "DTYPE_KEYS",
    "HARDWARE_FEATURE_NAMES",
    "Device",
    "DeviceDatabaseError",
    "MigProfile",
    "PeakTflops",
    "UnknownDeviceError",
    "get_device",
    "list_devices",
    "load_measured_profile",
    "measured_profile",
    "normalize_device_name",
]


def is_measured_device(device: Device, measured_names) -> bool:
    """Whether ``device`` is among ``measured_names`` (device strings of training rows, any spelling).

    Learned predictors use it to flag estimates for devices they never saw measurements of."""
    names = set()
    for d in measured_names or ():
        try:
            names.add(get_device(d).name)
        except Exception:  # noqa: BLE001 - a device string this library does not know
            names.add(d)
    return device.name in names


__all__ += ["is_measured_device"]
