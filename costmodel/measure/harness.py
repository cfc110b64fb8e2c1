"""Measure this machine's roofline: peak FLOP/s and bandwidth per memory level.

>>> from costmodel.measure.harness import measure
>>> prof = measure("cpu", quick=True)          # a few seconds
>>> prof.peak_gflops["fp32"], prof.levels["DRAM"]
>>> dev = prof.to_device()                     # a costmodel Device with measured figures
>>> costmodel.estimate("torchvision:resnet18", batch=1, device=dev, predictor="analytic")

The numbers come from the C++ harness ``costmodel._roofline`` (built from
``bindings/`` by ``pip install .``):

* **peak FLOP/s** per dtype: independent FMA chains on every CPU of the
  affinity mask (one pinned thread each), with the widest instruction set the
  CPU supports (AVX-512, AVX2+FMA, or scalar code); on CUDA, FMA chains on the
  CUDA cores (fp64, fp32, fp16 through ``half2``) -- not tensor cores;
* **bandwidth sweep**: the STREAM kernels (copy, scale, add, triad) over total
  footprints (three arrays) from 4 KiB up to ``max_bytes``, bytes counted the
  STREAM way (copy/scale move 2 arrays, add/triad 3, 8 bytes per element, no
  write-allocate traffic); on CUDA a read sweep over buffers from 16 KiB up,
  plus a large device-to-device copy (read + write bytes);
* **levels**: the triad curve is cut into plateaus (L1, L2, L3, DRAM) where it
  drops, the cuts cross-checked against the cache sizes in
  ``/sys/devices/system/cpu/cpu*/cache`` (summed over the caches the worker
  threads use), see :func:`locate_plateaus`.

Every number is the median of several timed repetitions after warm-up runs,
with its spread (min, max, quartiles) kept alongside.

``measure(device="cuda")`` on a machine without a usable GPU (no device, no
driver, or an extension built without CUDA) raises :class:`NoCudaDeviceError`
whose message starts with ``"no CUDA device"`` and carries the CUDA runtime's
reason; :func:`cuda_status` asks the same question without raising.  When the
extension itself is missing, :func:`measure` raises
:class:`RooflineUnavailableError`; the rest of costmodel never needs it.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .._errors import CostModelError, InvalidInputError
from .._validate import int_at_least, true_or_false
from ..devices.profile import (
    BandwidthPoint,
    GiB,
    KiB,
    MachineProfile,
    MiB,
    Plateau,
    format_bytes,
)

__all__ = [
    "BandwidthPoint",
    "MachineProfile",
    "NoCudaDeviceError",
    "Plateau",
    "RooflineUnavailableError",
    "available",
    "cache_hierarchy",
    "cuda_status",
    "locate_plateaus",
    "measure",
    "theoretical_cpu_peak",
]

#: the harness ABI this module speaks (``costmodel._roofline.HARNESS_VERSION``)
_HARNESS_VERSION = 1

#: smallest accepted ``max_bytes``
MIN_MAX_BYTES = 16 * KiB
#: default sweep ceiling of a full CPU run (three arrays together)
DEFAULT_MAX_BYTES = 2 * GiB
#: never let the sweep take more than this fraction of the available memory
MEMORY_FRACTION = 0.5
STREAM_KERNELS = ("copy", "scale", "add", "triad")


class RooflineUnavailableError(CostModelError, ImportError):
    """The C++ harness ``costmodel._roofline`` is not built or cannot be loaded."""


class NoCudaDeviceError(CostModelError):
    """``measure(device="cuda")`` found no usable CUDA device; the message says why."""


# --------------------------------------------------------------------------
# the extension
# --------------------------------------------------------------------------

_EXT: Any = None
_EXT_ERROR: str | None = None


def _load_extension():
    """Import ``costmodel._roofline`` (the installed one when a source checkout shadows it)."""
    from .._ext import load_extension

    return load_extension("_roofline", "HARNESS_VERSION", _HARNESS_VERSION)


def _extension(required: bool = True):
    global _EXT, _EXT_ERROR
    if _EXT is None and _EXT_ERROR is None:
        _EXT, _EXT_ERROR = _load_extension()
    if _EXT is None and required:
        raise RooflineUnavailableError(
            "the roofline harness (the compiled module costmodel._roofline) is not available "
            f"({_EXT_ERROR}). Reinstall costmodel from its source tree with `pip install .` "
            "(needs a C++17 compiler, CMake >= 3.18 and nanobind; CUDA kernels are added when nvcc "
            "is found), or build it in place as bindings/README.md describes."
        )
    return _EXT


def available() -> bool:
    """Whether the compiled harness can be imported."""
    return _extension(required=False) is not None


def cuda_status(device: int = 0) -> dict:
    """``{"available": bool, "reason": str, "compiled": bool, ...device properties}``; never raises."""
    ext = _extension(required=False)
    if ext is None:
        return {"available": False, "compiled": False,
                "reason": f"no CUDA device: the roofline harness is not built ({_EXT_ERROR})"}
    info = dict(ext.cuda_info(int(device)))
    info["compiled"] = bool(ext.cuda_compiled)
    return info


# --------------------------------------------------------------------------
# system information (Linux sysfs/procfs; graceful elsewhere)
# --------------------------------------------------------------------------

_SYS_CPU = Path("/sys/devices/system/cpu")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _parse_size(text: str | None) -> int | None:
    """``"32K"`` -> 32768 (sysfs cache sizes)."""
    if not text:
        return None
    m = re.fullmatch(r"(\d+)\s*([KMG]?)i?B?", text.strip(), re.IGNORECASE)
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": KiB, "M": MiB, "G": GiB}[m.group(2).upper()]


def _cpuinfo() -> list[dict[str, str]]:
    text = _read(Path("/proc/cpuinfo")) or ""
    blocks = []
    for block in text.split("\n\n"):
        d = {}
        for line in block.splitlines():
            k, _, v = line.partition(":")
            d[k.strip()] = v.strip()
        if d:
            blocks.append(d)
    return blocks


def _cpu_name() -> str:
    for b in _cpuinfo():
        for key in ("model name", "Processor", "cpu model", "uarch"):
            if b.get(key):
                return b[key]
    return platform.processor() or platform.machine() or "unknown CPU"


def _meminfo(key: str) -> int | None:
    for line in (_read(Path("/proc/meminfo")) or "").splitlines():
        if line.startswith(key + ":"):
            parts = line.split()
            try:
                return int(parts[1]) * KiB
            except (IndexError, ValueError):
                return None
    return None


def _available_memory() -> int | None:
    """MemAvailable, capped by a cgroup v2/v1 memory limit when there is one."""
    avail = _meminfo("MemAvailable")
    for limit_f, usage_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                             ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                              "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read(Path(limit_f)), _read(Path(usage_f))
        if limit and limit.isdigit() and usage and usage.isdigit() and int(limit) < 2**60:
            room = max(0, int(limit) - int(usage))
            avail = room if avail is None else min(avail, room)
            break
    return avail


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cache_hierarchy(cpus: list[int] | None = None) -> list[dict]:
    """Data/unified caches seen by ``cpus`` (default: the affinity mask), by level.

    Each entry: ``level``, ``type``, ``size_bytes`` (one instance),
    ``instances`` (distinct caches among ``cpus``), ``aggregate_bytes``
    (size x instances: the capacity those CPUs have together).  Empty where
    sysfs has no cache information.
    """
    cpus = _allowed_cpus() if cpus is None else list(cpus)
    found: dict[tuple[int, str], dict] = {}
    for cpu in cpus:
        for idx in sorted((_SYS_CPU / f"cpu{cpu}" / "cache").glob("index*")):
            ctype = _read(idx / "type") or ""
            if ctype == "Instruction":
                continue
            level = _read(idx / "level")
            size = _parse_size(_read(idx / "size"))
            if not (level and level.isdigit() and size):
                continue
            shared = _read(idx / "shared_cpu_list") or f"cpu{cpu}"
            e = found.setdefault((int(level), ctype), {"level": int(level), "type": ctype, "size_bytes": size,
                                                       "_shared": set()})
            e["_shared"].add(shared)
    out = []
    for key in sorted(found):
        e = found[key]
        n = len(e.pop("_shared"))
        out.append({**e, "instances": n, "aggregate_bytes": e["size_bytes"] * n})
    return out


def _physical_cores(cpus: list[int]) -> int:
    cores = set()
    for cpu in cpus:
        topo = _SYS_CPU / f"cpu{cpu}" / "topology"
        core, pkg = _read(topo / "core_id"), _read(topo / "physical_package_id")
        cores.add((pkg, core) if core is not None else ("cpu", cpu))
    return max(1, len(cores))


def _clock_ghz(cpus: list[int]) -> tuple[float | None, str]:
    best = 0.0
    for cpu in cpus:
        khz = _read(_SYS_CPU / f"cpu{cpu}" / "cpufreq" / "cpuinfo_max_freq")
        if khz and khz.isdigit():
            best = max(best, int(khz) / 1e6)
    if best > 0:
        return best, "cpufreq cpuinfo_max_freq"
    mhz = [float(b["cpu MHz"]) for b in _cpuinfo() if re.fullmatch(r"[\d.]+", b.get("cpu MHz", "") or "")]
    if mhz:
        return max(mhz) / 1e3, "/proc/cpuinfo 'cpu MHz' (may be the nominal, not the boost, clock)"
    return None, "no clock found"


def theoretical_cpu_peak(isa: str, cpus: list[int] | None = None) -> tuple[dict[str, float] | None, str]:
    """An ESTIMATE of the CPUs' peak GFLOP/s: ``cores x clock x lanes x FMA units x 2``.

    ``cores`` counts physical cores among ``cpus`` (SMT siblings share FMA
    units); ``clock`` is cpufreq's ``cpuinfo_max_freq`` (else the highest
    ``cpu MHz`` of /proc/cpuinfo, often the nominal clock in a VM, so a
    boosting CPU can beat the estimate); ``lanes`` is the vector width of the
    ISA the harness used (AMD Zen 2-4 run AVX-512 on 256-bit units, counted
    as 256 bits); 2 FMA units per core is ASSUMED (true of current server
    cores, not of every part); 2 FLOPs per FMA.  Returns ``(None, why)`` when
    no clock is known.
    """
    cpus = _allowed_cpus() if cpus is None else list(cpus)
    cores = _physical_cores(cpus)
    ghz, clock_src = _clock_ghz(cpus)
    if not ghz:
        return None, f"no estimate: {clock_src}"
    bits = {"avx512": 512, "avx2": 256}.get(isa, 64)
    note = ""
    info = _cpuinfo()
    vendor = info[0].get("vendor_id", "") if info else ""
    family = info[0].get("cpu family", "") if info else ""
    if isa == "avx512" and vendor == "AuthenticAMD" and family.isdigit() and int(family) < 0x1A:
        bits, note = 256, " (AMD before Zen 5: 512-bit FMAs on 256-bit units)"
    units = 2
    fp64 = cores * ghz * (bits // 64) * units * 2
    fp32 = fp64 * 2 if bits > 64 else fp64
    basis = (f"ESTIMATE {cores} cores x {ghz:.3f} GHz ({clock_src}) x {bits}-bit FMA{note} x {units} FMA units "
             f"(assumed) x 2 FLOP/FMA")
    return {"fp64": fp64, "fp32": fp32}, basis


# --------------------------------------------------------------------------
# plateau location
# --------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def locate_plateaus(points: list[tuple[int, float]], capacities: list[tuple[str, int]], *,
                    drop: float = 1.10, total_drop: float = 1.25, window: float = 4.0,
                    dram_factor: float = 4.0) -> list[Plateau]:
    """Cut a bandwidth-vs-footprint curve into cache-level plateaus.

    ``points``: ``(footprint_bytes, gbps)`` (any order); ``capacities``:
    ``[("L1", bytes), ("L2", bytes), ...]`` increasing -- the capacity of each
    level for the threads used.  For every level boundary the steps of the
    curve inside ``[capacity / window, capacity * window]`` (narrowed to the
    geometric midpoints with the neighbouring capacities, so two boundaries
    never claim the same step) that drop by at least ``drop`` x are the
    transition, provided the span they cover drops by ``total_drop`` x
    overall; the level before it ends at the transition's first point and the
    next begins after its last (``boundary_detected``).  Without such a drop
    the region falls back to the capacity alone: up to ``capacity / 2``, the
    next level from ``capacity x 2``.  The last level, ``DRAM``, takes the
    footprints of at least ``dram_factor`` x the largest cache.
    Each plateau's ``gbps`` is the median of the medians in its region,
    ``None`` when the sweep has no point there.
    """
    pts = sorted((int(b), float(g)) for b, g in points if g and g > 0)
    sizes = [b for b, _ in pts]
    gbps = [g for _, g in pts]
    n = len(pts)
    if not capacities:  # no cache information: only the top two octaves, as DRAM
        sel = [i for i in range(n) if sizes[i] * 4 >= sizes[-1]] if n else []
        return [_plateau("DRAM", sel, sizes, gbps, None, False)]
    caps = [int(c) for _, c in capacities]
    out: list[Plateau] = []
    start = 0  # first footprint of the current level
    for k, (name, cap) in enumerate(capacities):
        # search window around this capacity, kept clear of the neighbours' windows
        lo = max(cap / window, math.sqrt(caps[k - 1] * cap) if k else 0.0, start)
        hi = min(cap * window, math.sqrt(cap * caps[k + 1]) if k + 1 < len(caps) else math.inf)
        steps = [i for i in range(n - 1)
                 if sizes[i] >= lo and sizes[i + 1] <= hi and gbps[i] >= drop * gbps[i + 1]]
        detected = False
        if steps:
            first, last = min(steps), max(steps) + 1
            if gbps[first] >= total_drop * gbps[last]:
                end, nxt, detected = sizes[first], sizes[last], True
        if not detected:
            end, nxt = cap // 2, max(start, cap * 2)
        sel = [i for i in range(n) if start <= sizes[i] <= end]
        out.append(_plateau(name, sel, sizes, gbps, int(cap), detected))
        start = nxt
    # 1 % slack: footprints are rounded down to whole cache lines per thread
    dram_from = max(start, int(0.99 * caps[-1] * dram_factor))
    sel = [i for i in range(n) if sizes[i] >= dram_from]
    out.append(_plateau("DRAM", sel, sizes, gbps, None, bool(sel)))
    return out


def _plateau(level, sel, sizes, gbps, cap, detected) -> Plateau:
    if not sel:
        return Plateau(level, None, None, None, None, None, 0, cap, detected)
    vals = [gbps[i] for i in sel]
    return Plateau(level, _median(vals), min(vals), max(vals), sizes[sel[0]], sizes[sel[-1]], len(sel), cap, detected)


# --------------------------------------------------------------------------
# measure
# --------------------------------------------------------------------------


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"[roofline] {msg}", file=sys.stderr, flush=True)


def _spread(stats: dict) -> dict[str, float]:
    return {k: float(stats[k]) for k in ("min", "max", "q1", "q3")}


def _parse_device(device: Any) -> tuple[str, int]:
    choices = "'cpu', 'cuda' or 'cuda:<index>'"
    if isinstance(device, str):
        d = device.strip().lower()
        if d == "cpu":
            return "cpu", 0
        if d == "cuda":
            return "cuda", 0
        m = re.fullmatch(r"cuda:(\d+)", d)
        if m:
            return "cuda", int(m.group(1))
    raise InvalidInputError(f"device must be {choices}, got {device!r}")


def measure(device: str = "cpu", *, quick: bool = False, max_bytes: int | None = None,
            threads: int | None = None, progress: bool = True) -> MachineProfile:
    """Measure peak FLOP/s and the bandwidth of each memory level of ``device``.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.
        quick: small sweep and few repetitions (a second or two on a small
            CPU; for tests and smoke checks).  A full CPU run takes tens of
            seconds, dominated by the DRAM end of the sweep.
        max_bytes: sweep ceiling in bytes.  CPU: the three STREAM arrays of
            all threads together (default 2 GiB, quick: 4 x the last-level
            cache, at least 64 MiB, at most 512 MiB); CUDA: the largest buffer
            read (default 1 GiB, quick 256 MiB).  Clamped to half of the
            available memory (``settings["max_bytes_clamped"]`` records it).
        threads: CPU worker threads (default: one per CPU of the affinity
            mask); not valid with CUDA.
        progress: print one line per step to stderr.

    Raises:
        InvalidInputError: a bad argument (the message names it and the valid values).
        RooflineUnavailableError: the C++ harness is not built.
        NoCudaDeviceError: ``device="cuda"`` and no usable GPU ("no CUDA device: <reason>").
    """
    kind, index = _parse_device(device)
    quick = true_or_false(quick, "quick")
    progress = true_or_false(progress, "progress")
    int_at_least(max_bytes, "max_bytes", MIN_MAX_BYTES, note=f"({format_bytes(MIN_MAX_BYTES)})", or_none=True)
    if threads is not None:
        if kind != "cpu":
            raise InvalidInputError(f"threads applies to device='cpu' only, got threads={threads!r} with device={device!r}")
        int_at_least(threads, "threads", 1, len(_allowed_cpus()), note="(the CPUs this process may use)", or_none=True)
    ext = _extension()
    if kind == "cpu":
        prof = _measure_cpu(ext, quick=quick, max_bytes=max_bytes, threads=threads, progress=progress)
    else:
        prof = _measure_cuda(ext, index, quick=quick, max_bytes=max_bytes, progress=progress)
    for problem in prof.anomalies():
        warnings.warn(f"measured profile of {prof.name}: {problem}; the machine was probably busy: measure again "
                      "on an idle machine before using these ceilings", stacklevel=2)
    return prof


def _clamp(requested: int, avail: int | None) -> tuple[int, bool]:
    if avail is None:
        return requested, False
    cap = max(MIN_MAX_BYTES, int(avail * MEMORY_FRACTION))
    return (cap, True) if requested > cap else (requested, False)


def _measure_cpu(ext, *, quick: bool, max_bytes: int | None, threads: int | None, progress: bool) -> MachineProfile:
    t_start = time.perf_counter()
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if quick:
        warmup, reps, stream_reps, peak_time, stream_time, per_octave = 1, 3, 3, 0.01, 0.0005, 1
    else:
        warmup, reps, stream_reps, peak_time, stream_time, per_octave = 2, 7, 5, 0.1, 0.002, 2

    harness = ext.CpuHarness(threads or 0, True)
    try:
        nthreads = int(harness.threads)
        cpus_pinned = list(harness.cpus)
        cpus = [c for c in cpus_pinned if c >= 0] or _allowed_cpus()[:nthreads]
        caches = cache_hierarchy(cpus)
        _say(progress, f"cpu: {_cpu_name()}, {nthreads} threads on CPUs {cpus}, pinned={harness.pinned}")

        peaks, spreads, peak_info = {}, {}, {}
        isa = ""
        for dtype in ("fp64", "fp32"):
            r = harness.peak_flops(dtype, "auto", warmup, reps, peak_time)
            isa = r["isa"]
            peaks[dtype] = float(r["gflops"]["median"])
            spreads[dtype] = _spread(r["gflops"])
            peak_info[dtype] = {k: r[k] for k in ("isa", "accumulators", "lanes", "iterations")}
            _say(progress, f"peak {dtype} ({isa}): {peaks[dtype]:.1f} GFLOP/s "
                           f"[{spreads[dtype]['min']:.1f}..{spreads[dtype]['max']:.1f}]")

        llc = max((c["aggregate_bytes"] for c in caches), default=32 * MiB)
        requested = max_bytes if max_bytes is not None else (
            min(512 * MiB, max(64 * MiB, 4 * llc)) if quick else DEFAULT_MAX_BYTES)
        avail = _available_memory()
        top, clamped = _clamp(requested, avail)
        if clamped:
            _say(progress, f"max_bytes {format_bytes(requested)} clamped to {format_bytes(top)} "
                           f"({MEMORY_FRACTION:.0%} of the available memory)")
        sizes = _cpu_sizes(top, nthreads, per_octave)
        _say(progress, f"stream sweep: {len(sizes)} footprints from {format_bytes(sizes[0])} to {format_bytes(sizes[-1])}")
        harness.reserve(sizes[-1])
        points: list[BandwidthPoint] = []
        stream_isa = ""
        for fp in sizes:
            r = harness.stream(fp, warmup, stream_reps, stream_time)
            stream_isa = r["isa"]
            for k in STREAM_KERNELS:
                g = r["kernels"][k]["gbps"]
                points.append(BandwidthPoint(int(r["footprint_bytes"]), k, float(g["median"]), float(g["min"]),
                                             float(g["max"]), float(g["q1"]), float(g["q3"])))
            tri = r["kernels"]["triad"]["gbps"]["median"]
            _say(progress, f"  {format_bytes(int(r['footprint_bytes'])):>9}: triad {tri:8.1f} GB/s, "
                           f"copy {r['kernels']['copy']['gbps']['median']:8.1f} GB/s")
        pinned, pin_error = bool(harness.pinned), str(harness.pin_error)
    finally:
        harness.release()
        del harness

    capacities = [(f"L{c['level']}", int(c["aggregate_bytes"])) for c in caches]
    triad = [(p.bytes, p.gbps) for p in points if p.kernel == "triad"]
    plateaus = locate_plateaus(triad, capacities)
    levels = {p.level: p.gbps for p in plateaus}
    theo, basis = theoretical_cpu_peak(isa, cpus)
    return MachineProfile(
        kind="cpu", name=_cpu_name(), isa=isa, threads=nthreads, pinned=pinned,
        peak_gflops=peaks, peak_spread=spreads, bandwidth=tuple(points), levels=levels,
        plateaus=tuple(plateaus), theoretical_peak_gflops=theo, theoretical_basis=basis,
        caches=tuple(caches), memory_total_bytes=_meminfo("MemTotal"),
        elapsed_s=time.perf_counter() - t_start, timestamp=stamp,
        settings={"quick": quick, "warmup": warmup, "reps": reps, "stream_reps": stream_reps,
                  "peak_min_time_s": peak_time, "stream_min_time_s": stream_time, "points_per_octave": per_octave,
                  "max_bytes_requested": requested, "max_bytes": top, "max_bytes_clamped": clamped,
                  "memory_available_bytes": avail},
        extra={"cpus": cpus_pinned, "pin_error": pin_error, "stream_isa": stream_isa, "peak": peak_info,
               "compiler": getattr(ext, "compiler", ""), "harness_version": ext.HARNESS_VERSION,
               "platform": platform.platform()},
    )


def _cpu_sizes(top: int, nthreads: int, per_octave: int) -> list[int]:
    """Footprints from 4 KiB to ``top``, rounded down like the harness (whole lines per thread)."""
    def rounded(fp: float) -> int:
        per = max(8, int(fp) // (24 * nthreads) // 8 * 8)
        return per * 24 * nthreads

    # at least 64 elements per array and thread: below that a pass measures loop overhead
    start = max(4 * KiB, 24 * 64 * nthreads)
    out: list[int] = []
    k = 0
    while True:
        fp = start * 2 ** (k / per_octave)
        if fp > top * 1.0001:
            break
        r = rounded(fp)
        if not out or r > out[-1]:
            out.append(r)
        k += 1
    if not out:  # more threads than the ceiling has cache lines for: the smallest possible footprint
        out.append(rounded(start))
    elif rounded(top) > out[-1]:
        out.append(rounded(top))
    return out


def _measure_cuda(ext, index: int, *, quick: bool, max_bytes: int | None, progress: bool) -> MachineProfile:
    t_start = time.perf_counter()
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    info = dict(ext.cuda_info(index))
    if not info.get("available"):
        reason = info.get("reason") or "no CUDA device"
        if not reason.startswith("no CUDA device"):
            reason = "no CUDA device: " + reason
        raise NoCudaDeviceError(reason)
    if quick:
        warmup, reps, peak_time, read_time, step = 1, 3, 0.005, 0.0003, 4
    else:
        warmup, reps, peak_time, read_time, step = 2, 10, 0.02, 0.001, 2
    _say(progress, f"cuda:{index}: {info['name']} (cc {info['compute_capability']}, {info['sm_count']} SMs, "
                   f"L2 {format_bytes(info['l2_bytes'])})")

    peaks, spreads, peak_info = {}, {}, {}
    nthreads = 0
    for dtype in ("fp64", "fp32", "fp16"):
        r = ext.cuda_peak_flops(dtype, warmup, reps, peak_time, index)
        if not r["available"]:
            raise NoCudaDeviceError(r["reason"])
        peaks[dtype] = float(r["gflops"]["median"])
        spreads[dtype] = _spread(r["gflops"])
        peak_info[dtype] = {k: r[k] for k in ("blocks", "threads_per_block", "iterations")}
        nthreads = int(r["blocks"]) * int(r["threads_per_block"])
        _say(progress, f"peak {dtype}: {peaks[dtype]:.1f} GFLOP/s")

    free = int(info["free_memory_bytes"])
    requested = max_bytes if max_bytes is not None else (256 * MiB if quick else GiB)
    top, clamped = _clamp(requested, free)
    copy_bytes = max(MIN_MAX_BYTES, min(top, free // 4))
    c = ext.cuda_copy_bandwidth(copy_bytes, warmup, reps, index)
    copy_pt = c["points"][0]
    copy_gbps = float(copy_pt["gbps"]["median"])
    _say(progress, f"copy {format_bytes(copy_bytes)}: {copy_gbps:.1f} GB/s (read + write)")

    sizes = []
    s = 16 * KiB
    while s <= top:
        sizes.append(s)
        s *= step
    l1_region = max(16 * KiB, int(info.get("shared_memory_per_sm") or 64 * KiB) // 2)
    repl_sizes = [s for s in sizes if s <= 4 * MiB]
    points: list[BandwidthPoint] = [BandwidthPoint(int(copy_pt["buffer_bytes"]), "copy", copy_gbps,
                                                   *(float(copy_pt["gbps"][k]) for k in ("min", "max", "q1", "q3")))]
    for replicated, sz in ((True, repl_sizes), (False, sizes)):
        r = ext.cuda_read_sweep(sz, replicated, warmup, reps, read_time, index)
        for p in r["points"]:
            g = p["gbps"]
            points.append(BandwidthPoint(int(p["buffer_bytes"]), p["kernel"], float(g["median"]), float(g["min"]),
                                         float(g["max"]), float(g["q1"]), float(g["q3"])))
        _say(progress, f"{'read_replicated' if replicated else 'read'} sweep: {len(sz)} sizes")

    l2 = int(info["l2_bytes"])

    def region(kernel, lo, hi, level, cap):
        # the best size of the region: the smallest buffers there leave too
        # little parallelism to saturate the level
        sel = [p for p in points if p.kernel == kernel and lo <= p.bytes <= hi]
        if not sel:
            return Plateau(level, None, None, None, None, None, 0, cap, False)
        vals = [p.gbps for p in sel]
        return Plateau(level, max(vals), min(vals), max(vals), sel[0].bytes, sel[-1].bytes, len(sel), cap, False)

    plateaus = [
        region("read_replicated", 0, l1_region, "L1", int(info.get("shared_memory_per_sm") or 0) or None),
        region("read", max(MiB, l2 // 16), l2 * 3 // 4, "L2", l2),
        Plateau("DRAM", copy_gbps, float(copy_pt["gbps"]["min"]), float(copy_pt["gbps"]["max"]),
                int(copy_pt["buffer_bytes"]), int(copy_pt["buffer_bytes"]), 1, None, True),
    ]
    dram_read = region("read", 4 * l2, 1 << 62, "DRAM-read", None)
    levels = {p.level: p.gbps for p in plateaus}
    cc = info["compute_capability"].replace(".", "")
    return MachineProfile(
        kind="cuda", name=str(info["name"]), isa=f"sm_{cc}", threads=nthreads, pinned=None,
        peak_gflops=peaks, peak_spread=spreads, bandwidth=tuple(points), levels=levels,
        plateaus=tuple(plateaus), theoretical_peak_gflops=None,
        theoretical_basis="not estimated for CUDA devices (see the device database's datasheet figures)",
        caches=({"level": 2, "type": "Unified", "size_bytes": l2, "instances": 1, "aggregate_bytes": l2},),
        memory_total_bytes=int(info["total_memory_bytes"]),
        elapsed_s=time.perf_counter() - t_start, timestamp=stamp,
        settings={"quick": quick, "warmup": warmup, "reps": reps, "peak_min_time_s": peak_time,
                  "read_min_time_s": read_time, "size_step": step, "max_bytes_requested": requested,
                  "max_bytes": top, "max_bytes_clamped": clamped, "copy_bytes": copy_bytes},
        extra={"device": info, "peak": peak_info, "dram_read_gbps": dram_read.gbps,
               "l1_region_bytes": l1_region, "compiler": getattr(ext, "compiler", ""),
               "cuda_architectures": getattr(ext, "cuda_architectures", ""),
               "harness_version": ext.HARNESS_VERSION},
    )
