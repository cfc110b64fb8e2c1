"""Measured device profiles: a :class:`~costmodel.devices.Device` whose figures come from a
``hardware.json`` measured on a real card (``costmodel/data/h200/hardware.json``), the profiles the
package ships, and the framework overhead the rows beside a profile give."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import statistics
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError
from .._validate import is_number as _is_num
from ._db import _MEASURED_DIR, DTYPE_KEYS, Device, DeviceDatabaseError, get_device

_COPY_RE = re.compile(r"^copy_(\d+)mb_gbps$")


def _median_framework_overhead(directory: Path) -> float | None:
    """Median of ``nvml_used_mb - peak_reserved_mb`` over the ``*.jsonl`` rows beside a profile."""
    diffs: list[float] = []
    for path in sorted(directory.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                used, reserved = row.get("nvml_used_mb"), row.get("peak_reserved_mb")
                if _is_num(used) and _is_num(reserved):
                    diffs.append(float(used) - float(reserved))
    return statistics.median(diffs) if diffs else None


def load_measured_profile(path: str | os.PathLike[str], *, base: str | Device | None = None) -> Device:
    """A :class:`Device` whose figures come from a measured ``hardware.json``.

    ``base`` (default: the file's ``prop_name``/``name``, e.g. ``"NVIDIA H200"``)
    is the database entry the measurement refines.  Replaced figures:

    * ``peak_tflops[dtype]`` <- ``peak_matmul.<dtype>.tflops`` for each measured
      dtype (fp32 only when ``allow_tf32_matmul`` was off, otherwise the "fp32"
      run measured TF32); unmeasured dtypes (fp64, int8 on the H200 file) keep
      their datasheet figure;
    * ``vector_tflops_fp32`` <- the measured fp32 matmul rate (an fp32 matmul
      without TF32 runs on the same CUDA-core FMA units as pointwise ops);
    * ``memory_bandwidth_gbps`` <- ``bandwidth.copy_<N>mb_gbps`` of the largest
      buffer (``copy_4096mb_gbps``; the least affected by L2).  The harness
      counts a copy's read plus write bytes, the same convention as the
      datasheet bandwidth and a roofline's byte count, so the value is used as
      given (not halved);
    * ``memory_gb`` <- ``prop_total_memory / 2**30`` (so ``memory_mb`` is exact) and
      ``reported_memory_mib`` <- ``prop_total_memory / 2**20``,
      ``sm_count`` <- ``prop_multi_processor_count``, ``l2_cache_mb`` <-
      ``prop_L2_cache_size / 2**20``, ``tdp_w`` <- ``power_limit_w``,
      ``compute_capability`` <- ``prop_major.prop_minor``;
    * ``framework_overhead_mb`` <- the median of ``nvml_used_mb -
      peak_reserved_mb`` over the ``*.jsonl`` rows in the same folder, when
      there are any.  ``context_used_mb`` (the bare CUDA context, before
      cuBLAS/cuDNN load) is not used: it undercounts what a PyTorch run holds.

    The result has ``source == "measured"`` and a source line naming the file.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"expected a measured hardware.json file, got {str(p)!r} (no such file)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"expected a readable JSON hardware profile, got {str(p)!r} ({e})") from e
    if not isinstance(data, dict):
        raise InvalidInputError(f"{p}: expected a JSON object, got {type(data).__name__}")

    from ._cuda import measured_base

    base_dev = measured_base(p, data, base)

    def num(key: str, v: Any) -> float:
        if not (_is_num(v) and v > 0):
            raise InvalidInputError(f"{p}: field {key!r}: expected a positive number, got {v!r}")
        return float(v)

    peak_matmul = data.get("peak_matmul")
    if not isinstance(peak_matmul, dict):
        raise InvalidInputError(f"{p}: field 'peak_matmul': expected an object of {{dtype: {{tflops}}}}, got {peak_matmul!r}")
    tf32_on = data.get("allow_tf32_matmul") is True
    peaks: dict[str, float] = {}
    for dt, rec in peak_matmul.items():
        if dt not in DTYPE_KEYS or (dt == "fp32" and tf32_on):
            continue
        if not isinstance(rec, dict):
            raise InvalidInputError(f"{p}: field 'peak_matmul.{dt}': expected an object with 'tflops', got {rec!r}")
        peaks[dt] = num(f"peak_matmul.{dt}.tflops", rec.get("tflops"))

    bw = data.get("bandwidth")
    copies = {int(m.group(1)): v for k, v in (bw or {}).items() if (m := _COPY_RE.match(k))} if isinstance(bw, dict) else {}
    if not copies:
        raise InvalidInputError(f"{p}: field 'bandwidth': expected copy_<N>mb_gbps entries, got {bw!r}")
    size = max(copies)

    fields: dict[str, Any] = {
        "peak_tflops": peaks,
        "memory_bandwidth_gbps": num(f"bandwidth.copy_{size}mb_gbps", copies[size]),
        "source": "measured",
    }
    if "fp32" in peaks:
        fields["vector_tflops_fp32"] = peaks["fp32"]
    if "prop_total_memory" in data:
        fields["memory_gb"] = num("prop_total_memory", data["prop_total_memory"]) / 2**30
        fields["reported_memory_mib"] = data["prop_total_memory"] / 2**20
    if "prop_multi_processor_count" in data:
        fields["sm_count"] = int(num("prop_multi_processor_count", data["prop_multi_processor_count"]))
    if "prop_L2_cache_size" in data:
        fields["l2_cache_mb"] = num("prop_L2_cache_size", data["prop_L2_cache_size"]) / 2**20
    if "power_limit_w" in data:
        fields["tdp_w"] = num("power_limit_w", data["power_limit_w"])
    if isinstance(data.get("prop_major"), int) and isinstance(data.get("prop_minor"), int):
        fields["compute_capability"] = f"{data['prop_major']}.{data['prop_minor']}"
    overhead = _median_framework_overhead(p.parent)
    if overhead is not None:
        fields["framework_overhead_mb"] = overhead
    fields["sources"] = (
        *base_dev.sources,
        f"measured profile {p}: {', '.join(sorted(k for k in fields if k not in ('source', 'sources')))} "
        f"replaced by measured values (peak_matmul dtypes: {', '.join(peaks) or 'none'}; "
        f"bandwidth copy_{size}mb_gbps used as given)",
    )
    # a base derived from CUDA properties says so: the figures the file does not measure are derived
    return dataclasses.replace(base_dev.with_overrides(**fields), assumptions=base_dev.assumptions)


@functools.cache
def _measured_paths() -> dict[str, Path]:
    """Packaged measured profiles (``data/*/hardware.json``) keyed by canonical device name."""
    found: dict[str, Path] = {}
    for path in sorted(_MEASURED_DIR.glob("*/hardware.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            dev = get_device(data.get("prop_name") or data.get("name") or "")
        except (OSError, json.JSONDecodeError, AttributeError, InvalidInputError):
            continue  # not a profile of a database device
        if dev.name in found:
            raise DeviceDatabaseError(f"two measured profiles for {dev.name!r}: {found[dev.name]} and {path}")
        found[dev.name] = path
    return found


@functools.cache
def _measured_profile(canonical: str) -> Device:
    return load_measured_profile(_measured_paths()[canonical], base=canonical)


def measured_profile(name: str | Device) -> Device:
    """The packaged measured profile of a device (today: the H200, ``costmodel/data/h200``).

    Raises:
        InvalidInputError: the device has no packaged measured profile.
    """
    dev = get_device(name)
    paths = _measured_paths()
    if dev.name not in paths:
        raise InvalidInputError(
            f"expected a device with a measured profile ({', '.join(paths) or 'none packaged'}), got {dev.name!r}"
        )
    return _measured_profile(dev.name)
