"""The measured machine profile: a roofline measured by the C++ harness, as data.

:class:`MachineProfile` is what :func:`costmodel.measure.harness.measure`
returns and what ``--profile`` files hold (JSON, :meth:`MachineProfile.save`);
:meth:`MachineProfile.to_device` turns it into a :class:`~costmodel.devices.Device`
carrying the measured figures.  This module needs only the standard library.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError

__all__ = ["PROFILE_SCHEMA_VERSION", "BandwidthPoint", "MachineProfile", "Plateau", "format_bytes"]

#: version of :meth:`MachineProfile.to_json`'s layout
PROFILE_SCHEMA_VERSION = 1
#: the kinds of machine a profile describes
DEVICES = ("cpu", "cuda")
KiB, MiB, GiB = 1024, 1024**2, 1024**3


@dataclass(frozen=True)
class BandwidthPoint:
    """One point of a bandwidth sweep.

    ``bytes`` is the footprint: the three STREAM arrays of all threads together
    (CPU), or the buffer read (CUDA).  ``gbps`` is the median over the timed
    repetitions (1e9 bytes/s), ``gbps_min``/``gbps_max``/``gbps_q1``/``gbps_q3``
    its spread.
    """

    bytes: int
    kernel: str
    gbps: float
    gbps_min: float
    gbps_max: float
    gbps_q1: float
    gbps_q3: float

    @property
    def spread(self) -> tuple[float, float]:
        return (self.gbps_min, self.gbps_max)


@dataclass(frozen=True)
class Plateau:
    """A memory level located on the sweep.

    ``gbps`` is the median (CPU) or the best (CUDA L1/L2: small buffers lack
    the parallelism to saturate a level) of the sweep medians between
    ``from_bytes`` and ``to_bytes`` (``points`` of them); ``capacity_bytes`` is the cache capacity
    the threads share (``None`` for DRAM); ``boundary_detected`` tells whether
    the drop that ends the level was found in the data near that capacity
    (otherwise the region comes from the capacity alone).
    """

    level: str
    gbps: float | None
    gbps_min: float | None
    gbps_max: float | None
    from_bytes: int | None
    to_bytes: int | None
    points: int
    capacity_bytes: int | None
    boundary_detected: bool


@dataclass(frozen=True)
class MachineProfile:
    """A measured roofline (see the module docstring); JSON-serialisable.

    ``peak_gflops`` and ``levels`` hold medians in GFLOP/s and GB/s (1e9
    bytes/s); ``levels_gbps`` is the same mapping under a name that says so
    (``levels`` is kept as the JSON field and for existing code).
    ``peak_spread[dtype]`` holds ``min``/``max``/``q1``/``q3`` of each peak.
    ``levels`` maps ``L1``/``L2``/``L3``/``DRAM`` (CPU) or ``L1``/``L2``/``DRAM``
    (CUDA) to GB/s, ``None`` for a level the sweep did not reach.
    ``memory_total_bytes`` is in bytes (MemTotal on a CPU, the device's total
    memory on CUDA).  On CUDA,
    ``DRAM`` is the large-buffer copy (read + write bytes), like the device
    database's ``memory_bandwidth_gbps``.

    ``threads`` is the number of pinned workers (CPU) or GPU threads of the
    FMA launch (CUDA); ``pinned`` is ``None`` on CUDA.
    ``theoretical_peak_gflops`` is an ESTIMATE for CPUs (cores x clock x
    vector lanes x FMA units x 2, see :func:`theoretical_cpu_peak`), ``None``
    where no clock could be read, and always ``None`` on CUDA.
    """

    kind: str
    name: str
    isa: str
    threads: int
    pinned: bool | None
    peak_gflops: dict[str, float]
    peak_spread: dict[str, dict[str, float]]
    bandwidth: tuple[BandwidthPoint, ...]
    levels: dict[str, float | None]
    plateaus: tuple[Plateau, ...]
    theoretical_peak_gflops: dict[str, float] | None
    theoretical_basis: str
    caches: tuple[dict, ...]
    memory_total_bytes: int | None
    elapsed_s: float
    timestamp: str
    settings: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    schema_version: int = PROFILE_SCHEMA_VERSION

    # -- views ----------------------------------------------------------------

    @property
    def levels_gbps(self) -> dict[str, float | None]:
        """:attr:`levels` by a name with its unit: bandwidth per memory level in GB/s (1e9 bytes/s)."""
        return self.levels

    def sweep(self, kernel: str = "triad") -> list[BandwidthPoint]:
        """The sweep points of one kernel, by increasing size."""
        kernels = sorted({p.kernel for p in self.bandwidth})
        if kernel not in kernels:
            raise InvalidInputError(f"kernel must be one of {kernels}, got {kernel!r}")
        return sorted((p for p in self.bandwidth if p.kernel == kernel), key=lambda p: p.bytes)

    def anomalies(self) -> list[str]:
        """What cannot be a quiet machine's reading: an fp32 peak below the fp64 one (a SIMD lane holds
        twice as many fp32 values), or a cache level more than 10 % slower than the level beyond it. A
        2-core machine under load saved fp32 92 against fp64 99 GFLOP/s (201 against 101 when idle)."""
        out = []
        fp32, fp64 = self.peak_gflops.get("fp32"), self.peak_gflops.get("fp64")
        if fp32 and fp64 and fp32 < fp64:
            out.append(f"its fp32 peak ({fp32:.4g} GFLOP/s) is below its fp64 peak ({fp64:.4g})")
        order = [k for k in ("L1", "L2", "L3", "DRAM") if self.levels.get(k)]
        for near, far in zip(order, order[1:]):
            if self.levels[near] < 0.9 * self.levels[far]:
                out.append(f"its {near} bandwidth ({self.levels[near]:.4g} GB/s) is below its {far} bandwidth "
                           f"({self.levels[far]:.4g})")
        return out

    def summary(self) -> str:
        """A short plain-text table of the profile."""
        lines = [f"{self.kind} {self.name!r}  isa={self.isa}  threads={self.threads}  pinned={self.pinned}"]
        for dt, v in self.peak_gflops.items():
            sp = self.peak_spread.get(dt, {})
            theo = (self.theoretical_peak_gflops or {}).get(dt)
            extra = f"  (estimate {theo:.1f})" if theo else ""
            lines.append(f"  peak {dt:<5} {v:10.1f} GFLOP/s  [min {sp.get('min', float('nan')):.1f}, "
                         f"max {sp.get('max', float('nan')):.1f}]{extra}")
        for p in self.plateaus:
            if p.gbps is None:
                lines.append(f"  {p.level:<5} not reached by the sweep")
            else:
                lines.append(f"  {p.level:<5} {p.gbps:10.1f} GB/s     sizes {format_bytes(p.from_bytes)}.."
                             f"{format_bytes(p.to_bytes)} ({p.points} pts)")
        lines.append(f"  measured in {self.elapsed_s:.1f} s at {self.timestamp}")
        return "\n".join(lines)

    # -- JSON -----------------------------------------------------------------

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["bandwidth"] = [dataclasses.asdict(p) for p in self.bandwidth]
        d["plateaus"] = [dataclasses.asdict(p) for p in self.plateaus]
        d["caches"] = [dict(c) for c in self.caches]
        return json.loads(json.dumps(d))  # plain, JSON-safe copies

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> MachineProfile:
        if not isinstance(data, dict):
            raise InvalidInputError(f"expected a machine profile object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != PROFILE_SCHEMA_VERSION:
            raise InvalidInputError(
                f"expected a machine profile with schema_version {PROFILE_SCHEMA_VERSION}, got {version!r}"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data and n not in ("settings", "extra")]
        if missing:
            raise InvalidInputError(f"machine profile is missing field {missing[0]!r} (fields: {names})")
        unknown = [k for k in data if k not in names]
        if unknown:
            raise InvalidInputError(f"machine profile has unknown field {unknown[0]!r}; expected only {names}")
        if data["kind"] not in DEVICES:
            raise InvalidInputError(f"machine profile field 'kind': expected one of {list(DEVICES)}, got {data['kind']!r}")
        kw = dict(data)
        try:
            kw["bandwidth"] = tuple(BandwidthPoint(**p) for p in data["bandwidth"])
            kw["plateaus"] = tuple(Plateau(**p) for p in data["plateaus"])
            kw["caches"] = tuple(dict(c) for c in data["caches"])
        except TypeError as e:
            raise InvalidInputError(f"machine profile has a malformed sweep/plateau/cache entry: {e}") from None
        for k in ("peak_gflops", "peak_spread", "levels"):
            if not isinstance(data[k], dict):
                raise InvalidInputError(f"machine profile field {k!r}: expected an object, got {data[k]!r}")
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> MachineProfile:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise InvalidInputError(f"expected a JSON machine profile, got unparsable text ({e})") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.write_text(self.to_json() + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> MachineProfile:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInputError(f"expected a machine profile JSON file, got {str(p)!r} (no such file)") from None
        except OSError as e:
            raise InvalidInputError(f"could not read machine profile {str(p)!r}: {e}") from None
        try:
            return cls.from_json(text)
        except InvalidInputError as e:
            kind = ""
            try:
                fmt = json.loads(text).get("format")
            except (ValueError, AttributeError):
                fmt = None
            if isinstance(fmt, str):  # another costmodel file (a host profile from `costmodel calibrate`)
                kind = f" it is a {fmt!r} file;"
            raise InvalidInputError(f"{p}:{kind} expected a machine profile (`costmodel roofline --machine "
                                    f"--save-profile FILE` or costmodel.measure.harness.measure()): {e}") from None

    # -- device database --------------------------------------------------------

    def to_device(self, base=None):
        """A :class:`costmodel.devices.Device` carrying the measured figures.

        ``base`` (a device name or :class:`Device`; default ``"cpu"`` for a CPU
        profile, the GPU's own name for a CUDA profile) supplies everything
        not measured (power, launch overhead, MIG profiles...).  Replaced:

        * CPU: ``peak_tflops.fp32``/``fp64`` and ``vector_tflops_fp32`` <- the
          FMA peaks; ``memory_bandwidth_gbps`` <- the DRAM triad plateau (the
          largest footprint's triad, with a warning, when the sweep did not get
          past the last-level cache); ``memory_gb`` <- MemTotal / 2**30 and
          ``reported_memory_mib`` <- MemTotal / 2**20.
        * CUDA: ``peak_tflops.fp32`` and ``vector_tflops_fp32`` <- the fp32 FMA
          peak (PyTorch's default fp32 matmul runs on these units too);
          ``memory_bandwidth_gbps`` <- the copy bandwidth (read + write);
          ``sm_count``, ``l2_cache_mb``, ``memory_gb``, ``reported_memory_mib``,
          ``compute_capability`` <- device properties.  The fp64/fp16/bf16 tensor-core peaks keep their
          datasheet values: the harness measures CUDA-core FMAs, not MMA.

        ``memory_gb`` follows the device database's convention: the binary GB
        of datasheets (GiB, 2**30 bytes), so :attr:`Device.memory_mb` (``memory_gb
        * 1024`` MiB) is the measured capacity exactly; it is not 1e9 bytes.

        The result has ``source == "measured"`` and a source line with the date.
        """
        from . import UnknownDeviceError, get_device

        if base is None and self.kind == "cuda":
            try:
                dev = get_device(self.name)
            except UnknownDeviceError as e:
                raise UnknownDeviceError(
                    f"the measured GPU {self.name!r} is not in the device database; pass base= "
                    f"(a database device whose power, launch and MIG figures should be kept). {e}"
                ) from None
        else:
            dev = get_device("cpu" if base is None else base)
        date = self.timestamp[:10]
        fields: dict[str, Any] = {"source": "measured"}
        notes: list[str] = []
        fp32 = self.peak_gflops.get("fp32")
        if fp32:
            fields["vector_tflops_fp32"] = fp32 / 1e3
        if self.kind == "cpu":
            peaks = {k: self.peak_gflops[k] / 1e3 for k in ("fp32", "fp64") if self.peak_gflops.get(k)}
            fields["peak_tflops"] = peaks
            dram = self.levels.get("DRAM")
            if dram is None:
                triad = self.sweep("triad")
                dram = triad[-1].gbps
                msg = (f"the sweep stopped at {format_bytes(triad[-1].bytes)}, not past the last-level cache: "
                       f"memory_bandwidth_gbps uses its triad ({dram:.1f} GB/s), an upper bound of DRAM bandwidth")
                warnings.warn(msg, stacklevel=2)
                notes.append(msg)
            fields["memory_bandwidth_gbps"] = dram
            if self.memory_total_bytes:
                fields["memory_gb"] = self.memory_total_bytes / GiB  # binary GB, see above
                fields["reported_memory_mib"] = self.memory_total_bytes / MiB
            what = (f"{self.threads} threads, isa {self.isa}: fp32 {self.peak_gflops.get('fp32', 0):.1f} / "
                    f"fp64 {self.peak_gflops.get('fp64', 0):.1f} GFLOP/s FMA peaks, DRAM triad {dram:.1f} GB/s "
                    "(STREAM byte counting)")
        else:
            if fp32:
                fields["peak_tflops"] = {"fp32": fp32 / 1e3}
            info = self.extra.get("device", {})
            if self.levels.get("DRAM"):
                fields["memory_bandwidth_gbps"] = self.levels["DRAM"]
            if info.get("sm_count"):
                fields["sm_count"] = int(info["sm_count"])
            if info.get("l2_bytes"):
                fields["l2_cache_mb"] = info["l2_bytes"] / MiB
            if info.get("total_memory_bytes"):
                fields["memory_gb"] = info["total_memory_bytes"] / GiB  # binary GB, see above
                fields["reported_memory_mib"] = info["total_memory_bytes"] / MiB
            if info.get("compute_capability"):
                fields["compute_capability"] = info["compute_capability"]
            what = (f"fp32 FMA {fp32 or 0:.1f} GFLOP/s, copy {self.levels.get('DRAM') or 0:.1f} GB/s "
                    "(read + write); tensor-core peaks kept from the base entry")
        replaced = ", ".join(sorted(k for k in fields if k != "source"))
        line = (f"measured by costmodel.measure.harness.measure on {date} on {self.name!r}: {what}; "
                f"replaced {replaced}" + ("; " + "; ".join(notes) if notes else ""))
        fields["sources"] = (*dev.sources, line)
        return dev.with_overrides(**fields)


def format_bytes(n: int | None) -> str:
    """``n`` bytes for people: ``"32 KiB"``, ``"1.5 MiB"``, ``"-"`` for ``None``."""
    if n is None:
        return "-"
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v >= 10 or v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"

