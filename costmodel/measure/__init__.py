"""Measuring: label collection, per-operator profiles, the roofline harness, kernel timing.

* :func:`collect` (:mod:`.runner`) measures work items (:mod:`.work`: work
  files, row keys, the resumable output) with the protocol of the packaged data
  (:mod:`.protocol`, models built by :mod:`.models`), on a device described by
  :mod:`.probes` (energy and memory meters, ``hardware.json``);
* :mod:`.opprofile`: per-operator profiles of a measured step;
* :mod:`.harness`: the Python side of the C++ roofline harness
  (``costmodel._roofline``); the measured profile type is
  :class:`costmodel.devices.profile.MachineProfile`;
* :mod:`.bench`: ``costmodel.bench``, one kernel timed and placed on the roofline;
* :mod:`.host`: the host (CPU dispatch) calibration;
* :mod:`.charts`: roofline charts.
"""

from __future__ import annotations

from .models import build_llm, check_buildable, run_config
from .probes import check_cuda, cpu_name, hardware_description, normalize_device
from .protocol import calls_for, measure, measure_cpu, measure_safe
from .runner import collect
from .work import (
    DTYPES,
    LLM_MODES,
    VISION_MODES,
    WorkItem,
    key_of_row,
    llm_row_key,
    load_work,
    ops_path,
    output_paths,
    parse_work,
    row_key,
)

__all__ = [
    "DTYPES", "LLM_MODES", "VISION_MODES", "WorkItem", "build_llm", "calls_for", "check_buildable", "check_cuda",
    "collect", "cpu_name", "hardware_description", "key_of_row", "llm_row_key", "load_work", "measure", "measure_cpu",
    "measure_safe", "normalize_device", "ops_path", "output_paths", "parse_work", "row_key", "run_config",
]  # fmt: skip
