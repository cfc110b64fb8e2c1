"""Operator model: each operator's time from its roofline bound and a learned efficiency.

Trained on per-operator rows (``ops.jsonl`` from ``costmodel collect --ops``),
so a device with operator profiles gets tens of thousands of labels instead of
a few hundred whole-model ones.  For operator ``i`` on device ``D``::

    bound_i  = max(FLOPs_i / peak_D, bytes_i / bandwidth_D)
    time_i   = bound_i / efficiency_i,   efficiency_i = exp(-g(features_i))

``g`` is a regressor on ``log(time / bound)``: XGBoost or a small MLP (the
benchmark in ``benchmarks/timeline.py --cpu`` compares them on held-out
families).  The features are what decides how far below its roofline a kernel
runs: the op kind, FLOPs, bytes, intensity, the implicit-GEMM sizes M/N/K
(convolutions as GEMMs), channels, kernel, stride, groups, spatial size,
reduction size, the phase (forward / backward), the dtype, the working set
against the cache, and the device's own figures.

On a CPU the bound uses the DRAM bandwidth, and operands that stay in cache
beat it, so "efficiency" there can exceed 1; the ratio is still what the model
learns, and the working set against the cache size is one of its features.

Whole-model latency on a synchronous device (a CPU runs each operator on the
host thread) is the sum of the operators' times plus host costs that no
operator row carries: per-operator dispatch, views, ``nn.Module`` calls, the
step itself.  Those few constants are fitted by non-negative least squares
on whole-model latencies measured without the profiler (:class:`HostCosts`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..ir import CATEGORIES, OP_KINDS, TENSOR_KINDS, dtype_bytes
from ._optable import _OPT_BYTES, module_calls, optimizer_operands, trainable_tensors
from ._energy import nnls_relative

PHASES = ("forward", "backward")
DTYPES = ("fp32", "fp16", "bf16")
BACKENDS = ("xgb", "mlp")
FORMAT = "costmodel.op-model"
FORMAT_VERSION = 2
#: kinds whose backward runs two GEMM-shaped kernels (gradient of the input and of the weight)
_GEMM_KINDS = ("conv", "conv_transpose", "matmul")

FEATURE_NAMES = (
    *(f"kind_{k}" for k in OP_KINDS), *(f"cat_{c}" for c in CATEGORIES),
    "phase_backward", "training_step", *(f"dtype_{d}" for d in DTYPES), "tensor_kind",
    "log_flops", "log_bytes", "log_intensity", "log_bound_us", "log_compute_over_memory",
    "log_gemm_m", "log_gemm_n", "log_gemm_k", "log_c_in", "log_c_out", "kernel_area", "stride",
    "log_groups", "depthwise", "log_spatial_out", "log_reduction", "log_out_numel", "log_in_numel",
    "n_inputs", "out_rank", "log_ws_over_cache", "constant",
    "hw_log_gflops", "hw_log_gbps", "hw_cores",
)


@dataclass(frozen=True)
class DeviceFigures:
    """What the operator model knows of a device: attainable rates, cache, parallelism."""

    name: str
    gflops: float  # dense fp32 (or the dtype's tensor rate, see tensor_gflops)
    gbps: float
    cache_mb: float = 1.0
    cores: int = 1
    tensor_gflops: dict[str, float] = field(default_factory=dict)

    def peak_flops(self, dtype: str, tensor: bool) -> float:
        if tensor and dtype in self.tensor_gflops:
            return self.tensor_gflops[dtype] * 1e9
        return self.gflops * 1e9

    @classmethod
    def from_hardware(cls, hw: dict) -> "DeviceFigures":
        """From a ``hardware.json`` whose ``roofline`` was measured by ``collect --ops``."""
        r = hw.get("roofline") or {}
        if not r.get("peak_gflops_fp32") or not r.get("bandwidth_gbps"):
            from .._errors import InvalidInputError

            raise InvalidInputError("hardware.json has no measured roofline (collect with --ops measures one)")
        return cls(name=str(hw.get("name", "?")), gflops=float(r["peak_gflops_fp32"]), gbps=float(r["bandwidth_gbps"]),
                   cache_mb=float(r.get("cache_mb") or 1.0), cores=int(r.get("threads") or hw.get("cpu_count") or 1))

    @classmethod
    def from_device(cls, dev) -> "DeviceFigures":
        """From a device-database entry (datasheet figures)."""
        tensor = {d: dev.peak_flops(d, tensor=True) / 1e9 for d in ("fp16", "bf16", "tf32")
                  if dev.peak_flops(d, tensor=True) > 0}
        return cls(name=dev.name, gflops=dev.peak_flops("fp32", tensor=False) / 1e9, gbps=dev.memory_bandwidth_gbps,
                   cache_mb=float(dev.l2_cache_mb or 1.0), cores=int(dev.sm_count or 1), tensor_gflops=tensor)


def _lg(v: float) -> float:
    return math.log10(1.0 + max(0.0, float(v)))


def _gemm(n) -> tuple[float, float, float]:
    """Implicit-GEMM sizes (M, N, K) of a matmul or convolution node; zeros otherwise."""
    out = n.out_shapes[0] if n.out_shapes else ()
    if not out:
        return 0.0, 0.0, 0.0
    a = n.attrs
    if n.kind == "matmul":
        k = float(a.get("k") or (n.in_shapes[0][-1] if n.in_shapes and n.in_shapes[0] else 1))
        return float(math.prod(out[:-1]) if len(out) > 1 else 1), float(out[-1]), k
    if n.kind in ("conv", "conv_transpose") and len(out) >= 3:
        groups = int(a.get("groups", 1) or 1)
        cin = float(n.in_shapes[0][1]) if n.in_shapes and len(n.in_shapes[0]) > 1 else 1.0
        kern = math.prod(a.get("kernel") or [1])
        return float(out[0] * math.prod(out[2:])), float(out[1]) / groups, cin / groups * kern
    return 0.0, 0.0, 0.0


def _phase_scale(n, phase: str) -> float:
    """The work of node ``n``'s ``phase`` as a multiple of its forward: a backward twice it (the input's
    gradient and the weight's), once for a GEMM or convolution whose parameters are frozen (the input's
    gradient only)."""
    if phase != "backward":
        return 1.0
    return 1.0 if n.attrs.get("frozen") and n.kind in TENSOR_KINDS else 2.0


def bound_s(n, phase: str, figs: DeviceFigures, dtype: str) -> tuple[float, float]:
    """``(compute_s, memory_s)`` of node ``n`` in ``phase`` (:func:`_phase_scale` of its forward)."""
    scale = _phase_scale(n, phase)
    tensor = n.kind in TENSOR_KINDS and n.flops > 0
    c = scale * n.flops / figs.peak_flops(dtype, tensor)
    m = scale * (n.bytes_read + n.bytes_written) / (figs.gbps * 1e9)
    return c, m


op_bound_s = bound_s  # the public name (``costmodel.predictors.op_bound_s``)


def node_dtype(n, default: str = "fp32") -> str:
    for d in list(n.out_dtypes) + list(n.in_dtypes):
        if d in DTYPES:
            return d
    return default


def op_features(n, phase: str, figs: DeviceFigures, dtype: str | None = None, *, training: bool | None = None) -> list[float]:
    """The operator model's features of node ``n`` in ``phase``; ``training``: whether the operator runs in a
    training step (grad mode) rather than under inference mode, where PyTorch may pick other kernels
    (default: a backward operator does)."""
    dtype = dtype or node_dtype(n)
    training = phase == "backward" if training is None else training
    c, m = bound_s(n, phase, figs, dtype)
    kind = [0.0] * len(OP_KINDS)
    kind[OP_KINDS.index(n.kind)] = 1.0
    cat = [0.0] * len(CATEGORIES)
    cat[CATEGORIES.index(n.category)] = 1.0
    a = n.attrs
    out = n.out_shapes[0] if n.out_shapes else ()
    inp = n.in_shapes[0] if n.in_shapes else ()
    out_n = math.prod(out) if out else 0
    in_n = math.prod(inp) if inp else 0
    gm, gn, gk = _gemm(n)
    conv = n.kind in ("conv", "conv_transpose")
    groups = int(a.get("groups", 1) or 1) if conv else 1
    cin = inp[1] if conv and len(inp) > 1 else 0
    cout = out[1] if conv and len(out) > 1 else 0
    nbytes = n.bytes_read + n.bytes_written
    scale = _phase_scale(n, phase)
    return [
        *kind, *cat, float(phase == "backward"), float(training), *(float(dtype == d) for d in DTYPES),
        float(n.kind in TENSOR_KINDS),
        _lg(scale * n.flops) / 10, _lg(scale * nbytes) / 10, _lg(n.flops / nbytes if nbytes else 0.0),
        _lg(max(c, m) * 1e6), max(-3.0, min(3.0, math.log10((c + 1e-12) / (m + 1e-12)))),
        _lg(gm) / 5, _lg(gn) / 5, _lg(gk) / 5, _lg(cin) / 4, _lg(cout) / 4,
        float(math.prod((a.get("kernel") or [1])[-2:])) / 10 if conv or n.kind in ("max_pool", "avg_pool") else 0.0,
        float(max(a.get("stride") or [1])), _lg(groups) / 4,
        float(conv and groups > 1 and groups == cout), _lg(math.prod(out[2:]) if conv and len(out) > 2 else 0) / 5,
        _lg(in_n / out_n if out_n else 0.0) / 4, _lg(out_n) / 8, _lg(in_n) / 8,
        float(len(n.in_shapes)), float(len(out)),
        math.log10(max(1.0, nbytes) / (figs.cache_mb * 2**20)), float(bool(a.get("constant"))),
        math.log10(figs.gflops), math.log10(figs.gbps), math.log10(max(1, figs.cores)),
    ]


def has_backward(n) -> bool:
    """Whether autograd runs a backward function for this node in a training step."""
    return (not n.is_view and not n.attrs.get("constant") and n.kind not in ("dropout", "other")
            and (n.flops > 0 or n.bytes_read + n.bytes_written > 0))


# ------------------------------------------------------------------ the efficiency regressor
class OpEfficiencyModel:
    """``log(time / bound)`` regressor (XGBoost or MLP) with a floor for operators with no work."""

    def __init__(self, backend: str = "xgb", *, seed: int = 0, rounds: int = 300, hidden: int = 64,
                 epochs: int = 30, weight_power: float = 0.0) -> None:
        if backend not in BACKENDS:
            from .._errors import InvalidInputError

            raise InvalidInputError(f"operator model backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.backend, self.seed, self.rounds, self.hidden, self.epochs = backend, seed, rounds, hidden, epochs
        #: training weight of an operator: (its time)^power (0: every operator counts the same)
        self.weight_power = weight_power
        self.floor_us = 1.0
        self.t_range = (-10.0, 20.0)  # predictions stay within the log ratios seen in training
        self._booster = None
        self._weights: list[np.ndarray] | None = None
        self._mean = self._std = None

    def fit(self, X: np.ndarray, bound_us: np.ndarray, y_us: np.ndarray) -> "OpEfficiencyModel":
        X = np.asarray(X, np.float32)
        bound_us = np.asarray(bound_us, np.float64)
        y_us = np.asarray(y_us, np.float64)
        work = bound_us > 1e-3
        self.floor_us = float(np.median(y_us[~work])) if (~work).any() else float(np.percentile(y_us, 5))
        t = np.log(np.maximum(y_us[work], 1e-3) / bound_us[work])
        self.t_range = (float(t.min()), float(t.max()))
        w = np.maximum(y_us[work], 1e-3) ** self.weight_power
        w = w / w.mean()
        if self.backend == "xgb":
            self._fit_xgb(X[work], t, w)
        else:
            self._fit_mlp(X[work], t, w)
        return self

    def _fit_xgb(self, X, t, w) -> None:
        import xgboost as xgb

        params = {"max_depth": 7, "eta": 0.06, "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 3,
                  "objective": "reg:squarederror", "seed": self.seed, "nthread": 2, "verbosity": 0}
        self._booster = xgb.train(params, xgb.DMatrix(X, label=t, weight=w), num_boost_round=self.rounds)

    def _fit_mlp(self, X, t, w) -> None:
        import torch

        torch.manual_seed(self.seed)
        self._mean = X.mean(0)
        self._std = X.std(0) + 1e-3
        xs = torch.as_tensor((X - self._mean) / self._std, dtype=torch.float32)
        ys = torch.as_tensor(t, dtype=torch.float32)
        ws = torch.as_tensor(w, dtype=torch.float32)
        net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], self.hidden), torch.nn.SiLU(),
                                  torch.nn.Linear(self.hidden, self.hidden), torch.nn.SiLU(),
                                  torch.nn.Linear(self.hidden, 1))
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
        steps = self.epochs * max(1, math.ceil(len(xs) / 256))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            perm = torch.randperm(len(xs), generator=g)
            for i in range(0, len(xs), 256):
                idx = perm[i:i + 256]
                opt.zero_grad()
                err = torch.nn.functional.huber_loss(net(xs[idx]).squeeze(-1), ys[idx], delta=0.5, reduction="none")
                loss = (err * ws[idx]).mean()
                loss.backward()
                opt.step()
                sched.step()
        self._weights = [p.detach().numpy().astype(np.float64) for p in net.parameters()]

    def log_ratio(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float32)
        if len(X) == 0:
            return np.zeros(0)
        if self.backend == "xgb":
            import xgboost as xgb

            return self._booster.predict(xgb.DMatrix(X)).astype(np.float64)
        h = (X - self._mean) / self._std
        w = self._weights
        for i in range(0, len(w) - 2, 2):
            h = h @ w[i].T + w[i + 1]
            h = h / (1.0 + np.exp(-h))
        return (h @ w[-2].T + w[-1])[:, 0]

    def predict_us(self, X: np.ndarray, bound_us: np.ndarray) -> np.ndarray:
        bound_us = np.asarray(bound_us, np.float64)
        out = np.full(len(bound_us), self.floor_us)
        work = bound_us > 1e-3
        if work.any():
            t = np.clip(self.log_ratio(np.asarray(X)[work]), *self.t_range)
            out[work] = bound_us[work] * np.exp(t)
        return out

    # ------------------------------------------------------------------ files (JSON, no pickle)
    def to_dict(self) -> dict:
        d: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "backend": self.backend,
                             "feature_names": list(FEATURE_NAMES), "floor_us": self.floor_us,
                             "t_range": list(self.t_range)}
        if self.backend == "xgb":
            d["booster"] = json.loads(bytes(self._booster.save_raw("json")).decode())
        else:
            d["mean"] = self._mean.tolist()
            d["std"] = self._std.tolist()
            d["weights"] = [w.tolist() for w in self._weights]
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "operator model") -> "OpEfficiencyModel":
        from .._errors import ArtifactError

        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ArtifactError(f"{where}: not a {FORMAT} file")
        if d.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{where}: format_version {d.get('format_version')!r}, this library reads {FORMAT_VERSION}")
        if d.get("feature_names") != list(FEATURE_NAMES):
            raise ArtifactError(f"{where}: its feature names differ from this library's")
        m = cls(d.get("backend", "?") if d.get("backend") in BACKENDS else "xgb")
        if d.get("backend") not in BACKENDS:
            raise ArtifactError(f"{where}: backend {d.get('backend')!r}; valid: {', '.join(BACKENDS)}")
        try:
            m.floor_us = float(d["floor_us"])
            m.t_range = (float(d["t_range"][0]), float(d["t_range"][1]))
            if m.backend == "xgb":
                import xgboost as xgb

                m._booster = xgb.Booster()
                m._booster.load_model(bytearray(json.dumps(d["booster"]).encode()))
            else:
                m._mean = np.asarray(d["mean"], np.float32)
                m._std = np.asarray(d["std"], np.float32)
                m._weights = [np.asarray(w, np.float64) for w in d["weights"]]
                if len(m._mean) != len(FEATURE_NAMES) or m._std.shape != m._mean.shape:
                    raise ValueError("mean/std do not match the features")
                w, width = m._weights, len(FEATURE_NAMES)
                if len(w) < 2 or len(w) % 2:
                    raise ValueError(f"{len(w)} weight tensors, expected (matrix, bias) pairs")
                for i in range(0, len(w), 2):
                    if w[i].ndim != 2 or w[i].shape[1] != width or w[i + 1].shape != (w[i].shape[0],):
                        raise ValueError(f"weight tensor {i} or its bias does not match the layer before")
                    width = w[i].shape[0]
                if width != 1:
                    raise ValueError(f"the last layer has {width} outputs, expected 1")
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise ArtifactError(f"{where}: bad model content ({e})") from None
        return m


# ------------------------------------------------------------------ joining op rows to graphs
def labelled_ops(graph, op_rows: Iterable[dict]) -> list[tuple[Any, str, float, float]]:
    """``(node, phase, device_us, cpu_us)`` for the mapped rows of one run whose node matches the graph."""
    by_id = {n.id: n for n in graph.nodes}
    out = []
    for r in op_rows:
        if not r.get("mapped") or r.get("node") is None or r.get("phase") not in PHASES:
            continue
        n = by_id.get(r["node"])
        if n is None or n.op.replace(".", "::", 1) != r.get("op"):
            continue  # the graph was built differently from the profiled one: never guess
        out.append((n, r["phase"], float(r["device_us"]), float(r["cpu_us"])))
    return out


# ------------------------------------------------------------------ whole-model composition (synchronous)
HOST_TERMS = ("op", "view", "module", "call", "backward", "optimizer_tensor")


@dataclass
class Composition:
    """One workload's operators on one device: features, bounds and host counts."""

    X: np.ndarray
    bound_us: np.ndarray
    node: np.ndarray
    phase: np.ndarray  # 0 forward, 1 backward
    host_counts: np.ndarray  # per HOST_TERMS
    optimizer_us: float = 0.0
    #: MiB of parameter tensors at least MMAP_THRESHOLD_BYTES large (their optimizer temporaries are fresh pages)
    optimizer_fresh_mb: float = 0.0


#: glibc's largest mmap threshold on 64-bit Linux (``DEFAULT_MMAP_THRESHOLD_MAX``, 32 MiB): the CPU
#: allocator maps every block at least this large afresh, so each write to a new one page-faults
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: optimizers whose CPU step allocates temporaries the size of each parameter tensor (SGD updates in place)
OPTIMIZERS_WITH_TEMPORARIES = ("adam", "adamw")


def optimizer_fresh_mb(graph) -> float:
    """MiB of the parameter tensors of ``graph`` that are at least :data:`MMAP_THRESHOLD_BYTES` large.

    On a CPU, PyTorch's Adam and AdamW update one tensor at a time and allocate temporaries of its size
    every step (the square root of the second moment, divided by its bias correction); a temporary that
    large is a fresh mapping whose every page faults when first written, so the update of such a tensor
    costs several times its streaming time (alexnet's and VGG's classifier weights). A tensor read by two
    operators (tied weights) counts twice, as in the step's tensor count."""
    total = 0
    for n in graph.nodes:
        if n.attrs.get("frozen"):
            continue  # the optimizer never updates a frozen parameter
        for shape, dt, is_param in zip(n.in_shapes, n.in_dtypes, n.param_inputs):
            if is_param and dt:
                b = (math.prod(shape) if shape else 1) * dtype_bytes(dt)
                if b >= MMAP_THRESHOLD_BYTES:
                    total += b
    return total / 2**20


def compose(graph, figs: DeviceFigures, *, mode: str, optimizer: str = "adam") -> Composition:
    """The operators ``graph`` runs for one call (training: forward, backward, one ``optimizer`` step)."""
    rows, bounds, ids, phases = [], [], [], []
    ops = [n for n in graph.nodes if not n.is_view]
    # a frozen prefix (operators whose outputs need no gradient) has no backward; its forward keeps the
    # training step's features: the module is in train mode, so PyTorch runs the same kernels (batch norms
    # compute batch statistics; profiled, a 6-layer ViT's forward took 583 ms in the full step and 589 ms
    # with all but its head frozen)
    # frozen or not: the operators no trainable parameter reaches (preprocessing of the input) have none
    needs = graph.needs_gradient(always=True) if mode == "training" else None
    for n in ops:
        dt = node_dtype(n, graph.meta.get("dtype", "fp32"))
        rows.append(op_features(n, "forward", figs, dt, training=mode == "training"))
        bounds.append(max(bound_s(n, "forward", figs, dt)) * 1e6)
        ids.append(n.id)
        phases.append(0)
    n_bwd = 0
    opt_us = fresh_mb = 0.0
    if mode == "training":
        for n in reversed(ops):
            if not has_backward(n) or (needs is not None and not needs[n.id]):
                continue
            dt = node_dtype(n, graph.meta.get("dtype", "fp32"))
            rows.append(op_features(n, "backward", figs, dt, training=True))
            bounds.append(max(bound_s(n, "backward", figs, dt)) * 1e6)
            ids.append(n.id)
            phases.append(1)
            n_bwd += 1
        pbytes = optimizer_operands(graph)[1]
        opt_us = _OPT_BYTES[optimizer] * pbytes / (figs.gbps * 1e9) * 1e6
        fresh_mb = optimizer_fresh_mb(graph) if optimizer in OPTIMIZERS_WITH_TEMPORARIES else 0.0
    n_tensors = trainable_tensors(graph, sum(sum(1 for p in n.param_inputs if p) for n in ops)) if mode == "training" else 0
    calls = module_calls(graph) * (2 if mode == "training" else 1)
    counts = np.asarray([len(ops), sum(1 for n in graph.nodes if n.is_view), calls, 1.0, n_bwd, n_tensors], float)
    X = np.asarray(rows, np.float32) if rows else np.zeros((0, len(FEATURE_NAMES)), np.float32)
    return Composition(X, np.asarray(bounds), np.asarray(ids), np.asarray(phases), counts, opt_us, fresh_mb)


@dataclass
class HostCosts:
    """Host microseconds per unit of each :data:`HOST_TERMS` count, the optimizer's roofline scale, and
    the optimizer's microseconds per MiB of parameters in tensors it updates through fresh pages
    (:func:`optimizer_fresh_mb`)."""

    us: list[float]
    optimizer_scale: float = 1.0
    source: str = "fitted"
    optimizer_fresh_us_per_mb: float = 0.0

    @classmethod
    def fit(cls, comps: Sequence[Composition], device_us: Sequence[float], latency_us: Sequence[float]) -> "HostCosts":
        """Non-negative least squares (relative error) of the latency left after the operators' time."""
        y = np.asarray(latency_us, float)
        D = np.asarray(device_us, float)
        A = np.stack([c.host_counts for c in comps])
        opt = np.asarray([[c.optimizer_us, c.optimizer_fresh_mb] for c in comps]).reshape(len(comps), 2)
        A = np.concatenate([A, opt], axis=1)
        resid = np.maximum(y - D, 0.05 * y)
        w = nnls_relative(A, resid, iters=5000) if len(y) else np.zeros(A.shape[1])
        return cls(us=[float(v) for v in w[:-2]], optimizer_scale=float(w[-2]), source=f"fitted to {len(y)} rows",
                   optimizer_fresh_us_per_mb=float(w[-1]))

    def optimizer_us(self, comp: Composition, bandwidth_ratio: float = 1.0) -> float:
        """The optimizer step's microseconds (0 outside training); ``bandwidth_ratio``: the profiled CPU's copy
        bandwidth over the one asked about (its sweep streams the parameters)."""
        return (self.optimizer_scale * comp.optimizer_us * bandwidth_ratio
                + self.optimizer_fresh_us_per_mb * comp.optimizer_fresh_mb)

    def latency_us(self, comp: Composition, device_us: float, bandwidth_ratio: float = 1.0) -> float:
        return float(device_us + comp.host_counts @ np.asarray(self.us) + self.optimizer_us(comp, bandwidth_ratio))


def load_op_dataset(root: str | Path | None = None, *, device: str = "cpu", progress: bool = False,
                    include_excluded: bool = False):
    """The runs profiled per operator on ``device``: ``(dataset, graphs, labelled ops per row, figures)``.

    Runs whose row carries an ``excluded`` reason (measured while the machine ran slower; see the
    data's notes) are left out unless ``include_excluded``.

    Reads ``<root>/<device>/ops_vision.jsonl``, ``ops_llm.jsonl``, their operator
    rows (``ops.jsonl.gz`` or ``ops.jsonl``) and the measured roofline in
    ``hardware.json``.  Graphs are rebuilt with the trace frontend (as profiled);
    an operator row joins its node only if the node's ATen name is the profiled one.
    """
    import gzip

    from .._errors import ModelLoadError
    from ..measure import key_of_row as _key_of_row
    from ..datasets import PerfDataset
    from ..datasets import default_root

    folder = Path(root if root is not None else default_root()) / device
    path = folder / "ops.jsonl.gz"
    if not path.exists():
        path = folder / "ops.jsonl"
    if not path.exists() or not (folder / "hardware.json").exists():
        raise ModelLoadError(f"no operator profiles under {folder} (ops.jsonl[.gz] and hardware.json; "
                             "`costmodel collect --ops` writes them)")
    ds = PerfDataset.load(folder.parent, device=device, kinds=("vision", "llm"), prefix="ops_", method="trace")
    ds = ds.subset([i for i, r in enumerate(ds.rows)
                    if r.graph_supported and (include_excluded or not r.raw.get("excluded"))])
    figs = DeviceFigures.from_hardware(json.loads((folder / "hardware.json").read_text()))
    by_key: dict[str, list[dict]] = {}
    with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as f:
        for line in f:
            r = json.loads(line)
            by_key.setdefault(r["key"], []).append(r)
    graphs = [_profiled_graph(ds, i) for i in _progress(range(len(ds)), progress)]
    ops = [run_labels(g, r, by_key.get(_key_of_row(r.raw), [])) for g, r in zip(graphs, ds.rows)]
    return ds, graphs, ops, figs


def run_labels(graph, row, op_rows: Iterable[dict]) -> list[tuple[Any, str, float, float]]:
    """:func:`labelled_ops` of one profiled run, or none (with a warning) when ``graph`` does not have
    as many nodes as the graph the run was mapped onto: the rows' node indices would then point at
    other operators, and an operator of the same ATen name elsewhere would take a wrong label."""
    built = (row.raw.get("ops") or {}).get("graph_nodes")
    if built is not None and int(built) != len(graph.nodes):
        warnings.warn(f"{row.model} ({row.mode}, batch {row.batch}): its graph has {len(graph.nodes)} nodes, the "
                      f"profiled run's had {built}; its operator rows are left unlabelled", stacklevel=2)
        return []
    return labelled_ops(graph, op_rows)


def _progress(it, on: bool):
    if not on:
        return it
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return it
    return tqdm(it, desc="featurizing", unit="graph", leave=False)


def profiled_with_fused_paths(row) -> bool:
    """Whether ``collect --ops`` mapped this run's operators onto a graph with the fused paths
    (:func:`~costmodel.frontends.from_torch`'s ``fused``): runs profiled before frontend version 5
    recorded no frontend version and were mapped onto graphs without them."""
    ops = row.raw.get("ops") if isinstance(row.raw.get("ops"), dict) else {}
    return int(ops.get("frontend", 4)) >= 5


def _profiled_graph(ds, i: int):
    """Row ``i``'s graph as ``collect --ops`` built it: the trace frontend, on meta tensors where the
    model allows, else (a decoder whose mask code reads tensor values) once on the CPU with real
    weights, as the profiled run did (cached like every graph), with or without the fused paths as
    then (:func:`profiled_with_fused_paths`): the operator rows name the nodes by their index."""
    return row_graph(ds, i, fused=profiled_with_fused_paths(ds.rows[i]))


def row_graph(ds, i: int, *, fused: bool = True):
    """Row ``i``'s graph by the trace frontend, on meta tensors where the model allows, else (a model
    whose code reads tensor values, as DeBERTa's relative positions do) once on the CPU with real
    weights, as the measured run did; cached like every graph."""
    from .._errors import ModelLoadError

    try:
        return ds.graph(i, fused=fused)
    except ModelLoadError:
        r = ds.rows[i]
        if r.kind != "llm":
            raise
    from ..frontends import cached_graph

    desc = {"hf": r.spec["model_type"], "config": r.spec["config"], "batch": r.batch, "seq": r.seq,
            "mode": "inference", "method": "trace", "causal": r.spec.get("causal"), "real_weights": True}
    if r.spec.get("target_seq") is not None:
        desc["target_seq"] = r.spec["target_seq"]
    if not fused:
        desc["fused"] = False
    return cached_graph(desc, lambda: _real_trace(r, fused))


def _real_trace(r, fused: bool = True):
    import torch

    from ..measure import build_llm as _build_llm
    from ..frontends import from_torch
    from ..frontends.hf import seq2seq_inputs

    model, _ = _build_llm({"model": r.model, **r.spec}, torch.device("cpu"))
    ids = torch.zeros((r.batch, r.seq), dtype=torch.long)
    kw = ({"use_cache": False} if r.spec.get("causal")  # as the row was measured
          else seq2seq_inputs(model, ids, r.spec.get("target_seq")))
    g = from_torch(model, {"input_ids": ids, **kw}, method="trace", name=r.model, fused=fused)
    g.meta.update({"seq": r.seq, "model_type": r.spec["model_type"], "causal": r.spec.get("causal")})
    return g


LABELS = ("device_us", "cpu_us")


def op_arrays(rows: Iterable[int], ops, figs: DeviceFigures, label: str = "device_us", modes=None):
    """Features, bounds (us), labels (us) and row index of the labelled operators of ``rows``.

    ``label``: ``device_us`` (the operator's own time) or ``cpu_us`` (with the dispatch of the
    wrappers around it, what the host thread spends on it).  ``modes[i]``: row ``i``'s mode
    (``training`` or ``inference``), which the features see."""
    X, B, Y, R = [], [], [], []
    for i in rows:
        training = modes is not None and modes[i] == "training"
        for n, phase, dev_us, cpu_us in ops[i]:
            dev_us = dev_us if label == "device_us" else cpu_us
            dt = node_dtype(n)
            X.append(op_features(n, phase, figs, dt, training=training or phase == "backward"))
            B.append(max(bound_s(n, phase, figs, dt)) * 1e6)
            Y.append(dev_us)
            R.append(i)
    return np.asarray(X, np.float32).reshape(-1, len(FEATURE_NAMES)), np.asarray(B), np.asarray(Y), np.asarray(R)


def transfer_ratios(graph, comp: Composition, ref: DeviceFigures, target: DeviceFigures) -> np.ndarray:
    """Per operator of ``comp`` (composed on ``ref``): its roofline bound on ``target`` over its bound on
    ``ref``. An operator held at the same fraction of its bound takes this multiple of its time: a GEMM
    moves with the GEMM rate, an elementwise operator with the copy bandwidth, and one near the ridge
    point with whichever of the two bounds it on ``target``."""
    nodes = {n.id: n for n in graph.nodes}
    dflt = graph.meta.get("dtype", "fp32")
    out = np.ones(len(comp.node))
    for i, (nid, ph) in enumerate(zip(comp.node, comp.phase)):
        n = nodes[int(nid)]
        phase, dt = PHASES[int(ph)], node_dtype(n, dflt)
        b0 = max(bound_s(n, phase, ref, dt))
        if b0 > 0:
            out[i] = max(bound_s(n, phase, target, dt)) / b0
    return out


class OpTimeline:
    """A device's operator model and host costs: whole-model latency on a synchronous device."""

    def __init__(self, figs: DeviceFigures, model: OpEfficiencyModel, host: HostCosts, trained_on: dict) -> None:
        self.figs, self.model, self.host, self.trained_on = figs, model, host, trained_on

    @classmethod
    def fit(cls, ds, graphs, ops, figs: DeviceFigures, rows: Sequence[int] | None = None,
            backend: str = "xgb", label: str = "device_us", weight_power: float = 0.0) -> "OpTimeline":
        rows = list(range(len(ds))) if rows is None else list(rows)
        X, B, Y, _ = op_arrays(rows, ops, figs, label, modes=[r.mode for r in ds.rows])
        model = OpEfficiencyModel(backend, weight_power=weight_power).fit(X, B, Y)
        comps = [compose(graphs[i], figs, mode=ds.rows[i].mode) for i in rows]
        dev = [float(model.predict_us(c.X, c.bound_us).sum()) for c in comps]
        host = HostCosts.fit(comps, dev, [ds.rows[i].latency_ms * 1e3 for i in rows])
        info = {"device": figs.name, "runs": len(rows), "operators": int(len(Y)), "label": label,
                "weight_power": weight_power, "backend": backend,
                "families": sorted({ds.rows[i].family for i in rows})}
        return cls(figs, model, host, info)

    def predict(self, graph, mode: str, optimizer: str = "adam", target: DeviceFigures | None = None) -> dict:
        """Latency and its parts (ms) for one call of ``graph``.

        ``target``: the measured roofline of another CPU (or thread count). The operators keep the
        fraction of their roofline bound that the profiled CPU reached (:func:`transfer_ratios`), the
        optimizer's sweep moves with the copy bandwidth, and the per-operator host costs stay as fitted.
        """
        c = compose(graph, self.figs, mode=mode, optimizer=optimizer)
        dev = self.model.predict_us(c.X, c.bound_us)
        bound, bw_ratio = c.bound_us, 1.0
        if target is not None:
            ratio = transfer_ratios(graph, c, self.figs, target)
            dev, bound, bw_ratio = dev * ratio, bound * ratio, self.figs.gbps / target.gbps
        opt_us = self.host.optimizer_us(c, bw_ratio)
        host_us = c.host_counts * np.asarray(self.host.us)
        lat = self.host.latency_us(c, float(dev.sum()), bw_ratio)
        top = np.argsort(-dev)[:10]
        return {"latency_ms": lat / 1e3, "device_ms": float(dev.sum()) / 1e3,
                "host_ms": float(host_us.sum() + opt_us) / 1e3,
                # with the optimizer's sweep, which a training step's host lane also runs: they add up to host_ms
                "host_terms_ms": {**{t: float(v) / 1e3 for t, v in zip(HOST_TERMS, host_us)},
                                  "optimizer_step": float(opt_us) / 1e3},
                "top": [{"node": int(c.node[i]), "phase": PHASES[int(c.phase[i])], "op": graph.nodes[int(c.node[i])].op,
                         "device_ms": float(dev[i]) / 1e3,
                         "efficiency": float(bound[i] / dev[i]) if dev[i] > 0 else None} for i in top]}

    def to_dict(self) -> dict:
        return {"format": FORMAT + "-timeline", "format_version": FORMAT_VERSION, "figures": asdict(self.figs),
                "host_terms": list(HOST_TERMS), "host": asdict(self.host), "trained_on": self.trained_on,
                "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "OpTimeline":
        from .._errors import ArtifactError

        if not isinstance(d, dict) or d.get("format") != FORMAT + "-timeline":
            raise ArtifactError(f"{where}: not a {FORMAT}-timeline file")
        if d.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{where}: format_version {d.get('format_version')!r}, this library reads {FORMAT_VERSION}")
        if d.get("host_terms") != list(HOST_TERMS):
            raise ArtifactError(f"{where}: its host terms differ from this library's")
        try:
            figs = DeviceFigures(**d["figures"])
            host = HostCosts(**d["host"])
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{where}: bad figures or host costs ({e})") from None
        if (not isinstance(host.us, list) or len(host.us) != len(HOST_TERMS)
                or not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in host.us)):
            raise ArtifactError(f"{where}: host.us must be {len(HOST_TERMS)} finite numbers >= 0")
        for name in ("optimizer_scale", "optimizer_fresh_us_per_mb"):
            s = getattr(host, name)
            if not (isinstance(s, (int, float)) and math.isfinite(s) and s >= 0):
                raise ArtifactError(f"{where}: host.{name} must be a finite number >= 0")
        if not (figs.gflops > 0 and figs.gbps > 0):
            raise ArtifactError(f"{where}: figures need positive gflops and gbps")
        return cls(figs, OpEfficiencyModel.from_dict(d.get("model"), where), host, dict(d.get("trained_on") or {}))


# ------------------------------------------------------------------ another CPU
def cpu_target(host_profile) -> DeviceFigures | None:
    """The CPU a host profile was calibrated on, as the operator model's figures (its measured roofline at
    the thread count it was calibrated at), or ``None`` when the profile carries no roofline: the
    ``target`` of :meth:`OpTimeline.predict` (``benchmarks/cpu_transfer.py``)."""
    roof = getattr(host_profile, "roofline", None) if host_profile is not None else None
    if not roof:
        return None
    name = str((host_profile.host or {}).get("cpu") or "the calibrated CPU")
    return DeviceFigures(name=name, gflops=float(roof["peak_gflops_fp32"]), gbps=float(roof["bandwidth_gbps"]),
                         cores=int(roof.get("threads") or 1))


def cpu_model_note(tl: "OpTimeline") -> str:
    """What a CPU estimate assumed about the CPU it is for."""
    f = tl.figs
    return (f"CPU operator model trained on {tl.trained_on.get('operators', '?')} operator profiles of {f.name} at "
            f"{f.cores} thread(s) ({f.gflops:.0f} GFLOP/s, {f.gbps:.0f} GB/s measured): another CPU or thread count "
            "runs at its own speed (on two other 2-core CPUs these estimates were 26-45 % off; docs/results.md)")
