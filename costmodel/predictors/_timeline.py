"""The timeline predictor: each operator under its roofline, composed on a host/device timeline.

Where it sits: CostGraph -> operator sequence (forward; for training also the
backward kernels and the optimizer update) -> per-operator device time and host
cost -> two lanes (:mod:`costmodel.analysis._timeline`) -> latency and energy.

Per operator ``i`` on device ``D``::

    device_i = bound_i / efficiency(op features, device features) + kernel floor
    bound_i  = max(FLOPs_i / peak_D(dtype, tensor cores?), bytes_i / bandwidth_D)
    host_i   = dispatch cost of the operator's class (a host profile: measured by
               ``costmodel calibrate`` or fitted to the rows of the machine that measured them)

``efficiency`` is a small MLP with a sigmoid output, so it lies in (0, 1): the
roofline stays a hard bound and the network only learns how far below it a
kernel runs (tile and wave quantization, small problem sizes, memory-bound
ops that never reach peak bandwidth). The MLP sees the op kind, log FLOPs and
bytes, intensity, the output shape, kernel/stride/groups, dtype, tensor-core
eligibility, the phase (forward / backward / optimizer), wave quantization
against the SM count and the device's figures, so a device without rows can
still be asked.

**Which latency.** The measured rows time many calls back to back with no
synchronisation between them, so the host runs ahead of the GPU whenever it
can: in steady state one call costs ``max(sum host_i, sum device_i)`` (the
slower lane sets the pace; the first call's start-up and the final
synchronisation are amortised). That is what ``latency_ms`` predicts, as the
packaged labels define it. A lone call followed by a synchronisation (what a
request sees) is the two-lane replay's end time; ``details["ops"]`` gives it as
``single_call_ms`` with the per-operator breakdown. On a CPU the host runs each
operator itself, so the lanes add up instead.

**Fitting.** Where only whole-model labels exist (the H200 today), the MLP and
the host costs are fitted *through* the composition: the gradient of the
log-latency error flows through the max/sum into every operator's efficiency
and every host class. Energy is then fitted on the same timeline: each
kernel's time times a power that grows with how close it runs to its roofline
(one intercept and slope per op class), plus a static power over the whole call
(the device idles while the host dispatches).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..analysis._timeline import replay
from ..devices import get_device
from ..measure.host import OP_CLASSES, op_class
from ..ir import CATEGORIES, OP_KINDS, TENSOR_KINDS, category
from ._base import Estimate, Predictor, register_predictor, validate_mode, validate_optimizer
from ._artifact import record_checksums, verify_checksums
from ._gnn import ShippedArtifact

PHASES = ("forward", "backward", "optimizer")
#: host lane classes: the forward dispatch classes of a host profile, then one for autograd's
#: backward kernels, one per optimizer parameter tensor and one per call (loss, zero_grad, Python)
HOST_CLASSES = ("default", *OP_CLASSES, "backward", "optimizer_tensor", "module", "call")
_HOST_INDEX = {c: i for i, c in enumerate(HOST_CLASSES)}
#: energy classes: tensor-core work, everything else that moves memory
ENERGY_CLASSES = ("tensor", "vector")
DTYPES = ("fp32", "fp16", "bf16")
#: bytes Adam reads and writes per parameter byte (param, grad, 2 moments read; param, 2 moments written)
_OPT_BYTES = {"adam": 7.0, "adamw": 7.0, "sgd": 3.0, "sgd_momentum": 5.0}
_OPT_FLOPS = {"adam": 12.0, "adamw": 14.0, "sgd": 2.0, "sgd_momentum": 4.0}
#: compact per-operator features: few enough that 342 whole-model labels constrain them, coarse
#: enough (categories, not kinds) that an op kind absent from training inherits its category's efficiency
FEATURE_NAMES = (
    *(f"cat_{c}" for c in CATEGORIES), "is_conv", "is_depthwise", "is_attention",
    "dtype_fp32", "dtype_fp16", "dtype_bf16", "tensor_core", "phase_forward", "phase_backward", "phase_optimizer",
    "log_flops", "log_bytes", "log_intensity", "log_bound_us", "compute_over_memory", "wave_efficiency",
    "log_kernel_area", "stride", "log_out_numel",
    "hw_log_peak_tflops", "hw_log_bandwidth_gbps", "hw_sm_count",
)
#: efficiency never drops below this share of the roofline (small kernels are covered by the kernel floor)
MIN_EFFICIENCY = 0.05
FORMAT_VERSION = 1


@dataclass
class OpTable:
    """The operator sequence of one workload on one device, as arrays."""

    x: np.ndarray  # (n, F) features
    bound_s: np.ndarray  # (n,) roofline bound
    kernel: np.ndarray  # (n,) 1.0 where a kernel is launched
    host_class: np.ndarray  # (n,) index into HOST_CLASSES
    host_count: np.ndarray  # (n,) how many host units the op costs (parameter tensors for the optimizer)
    energy_class: np.ndarray  # (n,) index into ENERGY_CLASSES
    node: np.ndarray  # (n,) CostGraph node id (-1: optimizer / call)
    phase: np.ndarray  # (n,) index into PHASES
    synchronous: bool = False


def _op_dtype(n, default: str) -> str:
    for d in n.out_dtypes + n.in_dtypes:
        if d in DTYPES:
            return d
    return default


def _wave_efficiency(n, sm_count: int) -> float:
    """Fraction of the last wave that is busy, for an output tiled 128x128 over ``sm_count`` SMs."""
    if not sm_count or not n.out_shapes or n.kind not in TENSOR_KINDS:
        return 1.0
    shp = n.out_shapes[0]
    if not shp:
        return 1.0
    numel = math.prod(shp)
    tiles = max(1, math.ceil(numel / (128 * 128)))
    waves = tiles / sm_count
    return waves / math.ceil(waves)


def _op_features(n, dtype: str, phase: int, tensor: bool, c: float, m: float, sm_count: int) -> list[float]:
    lg = lambda v: math.log10(1.0 + max(0.0, v))  # noqa: E731
    cat = [0.0] * len(CATEGORIES)
    kind = n.kind if n is not None else "other"
    if n is not None:
        cat[CATEGORIES.index(n.category)] = 1.0
    a = n.attrs if n is not None else {}
    groups = a.get("groups", 1) or 1
    k = a.get("kernel") or [1]
    st = a.get("stride") or [1]
    out = math.prod(n.out_shapes[0]) if (n is not None and n.out_shapes and n.out_shapes[0]) else 0
    depthwise = kind == "conv" and groups > 1 and n.out_shapes and len(n.out_shapes[0]) > 1 and groups == n.out_shapes[0][1]
    flops = n.flops if n is not None else 0.0
    nbytes = (n.bytes_read + n.bytes_written) if n is not None else 0.0
    return [*cat, float(kind in ("conv", "conv_transpose")), float(bool(depthwise)), float(kind == "attention"),
            *(float(dtype == d) for d in DTYPES), float(tensor), *(float(phase == p) for p in range(3)),
            lg(flops) / 10, lg(nbytes) / 10, lg(flops / nbytes if nbytes else 0.0), lg(max(c, m) * 1e6),
            max(-3.0, min(3.0, math.log10((c + 1e-12) / (m + 1e-12)))),
            _wave_efficiency(n, sm_count) if n is not None else 1.0,
            lg(float(math.prod(k[-2:]))), float(max(st)), lg(out) / 10]


def module_calls(graph) -> int:
    """``nn.Module.__call__`` invocations behind the graph: distinct scopes with all their ancestors."""
    seen: set[str] = set()
    level = {n.scope for n in graph.nodes}
    level.discard("")
    level.discard(None)
    while level:  # one level of parents at a time, each scope visited once
        level -= seen
        seen |= level
        level = {s[:i] for s in level if (i := s.rfind(".")) >= 0}
    return len(seen)


# Per op kind, what the array version of op_table reads from tables instead of per operator:
# the category one-hot followed by is_conv, is_depthwise (set per operator) and is_attention;
# whether the kind runs on tensor cores; whether fp32 runs at TF32; the forward host class.
_N_CAT = len(CATEGORIES)
_KIND_ID = {k: i for i, k in enumerate(OP_KINDS)}
_KIND_HEAD = np.zeros((len(OP_KINDS), _N_CAT + 3))
for _k, _i in _KIND_ID.items():
    _KIND_HEAD[_i, CATEGORIES.index(category(_k))] = 1.0
    _KIND_HEAD[_i, _N_CAT] = float(_k in ("conv", "conv_transpose"))
    _KIND_HEAD[_i, _N_CAT + 2] = float(_k == "attention")
_KIND_TENSOR = np.array([k in TENSOR_KINDS for k in OP_KINDS])
_KIND_TF32 = np.array([k in ("conv", "conv_transpose") for k in OP_KINDS])
_KIND_HOST = np.array([_HOST_INDEX[op_class(k)] for k in OP_KINDS], np.int64)
del _k, _i
#: dtype index (``len(DTYPES)``: a graph dtype outside DTYPES) -> the dtype one-hot
_DTYPE_ID = {d: i for i, d in enumerate(DTYPES)}
_DTYPE_ONEHOT = np.vstack([np.eye(len(DTYPES)), np.zeros((1, len(DTYPES)))])
_PHASE_ONEHOT = np.eye(len(PHASES))
#: the dtypes op_table asks peak_flops for, in the order of the peak codes
_PEAK_DTYPES = ("fp32", "fp16", "bf16", "tf32")
_C = _N_CAT + 3  # first column after the kind head
(_COL_DTYPE, _COL_TENSOR, _COL_PHASE, _COL_FLOPS, _COL_BYTES, _COL_INTENSITY, _COL_BOUND, _COL_RATIO, _COL_WAVE,
 _COL_KERNEL, _COL_STRIDE, _COL_OUT, _COL_HW) = (_C, _C + 3, _C + 4, _C + 7, _C + 8, _C + 9, _C + 10, _C + 11,
                                                 _C + 12, _C + 13, _C + 14, _C + 15, _C + 16)


def _log10_1p(*arrays: np.ndarray) -> list[np.ndarray]:
    """``math.log10(1 + max(0, v))`` of every element (``math.log10`` itself, so the values match the
    scalar features bit for bit), one call for several arrays."""
    sizes = [len(a) for a in arrays]
    flat = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    arg = 1.0 + np.where(flat > 0.0, flat, 0.0)
    out = np.fromiter(map(math.log10, arg.tolist()), np.float64, len(arg))
    return np.split(out, np.cumsum(sizes)[:-1]) if len(arrays) > 1 else [out]


def _dtype_id(n, default_id: int) -> int:
    """The index in DTYPES of :func:`_op_dtype` (``default_id`` where no operand has one of DTYPES)."""
    for d in n.out_dtypes:
        if d in _DTYPE_ID:
            return _DTYPE_ID[d]
    for d in n.in_dtypes:
        if d in _DTYPE_ID:
            return _DTYPE_ID[d]
    return default_id


def _node_columns(ops, default_dtype: str):
    """What op_table reads from each operator, as lists."""
    kind_id, dtype_id = _KIND_ID, _DTYPE_ID
    default_id = dtype_id.get(default_dtype, len(DTYPES))
    kind = [kind_id[n.kind] for n in ops]  # KeyError on a kind outside the vocabulary, as category() raises
    flops = [n.flops for n in ops]
    nbytes = [n.bytes_read + n.bytes_written for n in ops]
    # the first output dtype decides in almost every graph; the full search only where it does not
    dtype = [dtype_id[o[0]] if (o := n.out_dtypes) and o[0] in dtype_id else _dtype_id(n, default_id) for n in ops]
    shapes = [n.out_shapes for n in ops]
    first = [s[0] if s else None for s in shapes]
    numel = [math.prod(f) if f else 0 for f in first]
    shaped = list(map(bool, first))
    attrs = [n.attrs for n in ops]
    karea = [a.get("kernel") for a in attrs]
    karea = [float(math.prod(k[-2:])) if k else 1.0 for k in karea]
    stride = [a.get("stride") for a in attrs]
    stride = [float(max(st)) if st else 1.0 for st in stride]
    depthwise = [0.0] * len(ops)
    conv = kind_id["conv"]
    for i, k in enumerate(kind):
        if k == conv:
            groups = attrs[i].get("groups", 1) or 1
            f = first[i]
            depthwise[i] = float(bool(groups > 1 and shapes[i] and len(f) > 1 and groups == f[1]))
    return kind, flops, nbytes, dtype, numel, shaped, karea, stride, depthwise


def _none_row(device, phase: int, flops: float, nbytes: float, dtype: str, bw: float, sm: int, hw: list[float]):
    """Features, bound and kernel flag of a row with no operator (the optimizer update, module calls)."""
    peak = device.peak_flops(dtype if dtype in ("tf32", *DTYPES) else "fp32", tensor=False)
    c = flops / peak if peak > 0 else 0.0
    m = nbytes / bw if bw > 0 else 0.0
    return _op_features(None, dtype, phase, False, c, m, sm) + hw, max(c, m), 1.0 if (flops > 0 or nbytes > 0) else 0.0


def op_table(graph, device, *, mode: str, optimizer: str = "adam") -> OpTable:
    """The operators ``graph`` runs on ``device`` for one call (``mode="training"``: one step).

    Rows: every operator that is not a view, in graph order (forward); for training then the backward
    kernels in reverse order (two per tensor-core operator, bytes doubled for the others, none for an
    operator with no work) and one optimizer row; last one row for the Python-level module calls.
    Computed over arrays; the tests hold the same table built one operator at a time."""
    default_dtype = graph.meta.get("dtype", "fp32")
    hw = [math.log10(1 + device.peak_flops("fp16", tensor=True) / 1e12), math.log10(1 + device.memory_bandwidth_gbps),
          float(device.sm_count or 0) / 100.0]
    bw = device.bandwidth_bytes_s
    sm = device.sm_count or 0
    training = mode == "training"
    ops = [n for n in graph.nodes if not n.is_view]
    n_ops = len(ops)
    kind, flops, nbytes, dtype, numel, shaped, karea, stride, depthwise = _node_columns(ops, default_dtype)
    kind = np.array(kind, np.int64)
    flops = np.array(flops, np.float64)
    nbytes = np.array(nbytes, np.float64)
    dtype = np.array(dtype, np.int64)
    numel = np.array(numel, np.float64)
    tensor_kind = _KIND_TENSOR[kind]

    # per operator: the columns that do not depend on the phase
    xn = np.empty((n_ops, len(FEATURE_NAMES)))
    xn[:, :_C] = _KIND_HEAD[kind]
    xn[:, _N_CAT + 1] = depthwise
    xn[:, _COL_DTYPE:_COL_DTYPE + len(DTYPES)] = _DTYPE_ONEHOT[dtype]
    wave = np.ones(n_ops)
    if sm:
        w = tensor_kind & np.array(shaped, bool)
        if w.any():
            tiles = np.maximum(1.0, np.ceil(numel[w] / (128 * 128)))
            waves = tiles / sm
            wave[w] = waves / np.ceil(waves)
    xn[:, _COL_WAVE] = wave
    xn[:, _COL_STRIDE] = stride
    # FLOPs, bytes and intensity features are the operator's own, also on its backward rows
    intensity = np.divide(flops, nbytes, out=np.zeros(n_ops), where=nbytes != 0)
    lg_f, lg_b, lg_i, lg_k, lg_o = _log10_1p(flops, nbytes, intensity, np.array(karea), numel)
    xn[:, _COL_FLOPS] = lg_f / 10
    xn[:, _COL_BYTES] = lg_b / 10
    xn[:, _COL_INTENSITY] = lg_i
    xn[:, _COL_KERNEL] = lg_k
    xn[:, _COL_OUT] = lg_o / 10
    xn[:, _COL_HW:] = hw

    # per row: forward rows, then the backward rows in reverse order
    if training:
        work = ~((flops <= 0) & (nbytes <= 0))
        back = np.flatnonzero(work)[::-1]
        back = np.repeat(back, np.where(tensor_kind[back], 2, 1))
        idx = np.concatenate([np.arange(n_ops), back])
        f = flops[idx]
        b = np.concatenate([nbytes, np.where(tensor_kind[back], nbytes[back], 2.0 * nbytes[back])])
        phase = np.concatenate([np.zeros(n_ops, np.int64), np.ones(len(back), np.int64)])
        x = xn[idx]
    else:
        idx, f, b, phase, x = np.arange(n_ops), flops, nbytes, np.zeros(n_ops, np.int64), xn
    tk = tensor_kind[idx]
    tensor = tk & (f > 0)
    dt = dtype[idx]
    # peak codes index _PEAK_DTYPES: fp32 tensor work runs at TF32 for convolutions, a dtype outside DTYPES at fp32
    code = np.where(dt == len(DTYPES), 0, dt)
    code[tensor & (dt == 0) & _KIND_TF32[kind[idx]]] = 3
    code = 2 * code + tensor
    peaks = np.zeros(2 * len(_PEAK_DTYPES))
    for pk in set(code.tolist()):  # each (dtype, tensor cores?) pair the rows use, asked once
        peaks[pk] = device.peak_flops(_PEAK_DTYPES[pk // 2], tensor=bool(pk % 2))
    peak = peaks[code]
    c = np.divide(f, peak, out=np.zeros(len(f)), where=peak > 0)
    m = b / bw if bw > 0 else np.zeros(len(b))
    bound = np.where(m > c, m, c)
    ratio_arg = (c + 1e-12) / (m + 1e-12)
    ratio = np.fromiter(map(math.log10, ratio_arg.tolist()), np.float64, len(ratio_arg))
    lg_bound, = _log10_1p(bound * 1e6)
    x[:, _COL_TENSOR] = tensor
    x[:, _COL_PHASE:_COL_PHASE + 3] = _PHASE_ONEHOT[phase]
    x[:, _COL_BOUND] = lg_bound
    ratio = np.where(ratio < 3.0, ratio, 3.0)
    x[:, _COL_RATIO] = np.where(ratio > -3.0, ratio, -3.0)
    kernel = np.where((f > 0) | (b > 0), 1.0, 0.0)
    host = _KIND_HOST[kind] if not training else np.concatenate([_KIND_HOST[kind], np.full(len(back),
                                                                                        _HOST_INDEX["backward"])])
    node = np.array([n.id for n in ops], np.int64)[idx]

    # rows without an operator: the optimizer update (training), the module calls
    extra = []
    if training:
        n_tensors = sum(sum(1 for p in n.param_inputs if p) for n in ops)
        pbytes = float(graph.meta.get("weights_bytes") or graph.params * 4)
        extra.append((2, _OPT_FLOPS[optimizer] * graph.params, _OPT_BYTES[optimizer] * pbytes, "fp32",
                      "optimizer_tensor", float(max(1, n_tensors))))
    extra.append((0, 0.0, 0.0, default_dtype if default_dtype in DTYPES else "fp32", "module",
                  float(module_calls(graph) * (2 if training else 1))))
    ex = [_none_row(device, ph, fl, nb, d, bw, sm, hw) for ph, fl, nb, d, _, _ in extra]
    k = len(extra)
    return OpTable(
        np.concatenate([x, np.asarray([r for r, _, _ in ex])]).astype(np.float32),
        np.concatenate([bound, [bd for _, bd, _ in ex]]),
        np.concatenate([kernel, [kn for _, _, kn in ex]]),
        np.concatenate([host, [_HOST_INDEX[e[4]] for e in extra]]).astype(np.int64),
        np.concatenate([np.ones(len(idx)), [e[5] for e in extra]]),
        np.concatenate([np.where(tensor, 0, 1), np.ones(k, np.int64)]).astype(np.int64),
        np.concatenate([node, np.full(k, -1, np.int64)]),
        np.concatenate([phase, [e[0] for e in extra]]).astype(np.int64),
        synchronous=_is_cpu(device),
    )


# ---------------------------------------------------------------------- the learned parts
@dataclass
class TimelineConfig:
    hidden: int = 32
    epochs: int = 400
    lr: float = 3e-3
    weight_decay: float = 1e-3
    seed: int = 0


@dataclass
class TimelineParams:
    """Everything the predictor learned, as plain numbers (saved as JSON + safetensors)."""

    mean: list[float]
    std: list[float]
    host_us: list[float]  # per HOST_CLASSES
    kernel_floor_us: float
    sync_us: float
    energy_static_w: float
    energy_a_w: list[float]  # per ENERGY_CLASSES: power at zero utilisation above static
    energy_b_w: list[float]  # per ENERGY_CLASSES: extra power at the roofline
    host_source: str = "fitted"
    trained_on: dict[str, Any] = field(default_factory=dict)


def _softplus_inv(y: float) -> float:
    y = max(y, 1e-6)
    return y + math.log(-math.expm1(-y))  # log(exp(y) - 1), stable for large y


def _mlp(in_dim: int, hidden: int):
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
        torch.nn.Linear(hidden, 1),
    )


class _Batch:
    """Op tables of many rows concatenated, with each op's row index (torch tensors)."""

    def __init__(self, tables: Sequence[OpTable], mean: np.ndarray, std: np.ndarray):
        import torch

        sizes = [len(t.bound_s) for t in tables]
        self.n_rows = len(tables)
        self.row = torch.as_tensor(np.repeat(np.arange(len(tables)), sizes))
        x = np.concatenate([t.x for t in tables]) if tables else np.zeros((0, len(mean)), np.float32)
        self.x = torch.as_tensor((x - mean) / std, dtype=torch.float32)
        cat = lambda f: np.concatenate([getattr(t, f) for t in tables])  # noqa: E731
        self.bound_us = torch.as_tensor(cat("bound_s") * 1e6, dtype=torch.float32)
        self.kernel = torch.as_tensor(cat("kernel"), dtype=torch.float32)
        self.hcls = torch.as_tensor(cat("host_class"))
        self.hcnt = torch.as_tensor(cat("host_count"), dtype=torch.float32)
        self.ecls = torch.as_tensor(cat("energy_class"))
        self.sync = torch.as_tensor([t.synchronous for t in tables])


class _Model:
    """Differentiable composition used for fitting (and, through numpy, for prediction)."""

    def __init__(self, in_dim: int, hidden: int, host_init_us: float = 8.0):
        import torch

        self.mlp = _mlp(in_dim, hidden)
        with torch.no_grad():  # start near 50 % of the roofline
            self.mlp[-1].bias.fill_(0.0)
        self.host = torch.nn.Parameter(torch.full((len(HOST_CLASSES),), _softplus_inv(host_init_us)))
        self.floor = torch.nn.Parameter(torch.tensor(_softplus_inv(2.0)))
        self.sync = torch.nn.Parameter(torch.tensor(_softplus_inv(10.0)))

    def lanes(self, b: _Batch):
        import torch
        import torch.nn.functional as F

        eff = MIN_EFFICIENCY + (1 - MIN_EFFICIENCY) * torch.sigmoid(self.mlp(b.x).squeeze(-1))
        dev = (b.bound_us / eff + F.softplus(self.floor)) * b.kernel
        host = F.softplus(self.host)[b.hcls] * b.hcnt
        D = torch.zeros(b.n_rows).index_add_(0, b.row, dev)
        H = torch.zeros(b.n_rows).index_add_(0, b.row, host) + F.softplus(self.host[_HOST_INDEX["call"]])
        return dev, eff, H, D

    def latency_us(self, b: _Batch):
        import torch
        import torch.nn.functional as F

        dev, eff, H, D = self.lanes(b)
        lat = torch.where(b.sync, H + D, torch.maximum(H, D)) + F.softplus(self.sync)
        return lat, dev, eff, H, D


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
    return [per_op if c not in ("module", "call") else (per_op / 4 if c == "module" else 10 * per_op)
            for c in HOST_CLASSES]


def _energy_design(tables: Sequence[OpTable], dev_us: Sequence[np.ndarray], eff: Sequence[np.ndarray],
                   lat_us: np.ndarray) -> np.ndarray:
    """Columns of the linear energy model (joules = design @ watts)."""
    cols = []
    for t, d, e, lat in zip(tables, dev_us, eff, lat_us):
        row = [lat * 1e-6]
        for k in range(len(ENERGY_CLASSES)):
            m = t.energy_class == k
            row.append(float(d[m].sum()) * 1e-6)
        for k in range(len(ENERGY_CLASSES)):
            m = t.energy_class == k
            row.append(float((d[m] * e[m]).sum()) * 1e-6)  # time weighted by utilisation of the roofline
        cols.append(row)
    return np.asarray(cols)


def _nnls_relative(A: np.ndarray, y: np.ndarray, iters: int = 3000) -> np.ndarray:
    """Non-negative least squares on relative error (projected gradient; a handful of columns)."""
    W = A / y[:, None]
    t = np.ones(len(y))
    w = np.maximum(np.linalg.lstsq(W, t, rcond=None)[0], 0.0)
    L = np.linalg.norm(W, 2) ** 2
    for _ in range(iters):
        w = np.maximum(w - (W.T @ (W @ w - t)) / L, 0.0)
    return w


def _is_cpu(dev) -> bool:
    """Whether operators run on the host thread (no accelerator vendor)."""
    return dev.vendor.lower() not in ("nvidia", "amd")


@register_predictor("timeline")
class TimelinePredictor(ShippedArtifact, Predictor):
    """Operators under their roofline on a host/device timeline (see the module docstring)."""

    name = "timeline"
    version = "1"
    _requires = ()

    def __init__(self, config: TimelineConfig | None = None, *, host=None) -> None:
        self.config = config or TimelineConfig()
        self.params: TimelineParams | None = None
        self._weights: list[np.ndarray] | None = None
        self.host_profile = None
        #: operator model + host costs of the CPU, trained on its operator profiles (``fit_cpu_ops``)
        self.cpu = None
        if host is not None:
            self.set_host(host)

    # ------------------------------------------------------------------ host
    def set_host(self, host) -> "TimelinePredictor":
        """Use a host profile (``HostProfile`` or its JSON path) for the host lane instead of the fitted one."""
        from ..measure.host import load_host

        self.host_profile = load_host(host)
        return self

    def with_host(self, host) -> "TimelinePredictor":
        """A copy that uses ``host`` for its host lane (the shipped, cached instance stays as it is)."""
        import copy

        other = copy.copy(self)
        other.set_host(host)
        return other

    def _host_vector(self) -> tuple[np.ndarray, str | None]:
        assert self.params is not None
        h = np.asarray(self.params.host_us, dtype=np.float64)
        if self.host_profile is None:
            return h, None
        hp = self.host_profile
        h = h.copy()
        for c in ("default", *OP_CLASSES):
            h[_HOST_INDEX[c]] = hp.dispatch_us.get(c, hp.dispatch_us["default"])
        return h, f"host lane from the host profile of {hp.host.get('hostname', '?')} ({hp.source})"

    # ------------------------------------------------------------------ fitting
    def fit(self, dataset, *, progress: bool = False) -> "TimelinePredictor":
        """Fit the efficiency MLP, the host costs and the energy model to whole-model rows."""
        idx = [i for i, r in enumerate(dataset.rows) if r.graph_supported]
        return self.fit_graphs([dataset.graph(i) for i in idx], [dataset.rows[i] for i in idx], progress=progress)

    def fit_graphs(self, graphs, rows, *, device=None, progress: bool = False) -> "TimelinePredictor":
        import torch

        cfg = self.config
        torch.manual_seed(cfg.seed)
        devs = [get_device(device or r.device) for r in rows]
        tables = [op_table(g, d, mode=r.mode, optimizer="adam") for g, d, r in zip(graphs, devs, rows)]
        x = np.concatenate([t.x for t in tables])
        mean = x.mean(0)
        std = x.std(0) + 1e-3
        b = _Batch(tables, mean, std)
        y = torch.as_tensor([r.latency_ms * 1e3 for r in rows], dtype=torch.float32)
        model = _Model(x.shape[1], cfg.hidden)
        with torch.no_grad():  # host costs start from a least-squares fit of the lightest rows
            model.host.copy_(torch.as_tensor([_softplus_inv(v) for v in _host_init_us(tables, rows)]))
        opt = torch.optim.Adam([
            {"params": list(model.mlp.parameters()), "weight_decay": cfg.weight_decay},
            {"params": [model.host, model.floor, model.sync], "lr": cfg.lr * 3},
        ], lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
        it = range(cfg.epochs)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="fitting timeline", unit="epoch")
        for _ in it:
            opt.zero_grad()
            lat = model.latency_us(b)[0]
            loss = ((torch.log(lat) - torch.log(y)) ** 2).mean()
            loss.backward()
            opt.step()
            sched.step()
        import torch.nn.functional as F

        with torch.no_grad():
            lat, dev, eff, _, _ = model.latency_us(b)
        self._weights = [p.detach().numpy().astype(np.float64) for p in model.mlp.parameters()]
        sizes = np.cumsum([len(t.bound_s) for t in tables])[:-1]
        dev_rows = np.split(dev.numpy().astype(np.float64), sizes)
        eff_rows = np.split(eff.numpy().astype(np.float64), sizes)
        ok = [i for i, r in enumerate(rows) if math.isfinite(r.energy_j) and r.energy_j > 0]
        if ok:
            A = _energy_design([tables[i] for i in ok], [dev_rows[i] for i in ok], [eff_rows[i] for i in ok],
                               lat.numpy()[ok])
            w = _nnls_relative(A, np.asarray([rows[i].energy_j for i in ok]))
        else:
            w = np.zeros(1 + 2 * len(ENERGY_CLASSES))
        k = len(ENERGY_CLASSES)
        self.params = TimelineParams(
            mean=mean.tolist(), std=std.tolist(),
            host_us=F.softplus(model.host).detach().tolist(),
            kernel_floor_us=float(F.softplus(model.floor.detach())), sync_us=float(F.softplus(model.sync.detach())),
            energy_static_w=float(w[0]), energy_a_w=w[1:1 + k].tolist(), energy_b_w=w[1 + k:].tolist(),
            host_source="fitted to the whole-model rows",
            trained_on={"rows": len(rows), "devices": sorted({d.name for d in devs})},
        )
        return self

    def fit_host(self, graphs, rows, *, device=None, epochs: int = 300) -> "TimelinePredictor":
        """Refit only the host lane (dispatch costs, per-call and sync) to a few rows of another host."""
        import torch
        import torch.nn.functional as F

        assert self.params is not None, "fit the predictor first"
        devs = [get_device(device or r.device) for r in rows]
        tables = [op_table(g, d, mode=r.mode) for g, d, r in zip(graphs, devs, rows)]
        dev_us = [self._device_us(t)[0] for t in tables]
        host = torch.as_tensor([_softplus_inv(v) for v in self.params.host_us], dtype=torch.float64)
        y = torch.as_tensor([r.latency_ms * 1e3 for r in rows], dtype=torch.float64)
        D = torch.as_tensor([float(d.sum()) for d in dev_us], dtype=torch.float64)
        counts = torch.zeros(len(rows), len(HOST_CLASSES), dtype=torch.float64)
        for i, t in enumerate(tables):
            np.add.at(counts[i].numpy(), t.host_class, t.host_count)
            counts[i, _HOST_INDEX["call"]] += 1
        # one scale for the whole host lane: 4 rows cannot pin down 13 classes, a speed ratio they can
        log_scale = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        base = F.softplus(host.detach())
        opt = torch.optim.Adam([log_scale], lr=0.05)
        for _ in range(epochs):
            opt.zero_grad()
            H = counts @ (base * torch.exp(log_scale))
            lat = torch.maximum(H, D) + self.params.sync_us
            loss = ((torch.log(lat) - torch.log(y)) ** 2).mean()
            loss.backward()
            opt.step()
        s = float(torch.exp(log_scale.detach()))
        self.params.host_us = [v * s for v in self.params.host_us]
        self.params.host_source = f"host lane rescaled by {s:.3f} to {len(rows)} rows of another host"
        self.host_profile = None
        return self

    def fit_cpu_ops(self, root=None, *, backend: str = "xgb", progress: bool = False) -> "TimelinePredictor":
        """Train the CPU's operator model on its per-operator profiles (``<root>/cpu/ops.jsonl.gz``) and
        its host costs on the same runs' whole-model latencies (see :mod:`costmodel.predictors._opmodel`)."""
        from ._opmodel import OpTimeline, load_op_dataset

        ds, graphs, ops, figs = load_op_dataset(root, device="cpu", progress=progress)
        self.cpu = OpTimeline.fit(ds, graphs, ops, figs, backend=backend)
        return self

    # ------------------------------------------------------------------ prediction
    def _device_us(self, t: OpTable) -> tuple[np.ndarray, np.ndarray]:
        assert self.params is not None and self._weights is not None
        x = (t.x - np.asarray(self.params.mean)) / np.asarray(self.params.std)
        w = self._weights
        h = x
        for i in range(0, len(w) - 2, 2):
            h = h @ w[i].T + w[i + 1]
            h = h / (1.0 + np.exp(-h))  # SiLU
        z = (h @ w[-2].T + w[-1])[:, 0]
        eff = MIN_EFFICIENCY + (1 - MIN_EFFICIENCY) / (1.0 + np.exp(-z))
        return (t.bound_s * 1e6 / eff + self.params.kernel_floor_us) * t.kernel, eff

    def operator_times(self, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> list[dict]:
        """Every operator's predicted device time: ``{"node", "op", "phase", "device_ms", "efficiency"}``
        (forward and backward rows; the optimizer's row has node -1).  What ``details["ops"]["top"]``
        lists the first ten of, for charts (``costmodel roofline --predictor timeline``)."""
        from .._errors import ModelLoadError

        if self.params is None:
            raise ModelLoadError("the timeline predictor is not fitted (fit() it or load a saved one)")
        dev = get_device(device)
        m = validate_mode(mode or graph.meta.get("mode", "inference"))
        if self.cpu is not None and _is_cpu(dev):
            from ._opmodel import compose

            c = compose(graph, self.cpu.figs, mode=m)
            d_us = self.cpu.model.predict_us(c.X, c.bound_us)
            nodes, phases = c.node, c.phase
            eff = np.where(d_us > 0, c.bound_us / np.maximum(d_us, 1e-12), 0.0)
        else:
            t = op_table(graph, dev, mode=m, optimizer=validate_optimizer(optimizer))
            d_us, eff = self._device_us(t)
            keep = t.kernel > 0
            d_us, eff, nodes, phases = d_us[keep], eff[keep], t.node[keep], t.phase[keep]
        return [{"node": int(n), "op": graph.nodes[int(n)].op if n >= 0 else "optimizer",
                 "phase": PHASES[int(ph)], "device_ms": float(d) / 1e3, "efficiency": float(e)}
                for n, ph, d, e in zip(nodes, phases, d_us, eff)]

    def predict(self, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> Estimate:
        return self.predict_many([graph], device, mode=mode, optimizer=optimizer)[0]

    def predict_many(self, graphs, device, *, mode: str | None = None, optimizer: str = "adam") -> list[Estimate]:
        from .._errors import ModelLoadError
        from ._analytic import AnalyticPredictor, graph_assumptions

        if self.params is None:
            raise ModelLoadError("the timeline predictor is not fitted (fit() it or load a saved one)")
        dev = get_device(device)
        optimizer = validate_optimizer(optimizer)
        host, host_note = self._host_vector()
        base = AnalyticPredictor()
        out = []
        for g in graphs:
            m = validate_mode(mode or g.meta.get("mode", "inference"))
            if self.cpu is not None and _is_cpu(dev):
                out.append(self._predict_cpu(g, dev, m, optimizer, base))
                continue
            t = op_table(g, dev, mode=m, optimizer=optimizer)
            d_us, eff = self._device_us(t)
            h_us = host[t.host_class] * t.host_count
            call_us = float(host[_HOST_INDEX["call"]])
            H, D = float(h_us.sum()) + call_us, float(d_us.sum())
            lat_us = (H + D if t.synchronous else max(H, D)) + self.params.sync_us
            p = self.params
            e_class = [float(d_us[t.energy_class == k].sum()) for k in range(len(ENERGY_CLASSES))]
            u_class = [float((d_us * eff)[t.energy_class == k].sum()) for k in range(len(ENERGY_CLASSES))]
            energy_j = (p.energy_static_w * lat_us + sum(a * e for a, e in zip(p.energy_a_w, e_class))
                        + sum(b * u for b, u in zip(p.energy_b_w, u_class))) * 1e-6
            est = base._predict(g, dev, mode=m, optimizer=optimizer, mig_details=False)
            lat_ms = lat_us / 1e3
            notes = [*graph_assumptions(g), *dev.assumptions]
            if host_note:
                notes.append(host_note)
            elif "H200" not in dev.name:
                notes.append(f"host lane fitted to the machine that measured {', '.join(p.trained_on.get('devices', []))}"
                             " rows; pass host=FILE from `costmodel calibrate` for this machine")
            if dev.name not in p.trained_on.get("devices", []):
                notes.append(f"no measured rows for {dev.name}: operator efficiencies learned on "
                             f"{', '.join(p.trained_on.get('devices', []))} applied under this device's roofline")
            notes.append("memory from the analytic liveness model")
            single = replay(np.concatenate([[call_us], h_us]), np.concatenate([[0.0], d_us]),
                            sync_ms=0.0).latency_ms + p.sync_us
            top = np.argsort(-d_us)[:10]
            est.latency_ms = lat_ms
            est.energy_j = energy_j
            est.power_w = energy_j / (lat_ms / 1e3) if lat_ms > 0 else 0.0
            est.predictor = self.name
            est.predictor_version = f"{self.version} (costmodel {__version__})"
            est.throughput_samples_s = (est.batch / (lat_ms / 1e3)) if est.batch else None
            est.assumptions = list(dict.fromkeys(notes))
            est.details["ops"] = {
                "host_ms": H / 1e3,
                "device_ms": D / 1e3,
                "bound": "host" if (H > D and not t.synchronous) else ("serial" if t.synchronous else "device"),
                "host_bound_share": max(0.0, 1.0 - D / lat_us) if not t.synchronous else None,
                "single_call_ms": single / 1e3,
                "top": [{"node": int(t.node[i]), "phase": PHASES[int(t.phase[i])],
                         "op": g.nodes[int(t.node[i])].op if t.node[i] >= 0 else "optimizer",
                         "device_ms": float(d_us[i]) / 1e3, "efficiency": float(eff[i])} for i in top],
            }
            out.append(est)
        return out

    def _predict_cpu(self, g, dev, m: str, optimizer: str, base) -> Estimate:
        """A CPU: the operator model trained on this project's CPU operator profiles, operators in sequence."""
        from ._analytic import graph_assumptions

        tl = self.cpu
        r = tl.predict(g, m)
        est = base._predict(g, dev, mode=m, optimizer=optimizer, mig_details=False)
        est.latency_ms = r["latency_ms"]
        # energy: the analytic model's power (the device entry's figures) over the predicted time
        est.energy_j = est.power_w * r["latency_ms"] / 1e3 if est.power_w else est.energy_j
        est.predictor = self.name
        est.predictor_version = f"{self.version} (costmodel {__version__})"
        est.throughput_samples_s = (est.batch / (r["latency_ms"] / 1e3)) if est.batch else None
        figs = tl.figs
        notes = [*graph_assumptions(g), *dev.assumptions,
                 f"CPU operator model trained on {tl.trained_on.get('operators', '?')} operator profiles of "
                 f"{figs.name} at {figs.cores} thread(s) ({figs.gflops:.0f} GFLOP/s, {figs.gbps:.0f} GB/s measured): "
                 "another CPU or thread count runs at its own speed",
                 "energy: the analytic model's power for this device entry over the predicted time (the profiled "
                 "CPU exposes no energy counter)",
                 "memory from the analytic liveness model"]
        if self.host_profile is not None:
            notes.append("host profile ignored on a CPU: the host costs come from the profiled runs")
        est.assumptions = list(dict.fromkeys(notes))
        est.details["ops"] = {"host_ms": r["host_ms"], "device_ms": r["device_ms"], "bound": "serial",
                              "host_bound_share": None, "single_call_ms": r["latency_ms"],
                              "host_terms_ms": r["host_terms_ms"], "top": r["top"]}
        return est

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        if self.params is None or self._weights is None:
            raise ValueError("nothing to save: the timeline predictor is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"predictor": self.name, "version": self.version, "format_version": FORMAT_VERSION,
               "feature_names": list(FEATURE_NAMES), "host_classes": list(HOST_CLASSES),
               "energy_classes": list(ENERGY_CLASSES), "config": asdict(self.config), "params": asdict(self.params),
               "library_version": __version__}
        files = ["weights.safetensors"]
        if self.cpu is not None:
            cfg["cpu_ops"] = "cpu_ops.json"
            (path / "cpu_ops.json").write_text(json.dumps(self.cpu.to_dict()))
            files.append("cpu_ops.json")
        (path / "config.json").write_text(json.dumps(cfg, indent=1))
        save_file({f"w{i}": w.astype(np.float32) for i, w in enumerate(self._weights)}, str(path / "weights.safetensors"))
        record_checksums(path / "config.json", files)

    @classmethod
    def load(cls, path: str | Path) -> "TimelinePredictor":
        from .._errors import ArtifactError
        from ._base import read_artifact_config

        path = Path(path)
        cfg = read_artifact_config(path, {cls.name})
        where = path / "config.json"
        has_cpu = cfg.get("cpu_ops") is not None
        # flipped weight bytes that stay finite
        verify_checksums(cfg, where, ["weights.safetensors", *(["cpu_ops.json"] if has_cpu else [])])

        def need(cond, what):
            if not cond:
                raise ArtifactError(f"{where}: {what}")

        need(cfg.get("format_version") == FORMAT_VERSION,
             f"format_version {cfg.get('format_version')!r}, this library reads {FORMAT_VERSION}")
        need(cfg.get("feature_names") == list(FEATURE_NAMES), "its feature names differ from this library's")
        need(cfg.get("host_classes") == list(HOST_CLASSES), "its host classes differ from this library's")
        need(cfg.get("energy_classes") == list(ENERGY_CLASSES), "its energy classes differ from this library's")
        try:
            conf = TimelineConfig(**cfg["config"])
            params = TimelineParams(**cfg["params"])
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{where}: bad or missing config/params ({e})") from None
        F = len(FEATURE_NAMES)
        for name, v, n in (("mean", params.mean, F), ("std", params.std, F), ("host_us", params.host_us, len(HOST_CLASSES)),
                           ("energy_a_w", params.energy_a_w, len(ENERGY_CLASSES)),
                           ("energy_b_w", params.energy_b_w, len(ENERGY_CLASSES))):
            need(isinstance(v, list) and len(v) == n and all(isinstance(a, (int, float)) and math.isfinite(a) for a in v),
                 f"params.{name} must be {n} finite numbers")
        need(all(s > 0 for s in params.std), "params.std must be positive")
        for name in ("kernel_floor_us", "sync_us", "energy_static_w"):
            v = getattr(params, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"params.{name} must be a finite number >= 0")
        wfile = path / "weights.safetensors"
        try:
            from safetensors.numpy import load_file

            raw = load_file(str(wfile))
        except Exception as e:  # noqa: BLE001 - any unreadable weights file is one clean error
            raise ArtifactError(f"{wfile} cannot be read: {e}") from None
        expect = [(conf.hidden, F), (conf.hidden,), (conf.hidden, conf.hidden), (conf.hidden,), (1, conf.hidden), (1,)]
        weights = []
        for i, shp in enumerate(expect):
            w = raw.get(f"w{i}")
            need(w is not None, f"weights.safetensors lacks tensor w{i}")
            need(tuple(w.shape) == shp, f"weights.safetensors tensor w{i} has shape {tuple(w.shape)}, expected {shp}")
            need(bool(np.isfinite(w).all()), f"weights.safetensors tensor w{i} holds non-finite values")
            weights.append(w.astype(np.float64))
        obj = cls(conf)
        obj.params = params
        obj._weights = weights
        if has_cpu:
            from ._opmodel import OpTimeline

            need(cfg["cpu_ops"] == "cpu_ops.json", f"cpu_ops must name cpu_ops.json, got {cfg['cpu_ops']!r}")
            f = path / "cpu_ops.json"
            try:
                d = json.loads(f.read_text())
            except (OSError, ValueError) as e:
                raise ArtifactError(f"{f} cannot be read: {e}") from None
            obj.cpu = OpTimeline.from_dict(d, str(f))
        return obj

