"""A device from what CUDA reports about a GPU, for the GPUs ``devices.json`` does not list.

Every NVIDIA GPU tells CUDA its SM count, compute capability, maximum SM clock,
memory clock and bus width, memory and L2 size (``torch.cuda.get_device_properties``;
``costmodel collect`` records them in ``hardware.json`` as ``prop_*``). With the
per-SM, per-clock rates of its architecture (NVIDIA's architecture whitepapers),
that is enough for every figure a roofline needs:

* peak rate of a dtype = SMs x its operations per SM and clock x the clock;
* DRAM bandwidth = 2 (double data rate) x memory clock x bus width / 8;
* memory and L2 exactly as reported.

Checked against the datasheet entries of the database (``tests/devices/test_cuda_device.py``):
the rates agree within 3 % and the bandwidths within 3 % on every listed
architecture from Volta to Blackwell. Power is the one figure CUDA does not
report: NVML's enforced power limit is used where it can be read, else the
power of the architecture's listed reference board scaled by the FP32 rate,
and the device says so. The launch overhead and the framework's memory come
from the same reference board.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .._errors import CostModelError, InvalidInputError

__all__ = ["ARCHITECTURES", "cuda_device", "device_from_cuda_properties"]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Dense rates of one compute capability, per SM and clock cycle.

    ``fp16`` counts tensor-core FLOPs with fp32 accumulation, the kind PyTorch's GEMMs run; GeForce
    boards of the architectures with ``geforce_half`` run those (and TF32) at half that rate, their int8
    at the full one. ``fp64`` is a fraction of the FP32 rate (the FP64 tensor-core rate where the part has
    one). ``tensor_clock`` is the share of the maximum SM clock that the datasheets' tensor-core figures
    assume (Hopper's and Blackwell's are quoted at 1,830 of 1,980 MHz). ``reference`` (and
    ``geforce_reference``) is the listed board whose power, launch overhead and framework memory carry
    over."""

    name: str
    fp32: int
    fp16: int
    int8: int
    fp64: float
    tf32: bool
    bf16: bool
    geforce_half: bool
    tensor_clock: float
    reference: str
    geforce_reference: str | None = None


#: compute capability -> rates (NVIDIA's Volta, Turing, Ampere GA100 and GA102, Ada, Hopper and Blackwell
#: architecture whitepapers: CUDA cores x 2 FLOPs for FP32, tensor cores x their dense FMAs x 2)
ARCHITECTURES: dict[tuple[int, int], Architecture] = {
    (7, 0): Architecture("Volta", 128, 1024, 512, 1 / 2, False, False, False, 1.0, "V100-SXM2-16GB"),
    (7, 5): Architecture("Turing", 128, 1024, 2048, 1 / 32, False, False, True, 1.0, "T4"),
    (8, 0): Architecture("Ampere", 128, 2048, 4096, 1.0, True, True, False, 1.0, "A100-SXM4-80GB"),
    (8, 6): Architecture("Ampere", 256, 1024, 2048, 1 / 64, True, True, True, 1.0, "A10", "RTX-3090"),
    (8, 9): Architecture("Ada Lovelace", 256, 1024, 2048, 1 / 64, True, True, True, 1.0, "L40S", "RTX-4090"),
    (9, 0): Architecture("Hopper", 256, 4096, 8192, 1.0, True, True, False, 1830 / 1980, "H100-SXM5-80GB"),
    (10, 0): Architecture("Blackwell", 256, 8192, 16384, 1 / 2, True, True, False, 1830 / 1980, "B200-180GB"),
    (12, 0): Architecture("Blackwell", 256, 1024, 2048, 1 / 64, True, True, True, 1.0, "L40S", "RTX-4090"),
}

#: what a ``hardware.json`` calls each property (``costmodel collect`` prefixes torch's names with ``prop_``)
_FIELDS = ("name", "major", "minor", "multi_processor_count", "total_memory", "L2_cache_size", "clock_rate",
           "memory_clock_rate", "memory_bus_width")
_CUDA_NAME = re.compile(r"^cuda(?::(\d+))?$")


def _read(props: Any, key: str) -> Any:
    if isinstance(props, Mapping):
        return props.get(key, props.get("prop_" + key))
    return getattr(props, key, None)


def _properties(props: Any) -> dict[str, Any]:
    out = {k: _read(props, k) for k in _FIELDS}
    missing = [k for k, v in out.items() if v is None]
    if missing:
        raise InvalidInputError(f"expected CUDA device properties with {', '.join(_FIELDS)} (torch.cuda."
                                f"get_device_properties(), or a hardware.json's prop_* fields); missing: "
                                f"{', '.join(missing)}")
    if not isinstance(out["name"], str) or not out["name"].strip():
        raise InvalidInputError(f"expected the device's name as a non-empty string, got {out['name']!r}")
    for k in _FIELDS[1:]:
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "minor" else 1):
            raise InvalidInputError(f"CUDA property {k!r}: expected a positive integer, got {v!r}")
    return out


def _architecture(major: int, minor: int) -> tuple[Architecture, str | None]:
    """The rates of compute capability ``major.minor``: its own, else the newest listed one before it of the
    same major version (8.7 reads as 8.6), else the newest before it, with a note."""
    if (major, minor) in ARCHITECTURES:
        return ARCHITECTURES[(major, minor)], None
    older = [cc for cc in ARCHITECTURES if cc < (major, minor)]
    if not older:
        raise InvalidInputError(f"compute capability {major}.{minor}: figures are derived for Volta (7.0) and "
                                f"newer GPUs only ({', '.join(f'{a}.{b}' for a, b in ARCHITECTURES)}); pass a "
                                "listed device or a measured hardware.json")
    cc = max(older)
    return ARCHITECTURES[cc], (f"compute capability {major}.{minor} has no rates of its own here: "
                               f"costed with {cc[0]}.{cc[1]}'s ({ARCHITECTURES[cc].name}) per-SM rates")


def device_from_cuda_properties(props: Any, *, power_limit_w: float | None = None):
    """A :class:`~costmodel.devices.Device` for the GPU that ``props`` describes.

    ``props``: what ``torch.cuda.get_device_properties(i)`` returns, or a mapping with the same names
    (bare or, as in a ``hardware.json``, prefixed ``prop_``): ``name``, ``major``, ``minor``,
    ``multi_processor_count``, ``total_memory``, ``L2_cache_size``, ``clock_rate`` and ``memory_clock_rate``
    (kHz), ``memory_bus_width`` (bits). ``power_limit_w``: the board's power limit (NVML's enforced limit;
    a mapping's ``power_limit_w`` is read too), else the architecture's reference board's power scaled by
    the FP32 rate. The device's ``source`` is ``"cuda-properties"``; its ``sources`` say how each figure
    was derived and its ``assumptions`` repeat what no property gives.
    """
    from ._db import _device_from_entry, get_device

    p = _properties(props)
    arch, cc_note = _architecture(p["major"], p["minor"])
    geforce = "geforce" in p["name"].lower()
    half = arch.geforce_half and geforce
    ref = get_device(arch.geforce_reference if geforce and arch.geforce_reference else arch.reference)
    sms, clock_ghz = p["multi_processor_count"], p["clock_rate"] / 1e6
    tflops = sms * clock_ghz / 1e3  # TFLOP/s per FLOP/clock/SM
    tensor = tflops * arch.tensor_clock * (0.5 if half else 1.0)
    fp32 = arch.fp32 * tflops
    fp16 = arch.fp16 * tensor
    int8 = arch.int8 * tflops * arch.tensor_clock
    peaks = {"fp64": round(arch.fp64 * fp32, 3), "fp32": round(fp32, 3),
             "tf32": round(fp16 / 2, 3) if arch.tf32 else None, "fp16": round(fp16, 3),
             "bf16": round(fp16, 3) if arch.bf16 else None, "int8": round(int8, 3)}
    bandwidth = 2 * p["memory_clock_rate"] * 1e3 * p["memory_bus_width"] / 8 / 1e9
    if power_limit_w is None and isinstance(props, Mapping):
        power_limit_w = props.get("power_limit_w")
    notes = [f"figures of {p['name']} derived from its CUDA properties (no datasheet entry): {sms} SMs at "
             f"{p['clock_rate'] / 1e3:.0f} MHz with {arch.name} ({p['major']}.{p['minor']}) per-SM rates"]
    if cc_note:
        notes.append(cc_note)
    if half:
        notes.append("a GeForce board: fp16/bf16 tensor ops with fp32 accumulation and TF32 at half the "
                     "architecture's rate")
    if power_limit_w is not None:
        if isinstance(power_limit_w, bool) or not isinstance(power_limit_w, (int, float)) or not power_limit_w > 0:
            raise InvalidInputError(f"power_limit_w must be a positive number of watts, got {power_limit_w!r}")
        tdp, power_src = float(power_limit_w), "tdp_w: the board's power limit (NVML)"
    else:
        tdp = ref.tdp_w * fp32 / ref.peak_tflops.fp32
        power_src = f"tdp_w: {ref.name}'s {ref.tdp_w:.0f} W scaled by the FP32 rate (NVML's power limit unread)"
        notes.append(f"power limit unknown: {ref.name}'s scaled by the FP32 rate ({tdp:.0f} W)")
    entry = {
        "name": p["name"].strip(), "aliases": [], "vendor": "NVIDIA", "architecture": arch.name,
        "compute_capability": f"{p['major']}.{p['minor']}", "peak_tflops": peaks, "vector_tflops_fp32": peaks["fp32"],
        "memory_bandwidth_gbps": round(bandwidth, 1), "memory_gb": p["total_memory"] / 2**30, "sm_count": sms,
        "reported_memory_mib": p["total_memory"] / 2**20,
        "l2_cache_mb": p["L2_cache_size"] / 2**20, "tdp_w": round(tdp, 1),
        "idle_power_w": round(tdp * ref.idle_power_w / ref.tdp_w, 1),
        "kernel_launch_overhead_us": ref.kernel_launch_overhead_us,
        "framework_overhead_mb": ref.framework_overhead_mb, "mig_profiles": [],
        "sources": [
            f"CUDA device properties of {p['name']}: compute capability {p['major']}.{p['minor']}, {sms} SMs, "
            f"clock {p['clock_rate']} kHz, memory clock {p['memory_clock_rate']} kHz, {p['memory_bus_width']}-bit "
            f"bus, {p['total_memory']} bytes, L2 {p['L2_cache_size']} bytes",
            f"peak_tflops: SMs x clock x {arch.name} dense rates per SM and clock (fp32 {arch.fp32}, fp16/bf16 "
            f"tensor with fp32 accumulation {arch.fp16}{', halved on GeForce' if arch.geforce_half else ''}, int8 "
            f"{arch.int8}), tensor rates at {arch.tensor_clock:.3f} of the clock; NVIDIA's architecture whitepapers",
            "memory_bandwidth_gbps: 2 x memory clock x bus width / 8 (double data rate)",
            power_src,
            f"idle_power_w, kernel_launch_overhead_us, framework_overhead_mb: as the {ref.name} entry",
        ],
    }
    dev = _device_from_entry(entry, f"CUDA properties of {p['name']!r}", InvalidInputError)
    return dataclasses.replace(dev, source="cuda-properties", assumptions=tuple(notes))


def measured_base(p, data: dict, base):
    """The device a measured profile refines: ``base``, else the file's ``prop_name``/``name``, and for a GPU
    the database does not list, the device its ``prop_*`` CUDA properties give."""
    from .._errors import UnknownDeviceError
    from ._db import get_device

    if base is not None:
        return get_device(base)
    base = data.get("prop_name") or data.get("name")
    if not isinstance(base, str) or not base:
        raise InvalidInputError(f"{p}: expected a 'prop_name' or 'name' naming the device, got none; pass base=")
    try:
        return get_device(base)
    except UnknownDeviceError as e:
        if "prop_multi_processor_count" not in data:
            raise UnknownDeviceError(f"{p}: measured device {base!r} is not in the database and the file has no "
                                     f"prop_* CUDA properties to derive it from; pass base=. {e}") from e
    return device_from_cuda_properties(data)


def _nvml_power_limit_w(index: int) -> float | None:
    """NVML's enforced power limit of GPU ``index`` in W, or ``None`` where NVML cannot be read."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
    except Exception:  # noqa: BLE001 - no pynvml, no driver, or a MIG instance NVML will not describe
        return None


def cuda_device(index: int | None = None):
    """The GPU this process sees as ``cuda:index`` (default: the current one), as a device: its database
    entry (or MIG slice) when CUDA's name for it resolves, else :func:`device_from_cuda_properties`
    of its properties, with NVML's power limit where it can be read. ``get_device("cuda")`` and
    ``get_device("cuda:1")`` call this."""
    from ._db import get_device

    try:
        import torch
    except ImportError:
        raise InvalidInputError("device 'cuda' is the GPU this process sees, which needs torch; name a device "
                                "instead (costmodel devices lists them)") from None
    if not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' is the GPU this process sees, and it sees none (torch.cuda."
                                "is_available() is False); name a device instead (costmodel devices lists them)")
    if index is not None and not 0 <= index < (count := torch.cuda.device_count()):
        raise InvalidInputError(f"device 'cuda:{index}': this process sees {count} CUDA device(s)"
                                + (f", cuda:0 to cuda:{count - 1}" if count else ""))
    name = torch.cuda.get_device_name() if index is None else torch.cuda.get_device_name(index)
    try:
        return get_device(name)
    except CostModelError:  # unlisted, or a MIG slice of a listed GPU without that profile
        pass
    i = torch.cuda.current_device() if index is None else index
    return device_from_cuda_properties(torch.cuda.get_device_properties(i), power_limit_w=_nvml_power_limit_w(i))


def cuda_index(name: str) -> int | None | bool:
    """``False`` unless ``name`` is ``cuda`` or ``cuda:N`` (any case, spaces around); else ``N`` or ``None``."""
    m = _CUDA_NAME.match(name.strip().lower())
    if m is None:
        return False
    return int(m.group(1)) if m.group(1) is not None else None
