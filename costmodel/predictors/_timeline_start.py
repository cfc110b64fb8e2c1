"""The timeline's fit settings, where its fit starts, and the intervals it attaches: helpers of
:mod:`._timeline` that need none of its classes."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._errors import InvalidInputError
from ._base import conformal_quantile
from ._optable import _HOST_INDEX, FEATURE_NAMES, HOST_CLASSES, OpTable


#: the fit's loss on the log-latency error: ``l1`` (the default) or ``l2``
LOSSES = ("l1", "l2")
#: the operand-dtype features (part of what :attr:`TimelineConfig.host_blind` holds by default)
DTYPE_FEATURES = ("dtype_fp32", "dtype_fp16", "dtype_bf16")
#: the features that depend on the GPU (its roofline, SM count and figures; the rest of
#: :attr:`TimelineConfig.host_blind`'s default): hidden from the host network, they keep the host lane
#: of one graph the same on every GPU, as a host that dispatches it is the same machine
DEVICE_FEATURES = ("log_bound_us", "compute_over_memory", "wave_efficiency",
                   "hw_log_peak_tflops", "hw_log_bandwidth_gbps", "hw_sm_count")


def mlp(in_dim: int, hidden: int):
    """The two-hidden-layer SiLU network both lanes use (one output)."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
        torch.nn.Linear(hidden, 1),
    )


def blind_inputs(layer, names: Sequence[str]) -> None:
    """Make a first ``torch.nn.Linear`` ignore the features ``names``: their weights start at zero and
    their gradient is masked, so every optimizer step (weight decay included) leaves them at zero and
    the saved weights carry the blindness into prediction."""
    import torch

    cols = [FEATURE_NAMES.index(n) for n in names]
    if not cols:
        return
    with torch.no_grad():
        layer.weight[:, cols] = 0.0

    def mask(grad):
        grad = grad.clone()
        grad[:, cols] = 0.0
        return grad

    layer.weight.register_hook(mask)


#: said of a graph with neither a module call count (the PyTorch frontend records one) nor module scopes
#: (a Relax module, an ONNX file without them), whose host lane then counts no Python ``nn.Module`` calls
NO_SCOPES_NOTE = ("the graph records no Python module calls (neither a call count nor module scopes: a Relax module, "
                  "an ONNX file without scopes): the host lane counts none, which PyTorch eager makes (resnet50 at "
                  "batch 1: about a quarter of its latency); featurize the nn.Module for the PyTorch-eager number")
NO_TRAINABLE_NOTE = ("the graph records no count of the parameter tensors a training step updates (built before "
                     "frontend version 11): the optimizer's host cost counts its operators' parameter operands, "
                     "which include buffers and miss weights read through a view; rebuild the graph for the count")


def row_op(graph, node: int, host_class) -> str:
    """What a row of the per-operator breakdowns is called: the ATen name of the operator it costs, or,
    for a row without one, ``extra kernel launches`` (the kernels operators launch beyond their first)
    or ``optimizer`` (the update of a training step)."""
    if node >= 0:
        return graph.nodes[node].op
    return "extra kernel launches" if host_class == _HOST_INDEX["launch"] else "optimizer"


def lane_notes(graph, scopes: set, mode: str) -> list[str]:
    """What the host lane of ``graph`` had to assume for want of a record (``scopes``: its nodes' scopes)."""
    notes = []
    if graph.nodes and "module_calls" not in graph.meta and not (scopes - {"", None}):
        notes.append(NO_SCOPES_NOTE)
    if mode == "training" and "trainable_tensors" not in graph.meta:
        notes.append(NO_TRAINABLE_NOTE)
    return notes


@dataclass
class TimelineConfig:
    """How :class:`~costmodel.predictors.TimelinePredictor` is fitted (saved with its artifact)."""

    hidden: int = 32
    host_hidden: int = 16
    epochs: int = 400
    lr: float = 3e-3
    weight_decay: float = 1e-3
    seed: int = 0
    #: ``l1``: mean absolute log error (the median, what MAPE scores; robust to rows measured in a
    #: host's slow spell); ``l2``: mean squared log error, the fit before it
    loss: str = "l1"
    #: weight of the streaming prior (0, the default: none): in the fit, a large elementwise or activation
    #: kernel (forward, memory-bound, past the device's L2 cache) is pulled toward the efficiency the
    #: device's measured copy bandwidth reaches at that size (see :func:`streaming_targets`; off because
    #: the benchmark's evidence is split, docs/results.md "A streaming prior")
    stream_prior: float = 0.0
    #: weight of the per-operator GPU labels in the fit (0: whole-model rows only); see
    #: :mod:`costmodel.predictors._timeline_ops`
    op_weight: float = 0.0
    #: features the host network does not see (its first layer's weights on them are held at zero). By
    #: default the operand dtype, since dispatching an operator costs the host the same whatever the
    #: dtype and the kernels a dtype adds are rows of their own (:mod:`._launches`); fitted to the
    #: packaged rows, a dtype input let fp16's scattered host-bound labels set an fp16 host cost that
    #: other architectures do not share (docs/results.md, "A host lane blind to the dtype"). And the
    #: GPU-dependent features, so that one graph's host lane does not change with the GPU it is asked about
    host_blind: tuple[str, ...] = DTYPE_FEATURES + DEVICE_FEATURES
    #: features the efficiency (device) network does not see, held at zero the same way
    device_blind: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ("host_blind", "device_blind"):
            names = getattr(self, field)
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise InvalidInputError(f"{field} must be a sequence of feature names, got {names!r}")
            setattr(self, field, tuple(names))
            bad = [n for n in names if n not in FEATURE_NAMES]
            if bad:
                raise InvalidInputError(f"unknown feature(s) in {field}: {', '.join(map(repr, bad))}; "
                                        f"valid: {', '.join(FEATURE_NAMES)}")
        if self.loss not in LOSSES:
            raise InvalidInputError(f"unknown timeline loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        if not (isinstance(self.stream_prior, (int, float)) and math.isfinite(self.stream_prior)
                and self.stream_prior >= 0):
            raise InvalidInputError(f"stream_prior must be a finite number >= 0, got {self.stream_prior!r}")
        if not (isinstance(self.op_weight, (int, float)) and math.isfinite(self.op_weight) and self.op_weight >= 0):
            raise InvalidInputError(f"op_weight must be a finite number >= 0, got {self.op_weight!r}")



def load_timeline_config(d: Any, file) -> TimelineConfig:
    """The :class:`TimelineConfig` a saved timeline's ``config`` section describes, each field checked
    (type and range) so that a damaged value is refused naming ``file`` and the field; an artifact saved
    before the blind features were recorded has none."""
    from . import _artifact as A

    rules = {"hidden": A.Int(1), "host_hidden": A.Int(1), "epochs": A.Int(0), "lr": A.Num(0), "weight_decay": A.Num(0),
             "seed": A.Int(), "loss": A.Str(LOSSES), "stream_prior": A.Num(0), "op_weight": A.Num(0),
             "host_blind": A.ListOf(A.Str()), "device_blind": A.ListOf(A.Str())}
    if isinstance(d, dict):
        d = {"host_blind": [], "device_blind": [], **d}
    return A.load_config(TimelineConfig, d, rules, file, optional=("loss", "stream_prior", "op_weight"))


def trained_on_problem(trained_on: Any) -> str | None:
    """What is wrong with a saved timeline's ``params.trained_on`` (the rows it was fitted on: the devices name
    where its intervals hold and its energy was fitted), or ``None``."""
    from ._artifact import _show

    if not isinstance(trained_on, dict):
        return f"must be an object, got {_show(trained_on)}"
    devices = trained_on.get("devices", [])
    if not isinstance(devices, list) or not all(isinstance(d, str) and d for d in devices):
        return f"devices must be a list of device names, got {_show(devices)}"
    for key in ("rows", "decode_rows", "operators", "runs"):
        v = trained_on.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return f"{key} must be a count (an integer >= 0), got {_show(v)}"
    return None

def _host_init_us(tables: Sequence[OpTable], rows) -> list[float]:
    """One starting host cost for every class: the median latency per dispatched operator over the
    rows whose roofline explains under a fifth of their time (host-bound on a GPU). A per-class
    least-squares start is ill-posed on a few dozen rows; the fit specializes the classes."""
    lat = np.asarray([r.latency_ms * 1e3 for r in rows])
    work = np.asarray([float(t.bound_s.sum()) * 1e6 for t in tables])
    units = np.asarray([float(t.host_count[t.host_class != _HOST_INDEX["module"]].sum()) for t in tables])
    light = (work < 0.2 * lat) & (units > 0)
    per_op = float(np.median(lat[light] / units[light])) if light.sum() >= 3 else 8.0
    per_op = min(max(per_op, 1.0), 100.0)
    start = {"module": per_op / 4, "call": 10 * per_op, "launch": per_op / 2}
    return [start.get(c, per_op) for c in HOST_CLASSES]


def _decode_init_us(tables: Sequence[OpTable], rows, host_raw) -> float:
    """Where the decode-step cost starts: the median, over the decode rows, of what their measured latency
    leaves after the starting host lane (at least a tenth of the latency)."""
    import torch.nn.functional as F

    h = F.softplus(host_raw.detach()).numpy().astype(np.float64)
    left = []
    for t, r in zip(tables, rows):
        if t.decode:
            lat = r.latency_ms * 1e3
            H = float((h[t.host_class] * t.host_count).sum() + h[_HOST_INDEX["call"]])
            left.append(max(lat - H, 0.1 * lat))
    return float(np.median(left)) if left else 1000.0


def interval_table(rows, ests, *, coverage: float = 0.9, held_out: str = "") -> dict[str, Any]:
    """Split-conformal half-widths from held-out estimates: per regime (the estimate's host- or
    device-bound lane) and target, the finite-sample-corrected ``coverage`` quantile of
    ``|log(measured / predicted)|`` (``None`` where fewer than 5 rows have the target)."""
    err: dict[str, dict[str, list[float]]] = {r: {"latency_ms": [], "energy_j": []} for r in ("host", "device")}
    for row, e in zip(rows, ests):
        regime = "host" if e.details["ops"]["bound"] == "host" else "device"
        for t in ("latency_ms", "energy_j"):
            y, p = getattr(row, t), getattr(e, t)
            if math.isfinite(y) and y > 0 and p > 0:
                err[regime][t].append(abs(math.log(y / p)))

    return {"coverage": coverage, "held_out": held_out, "rows": {r: len(err[r]["latency_ms"]) for r in err},
            "log_halfwidth": {r: {t: conformal_quantile(v, coverage) for t, v in err[r].items()} for r in err}}


#: operator rows the streaming prior applies to: these categories, in the forward phase, memory-bound
_STREAM_CATEGORIES = ("cat_elementwise", "cat_activation")


def copy_efficiency(device) -> tuple[np.ndarray, np.ndarray] | None:
    """``(log10 traffic bytes, efficiency)`` of the device's measured device-to-device copies: the share
    of the datasheet bandwidth a plain copy reaches at each size (read and write counted), from the
    packaged ``hardware.json`` of the device (``None`` where no packaged device has the measurement)."""
    return _copy_efficiency(device.name, float(device.memory_bandwidth_gbps))


@functools.lru_cache(maxsize=None)
def _copy_efficiency(name: str, datasheet_gbps: float):
    """:func:`copy_efficiency`, read once per device."""
    import json
    from pathlib import Path

    from ..devices import get_device

    root = Path(__file__).resolve().parent.parent / "data"
    for hw in sorted(root.glob("*/hardware.json")):
        try:
            info = json.loads(hw.read_text())
            if get_device(info.get("costmodel_device") or info.get("name", "")).name != name:
                continue
        except (ValueError, LookupError, OSError):
            continue
        pts = []
        for key, gbps in (info.get("bandwidth") or {}).items():
            if key.startswith("copy_") and key.endswith("mb_gbps") and gbps:
                mb = float(key[len("copy_"):-len("mb_gbps")])
                pts.append((math.log10(2 * mb * 2 ** 20), float(gbps) / datasheet_gbps))
        if len(pts) >= 2:
            pts.sort()
            return np.array([p[0] for p in pts]), np.minimum(np.array([p[1] for p in pts]), 1.0)
    return None


def streaming_targets(tables: Sequence[OpTable], devices, feature_names: Sequence[str]):
    """Per operator row of ``tables`` (stacked), the efficiency a streaming kernel of its size reaches on
    its device, and whether the prior applies to it (elementwise or activation, forward, memory-bound,
    moving more than twice the device's L2 cache and at least the smallest copy measured).

    Why: fitted through whole-model latencies alone, the split of a model's time between its
    convolutions and its elementwise kernels is barely constrained (both grow with the batch), and the
    fit lands on elementwise kernels at 40-50 % of the H200's bandwidth where a plain copy of the same
    size reaches 80-89 %. The split does not matter on the device that was fitted but it does on
    another one, whose compute and bandwidth scale differently."""
    col = {n: i for i, n in enumerate(feature_names)}
    target, use = [], []
    for t, dev in zip(tables, devices):
        n = len(t.bound_s)
        curve = copy_efficiency(dev)
        if curve is None or n == 0:
            target.append(np.ones(n))
            use.append(np.zeros(n, bool))
            continue
        x = t.x
        lg_bytes = x[:, col["log_bytes"]].astype(np.float64) * 10  # log10(1 + bytes)
        cat = np.zeros(n, bool)
        for c in _STREAM_CATEGORIES:
            cat |= x[:, col[c]] > 0.5
        l2 = max(float(dev.l2_cache_mb or 0.0), 1.0) * 2 ** 20
        big = lg_bytes >= max(math.log10(2 * l2), float(curve[0][0]))
        mem = x[:, col["compute_over_memory"]] < 0
        fwd = t.phase == 0
        target.append(np.interp(lg_bytes, curve[0], curve[1]))
        use.append(cat & big & mem & fwd & (t.kernel > 0))
    return np.concatenate(target), np.concatenate(use)


def stream_prior_terms(tables: Sequence[OpTable], devices, feature_names: Sequence[str]):
    """``(row indices, log target efficiencies)`` as torch tensors over the stacked rows of ``tables``
    where :func:`streaming_targets` applies, or ``None`` where it applies to no row."""
    import torch

    target, use = streaming_targets(tables, devices, feature_names)
    if not use.any():
        return None
    return (torch.as_tensor(np.flatnonzero(use)),
            torch.as_tensor(np.log(target[use]), dtype=torch.float32))


def decode_note(p) -> str:
    """The note of a decode-step estimate on what the host's per-step cost rests on (``p``: TimelineParams)."""
    if p.decode_step_us is None:
        return ("decode step: no decode rows were in this predictor's fit, so the host's per-step cost of the "
                "decode loop (tens of ms on the measured host) is left out: the latency is a lower bound")
    return (f"decode step: the host's per-step cost of the decode loop, {p.decode_step_us / 1e3:.1f} ms, fitted on "
            f"{p.trained_on.get('decode_rows', '?')} decode rows of the measured host and software stack")
