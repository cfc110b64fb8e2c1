"""Probes of the measuring machine: the device, its energy and memory meters, its description.

* energy: NVML's total-energy counter on a GPU (``pynvml``, extra ``gpu``); on
  a CPU the RAPL package counter where it is readable, else ``null``;
* memory: NVML's memory in use on a GPU, the process RSS on a CPU;
* :func:`hardware_description`: the measuring device in the format of the
  packaged ``hardware.json`` files.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError
from .work import MIN_WINDOW_S

DEVICES = ("cpu", "cuda")

_MB = 2**20
_RAPL = Path("/sys/class/powercap/intel-rapl:0")


# ------------------------------------------------------------------- devices
def normalize_device(device: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``; anything else is an error naming the choices."""
    d = str(device).strip().lower()
    if d in DEVICES or (d.startswith("cuda:") and d[5:].isdigit()):
        return d
    raise InvalidInputError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N")


def check_cuda(device: str = "cuda") -> None:
    """Raise a one-line error when ``device`` names no usable CUDA device."""
    import torch

    if not torch.cuda.is_available():
        why = "this torch build has no CUDA support" if torch.version.cuda is None else "no GPU is visible"
        raise InvalidInputError(f"no CUDA device ({why}; torch {torch.__version__}); use --device cpu")
    if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise InvalidInputError(f"no CUDA device {device}: {torch.cuda.device_count()} visible")


def cpu_name() -> str:
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores)"


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / _MB
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


class _Rapl:
    """The RAPL package-0 energy counter (joules), or ``None`` where not readable."""

    def __init__(self) -> None:
        self.error = None
        try:
            self.max_uj = int((_RAPL / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            self.max_uj = None
        try:
            int((_RAPL / "energy_uj").read_text())
        except (OSError, ValueError) as e:
            self.error = f"RAPL not readable ({type(e).__name__})"

    def read(self) -> float | None:
        if self.error:
            return None
        try:
            return int((_RAPL / "energy_uj").read_text()) / 1e6
        except (OSError, ValueError):
            return None

    def delta(self, e0, e1) -> float | None:
        if e0 is None or e1 is None:
            return None
        d = e1 - e0
        if d < 0 and self.max_uj:  # the counter wrapped
            d += self.max_uj / 1e6
        return d


GPU_EXTRA = 'pip install "costmodel[gpu]"'
_WARNED: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        _warn(msg)


class _Nvml:
    """NVML handle of one CUDA device: energy counter, power, memory in use.

    Where NVML is missing (the ``nvidia-ml-py`` package, extra ``gpu``) or cannot read the
    energy counter or the memory in use, those values are null: opening the handle warns once
    per reason, and ``error`` / ``energy_error`` / ``memory_error`` say why (rows and
    ``hardware.json`` record them)."""

    def __init__(self, index: int) -> None:
        self.error = None
        self.handle = None
        self.energy_error = None
        self.memory_error = None
        try:
            import pynvml
        except ImportError:
            self.error = ("pynvml is not installed (package nvidia-ml-py): energy_j, power_w and nvml_used_mb "
                          f"are not recorded; {GPU_EXTRA}")
            _warn_once(self.error)
            return
        try:
            self.nv = pynvml
            pynvml.nvmlInit()
            self.handle = _nvml_handle(pynvml, index)
        except Exception as e:  # noqa: BLE001 - no NVML: rows get null energy with the reason
            self.handle = None
            self.error = (f"NVML unavailable ({type(e).__name__}: {e}): energy_j, power_w and nvml_used_mb are "
                          "not recorded")
            _warn_once(self.error)
            return
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as e:  # noqa: BLE001 - MIG instances, old GPUs
            self.energy_error = (f"NVML energy counter unavailable ({type(e).__name__}: {e}): energy_j and "
                                 "power_w are not recorded")
            _warn_once(self.energy_error)
        try:
            pynvml.nvmlDeviceGetMemoryInfo(self.handle)
        except Exception as e:  # noqa: BLE001
            self.memory_error = (f"NVML memory information unavailable ({type(e).__name__}: {e}): nvml_used_mb "
                                 "is not recorded")
            _warn_once(self.memory_error)

    def energy_j(self) -> float | None:
        if self.handle is None or self.energy_error:
            return None
        try:
            return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3  # mJ -> J
        except Exception:  # noqa: BLE001
            return None

    def delta(self, e0, e1) -> float | None:
        return None if e0 is None or e1 is None else e1 - e0

    def power_w(self) -> float | None:
        if self.handle is None:
            return None
        try:
            return self.nv.nvmlDeviceGetPowerUsage(self.handle) / 1e3  # mW -> W
        except Exception:  # noqa: BLE001
            return None

    def used_mb(self) -> float | None:
        if self.handle is None:
            return None
        try:
            return self.nv.nvmlDeviceGetMemoryInfo(self.handle).used / _MB
        except Exception:  # noqa: BLE001
            return None


def _nvml_handle(pynvml, index: int):
    """The NVML handle of torch's CUDA device ``index`` (CUDA_VISIBLE_DEVICES respected)."""
    import torch

    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else "GPU-" + uuid)
    except Exception:  # noqa: BLE001 - fall back on the index mapping
        pass
    try:
        return pynvml.nvmlDeviceGetHandleByIndex(torch.cuda._get_nvml_device_index(index))
    except Exception:  # noqa: BLE001
        return pynvml.nvmlDeviceGetHandleByIndex(index)


class _Device:
    """What a measurement needs to know about where it runs."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")
        #: the shortest timed window (seconds; the protocol's unless ``measure(window_s=...)``)
        self.min_window_s = MIN_WINDOW_S
        if self.cuda:
            check_cuda(device)
            self.index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
            self.dev = torch.device("cuda", self.index)
            torch.cuda.set_device(self.dev)
            self.name = torch.cuda.get_device_name(self.dev)
            # CUDA context and the cuBLAS handle/workspace exist before any row
            # (as in the measuring process of the packaged data)
            a = torch.randn(64, 64, device=self.dev)
            (a @ a).sum().item()
            del a
            torch.cuda.synchronize(self.dev)
            self.meter = _Nvml(self.index)
            self.context_used_mb = self.meter.used_mb()
        else:
            self.index = None
            self.dev = torch.device("cpu")
            self.name = cpu_name()
            self.meter = _Rapl()
            self.context_used_mb = None

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.dev)

    def event(self):
        """A CUDA event recorded on the current stream (``query()``: has the device got past it)."""
        ev = self.torch.cuda.Event()
        ev.record()
        return ev

    def clear(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats(self.dev)

    def energy_error(self) -> str | None:
        if self.cuda:
            return self.meter.error or self.meter.energy_error
        return self.meter.error

    def memory_error(self) -> str | None:
        """Why ``nvml_used_mb`` is null on this CUDA device (``None`` on a CPU, where it always is)."""
        if self.cuda:
            return self.meter.error or getattr(self.meter, "memory_error", None)
        return None


@lru_cache(maxsize=None)
def _device(device: str) -> _Device:
    return _Device(device)


# ---------------------------------------------------------------- hardware
def _pkg_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _ram_kb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


_PROPS = ("name", "major", "minor", "total_memory", "multi_processor_count", "L2_cache_size",
          "max_threads_per_multi_processor", "regs_per_multiprocessor", "warp_size", "shared_memory_per_block",
          "shared_memory_per_block_optin", "shared_memory_per_multiprocessor", "max_threads_per_block", "clock_rate",
          "memory_clock_rate", "memory_bus_width")


def hardware_description(device: str = "cpu") -> dict:
    """The measuring device, in the format of the packaged ``hardware.json`` files
    (no peak-FLOP or bandwidth microbenchmarks: those take minutes)."""
    import torch

    device = normalize_device(device)
    if not device.startswith("cuda"):
        rapl = _Rapl()
        return {
            "name": cpu_name(),
            "costmodel_device": "cpu",
            "kind": "cpu",
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "energy": "rapl" if rapl.error is None else "not readable (no RAPL counters exposed)",
            "costmodel_version": _version(),
        }
    d = _device(device)
    nv = d.meter
    hw: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_name().rsplit(" (", 1)[0],
        "ram_kb": _ram_kb(),
        "nvml_error": nv.error,
        "name": d.name,
    }
    if nv.handle is not None:
        p = nv.nv

        def q(key, fn, scale=1.0):
            try:
                v = fn()
                hw[key] = v / scale if scale != 1.0 else v
            except Exception:  # noqa: BLE001 - a field this driver does not report
                hw[key] = None

        q("name", lambda: _s(p.nvmlDeviceGetName(nv.handle)))
        q("power_limit_w", lambda: p.nvmlDeviceGetEnforcedPowerLimit(nv.handle), 1e3)
        q("max_sm_clock_mhz", lambda: p.nvmlDeviceGetMaxClockInfo(nv.handle, p.NVML_CLOCK_SM))
        q("max_mem_clock_mhz", lambda: p.nvmlDeviceGetMaxClockInfo(nv.handle, p.NVML_CLOCK_MEM))
        q("mem_bus_width", lambda: p.nvmlDeviceGetMemoryBusWidth(nv.handle))
        q("driver", lambda: _s(p.nvmlSystemGetDriverVersion()))
        q("mig_mode", lambda: list(p.nvmlDeviceGetMigMode(nv.handle)))
    hw["energy_counter"] = nv.handle is not None and nv.energy_error is None
    if nv.error or nv.energy_error:
        hw["energy_error"] = nv.error or nv.energy_error
    if nv.error or getattr(nv, "memory_error", None):
        hw["memory_error"] = nv.error or nv.memory_error
    props = torch.cuda.get_device_properties(d.dev)
    for k in _PROPS:
        if hasattr(props, k):
            hw[f"prop_{k}"] = getattr(props, k)
    import warnings

    hw["cuda"] = torch.version.cuda
    for key, get in (("cudnn", lambda: torch.backends.cudnn.version()),
                     ("allow_tf32_matmul", lambda: bool(torch.backends.cuda.matmul.allow_tf32)),
                     ("allow_tf32_cudnn", lambda: bool(torch.backends.cudnn.allow_tf32))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                hw[key] = get()
            except Exception:  # noqa: BLE001 - a flag this torch no longer reports
                hw[key] = None
    hw["context_used_mb"] = d.context_used_mb
    for pkg in ("torchvision", "timm", "transformers"):
        hw[pkg] = _pkg_version(pkg)
    try:
        from ..devices import get_device

        hw["costmodel_device"] = get_device(d.name).name
    except Exception:  # noqa: BLE001 - a GPU the device database does not list
        hw["costmodel_device"] = None
    hw["kind"] = "cuda"
    hw["costmodel_version"] = _version()
    return hw


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@lru_cache(maxsize=None)
def _hardware_json(device: str) -> str:
    return json.dumps(hardware_description(device), indent=1)


def _warn(msg: str, bar=None) -> None:
    if bar is not None:
        bar.write(f"costmodel: warning: {msg}", file=sys.stderr)
    else:
        print(f"costmodel: warning: {msg}", file=sys.stderr)



def _version() -> str:
    from .. import __version__

    return __version__

