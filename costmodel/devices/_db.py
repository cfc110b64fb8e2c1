"""The device database: hardware figures the predictors need, loaded from data.

Every number lives in ``devices.json`` next to this module (datasheet figures,
each entry citing its sources); this module only loads, validates and queries
it.  Adding or correcting a device is an edit of the JSON file, never a code
branch.

Conventions (the JSON file's ``notes`` repeat them):

* peaks are DENSE tensor-core rates in TFLOP/s (the datasheets' "with
  sparsity" figures halved); ``None`` where the device has no native path for
  the dtype;
* ``memory_gb`` and ``l2_cache_mb`` are the datasheet's GB/MB, which NVIDIA
  uses in binary units: :attr:`Device.memory_mb` is ``memory_gb * 1024`` MiB,
  a nominal capacity (a measured profile gives the exact one);
* ``memory_bandwidth_gbps`` is total DRAM traffic (reads plus writes) in GB/s
  (1e9 bytes/s), the figure a roofline divides a kernel's bytes by.

A measured profile (a ``hardware.json`` written by the benchmark harness, such
as ``costmodel/data/h200/hardware.json``) overrides the datasheet entry with
what was measured on a real card; see :func:`load_measured_profile`.

Only the standard library is imported here, so ``import costmodel.devices``
stays cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import CostModelError, InvalidInputError, UnknownDeviceError, suggest
from .._tables import PACKAGE_DIR, alias_index, load_table, normalize_name, table_section, unknown_name_error
from .._validate import is_int, is_number as _is_num
from ._cuda import cuda_device, cuda_index
from ._mig import mig_slice, split_mig_name

__all__ = [
    "DTYPE_KEYS",
    "HARDWARE_FEATURE_NAMES",
    "Device",
    "DeviceDatabaseError",
    "MigProfile",
    "PeakTflops",
    "get_device",
    "list_devices",
    "normalize_device_name",
]

SCHEMA_VERSION = 1

_HERE = Path(__file__).resolve().parent
_DB = "devices/devices.json"
#: measured profiles are discovered as ``<package>/data/*/hardware.json``
_MEASURED_DIR = _HERE.parent / "data"

#: dtypes with a peak in the database, in the order of ``peak_tflops``
DTYPE_KEYS: tuple[str, ...] = ("fp64", "fp32", "tf32", "fp16", "bf16", "int8")

# Tensor-op fallback chains: an unsupported dtype is costed at the next wider
# supported one (bf16 on V100/T4 runs at the fp32 rate, int8 on a device
# without an int8 path at the fp16 one...).  fp8 and int4 have no column in the
# database and are costed as fp16 / int8, except fp8 on a GPU with fp8 tensor
# cores (compute capability 8.9 and up: Ada, Hopper, Blackwell), where every
# datasheet gives twice the dense fp16 rate (H100 SXM 1,979 against 989 TFLOP/s,
# L4 242 against 121, L40S 733 against 362).  fp64 falls back to fp32, an
# optimistic figure for a device that does not list fp64 at all.
_TENSOR_CHAIN: dict[str, tuple[str, ...]] = {
    "fp64": ("fp64", "fp32"),
    "fp32": ("fp32",),
    "tf32": ("tf32", "fp32"),
    "fp16": ("fp16", "fp32"),
    "bf16": ("bf16", "fp32"),
    "fp8": ("fp16", "fp32"),
    "int8": ("int8", "fp16", "fp32"),
    "uint8": ("int8", "fp16", "fp32"),
    "int4": ("int8", "fp16", "fp32"),
    "complex64": ("fp32",),
}
# dtypes that never reach a tensor core: always the CUDA-core (vector) rate
_VECTOR_ONLY = frozenset({"int16", "int32", "int64", "bool"})
_KNOWN_DTYPES: tuple[str, ...] = tuple(_TENSOR_CHAIN) + tuple(sorted(_VECTOR_ONLY))

#: names and order of :meth:`Device.hardware_features`
HARDWARE_FEATURE_NAMES: tuple[str, ...] = (
    *(f"peak_{k}_tflops" for k in DTYPE_KEYS),
    "vector_fp32_tflops",
    "memory_bandwidth_gbps",
    "memory_gb",
    "sm_count",
    "l2_cache_mb",
    "tdp_w",
    "compute_capability",
)

_MIB_PER_GB = 1024  # datasheet "GB" are GiB in practice: 80 GB == 81920 MiB
_VENDOR_PREFIXES = ("nvidia", "tesla")  # as in torch.cuda.get_device_name()


class DeviceDatabaseError(CostModelError, ValueError):
    """``devices.json`` (or a file in its format) is malformed."""


# --------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PeakTflops:
    """Dense peak rates in TFLOP/s (TOP/s for int8); ``None``: no native path."""

    fp64: float | None
    fp32: float
    tf32: float | None
    fp16: float | None
    bf16: float | None
    int8: float | None

    def get(self, dtype: str) -> float | None:
        """The stored figure of one of :data:`DTYPE_KEYS` (no fallback)."""
        if dtype not in DTYPE_KEYS:
            raise InvalidInputError(f"expected a dtype among {list(DTYPE_KEYS)}, got {dtype!r}")
        return getattr(self, dtype)

    def as_dict(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in DTYPE_KEYS}


@dataclass(frozen=True)
class MigProfile:
    """One Multi-Instance GPU profile (NVIDIA MIG User Guide, "Supported MIG Profiles").

    ``memory_fraction`` is in eighths of the device memory, ``compute_fraction``
    in sevenths of its compute slices; both are in (0, 1].  ``sm_count`` and
    ``instance_memory_gib`` are what ``nvidia-smi mig -lgip`` lists for the GPU
    instance (its SMs, and its memory in GiB), where a published listing gives
    them (``None`` otherwise): the name's GB overstates what a slice holds (an
    H200's ``1g.18gb`` instance has 16.00 GiB).
    """

    name: str
    memory_gb: float
    memory_fraction: float
    compute_fraction: float
    max_instances: int
    sm_count: int | None = None
    instance_memory_gib: float | None = None
    #: the whole board's reported memory in MiB (:attr:`Device.reported_memory_mib`), which no instance
    #: exceeds; set from the device entry, not a key of a profile's JSON object
    board_memory_mib: float | None = field(default=None, compare=False)

    @property
    def memory_mb(self) -> float:
        """Nominal capacity in MiB: ``memory_gb * 1024`` (the profile name's GB)."""
        return self.memory_gb * _MIB_PER_GB

    @property
    def capacity_mb(self) -> float:
        """What the slice holds, in MiB: the listed instance memory, else the nominal :attr:`memory_mb`,
        and never more than the board reports (:attr:`board_memory_mib`: an H100 NVL's ``7g.94gb``, which no
        listing gives, holds at most the 95,330.5 MiB its board reports, not 96,256).
        The MIG pick and the largest batch that fits a slice compare memory against this."""
        mb = self.instance_memory_gib * _MIB_PER_GB if self.instance_memory_gib else self.memory_mb
        return min(mb, self.board_memory_mib) if self.board_memory_mib else mb

    @property
    def capacity_capped(self) -> bool:
        """Whether :attr:`capacity_mb` is the board's reported memory (below the listing or the name's GB)."""
        mb = self.instance_memory_gib * _MIB_PER_GB if self.instance_memory_gib else self.memory_mb
        return bool(self.board_memory_mib) and self.board_memory_mib < mb

    @property
    def capacity_listed(self) -> bool:
        """Whether :attr:`capacity_mb` is a listed instance memory (not the name's nominal GB)."""
        return bool(self.instance_memory_gib)


@dataclass(frozen=True)
class Device:
    """Hardware figures of one device, as stored in ``devices.json``.

    ``source`` is ``"datasheet"`` for database entries and ``"measured"`` for
    a device built from a measured ``hardware.json``.  ``assumptions`` names
    what a lookup had to assume (a name that fits several devices of the
    database); it is not part of the device's figures (not compared, not
    serialized) and estimates for the device repeat it.
    """

    name: str
    aliases: tuple[str, ...] = field(repr=False)
    vendor: str
    architecture: str
    compute_capability: str | None
    peak_tflops: PeakTflops
    vector_tflops_fp32: float
    memory_bandwidth_gbps: float
    memory_gb: float
    sm_count: int | None
    l2_cache_mb: float | None
    tdp_w: float
    idle_power_w: float
    kernel_launch_overhead_us: float
    framework_overhead_mb: float
    mig_profiles: tuple[MigProfile, ...] = field(repr=False)
    sources: tuple[str, ...] = field(repr=False)
    #: the total memory the driver reports for the board, in MiB (``cudaDeviceProp.totalGlobalMem`` or
    #: ``nvidia-smi``'s total; ``None``: not known, the nominal :attr:`memory_mb` stands in). Below the
    #: nominal capacity: by 6.25 % on a GDDR6 board with ECC on (a T4's 16 GB report 15,360 MiB)
    reported_memory_mib: float | None = None
    source: str = "datasheet"
    assumptions: tuple[str, ...] = field(default=(), repr=False, compare=False)

    # -- derived figures ----------------------------------------------------

    @property
    def bandwidth_bytes_s(self) -> float:
        """DRAM bandwidth in bytes/s (reads plus writes)."""
        return self.memory_bandwidth_gbps * 1e9

    @property
    def memory_mb(self) -> float:
        """Device memory in MiB: ``memory_gb * 1024`` (nominal for datasheet entries)."""
        return self.memory_gb * _MIB_PER_GB

    @property
    def capacity_mb(self) -> float:
        """What a process can hold on the device, in MiB: :attr:`reported_memory_mib` where the entry gives
        it, else the nominal :attr:`memory_mb`. ``Estimate.fits_device``, the largest batch that fits the
        whole device and the ``torch.compile`` backend's default limit compare memory against this."""
        return float(self.reported_memory_mib) if self.reported_memory_mib else self.memory_mb

    def peak_flops(self, dtype: str, *, tensor: bool = True) -> float:
        """Peak rate in FLOP/s (OP/s for integers) for ``dtype``.

        ``tensor=True`` (matmul, convolution, attention): the dense tensor-core
        rate of ``dtype``.  ``"fp32"`` is the plain FP32 rate, which is what
        PyTorch runs fp32 matmuls at by default (``allow_tf32=False``); ask for
        ``"tf32"`` to cost TF32 (it falls back to fp32 where the device has no
        TF32).  An unsupported dtype falls back to the next wider supported
        one: bf16 -> fp32 on V100/T4, int8 -> fp16 -> fp32, fp8 -> fp16,
        int4 -> int8.  int16/int32/int64/bool never use tensor cores.

        ``tensor=False`` (pointwise, reductions): the CUDA-core FP32 rate
        :attr:`vector_tflops_fp32` for every dtype narrower than 64 bits
        (PyTorch computes half-precision pointwise ops in fp32), and for fp64
        ``min(peak fp64, vector fp32 / 2)``, which gives the non-tensor FP64
        rate of every device in the database.
        """
        if not isinstance(dtype, str) or dtype not in _KNOWN_DTYPES:
            raise InvalidInputError(f"expected a dtype among {list(_KNOWN_DTYPES)}, got {dtype!r}")
        vector = self.vector_tflops_fp32
        if dtype in _VECTOR_ONLY:
            return vector * 1e12
        chain = _TENSOR_CHAIN[dtype]
        peak = next(p for p in map(self.peak_tflops.get, chain + ("fp32",)) if p is not None)
        if tensor:
            if self.fp8_tensor_cores and dtype == "fp8" and self.peak_tflops.get("fp16"):
                return 2 * self.peak_tflops.get("fp16") * 1e12
            return peak * 1e12
        if dtype == "fp64":
            return min(peak, vector / 2) * 1e12
        return vector * 1e12

    @property
    def fp8_tensor_cores(self) -> bool:
        """Whether the GPU's tensor cores run fp8 (compute capability 8.9 and up)."""
        try:
            return float(self.compute_capability or 0.0) >= 8.9
        except ValueError:
            return False

    def peak_dtype(self, dtype: str) -> str:
        """The :data:`DTYPE_KEYS` column whose tensor-core peak :meth:`peak_flops` uses for ``dtype``
        (``"fp32"`` for bf16 on a V100, ``"fp16"`` for fp8...)."""
        if not isinstance(dtype, str) or dtype not in _KNOWN_DTYPES:
            raise InvalidInputError(f"expected a dtype among {list(_KNOWN_DTYPES)}, got {dtype!r}")
        if dtype in _VECTOR_ONLY:
            return dtype
        return next(k for k in _TENSOR_CHAIN[dtype] + ("fp32",) if self.peak_tflops.get(k) is not None)

    def peak_assumption(self, dtype: str) -> str | None:
        """What costing ``dtype`` tensor ops assumes when the device has no rate of its own for it,
        else ``None``: ``"bf16 tensor ops costed at the fp32 peak (V100-SXM2-16GB lists no bf16
        rate)"``.  TF32 requested on a device without TF32 is not an assumption: fp32 then runs at
        the fp32 rate, which is what the device does."""
        used = self.peak_dtype(dtype)
        if used == dtype or (dtype == "tf32" and used == "fp32") or dtype in _VECTOR_ONLY:
            return None
        if dtype == "fp8" and self.fp8_tensor_cores and used == "fp16":
            return (f"fp8 tensor ops costed at twice the fp16 peak ({self.name}'s fp8 tensor cores; the device "
                    "database has no fp8 column)")
        if dtype in DTYPE_KEYS:
            why = f"{self.name} lists no {dtype} rate"
        else:
            why = f"the device database has no {dtype} column"
        return f"{dtype} tensor ops costed at the {used} peak ({why})"

    def hardware_features(self) -> dict[str, float]:
        """Numeric features for learned models, keyed by :data:`HARDWARE_FEATURE_NAMES`.

        Peaks are in TFLOP/s with 0.0 for an unsupported dtype (no fallback);
        ``sm_count``/``l2_cache_mb`` are 0.0 where they do not apply (cpu);
        ``compute_capability`` is a float (``"8.9"`` -> 8.9, cpu -> 0.0).
        """
        feats: dict[str, float] = {
            f"peak_{k}_tflops": float(v or 0.0) for k, v in self.peak_tflops.as_dict().items()
        }
        feats.update(
            vector_fp32_tflops=float(self.vector_tflops_fp32),
            memory_bandwidth_gbps=float(self.memory_bandwidth_gbps),
            memory_gb=float(self.memory_gb),
            sm_count=float(self.sm_count or 0),
            l2_cache_mb=float(self.l2_cache_mb or 0.0),
            tdp_w=float(self.tdp_w),
            compute_capability=float(self.compute_capability or 0.0),
        )
        return {k: feats[k] for k in HARDWARE_FEATURE_NAMES}

    # -- conversions --------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The device as a ``devices.json`` entry (plus ``source``)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "assumptions":
                continue  # how a lookup resolved, not a figure of the device
            v = getattr(self, f.name)
            if f.name == "peak_tflops":
                v = v.as_dict()
            elif f.name == "mig_profiles":
                v = [_mig_entry(m) for m in v]
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def with_overrides(self, **fields: Any) -> Device:
        """A copy with some fields replaced, validated like a database entry.

        ``peak_tflops`` may be a partial mapping (``{"fp16": 700.0}``) merged
        into the current peaks; ``mig_profiles`` may hold :class:`MigProfile`
        objects or dicts.  Unknown field names raise :class:`InvalidInputError`.
        """
        names = [f.name for f in dataclasses.fields(self)]
        unknown = [k for k in fields if k not in names]
        if unknown:
            raise InvalidInputError(
                f"expected fields among {names}, got {unknown[0]!r}.{suggest(unknown[0], names)}"
            )
        entry = self.to_dict()
        if "memory_gb" in fields and "reported_memory_mib" not in fields:
            entry["reported_memory_mib"] = None  # the board's total belongs to the capacity it replaces
        for key, value in fields.items():
            if key == "peak_tflops":
                value = value.as_dict() if isinstance(value, PeakTflops) else value
                if not isinstance(value, Mapping):
                    raise InvalidInputError(
                        f"expected peak_tflops to be a mapping or PeakTflops, got {type(value).__name__}"
                    )
                value = {**entry["peak_tflops"], **value}
            elif key == "mig_profiles" and isinstance(value, Iterable):
                value = [_mig_entry(m) if isinstance(m, MigProfile) else m for m in value]
            elif key in ("aliases", "sources") and isinstance(value, (tuple, list)):
                value = list(value)
            entry[key] = value
        return _device_from_entry(entry, f"{self.name}.with_overrides()", InvalidInputError)


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------

_OPTIONAL = ("source", "reported_memory_mib")
_REQUIRED = tuple(f.name for f in dataclasses.fields(Device) if f.name not in (*_OPTIONAL, "assumptions"))
_MIG_FIELDS = tuple(f.name for f in dataclasses.fields(MigProfile) if f.name != "board_memory_mib")
_MIG_REQUIRED = tuple(f.name for f in dataclasses.fields(MigProfile) if f.default is dataclasses.MISSING)
_CC_RE = re.compile(r"^\d+\.\d+$")


def _check_text_fields(entry: Mapping[str, Any], bad: Callable[[str, str], Exception]) -> str:
    """Check the string-valued fields of ``entry``; return its ``source``."""
    for k in ("name", "vendor", "architecture"):
        if not isinstance(entry[k], str) or not entry[k].strip():
            raise bad(k, "a non-empty string")
    source = entry.get("source", "datasheet")
    if not isinstance(source, str) or not source:
        raise bad("source", "a non-empty string")
    for k in ("aliases", "sources"):
        v = entry[k]
        if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) and s.strip() for s in v):
            raise bad(k, "a list of non-empty strings")
    if not entry["sources"]:
        raise bad("sources", "at least one source")
    cc = entry["compute_capability"]
    if cc is not None and not (isinstance(cc, str) and _CC_RE.match(cc)):
        raise bad("compute_capability", 'null or a "major.minor" string such as "9.0"')
    return source


def _check_peaks(
    entry: Mapping[str, Any], where: str, label: str, exc: type[Exception], bad: Callable[[str, str], Exception]
) -> None:
    """Check ``peak_tflops``: exactly the dtype keys, positive numbers (null allowed except fp32)."""
    peaks = entry["peak_tflops"]
    if not isinstance(peaks, Mapping) or set(peaks) != set(DTYPE_KEYS):
        raise bad("peak_tflops", f"an object with exactly the keys {list(DTYPE_KEYS)}")
    for k in DTYPE_KEYS:
        v = peaks[k]
        if v is None and k != "fp32":
            continue
        if not (_is_num(v) and v > 0):
            raise exc(
                f"{where}: device {label!r}, field 'peak_tflops.{k}': expected a positive number"
                f"{'' if k == 'fp32' else ' or null'}, got {v!r}"
            )


def _check_numeric_fields(entry: Mapping[str, Any], bad: Callable[[str, str], Exception]) -> None:
    """Check the scalar numeric fields of ``entry`` (bandwidth, memory, power, SMs, L2, ...)."""
    for k in ("vector_tflops_fp32", "memory_bandwidth_gbps", "memory_gb", "tdp_w"):
        if not (_is_num(entry[k]) and entry[k] > 0):
            raise bad(k, "a positive number")
    for k in ("idle_power_w", "kernel_launch_overhead_us", "framework_overhead_mb"):
        if not (_is_num(entry[k]) and entry[k] >= 0):
            raise bad(k, "a non-negative number")
    if entry["idle_power_w"] > entry["tdp_w"]:
        raise bad("idle_power_w", f"at most tdp_w ({entry['tdp_w']})")
    sm = entry["sm_count"]
    if sm is not None and not (is_int(sm) and sm > 0):
        raise bad("sm_count", "null or a positive integer")
    l2 = entry["l2_cache_mb"]
    if l2 is not None and not (_is_num(l2) and l2 > 0):
        raise bad("l2_cache_mb", "null or a positive number")


def _mig_profiles_from_entry(
    entry: Mapping[str, Any], where: str, label: str, exc: type[Exception], bad: Callable[[str, str], Exception]
) -> list[MigProfile]:
    """Validate ``mig_profiles`` and return them sorted by (memory_gb, compute_fraction)."""
    migs = entry["mig_profiles"]
    if not isinstance(migs, (list, tuple)):
        raise bad("mig_profiles", "a list of MIG profile objects")
    profiles = []
    for i, m in enumerate(migs):
        fld = f"mig_profiles[{i}]"
        if not isinstance(m, Mapping) or not set(_MIG_REQUIRED) <= set(m) or not set(m) <= set(_MIG_FIELDS):
            raise exc(f"{where}: device {label!r}, field {fld!r}: expected an object with keys {list(_MIG_REQUIRED)} "
                      f"(optional: {[k for k in _MIG_FIELDS if k not in _MIG_REQUIRED]}), got {m!r}")
        sm, gib = m.get("sm_count"), m.get("instance_memory_gib")
        ok = (
            isinstance(m["name"], str) and m["name"]
            and _is_num(m["memory_gb"]) and m["memory_gb"] > 0
            and all(_is_num(m[f]) and 0 < m[f] <= 1 for f in ("memory_fraction", "compute_fraction"))
            and isinstance(m["max_instances"], int) and not isinstance(m["max_instances"], bool)
            and m["max_instances"] >= 1
            and (sm is None or (is_int(sm) and sm > 0))
            and (gib is None or (_is_num(gib) and 0 < gib <= m["memory_gb"]))
        )
        if not ok:
            raise exc(
                f"{where}: device {label!r}, field {fld!r}: expected a name, memory_gb > 0, "
                f"fractions in (0, 1], max_instances >= 1, sm_count null or a positive integer and "
                f"instance_memory_gib null or in (0, memory_gb], got {dict(m)!r}"
            )
        profiles.append(MigProfile(**{k: m[k] for k in _MIG_FIELDS if k in m}))
    profiles.sort(key=lambda p: (p.memory_gb, p.compute_fraction))
    return profiles


def _device_from_entry(entry: Any, where: str, exc: type[Exception] = DeviceDatabaseError) -> Device:
    """Validate one JSON entry and build its :class:`Device`; errors name device and field."""
    if not isinstance(entry, dict):
        raise exc(f"{where}: expected a device object, got {type(entry).__name__}")
    label = entry.get("name") if isinstance(entry.get("name"), str) else "<unnamed>"

    def bad(fld: str, expected: str) -> Exception:
        got = entry.get(fld)
        return exc(f"{where}: device {label!r}, field {fld!r}: expected {expected}, got {got!r}")

    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise exc(f"{where}: device {label!r} is missing field {missing[0]!r} (required: {list(_REQUIRED)})")
    extra = [k for k in entry if k not in _REQUIRED and k not in _OPTIONAL]
    if extra:
        raise exc(f"{where}: device {label!r} has unknown field {extra[0]!r}; expected only {list(_REQUIRED)} "
                  f"(optional: {list(_OPTIONAL)})")

    source = _check_text_fields(entry, bad)
    _check_peaks(entry, where, label, exc, bad)
    _check_numeric_fields(entry, bad)
    reported = entry.get("reported_memory_mib")
    if reported is not None and not (_is_num(reported) and 0 < reported <= entry["memory_gb"] * _MIB_PER_GB):
        raise bad("reported_memory_mib", f"null or a number of MiB in (0, memory_gb * 1024 = "
                                         f"{entry['memory_gb'] * _MIB_PER_GB:g}]")
    profiles = _mig_profiles_from_entry(entry, where, label, exc, bad)
    if reported is not None:
        profiles = [dataclasses.replace(p, board_memory_mib=float(reported)) for p in profiles]

    peaks = entry["peak_tflops"]
    l2 = entry["l2_cache_mb"]
    return Device(
        name=entry["name"],
        aliases=tuple(entry["aliases"]),
        vendor=entry["vendor"],
        architecture=entry["architecture"],
        compute_capability=entry["compute_capability"],
        peak_tflops=PeakTflops(**{k: None if peaks[k] is None else float(peaks[k]) for k in DTYPE_KEYS}),
        vector_tflops_fp32=float(entry["vector_tflops_fp32"]),
        memory_bandwidth_gbps=float(entry["memory_bandwidth_gbps"]),
        memory_gb=float(entry["memory_gb"]),
        sm_count=entry["sm_count"],
        l2_cache_mb=None if l2 is None else float(l2),
        tdp_w=float(entry["tdp_w"]),
        idle_power_w=float(entry["idle_power_w"]),
        kernel_launch_overhead_us=float(entry["kernel_launch_overhead_us"]),
        framework_overhead_mb=float(entry["framework_overhead_mb"]),
        mig_profiles=tuple(profiles),
        sources=tuple(entry["sources"]),
        reported_memory_mib=None if reported is None else float(reported),
        source=source,
    )


def _mig_entry(m: MigProfile) -> dict[str, Any]:
    """A MIG profile as its JSON object (the board's reported memory belongs to the device entry)."""
    return {k: v for k, v in dataclasses.asdict(m).items() if k in _MIG_FIELDS}


def normalize_device_name(name: str) -> str:
    """Lowercase ``name`` and drop everything but letters and digits (``"H100-80GB"`` -> ``"h10080gb"``)."""
    return normalize_name(name)


@dataclass(frozen=True)
class _Database:
    devices: tuple[Device, ...]
    index: dict[str, Device]  # normalized name or alias -> device


def _parse_database(data: Any, origin: str) -> _Database:
    """Validate a whole ``devices.json`` document."""
    if not isinstance(data, dict):
        raise DeviceDatabaseError(f"{origin}: expected a JSON object, got {type(data).__name__}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise DeviceDatabaseError(
            f"{origin}: expected schema_version {SCHEMA_VERSION}, got {data.get('schema_version')!r}"
        )
    entries = table_section(data, "devices", list, origin, DeviceDatabaseError)
    devices = tuple(_device_from_entry(e, origin) for e in entries)
    by_name = {dev.name: dev for dev in devices}
    if len(by_name) != len(devices):
        raise DeviceDatabaseError(f"{origin}: two devices have the same name")
    names = alias_index({dev.name: dev.aliases for dev in devices}, origin, DeviceDatabaseError)
    return _Database(devices, {key: by_name[name] for key, name in names.items()})


@functools.cache
def _database() -> _Database:
    data = load_table(_DB, "JSON device database", DeviceDatabaseError)
    return _parse_database(data, str(PACKAGE_DIR / _DB))


# --------------------------------------------------------------------------
# lookup
# --------------------------------------------------------------------------


def list_devices() -> list[Device]:
    """Every device of the database, in file order."""
    return list(_database().devices)


def _is_machine_profile(path) -> bool:
    """Whether ``path`` is a profile saved by ``costmodel.measure.harness.measure`` (not a hardware.json)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"peak_gflops", "bandwidth", "kind", "isa"} <= set(data)


def _looks_like_path(name: str) -> bool:
    if name.lower().endswith(".json"):
        return True
    if "/" not in name and "\\" not in name:
        return False
    return split_mig_name(name) is None or os.path.exists(name)  # "h200/1g.18gb" is a slice unless such a file exists


def get_device(name: str | os.PathLike[str] | Device, *, measured: bool = False) -> Device:
    """Look up a device by name or alias, or load a measured ``hardware.json``.

    Names are case- and punctuation-insensitive (``"h100"``, ``"H100-80GB"``,
    ``"h100_sxm5_80gb"`` are the same device), and a leading ``NVIDIA``/``Tesla``
    is ignored, so ``torch.cuda.get_device_name()`` strings such as
    ``"NVIDIA H200"`` or ``"Tesla T4"`` resolve too.  A :class:`Device` is
    returned unchanged.  A path (``os.PathLike``, or a string ending in
    ``.json`` or containing a path separator) is read with
    :func:`load_measured_profile`, or, when it is a profile saved by
    ``costmodel.measure.harness.measure`` (as is a ``MachineProfile`` object), turned
    into a device with its measured ceilings (``MachineProfile.to_device``).  ``measured=True`` returns the device's
    packaged measured profile (:func:`measured_profile`).  ``"cuda"``/``"cuda:N"`` is the GPU this process sees,
    listed or derived from its CUDA properties (:func:`~costmodel.devices.cuda_device`).

    Raises:
        UnknownDeviceError: the name matches no device; the message lists
            every known device and suggests close names.
    """
    from ._measured import load_measured_profile, measured_profile  # built on this module's database
    if isinstance(name, Device):
        return name
    if hasattr(name, "to_device") and hasattr(name, "peak_gflops"):  # a costmodel.devices.profile.MachineProfile
        return name.to_device()
    if isinstance(name, os.PathLike) or (isinstance(name, str) and _looks_like_path(name)):
        if _is_machine_profile(name):
            from .profile import MachineProfile

            return MachineProfile.load(name).to_device()
        return load_measured_profile(name)
    if not isinstance(name, str):
        raise InvalidInputError(
            f"expected a device name, Device or path to a hardware.json, got {type(name).__name__}"
        )
    if (index := cuda_index(name)) is not False:  # "cuda", "cuda:1": the GPU this process sees
        dev = cuda_device(index)
        return measured_profile(dev.name) if measured else dev
    db = _database()
    key = normalize_device_name(name)
    dev = db.index.get(key)
    while dev is None:
        prefix = next((p for p in _VENDOR_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            break
        key = key[len(prefix):]
        dev = db.index.get(key)
    if dev is None and (mig := split_mig_name(name)) is not None:
        return mig_slice(*mig, measured=measured)
    if dev is None:
        raise unknown_name_error(
            name, [d.name for d in db.devices], expected="a known device name", listing="known devices",
            hint="names are case- and punctuation-insensitive; aliases such as 'h100' work",
            near=dict.fromkeys(n.lower() for d in db.devices for n in (d.name, *d.aliases)), error=UnknownDeviceError,
        )
    if measured:
        return measured_profile(dev.name)
    fits = _devices_fitting(key)
    if len(fits) > 1:
        return _with_lookup_note(dev, name, fits)
    return dev


@functools.lru_cache(maxsize=4096)  # the database is read once per process, so the answer never changes
def _devices_fitting(key: str) -> tuple[str, ...]:
    """Canonical names of the devices with a name or alias whose leading words (split at ``-``, ``_``,
    ``.``, ``/`` or spaces) are the normalized ``key``: ``"a100"`` fits every A100 (``A100-SXM4-40GB``,
    ``A100-PCIe-80GB``...), ``"a10040gb"`` one; ``"l4"`` fits the L4 but not the L40S, ``"a10"`` the A10
    but no A100 (another product, not a variant of it)."""
    db = _database()
    return tuple(d.name for d in db.devices if any(key in _word_prefixes(n) for n in (d.name, *d.aliases)))


def _word_prefixes(name: str) -> set[str]:
    """The normalized forms of ``name``'s leading words: ``"A100-SXM4-40GB"`` -> ``{"a100", "a100sxm4",
    "a100sxm440gb"}``."""
    words = [w for w in re.split(r"[-_./\s]+", name) if w]
    return {normalize_device_name("".join(words[:i])) for i in range(1, len(words) + 1)}


@functools.cache
def _with_lookup_note(dev: Device, name: str, fits: tuple[str, ...]) -> Device:
    """``dev`` carrying the note that ``name`` fits several devices (one object per name: stable identity)."""
    others = ", ".join(n for n in fits if n != dev.name)
    note = f"device name {name!r} also fits {others}; costed as {dev.name}"
    return dataclasses.replace(dev, assumptions=(note,))

