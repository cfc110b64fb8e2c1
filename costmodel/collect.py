"""Label collection: measure workloads with the protocol of the packaged data.

The protocol (``costmodel/data`` README, "How a row was measured"):

* the model is built with random weights directly on the measuring device
  (nothing is downloaded); ``fp16``/``bf16`` convert the fp32 model
  (``model.half()``, no autocast);
* inputs are ``torch.randn(batch, 3, res, res)`` for vision models and random
  token ids of shape ``(batch, seq)`` for language models;
* inference runs under ``torch.inference_mode()`` with the model in
  ``eval()``; training runs one full step (``zero_grad``, forward,
  cross-entropy against random labels, backward, ``torch.optim.Adam`` step),
  the Adam state being created during the warm-up;
* 3 warm-up calls, one calibration call, then N timed calls with N chosen so
  the timed window is at least 0.25 s (at least 10 calls, at most 2.5 s; when
  2.5 s allows fewer than 10 calls, at least 3), split in 3 chunks each timed
  with CUDA events on a GPU and ``time.perf_counter`` on a CPU; ``latency_ms``
  is the mean per call and ``latency_ms_chunks`` the chunk means;
* transformer decode (``mode="decode"``): a KV cache of ``seq`` tokens is
  prefilled, then 8 one-token decode steps are timed as one chunk (the cache
  grows from ``seq`` to ``seq + 7`` during the window);
* energy: NVML's total-energy counter read before and after the timed window
  (``energy_j`` per call, ``power_w`` the mean power over the window,
  ``power_w_sample`` one instantaneous NVML power reading); on a CPU the RAPL
  package counter where it is readable, else ``null``;
* memory: before each row ``gc.collect()``, ``torch.cuda.empty_cache()``,
  ``reset_peak_memory_stats()``; ``weights_mb`` is what is allocated before
  the row, ``peak_alloc_mb``/``peak_reserved_mb`` the allocator peaks,
  ``nvml_used_mb`` the device memory in use per NVML right after the timed
  window.  On a CPU: the process RSS.

:func:`collect` measures a list of work items, appends one JSON row per item
to a JSONL file as it goes (vision and transformer rows in separate files),
skips rows already present (resumable), records out-of-memory as a row with
``"oom": true``, sleeps a cooldown between rows, shows a progress bar and
stops cleanly when a time budget is spent.  With ``ray_address`` the items are
spread over a Ray cluster, one task per model spec pinned to one GPU.

Work files (:func:`load_work`) are JSON::

    {"grid": [{"mode": "infer", "dtype": "fp32", "batch": [1, 8, 32, 128]},
              {"mode": "train", "dtype": "fp32", "batch": [32]}],
     "vision": [{"spec": {"family": "resnet", "name": "resnet50", "res": 224, "src": "tv"}},
                {"spec": {...}, "batch": [1, 8], "mode": "infer", "dtype": ["fp32", "fp16"]},
                {"spec": {...}, "grid": [{"mode": "infer", "dtype": "fp16", "batch": 32}]}],
     "llm": [{"model": "gpt2", "mode": ["prefill", "decode"], "dtype": "fp16",
              "batch": [1, 8], "seq": [512]},
             {"model": "my-encoder", "model_type": "bert", "config": {...}, "causal": false,
              "mode": "forward", "batch": 8, "seq": 128}]}

A vision entry expands to the cross product of its ``mode`` x ``dtype`` x
``batch`` lists, or to its ``grid`` (default: the top-level ``grid``); an
``llm`` entry to ``mode`` x ``dtype`` x ``batch`` x ``seq``.  A plain JSON
list (or JSONL) of vision specs is accepted too, measured at the given batch
sizes in fp32 inference.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from ._errors import InvalidInputError, ModelLoadError

WARMUP = 3
MIN_WINDOW_S = 0.25
MAX_WINDOW_S = 2.5
MIN_CALLS = 10
CHUNKS = 3
DECODE_TOKENS = 8

VISION_MODES = ("infer", "train")
LLM_MODES = ("forward", "prefill", "decode")
DTYPES = ("fp32", "fp16", "bf16")
DEVICES = ("cpu", "cuda")

_MB = 2**20
_RAPL = Path("/sys/class/powercap/intel-rapl:0")


# ------------------------------------------------------------------ work items
@dataclass
class WorkItem:
    """One row to measure.

    ``spec`` is a vision spec in the data's format (``{"family", "name",
    "res", "src", "kw"}``) for vision items, or ``{"model", "model_type",
    "config", "causal"}`` for transformer items (which also carry ``seq``).
    """

    spec: dict
    batch: int
    mode: str = "infer"
    dtype: str = "fp32"
    seq: int | None = None

    @property
    def kind(self) -> str:
        return "llm" if "model" in self.spec and "src" not in self.spec else "vision"

    def key(self) -> str:
        if self.kind == "llm":
            return llm_row_key(self.spec["model"], self.mode, self.dtype, self.batch, self.seq)
        return row_key(self.spec, self.batch, self.mode, self.dtype)

    def group(self) -> str:
        """Items of one group share a model (and are measured by one Ray task)."""
        if self.kind == "llm":
            return json.dumps([self.spec["model"], self.spec.get("model_type"), self.spec.get("config")], sort_keys=True)
        return json.dumps(self.spec, sort_keys=True)

    def label(self) -> str:
        if self.kind == "llm":
            return f"{self.spec['model']} {self.mode} {self.dtype} b{self.batch} s{self.seq}"
        name = self.spec.get("name", self.spec.get("src"))
        if self.spec.get("kw"):
            name += "(" + ",".join(f"{k}={v}" for k, v in sorted(self.spec["kw"].items())) + ")"
        return f"{name}@{self.spec.get('res', 224)} {self.mode} {self.dtype} b{self.batch}"


def row_key(spec: dict, batch: int, mode: str, dtype: str) -> str:
    """Resume key of a vision row."""
    return json.dumps([spec, batch, mode, dtype], sort_keys=True)


def llm_row_key(model: str, mode: str, dtype: str, batch: int, seq: int | None) -> str:
    """Resume key of a transformer row."""
    return json.dumps(["llm", model, mode, dtype, batch, seq])


def _key_of_row(r: dict) -> str | None:
    try:
        if "spec" in r:
            return row_key(r["spec"], r["batch"], r["mode"], r["dtype"])
        if "model" in r:
            return llm_row_key(r["model"], r["mode"], r["dtype"], r["batch"], r.get("seq"))
    except KeyError:
        return None
    return None


def _as_list(v, what: str, where: str) -> list:
    if v is None:
        raise InvalidInputError(f"{where}: '{what}' is missing")
    out = list(v) if isinstance(v, (list, tuple)) else [v]
    if not out:
        raise InvalidInputError(f"{where}: '{what}' is an empty list")
    return out


def _check_positive(vals: list, what: str, where: str) -> list[int]:
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise InvalidInputError(f"{where}: {what} must be positive integers, got {v!r}")
    return [int(v) for v in vals]


def _check_choice(vals: list, choices: tuple[str, ...], what: str, where: str) -> list[str]:
    for v in vals:
        if v not in choices:
            raise InvalidInputError(f"{where}: unknown {what} {v!r}; valid: {', '.join(choices)}")
    return list(vals)


_VISION_ENTRY_KEYS = {"spec", "batch", "mode", "dtype", "grid", "note"}
_LLM_ENTRY_KEYS = {"model", "model_type", "config", "causal", "batch", "mode", "dtype", "seq", "note"}
_TOP_KEYS = {"vision", "llm", "grid", "notes", "description", "device"}


_SOURCES = ("tv", "tv_resnet", "tv_vit", "timm")  # as in costmodel.frontends._zoo
#: keys of a vision spec (``block``/``layers``: the ``tv_resnet`` source's ResNet layout)
_SPEC_KEYS = {"family", "name", "res", "src", "kw", "block", "layers"}


def _check_vision_spec(spec, where: str) -> dict:
    if not isinstance(spec, dict):
        raise InvalidInputError(f"{where}: a vision spec must be a JSON object, got {type(spec).__name__}")
    bad = set(spec) - _SPEC_KEYS
    if bad:
        raise InvalidInputError(f"{where}: unknown spec keys {sorted(bad)}; valid: {', '.join(sorted(_SPEC_KEYS))} "
                                "(constructor arguments go in 'kw')")
    src = spec.get("src")
    if src not in _SOURCES:
        raise InvalidInputError(f"{where}: spec 'src' must be one of {', '.join(_SOURCES)}, got {src!r}")
    if "name" not in spec and src not in ("tv_vit", "tv_resnet"):
        raise InvalidInputError(f"{where}: spec needs a 'name' (e.g. resnet50), got {spec!r}")
    res = spec.get("res", 224)
    if isinstance(res, bool) or not isinstance(res, int) or res <= 0:
        raise InvalidInputError(f"{where}: spec 'res' must be a positive integer, got {res!r}")
    if "kw" in spec and not isinstance(spec["kw"], dict):
        raise InvalidInputError(f"{where}: spec 'kw' must be a JSON object, got {spec['kw']!r}")
    return spec


def _grid_items(spec: dict, grid, where: str) -> list[WorkItem]:
    if not isinstance(grid, list) or not grid:
        raise InvalidInputError(f"{where}: 'grid' must be a non-empty list of {{mode, dtype, batch}} objects")
    items = []
    for j, g in enumerate(grid):
        w = f"{where} grid[{j}]"
        if not isinstance(g, dict):
            raise InvalidInputError(f"{w}: expected an object with mode, dtype and batch, got {g!r}")
        bad = set(g) - {"mode", "dtype", "batch"}
        if bad:
            raise InvalidInputError(f"{w}: unknown keys {sorted(bad)}; valid: batch, dtype, mode")
        modes = _check_choice(_as_list(g.get("mode", "infer"), "mode", w), VISION_MODES, "mode", w)
        dtypes = _check_choice(_as_list(g.get("dtype", "fp32"), "dtype", w), DTYPES, "dtype", w)
        batches = _check_positive(_as_list(g.get("batch"), "batch", w), "batch sizes", w)
        items += [WorkItem(spec, b, m, d) for m in modes for d in dtypes for b in batches]
    return items


def _llm_spec(entry: dict, where: str) -> dict:
    from .llm import resolve_llm

    model = entry.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInputError(f"{where}: 'model' must be a name (a registry name or your label), got {model!r}")
    config = entry.get("config")
    if config is None:
        try:
            s = resolve_llm(model)
        except (InvalidInputError, ModelLoadError) as e:
            raise InvalidInputError(f"{where}: {e} (or give 'model_type' and 'config')") from None
        model_type, config, causal = s.model_type, dict(s.config), s.causal
    else:
        if not isinstance(config, dict):
            raise InvalidInputError(f"{where}: 'config' must be a JSON object, got {type(config).__name__}")
        model_type = entry.get("model_type") or config.get("model_type")
        if not isinstance(model_type, str) or not model_type:
            raise InvalidInputError(f"{where}: 'model_type' is missing (the transformers model type, e.g. 'llama')")
        causal = resolve_llm(dict(config, model_type=model_type)).causal
    if "causal" in entry:
        if not isinstance(entry["causal"], bool):
            raise InvalidInputError(f"{where}: 'causal' must be true or false, got {entry['causal']!r}")
        causal = entry["causal"]
    return {"model": model, "model_type": model_type, "config": config, "causal": causal}


def _llm_items(entry: dict, where: str) -> list[WorkItem]:
    spec = _llm_spec(entry, where)
    valid_modes = LLM_MODES if spec["causal"] else ("forward",)
    default_mode = "prefill" if spec["causal"] else "forward"
    modes = _as_list(entry.get("mode", default_mode), "mode", where)
    for m in modes:
        if m not in valid_modes:
            kind = "a decoder" if spec["causal"] else "an encoder"
            raise InvalidInputError(f"{where}: mode {m!r} is not valid for {kind} ({spec['model']}); "
                                    f"valid: {', '.join(valid_modes)}")
    dtypes = _check_choice(_as_list(entry.get("dtype", "fp32"), "dtype", where), DTYPES, "dtype", where)
    batches = _check_positive(_as_list(entry.get("batch"), "batch", where), "batch sizes", where)
    seqs = _check_positive(_as_list(entry.get("seq"), "seq", where), "sequence lengths", where)
    cfg = spec["config"]
    max_pos = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    if isinstance(max_pos, int):
        for m in modes:
            extra = DECODE_TOKENS + WARMUP if m == "decode" else 0
            for s in seqs:
                if s + extra > max_pos:
                    raise InvalidInputError(f"{where}: seq {s}{' + decode tokens ' + str(extra) if extra else ''} "
                                            f"exceeds the model's {max_pos} positions")
    return [WorkItem(spec, b, m, d, s) for m in modes for d in dtypes for b in batches for s in seqs]


def parse_work(data: Any, *, batches: Iterable[int] | None = None, where: str = "work") -> list[WorkItem]:
    """Turn a work file's content (see the module doc) into work items.

    ``data`` is a ``{"vision": [...], "llm": [...]}`` object, or a plain list
    of vision specs measured at ``batches`` (default ``[1]``), fp32 inference.
    """
    if isinstance(data, dict) and not {"vision", "llm"} & set(data) and ("src" in data or "name" in data):
        data = [data]  # one spec
    if isinstance(data, list):
        if not data:
            raise InvalidInputError(f"{where}: nothing to measure: the list of specs is empty")
        bs = _check_positive(list(batches or [1]), "batch sizes", where)
        items = []
        for i, spec in enumerate(data):
            spec = _check_vision_spec(spec, f"{where}[{i}]")
            items += [WorkItem(spec, b, "infer", "fp32") for b in bs]
        return items
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: expected a JSON object with 'vision'/'llm' lists, or a list of specs")
    if batches:
        raise InvalidInputError(f"{where}: --batch applies to a plain list of specs; this work file sets "
                                "the batch sizes of every entry")
    bad = set(data) - _TOP_KEYS
    if bad:
        raise InvalidInputError(f"{where}: unknown keys {sorted(bad)}; valid: {', '.join(sorted(_TOP_KEYS))}")
    if not data.get("vision") and not data.get("llm"):
        raise InvalidInputError(f"{where}: nothing to measure: give a non-empty 'vision' and/or 'llm' list")
    items: list[WorkItem] = []
    for i, e in enumerate(data.get("vision") or []):
        w = f"{where}: vision[{i}]"
        if not isinstance(e, dict) or "spec" not in e:
            raise InvalidInputError(f"{w}: expected an object with a 'spec', got {e!r}")
        bad = set(e) - _VISION_ENTRY_KEYS
        if bad:
            raise InvalidInputError(f"{w}: unknown keys {sorted(bad)}; valid: {', '.join(sorted(_VISION_ENTRY_KEYS))}")
        spec = _check_vision_spec(e["spec"], w)
        if "grid" in e or not {"batch", "mode", "dtype"} & set(e):
            if {"batch", "mode", "dtype"} & set(e):
                raise InvalidInputError(f"{w}: give either 'grid' or batch/mode/dtype, not both")
            grid = e.get("grid", data.get("grid"))
            if grid is None:
                raise InvalidInputError(f"{w}: no batch sizes: give 'batch' (and mode/dtype), a 'grid', "
                                        "or a top-level 'grid'")
            items += _grid_items(spec, grid, w)
        else:
            items += _grid_items(spec, [{k: e[k] for k in ("mode", "dtype", "batch") if k in e}], w)
    for i, e in enumerate(data.get("llm") or []):
        w = f"{where}: llm[{i}]"
        if not isinstance(e, dict):
            raise InvalidInputError(f"{w}: expected an object with model, batch, seq, got {e!r}")
        bad = set(e) - _LLM_ENTRY_KEYS
        if bad:
            raise InvalidInputError(f"{w}: unknown keys {sorted(bad)}; valid: {', '.join(sorted(_LLM_ENTRY_KEYS))}")
        items += _llm_items(e, w)
    return items


def load_work(path: str | os.PathLike, *, batches: Iterable[int] | None = None) -> list[WorkItem]:
    """Read a work file: a JSON object (see the module doc), a JSON list or JSONL of vision specs."""
    path = Path(path)
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder; expected a JSON work file (see costmodel/data/specs/)")
    if not path.is_file():
        raise ModelLoadError(f"no such file: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"cannot read {path} as a JSON work file: {e}") from None
    try:
        if text.lstrip().startswith(("[", "{")):
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                if not text.lstrip().startswith("{"):
                    raise
                data = [json.loads(x) for x in text.splitlines() if x.strip()]  # JSONL of specs
        else:
            data = [json.loads(x) for x in text.splitlines() if x.strip()]
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{path} is neither a JSON work file, a JSON list nor JSONL of specs: {e}") from None
    return parse_work(data, batches=batches, where=str(path))


def _as_item(x, batches) -> list[WorkItem]:
    if isinstance(x, WorkItem):
        return [x]
    if isinstance(x, (tuple, list)) and len(x) in (4, 5) and isinstance(x[0], dict):
        spec, b, m, d = x[:4]
        s = x[4] if len(x) == 5 else None
        w = WorkItem(dict(spec), int(b), m, d, s)
        if w.kind == "llm":
            if "config" not in spec or "model_type" not in spec:
                w.spec = _llm_spec(dict(spec), w.label())
            if s is None:
                raise InvalidInputError(f"{w.label()}: a transformer item needs a sequence length")
            _check_choice([m], LLM_MODES, "mode", w.label())
        else:
            _check_choice([m], VISION_MODES, "mode", w.label())
        _check_choice([d], DTYPES, "dtype", w.label())
        return [w]
    if isinstance(x, dict):
        return parse_work([x], batches=batches)
    raise InvalidInputError(f"expected a work item (spec, batch, mode, dtype[, seq]) or a vision spec, got {x!r}")


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


# ----------------------------------------------------------------- models
_CACHE: dict[str, Any] = {"key": None, "model": None, "info": None}


def _drop_model() -> None:
    _CACHE.update(key=None, model=None, info=None)
    gc.collect()


def _torch_dtype(dtype: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def _convert(model, dtype: str):
    if dtype == "fp16":
        return model.half()
    return model.to(_torch_dtype(dtype))


def _build_vision(spec: dict, dev):
    try:
        from .frontends._zoo import build_zoo_model
    except ImportError:  # pragma: no cover - a partial install: build from the spec directly
        return _build_vision_direct(spec, dev)
    zm = build_zoo_model(spec, device=str(dev))
    return zm.module, tuple(zm.input_shape)


def _build_vision_direct(spec: dict, dev):  # pragma: no cover - used only without costmodel.frontends
    import torch

    src, kw, res = spec["src"], dict(spec.get("kw") or {}), int(spec.get("res", 224))
    with torch.device(dev):
        if src == "tv":
            import torchvision

            m = torchvision.models.get_model(spec["name"], weights=None, **kw)
        elif src == "tv_resnet":
            from torchvision.models import resnet

            block = getattr(resnet, spec.get("block", kw.pop("block", "Bottleneck")))
            m = resnet.ResNet(block, spec.get("layers", kw.pop("layers", [3, 4, 6, 3])), **kw)
        elif src == "tv_vit":
            from torchvision.models.vision_transformer import VisionTransformer

            kw.setdefault("image_size", res)
            m = VisionTransformer(**kw)
        else:
            import timm

            m = timm.create_model(spec["name"], pretrained=False, **kw)
    return m.eval(), (3, res, res)


_HF_DROP = {"transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype", "model_type"}


def _build_llm(spec: dict, dev):
    import torch

    try:
        import transformers
    except ImportError:
        raise InvalidInputError("measuring a transformer needs the 'transformers' package: "
                                "pip install 'costmodel[llm]'") from None
    from .features import check_model_type

    check_model_type(spec["model_type"])
    kw = {k: v for k, v in spec["config"].items() if k not in _HF_DROP}
    try:
        cfg = transformers.AutoConfig.for_model(spec["model_type"], **kw)
    except ValueError as e:
        raise InvalidInputError(f"{spec['model']}: invalid {spec['model_type']} config: {e}") from None
    auto = transformers.AutoModelForCausalLM if spec["causal"] else transformers.AutoModel
    with torch.device(dev):
        model = auto.from_config(cfg)
    model = model.to(device=dev, dtype=torch.float32).eval()
    used = {k: v for k, v in model.config.to_dict().items() if v is None or isinstance(v, (bool, int, float, str))}
    used["model_type"] = spec["model_type"]
    return model, {"config": used, "vocab": int(cfg.vocab_size)}


def _model(item: WorkItem, d: _Device):
    """The model of ``item`` on ``d``: built fp32 with random weights, then converted to the
    item's dtype.  Consecutive inference rows of one spec and dtype reuse it; a training row
    or another dtype gets a fresh one (no tensor cached by an inference call, say LeViT's
    attention-bias cache, leaks into training or into another dtype)."""
    key = json.dumps([item.group(), str(d.dev), item.dtype, item.mode == "train"])
    if _CACHE["key"] != key:
        _drop_model()
        d.clear()
        if item.kind == "llm":
            model, info = _build_llm(item.spec, d.dev)
        else:
            model, shape = _build_vision(item.spec, d.dev)
            model = model.to(d.dev)
            info = {"input": shape}
        if item.dtype != "fp32":
            model = _convert(model, item.dtype)
        _CACHE.update(key=key, model=model, info=info)
    return _CACHE["model"], _CACHE["info"]


def check_buildable(items: Iterable[WorkItem]) -> None:
    """Build the model of every distinct spec in ``items`` on the meta device (no weights, no
    memory); raise :class:`InvalidInputError` naming the first spec that cannot be built (an
    unknown model or keyword, an invalid transformer config).  Failures that only a real
    device shows are left to the measurement."""
    import warnings

    seen: set[str] = set()
    for it in items:
        key = it.group()
        if key in seen:
            continue
        seen.add(key)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if it.kind == "llm":
                    _check_llm_buildable(it.spec)
                else:
                    from .frontends._zoo import build_zoo_model

                    build_zoo_model(it.spec)
        except (InvalidInputError, ModelLoadError) as e:
            raise InvalidInputError(f"{it.label()}: {e}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            msg = " ".join(str(e).split())
            raise InvalidInputError(f"{it.label()}: cannot build this model: {type(e).__name__}: {msg}") from None


def _check_llm_buildable(spec: dict) -> None:
    import logging

    from .llm import llm_features, resolve_llm
    from .features import check_model_type

    check_model_type(spec["model_type"])
    llm_features(resolve_llm(dict(spec["config"], model_type=spec["model_type"])))
    try:
        import transformers
    except ImportError:
        return  # measuring it says which extra to install
    import torch

    hf_log = logging.getLogger("transformers")
    level = hf_log.level
    hf_log.setLevel(logging.ERROR)
    try:
        kw = {k: v for k, v in spec["config"].items() if k not in _HF_DROP}
        cfg = transformers.AutoConfig.for_model(spec["model_type"], **kw)
        auto = transformers.AutoModelForCausalLM if spec["causal"] else transformers.AutoModel
        with torch.device("meta"):
            auto.from_config(cfg)
    except (TypeError, ValueError, KeyError, AttributeError):
        raise
    except Exception as e:  # noqa: BLE001 - transformers' config validation has its own exception types
        cause = e.__cause__ or e
        raise InvalidInputError(f"invalid {spec['model_type']} config: {type(cause).__name__}: "
                                f"{' '.join(str(cause).split())}") from None
    finally:
        hf_log.setLevel(level)


# ---------------------------------------------------------------- protocol
def calls_for(t_call_s: float) -> int:
    """Timed calls for one call of ``t_call_s`` seconds (protocol above)."""
    n = max(MIN_CALLS, math.ceil(MIN_WINDOW_S / max(t_call_s, 1e-9)))
    if n * t_call_s > MAX_WINDOW_S:
        n = max(3, int(MAX_WINDOW_S // max(t_call_s, 1e-9)))
    return n


def _chunk_sizes(n: int) -> list[int]:
    """Calls per chunk: ``n`` split in 3 (``n >= 3`` always)."""
    return [n // CHUNKS + (1 if i < n % CHUNKS else 0) for i in range(CHUNKS)]


def _time_once(step: Callable[[], Any], d: _Device) -> float:
    if d.cuda:
        a, b = d.torch.cuda.Event(enable_timing=True), d.torch.cuda.Event(enable_timing=True)
        d.sync()
        a.record()
        step()
        b.record()
        d.sync()
        return a.elapsed_time(b) / 1e3
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


def _timed_window(step: Callable[[], Any], sizes: list[int], d: _Device) -> dict:
    """Run ``sum(sizes)`` calls in chunks; time each chunk and meter the energy of the window."""
    n = sum(sizes)
    d.sync()
    e0 = d.meter.energy_j() if d.cuda else d.meter.read()
    t0 = time.perf_counter()
    if d.cuda:
        events = []
        for k in sizes:
            a, b = d.torch.cuda.Event(enable_timing=True), d.torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(k):
                step()
            b.record()
            events.append((a, b))
        d.sync()
        window = time.perf_counter() - t0
        e1 = d.meter.energy_j()
        chunks = [a.elapsed_time(b) / k for (a, b), k in zip(events, sizes)]
    else:
        chunks = []
        for k in sizes:
            t = time.perf_counter()
            for _ in range(k):
                step()
            chunks.append((time.perf_counter() - t) / k * 1e3)
        window = time.perf_counter() - t0
        e1 = d.meter.read()
    energy = d.meter.delta(e0, e1)
    latency = sum(c * k for c, k in zip(chunks, sizes)) / n
    out = {
        "iters": n,
        "latency_ms": latency,
        "latency_ms_chunks": [round(c, 5) for c in chunks],
        "window_s": round(window, 4),
        "energy_j": energy / n if energy is not None else None,
        "power_w": energy / window if energy is not None and window > 0 else None,
    }
    if d.cuda:
        out["power_w_sample"] = d.meter.power_w()
    return out


def _protocol(step: Callable[[], Any], d: _Device) -> dict:
    for _ in range(WARMUP):
        step()
    t_cal = _time_once(step, d)
    return _timed_window(step, _chunk_sizes(calls_for(t_cal)), d)


def _logits(out):
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):  # (logits, aux) of Inception/GoogLeNet in training
        return out[0]
    return out


def _vision_step(model, x, mode: str, batch: int):
    import torch

    if mode == "infer":
        return lambda: model(x)
    model.train()
    opt = torch.optim.Adam(model.parameters())
    labels: list = []

    def step():
        opt.zero_grad()
        logits = _logits(model(x))
        if not labels:
            labels.append(torch.randint(0, logits.shape[-1], (batch,), device=x.device))
        torch.nn.functional.cross_entropy(logits, labels[0]).backward()
        opt.step()

    step.opt = opt  # freed with the step
    return step


def _cache_arg(model) -> str:
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _out_cache(out):
    """The KV cache of a model output (``cache`` in newer transformers, ``past_key_values`` before)."""
    c = out.get("cache") if hasattr(out, "get") else None
    return c if c is not None else out["past_key_values"]


def _measure_rows(item: WorkItem, d: _Device, ops: bool = False) -> dict:
    import torch

    model, info = _model(item, d)
    d.clear()
    weights_mb = torch.cuda.memory_allocated(d.dev) / _MB if d.cuda else None
    rss0 = None if d.cuda else _rss_mb()
    b = item.batch
    if item.kind == "vision":
        x = torch.randn(b, *info["input"], device=d.dev, dtype=_torch_dtype(item.dtype))
        step = _vision_step(model, x, item.mode, b)
        try:
            if item.mode == "infer":
                with torch.inference_mode():
                    t = _protocol(step, d)
                    prof = _profile_ops(model, x, step, item, d, t) if ops else None
            else:
                t = _protocol(step, d)
                prof = _profile_ops(model, x, step, item, d, t) if ops else None
        finally:
            if item.mode == "train":
                model.zero_grad(set_to_none=True)
                model.eval()
        head = {"spec": item.spec, "mode": item.mode, "dtype": item.dtype, "batch": b, "input": list(info["input"]),
                "params": sum(p.numel() for p in model.parameters())}
    else:
        seq = item.seq
        ids = torch.randint(0, info["vocab"], (b, seq), device=d.dev)
        causal = item.spec["causal"]
        with torch.inference_mode():
            if item.mode == "decode":
                arg = _cache_arg(model)
                tok = torch.randint(0, info["vocab"], (b, 1), device=d.dev)

                def prefill():
                    return _out_cache(model(input_ids=ids, use_cache=True))

                cache = prefill()
                for _ in range(WARMUP):
                    model(input_ids=tok, use_cache=True, **{arg: cache})
                del cache
                cache = prefill()  # a fresh cache of `seq` tokens for the timed steps
                t = _timed_window(lambda: model(input_ids=tok, use_cache=True, **{arg: cache}), [DECODE_TOKENS], d)
                prof = ([], {"skipped": "decode steps are not profiled per operator yet"}) if ops else None
            else:
                kw = {"use_cache": False} if causal else {}
                t = _protocol(lambda: model(input_ids=ids, **kw), d)
                prof = _profile_ops(model, {"input_ids": ids, **kw}, lambda: model(input_ids=ids, **kw), item, d,
                                    t) if ops else None
        lat_s = t["latency_ms"] / 1e3
        head = {"model": item.spec["model"], "model_type": item.spec["model_type"], "config": info["config"],
                "causal": causal, "mode": item.mode, "dtype": item.dtype, "batch": b, "seq": seq,
                "params": sum(p.numel() for p in model.parameters())}
        t["throughput_samples_s"] = b / lat_s
        t["tokens_s"] = b * (1 if item.mode == "decode" else seq) / lat_s
    row = dict(head, **t)
    if d.cuda:
        row.update(weights_mb=weights_mb, peak_alloc_mb=torch.cuda.max_memory_allocated(d.dev) / _MB,
                   peak_reserved_mb=torch.cuda.max_memory_reserved(d.dev) / _MB, nvml_used_mb=d.meter.used_mb())
    else:
        rss = _rss_mb()
        row.update(rss_mb=rss, rss_delta_mb=rss - rss0, nvml_used_mb=None, threads=torch.get_num_threads())
        row.pop("power_w_sample", None)
    if d.energy_error():
        row["energy_error"] = d.energy_error()
    if d.cuda and row.get("nvml_used_mb") is None:
        row["memory_error"] = d.memory_error() or "NVML did not report the memory in use"
    row["device"] = d.name
    row["costmodel_version"] = _version()
    if prof is not None:
        row["ops"] = prof[1]
        row["_ops"] = prof[0]
    return row


def _profile_ops(model, inputs, step, item: WorkItem, d: _Device, timed: dict) -> tuple[list[dict], dict]:
    """Per-operator rows of one workload (see :mod:`costmodel.opprofile`)."""
    from .frontends import from_torch
    from .opprofile import profile_step

    import warnings

    import torch

    training = item.mode == "train"
    # the graph a user gets from the trace frontend: built outside the step's inference mode
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")  # unsupported-op notes: the rows name every operator anyway
        graph = from_torch(model, inputs, mode="training" if training else "inference", method="trace")
    rows, summary = profile_step(step, graph, cuda=d.cuda, sync=d.sync, unprofiled_ms=timed["latency_ms"])
    if training:
        model.train()  # from_torch restores the mode it found; the step trains
    return rows, summary


def _version() -> str:
    from . import __version__

    return __version__


def measure(spec: dict | WorkItem, batch: int | None = None, *, device: str = "cuda", mode: str | None = None,
            dtype: str = "fp32", seq: int | None = None, threads: int | None = None, ops: bool = False) -> dict:
    """Measure one workload with the data protocol; returns a row in the data's format.

    Args:
        spec: a vision spec (``{"family", "name", "res", "src"}``), a transformer
            workload (``{"model": "gpt2"}``, resolved through the registry, or
            ``{"model", "model_type", "config", "causal"}``), or a :class:`WorkItem`.
        batch: batch size.
        device: ``"cuda"``, ``"cuda:N"`` or ``"cpu"``.
        mode: ``infer``/``train`` (vision, default ``infer``) or
            ``forward``/``prefill``/``decode`` (transformers; default
            ``prefill`` for decoders, ``forward`` for encoders).
        dtype: ``fp32``, ``fp16`` or ``bf16``.
        seq: sequence length (transformers; for ``decode`` the KV-cache length).
        threads: CPU threads for torch (CPU only).
        ops: also profile the step per operator (:mod:`costmodel.opprofile`):
            the row gets an ``ops`` summary and, under ``_ops``, the operator rows.

    Raises ``torch.cuda.OutOfMemoryError``/``MemoryError`` when the workload
    does not fit (:func:`collect` turns those into ``"oom"`` rows).
    """
    if isinstance(spec, WorkItem):
        item = spec
    else:
        if batch is None:
            raise InvalidInputError("measure() needs a batch size")
        if isinstance(spec, dict) and "model" in spec and "src" not in spec:
            entry = {k: v for k, v in spec.items() if k in ("model", "model_type", "config", "causal")}
            entry.update(batch=batch, seq=seq, dtype=dtype)
            if mode is not None:
                entry["mode"] = mode
            if seq is None:
                raise InvalidInputError(f"measuring {spec['model']} needs seq (the sequence length)")
            (item,) = _llm_items(entry, str(spec["model"]))
        else:
            (item,) = _grid_items(_check_vision_spec(spec, "spec"), [{"mode": mode or "infer", "dtype": dtype,
                                                                       "batch": batch}], "spec")
    d = _device(normalize_device(device))
    if threads and not d.cuda:
        d.torch.set_num_threads(threads)
    return _measure_rows(item, d, ops=ops)


def measure_cpu(spec: dict, batch: int, *, mode: str = "infer", dtype: str = "fp32", threads: int | None = None) -> dict:
    """Measure one vision spec on this CPU (see :func:`measure`)."""
    return measure(spec, batch, device="cpu", mode=mode, dtype=dtype, threads=threads)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "alloc_failed" in msg)


def _oom_row(item: WorkItem, device_name: str, err: str) -> dict:
    if item.kind == "llm":
        head = {k: item.spec[k] for k in ("model", "model_type", "config", "causal")}
        head.update(mode=item.mode, dtype=item.dtype, batch=item.batch, seq=item.seq)
    else:
        head = {"spec": item.spec, "mode": item.mode, "dtype": item.dtype, "batch": item.batch}
    return dict(head, oom=True, error=err[:300], device=device_name, costmodel_version=_version())


def _free_after_error(device: str) -> None:
    _drop_model()
    torch = sys.modules.get("torch")
    if torch is not None and device.startswith("cuda") and torch.cuda.is_available():
        try:
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001 - a broken context stays broken; keep going
            pass
        torch.cuda.empty_cache()


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(int(device.split(":")[1]) if ":" in device else None)
    return cpu_name()


def measure_safe(item: WorkItem, device: str, measure_fn: Callable | None = None) -> tuple[dict | None, str | None]:
    """``(row, None)``, an ``oom`` row, or ``(None, error)`` for any other failure."""
    fn = measure_fn or measure
    row = err = None
    oom = False
    try:
        row = fn(item, device=device)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - one failing model must not end a long run
        oom = _is_oom(e)
        err = f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__
    if err is not None:  # outside the except block: the traceback's tensors are gone
        _free_after_error(device)
        if oom:
            return _oom_row(item, _device_name(device), err), None
    return row, err


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
        from .devices import get_device

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


# ------------------------------------------------------------------ collect
def output_paths(output: str | os.PathLike) -> dict[str, Path]:
    """Where vision and transformer rows go: ``output`` for one kind, a sibling for the other
    (``vision*.jsonl`` <-> ``llm*.jsonl``, else ``NAME_llm.jsonl`` for transformer rows)."""
    out = Path(output)
    name = out.name
    if "llm" in name and "vision" not in name:
        return {"llm": out, "vision": out.with_name(name.replace("llm", "vision", 1))}
    if "vision" in name:
        return {"vision": out, "llm": out.with_name(name.replace("vision", "llm", 1))}
    return {"vision": out, "llm": out.with_name(f"{out.stem}_llm{out.suffix or '.jsonl'}")}


def _done_keys(paths: Iterable[Path]) -> set[str]:
    done = set()
    for p in paths:
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            if not line.strip():
                continue
            try:
                k = _key_of_row(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted run: measured again
            if k:
                done.add(k)
    return done


class _Writer:
    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self.files: dict[str, Any] = {}

    def _open(self, kind: str):
        f = self.files.get(kind)
        if f is None:
            p = self.paths[kind]
            p.parent.mkdir(parents=True, exist_ok=True)
            # a previous run cut mid-line: start on a fresh line
            torn = p.exists() and p.stat().st_size > 0 and not p.read_bytes().endswith(b"\n")
            f = self.files[kind] = p.open("a")
            if torn:
                f.write("\n")
        return f

    def write_text(self, kind: str, text: str) -> None:
        f = self._open(kind)
        f.write(text)
        f.flush()
        os.fsync(f.fileno())

    def write(self, kind: str, row: dict) -> None:
        self.write_text(kind, json.dumps(row) + "\n")

    def write_many(self, kind: str, rows: list[dict]) -> None:
        """All of ``rows`` in one write (the operator rows of one run)."""
        self.write_text(kind, "".join(json.dumps(r) + "\n" for r in rows))

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def ops_path(output: str | os.PathLike) -> Path:
    """Where ``collect(..., ops=True)`` writes operator rows: ``ops.jsonl`` beside ``output``."""
    return Path(output).with_name("ops.jsonl")


def _op_row(item: WorkItem, row: dict, op: dict) -> dict:
    """An operator row with the fields that name its run (``key`` joins it to the model row)."""
    head = {"key": item.key(), "model": item.spec.get("name") or item.spec.get("model"),
            "family": item.spec.get("family", item.spec.get("model_type")), "mode": item.mode,
            "dtype": item.dtype, "batch": item.batch}
    if item.seq is not None:
        head["seq"] = item.seq
    head["device"] = row.get("device")
    return {**head, **op}


def _drop_orphan_ops(path: Path, done: set[str]) -> None:
    """Remove operator rows whose model row was never written (a run cut between the two)."""
    if not path.exists():
        return
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            k = json.loads(line).get("key")
        except (json.JSONDecodeError, AttributeError):
            dropped += 1
            continue
        if k in done:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ops-")
        with os.fdopen(fd, "w") as f:
            f.write("".join(x + "\n" for x in keep))
        os.replace(tmp, path)


def _warn(msg: str, bar=None) -> None:
    if bar is not None:
        bar.write(f"costmodel: warning: {msg}", file=sys.stderr)
    else:
        print(f"costmodel: warning: {msg}", file=sys.stderr)


def _bar(total: int, desc: str, progress: bool):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="row", file=sys.stderr)


def collect(work: Iterable, batches: Iterable[int] | str | os.PathLike | None = None,
            output: str | os.PathLike | None = None, *, device: str = "cpu", budget_s: float | None = None,
            cooldown_s: float = 0.5, progress: bool = True, limit: int | None = None, ray_address: str | None = None,
            measure_fn: Callable | None = None, stats: dict | None = None,
            clock: Callable[[], float] | None = None, ops: bool = False, threads: int | None = None) -> int:
    """Measure every work item not yet in the output; returns the rows written.

    Args:
        work: :class:`WorkItem` objects, ``(spec, batch, mode, dtype[, seq])``
            tuples, or vision specs (measured at ``batches``, fp32 inference).
        batches: batch sizes for plain vision specs (``collect(items, out)``
            works too).
        output: JSONL file; rows already there are skipped.  Transformer rows
            go to a sibling file (:func:`output_paths`).  ``hardware.json`` is
            written beside it on first use.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        budget_s: stop (between rows) once this many seconds are spent; a row
            is not started when the mean duration of the rows so far would
            take the run past the budget.
        cooldown_s: sleep between rows.
        limit: measure at most this many rows.
        ray_address: run on a Ray cluster (``"auto"``, ``"ray://host:10001"``,
            ``"local"`` to start one here): one task per model spec, each
            pinned to one GPU (``num_gpus=1``) on ``cuda``, one CPU on ``cpu``.
        measure_fn: replaces :func:`measure` (called as ``fn(item, device=...)``).
        stats: filled with ``written``, ``skipped`` (already measured), ``oom``,
            ``failed`` (label -> error), ``left`` (not measured: budget/limit),
            ``budget_stopped`` (True when the budget ended the run early).
        clock: seconds for the budget (default ``time.monotonic``).
        ops: also profile every workload per operator: the operator rows go to
            ``ops.jsonl`` beside ``output`` (:mod:`costmodel.opprofile`), each
            model row gets an ``ops`` summary, and ``hardware.json`` gets the
            device's measured GEMM rate and copy bandwidth.  Operator rows of a
            run cut before its model row was written are dropped on resume.
        threads: torch CPU threads (CPU only; recorded in every row).

    Before measuring, every model to measure is built once on the meta device
    (no memory, no weights), so a spec that cannot be built (an unknown model,
    an unknown keyword in ``kw``, an invalid transformer config) is an
    :class:`~costmodel.InvalidInputError` before the first row, not a failure
    per row after a long run.
    """
    if output is None:
        if not isinstance(batches, (str, os.PathLike)):
            raise InvalidInputError("collect() needs an output path")
        output, batches = batches, None
    device = normalize_device(device)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InvalidInputError(f"threads must be a positive integer, got {threads!r}")
    if ops and ray_address:
        raise InvalidInputError("per-operator profiling (ops=True, --ops) runs in this process; it cannot go to Ray")
    if budget_s is not None and budget_s <= 0:
        raise InvalidInputError(f"budget must be > 0 seconds, got {budget_s}")
    if cooldown_s < 0:
        raise InvalidInputError(f"cooldown must be >= 0 seconds, got {cooldown_s}")
    items: list[WorkItem] = []
    for x in work:
        items += _as_item(x, batches)
    paths = output_paths(output)
    done = _done_keys(paths.values())
    if ops:
        paths["ops"] = ops_path(output)
        _drop_orphan_ops(paths["ops"], done)
    todo, seen = [], set(done)
    for it in items:
        k = it.key()
        if k not in seen:
            seen.add(k)
            todo.append(it)
    st = stats if stats is not None else {}
    st.update(written=0, skipped=len(items) - len(todo), oom=0, failed={}, left=0, budget_stopped=False)
    if limit is not None:
        st["left"] = max(0, len(todo) - limit)
        todo = todo[:limit]
    if not todo:
        return 0
    check_buildable(todo)
    clock = clock or time.monotonic
    if ray_address:
        return _collect_ray(todo, paths, device, ray_address, budget_s, cooldown_s, progress, st, clock)
    if device.startswith("cuda"):
        check_cuda(device)
    if threads is not None and not device.startswith("cuda"):
        import torch

        torch.set_num_threads(threads)
    hw = paths["vision"].parent / "hardware.json"
    if not hw.exists():
        hw.parent.mkdir(parents=True, exist_ok=True)
        hw.write_text(_hardware_json(device))
    if ops:
        info = json.loads(hw.read_text())
        if "roofline" not in info:
            from .opprofile import measure_roofline

            info["roofline"] = measure_roofline(device)
            hw.write_text(json.dumps(info, indent=1))
    if measure_fn is None and ops:
        measure_fn = lambda item, device: measure(item, device=device, ops=True)  # noqa: E731
    writer = _Writer(paths)
    bar = _bar(len(todo), f"measuring ({device})", progress)
    start = clock()
    durations: list[float] = []
    try:
        for i, it in enumerate(todo):
            if budget_s is not None:
                spent = clock() - start
                est = sum(durations) / len(durations) if durations else 0.0
                if spent + est > budget_s:
                    st["left"] += len(todo) - i
                    st["budget_stopped"] = True
                    _warn(f"time budget of {budget_s:g} s reached: {len(todo) - i} rows left for a later run", bar)
                    break
            if bar is not None:
                bar.set_postfix_str(it.label(), refresh=False)
            t0 = clock()
            row, err = measure_safe(it, device, measure_fn)
            durations.append(clock() - t0)
            if row is not None:
                op_rows = row.pop("_ops", None)
                if op_rows:
                    writer.write_many("ops", [_op_row(it, row, r) for r in op_rows])
                writer.write(it.kind, row)
                st["written"] += 1
                if row.get("oom"):
                    st["oom"] += 1
                    _warn(f"out of memory: {it.label()} (recorded as an oom row)", bar)
            else:
                st["failed"][it.label()] = err
                _warn(f"skipped {it.label()}: {err}", bar)
            if bar is not None:
                bar.update(1)
            if cooldown_s and i + 1 < len(todo):
                time.sleep(cooldown_s)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
        _drop_model()
    return st["written"]


# ---------------------------------------------------------------------- ray
def _ray_task(items: list[WorkItem], device: str, cooldown_s: float) -> dict:
    """One Ray task: the rows of one model spec, measured in sequence on this worker's device."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"rows": [], "failed": {}, "hw": None}
    dev = "cuda" if device.startswith("cuda") else "cpu"  # Ray pins the task's GPU as cuda:0
    try:
        out["hw"] = json.loads(_hardware_json(dev))
    except Exception as e:  # noqa: BLE001 - report, measure anyway
        out["hw_error"] = f"{type(e).__name__}: {e}"
    try:
        for i, it in enumerate(items):
            row, err = measure_safe(it, dev)
            if row is not None:
                out["rows"].append((it.kind, row))
            else:
                out["failed"][it.label()] = err
            if cooldown_s and i + 1 < len(items):
                time.sleep(cooldown_s)
    finally:
        _drop_model()
    out["seconds"] = time.perf_counter() - t0
    return out


def _ray_init(ray, address: str) -> bool:
    """Connect (or start a local instance); True when this call started it."""
    if ray.is_initialized():
        return False
    if address == "local":
        # workers import costmodel from where this process does
        root = str(Path(__file__).resolve().parent.parent)
        pp = os.pathsep.join(x for x in (root, os.environ.get("PYTHONPATH")) if x)
        ray.init(include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": pp}}, log_to_driver=True)
    else:
        try:
            ray.init(address=address)
        except Exception as e:  # noqa: BLE001 - a bad address: one line, not a traceback
            raise InvalidInputError(f"cannot connect to the Ray cluster at {address!r}: {type(e).__name__}: {e}; "
                                    "give 'auto', 'ray://HOST:10001' or 'local'") from None
    return True


def _collect_ray(todo: list[WorkItem], paths: dict[str, Path], device: str, address: str, budget_s, cooldown_s,
                 progress: bool, st: dict, clock: Callable[[], float] = time.monotonic) -> int:
    try:
        import ray
    except ImportError:
        raise InvalidInputError("--ray needs the 'ray' package: pip install 'costmodel[ray]'") from None
    cuda = device.startswith("cuda")
    started = _ray_init(ray, address)
    try:
        res = ray.cluster_resources()
        slots = int(res.get("GPU", 0)) if cuda else int(res.get("CPU", 0))
        if slots < 1:
            raise InvalidInputError(f"no CUDA device in the Ray cluster ({address}): resources {res}" if cuda
                                    else f"no CPU in the Ray cluster ({address}): resources {res}")
        # one task per model spec; on GPUs a fresh worker process per task, so an
        # idle worker's CUDA context never sits in another task's NVML reading
        opts = {"num_cpus": 1, "num_gpus": 1, "max_calls": 1} if cuda else {"num_cpus": 1}
        task = ray.remote(**opts)(_ray_task)
        groups: dict[str, list[WorkItem]] = {}
        for it in todo:
            groups.setdefault(it.group(), []).append(it)
        queue = list(groups.values())
        hw = paths["vision"].parent / "hardware.json"
        writer = _Writer(paths)
        bar = _bar(len(todo), f"measuring ({device}, ray)", progress)
        start = clock()
        per_row: list[float] = []
        running: dict[Any, list[WorkItem]] = {}
        try:
            while queue or running:
                while queue and len(running) < slots:
                    if budget_s is not None:
                        est = (sum(per_row) / len(per_row)) * len(queue[0]) if per_row else 0.0
                        if clock() - start + est > budget_s:
                            left = sum(len(g) for g in queue)
                            st["left"] += left
                            st["budget_stopped"] = True
                            _warn(f"time budget of {budget_s:g} s reached: {left} rows left for a later run", bar)
                            queue = []
                            break
                    g = queue.pop(0)
                    running[task.remote(g, device, cooldown_s)] = g
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=1)
                ref = ready[0]
                g = running.pop(ref)
                try:
                    res_ = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a crashed worker: its rows are skipped
                    err = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    for it in g:
                        st["failed"][it.label()] = err
                        _warn(f"skipped {it.label()}: {err}", bar)
                    if bar is not None:
                        bar.update(len(g))
                    continue
                if res_.get("hw") and not hw.exists():
                    hw.parent.mkdir(parents=True, exist_ok=True)
                    hw.write_text(json.dumps(res_["hw"], indent=1))
                for kind, row in res_["rows"]:
                    writer.write(kind, row)
                    st["written"] += 1
                    if row.get("oom"):
                        st["oom"] += 1
                for label, err in res_["failed"].items():
                    st["failed"][label] = err
                    _warn(f"skipped {label}: {err}", bar)
                per_row.append(res_.get("seconds", 0.0) / max(len(g), 1))
                if bar is not None:
                    bar.update(len(g))
        finally:
            writer.close()
            if bar is not None:
                bar.close()
    finally:
        if started:
            ray.shutdown()
    return st["written"]


__all__ = [
    "DTYPES", "LLM_MODES", "VISION_MODES", "WorkItem", "calls_for", "check_cuda", "collect", "cpu_name",
    "hardware_description", "load_work", "measure", "measure_cpu", "measure_safe", "normalize_device",
    "output_paths", "parse_work", "row_key",
]  # fmt: skip
