"""The timeline predictor: each operator under its roofline, composed on a host/device timeline.

Where it sits: CostGraph -> operator sequence (forward; for training also the
backward kernels and the optimizer update) -> per-operator device time and host
cost -> two lanes (:mod:`costmodel.analysis._timeline`) -> latency and energy.

Per operator ``i`` on device ``D``::

    device_i = bound_i / efficiency(op features, device features) + kernel floor
    bound_i  = max(FLOPs_i / peak_D(dtype, tensor cores?), bytes_i / bandwidth_D)
    host_i   = dispatch cost of the operator's class (a host profile: measured by
               ``costmodel calibrate`` or fitted to the rows of the machine that measured them)
               x m(op features),  m in [1/4, 4]

``m`` is a second small MLP (a tanh output bounded to a factor of four either
way): what an operator costs the host depends on more than its class. cuDNN and
cuBLAS choose an algorithm per shape and dtype, and some algorithms launch
several kernels (layout transforms around fp16 convolutions on NCHW tensors,
split-K reductions, separate bias and activation kernels), each with its own
launch. Per-class costs alone leave host-bound rows at 28 % error on held-out
families; with ``m`` they reach 19 % (``benchmarks/timeline.py``, docs/results.md).
The class costs carry the machine (a host profile replaces them), ``m`` the
library's behaviour per operator, which a faster host does not change. ``m``
sees neither the dtype nor the GPU (``TimelineConfig.host_blind``): one graph's
host lane is the same on every GPU, and the kernels a dtype adds are rows of their own.

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
and every host class. The loss is the mean *absolute* log error (``loss="l1"``):
launch-bound labels carry the measuring host's slow and fast spells (the same
operators measured up to 1.7x apart), and the median they estimate is what a
MAPE scores; the squared error let such rows pull the fit. Energy is then fitted on the same
timeline: each kernel's time times a power that grows with how close it runs to its roofline (one
intercept and slope per op class, on the share of the SMs it keeps busy), plus a static power over
the whole call (the device idles while the host dispatches).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from .._errors import CostModelError, InvalidInputError
from ..devices import cuda_core_conv_note, get_device
from ..estimate import PREDICTOR_MEMORY_NOTE, Estimate, finish_estimate
from ..ir import node_columns
from ._artifact import record_checksums, verify_checksums
from ._artifacts import ShippedArtifact
from ._base import Predictor, built_graphs, items_named, lone_item, validate_mode, validate_optimizer, with_mode_notes
from ._energy import (ENERGY_PHASES, call_energy_j, energy_design, nnls_relative, phase_weights_ok, power_scales,
                      split_weights)
from ._optable import (
    _HOST_INDEX,
    ENERGY_CLASSES,
    FEATURE_NAMES,
    HOST_CLASSES,
    PHASES,
    OpTable,
    _is_cpu,
    op_tables,
    op_tables_by_device,
)
from . import _convreading
from ._skinny import stream_column_of, with_streams
from ._optable import ceilings_mismatch, kernel_ceilings
from ._registry import register_predictor
from ._timeline_lanes import (CUDA_GRAPHS_DECODE_NOTE, attach_intervals, chunk_lanes, host_vector,
                              composed_latency_us, graphed_note, host_sync_nodes, sync_note)
from ._timeline_start import TimelineConfig, _decode_init_us, _host_init_us, interval_table, lane_notes, row_op
from ._timeline_start import blind_inputs, load_timeline_config, mlp as _mlp, trained_on_problem
from ._timeline_start import decode_note as _decode_note, stream_prior_terms
from ._timeline_ops import OpLabels, packaged_op_runs

#: efficiency never drops below this share of the roofline (small kernels are covered by the kernel floor)
MIN_EFFICIENCY = 0.05
#: the host multiplier of an operator lies in [exp(-HOST_RANGE), exp(HOST_RANGE)] (a factor of four)
HOST_RANGE = math.log(4.0)
FORMAT_VERSION = 3

# ---------------------------------------------------------------------- the learned parts
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
    energy_phase_w: list[float] | None = None  # per ENERGY_PHASES: a phase's kernels' own power (older: none)
    host_source: str = "fitted"
    trained_on: dict[str, Any] = field(default_factory=dict)
    #: split-conformal half-widths of |log(measured / predicted)| from leave-one-group-out fits
    #: (:meth:`TimelinePredictor.fit_intervals`): ``{"coverage", "held_out", "rows",
    #: "log_halfwidth": {regime: {target: q}}}`` with regimes ``host`` and ``device``
    intervals: dict[str, Any] | None = None
    #: per host class, the geometric mean of the host multiplier over the training operators: the
    #: multiplier is divided by it, and ``host_us`` holds the class's typical cost (what a host profile
    #: measures), so a host profile replaces like with like
    host_norm: list[float] | None = None
    #: per feature, the smallest and largest standardized value among the training operators: a query
    #: is clipped into this box before either network sees it (see :meth:`TimelinePredictor._scaled_x`)
    lo: list[float] | None = None
    hi: list[float] | None = None
    #: the host's cost of one step of a language model's decode loop, on top of its operators (µs);
    #: ``None`` when no decode row was in the fit
    decode_step_us: float | None = None


def _softplus_inv(y: float) -> float:
    y = max(y, 1e-6)
    return y + math.log(-math.expm1(-y))  # log(exp(y) - 1), stable for large y


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
        self.scaled = torch.as_tensor(_SCALED[cat("host_class")])
        self.hcnt = torch.as_tensor(cat("host_count"), dtype=torch.float32)
        self.ecls = torch.as_tensor(cat("energy_class"))
        self.sync = torch.as_tensor([t.synchronous for t in tables])
        self.decode = torch.as_tensor([float(t.decode) for t in tables], dtype=torch.float32)
        self.stream_us = torch.as_tensor(stream_column_of(tables), dtype=torch.float32)


def _mlp_numpy(weights: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """The output of :func:`_mlp` with these weights (SiLU hidden layers), in numpy, in float32 as the
    network was trained (the output as float64)."""
    h = np.asarray(x, np.float32)
    for i in range(0, len(weights) - 2, 2):
        h = h @ weights[i].T.astype(np.float32, copy=False) + weights[i + 1].astype(np.float32, copy=False)
        h = h / (np.float32(1.0) + np.exp(-h))  # SiLU
    out = h @ weights[-2].T.astype(np.float32, copy=False) + weights[-1].astype(np.float32, copy=False)
    return out[:, 0].astype(np.float64)


#: graphs whose operator rows predict_many stacks for one pass of the networks (bounds its memory)
_CHUNK = 64

#: host classes whose cost the per-operator multiplier scales (the optimizer, module and call rows it does not)
_SCALED = np.array([i < _HOST_INDEX["optimizer_tensor"] for i in range(len(HOST_CLASSES))])


class _Model:
    """Differentiable composition used for fitting (and, through numpy, for prediction)."""

    def __init__(self, in_dim: int, hidden: int, host_hidden: int, host_init_us: float = 8.0):
        import torch

        self.mlp = _mlp(in_dim, hidden)
        self.host_mlp = _mlp(in_dim, host_hidden)
        with torch.no_grad():  # start near 50 % of the roofline, every host multiplier near 1
            self.mlp[-1].bias.fill_(0.0)
            self.host_mlp[-1].weight.mul_(0.01)
            self.host_mlp[-1].bias.fill_(0.0)
        self.host = torch.nn.Parameter(torch.full((len(HOST_CLASSES),), _softplus_inv(host_init_us)))
        self.floor = torch.nn.Parameter(torch.tensor(_softplus_inv(2.0)))
        self.sync = torch.nn.Parameter(torch.tensor(_softplus_inv(10.0)))
        #: log µs of the host's per-step cost of a decode loop (no gradient without decode rows)
        self.decode = torch.nn.Parameter(torch.tensor(math.log(1000.0)))

    def lanes(self, b: _Batch):
        import torch
        import torch.nn.functional as F

        eff = MIN_EFFICIENCY + (1 - MIN_EFFICIENCY) * torch.sigmoid(self.mlp(b.x).squeeze(-1))
        dev = (b.bound_us / eff + F.softplus(self.floor)) * b.kernel
        dev = torch.where(torch.isnan(b.stream_us), dev, b.stream_us.nan_to_num())  # skinny products (._skinny)
        mult = torch.exp(HOST_RANGE * torch.tanh(self.host_mlp(b.x).squeeze(-1)))
        host = F.softplus(self.host)[b.hcls] * b.hcnt * torch.where(b.scaled, mult, torch.ones_like(mult))
        D = torch.zeros(b.n_rows).index_add_(0, b.row, dev)
        H = (torch.zeros(b.n_rows).index_add_(0, b.row, host) + F.softplus(self.host[_HOST_INDEX["call"]])
             + torch.exp(self.decode) * b.decode)
        return dev, eff, H, D

    def latency_us(self, b: _Batch):
        import torch
        import torch.nn.functional as F

        dev, eff, H, D = self.lanes(b)
        lat = torch.where(b.sync, H + D, torch.maximum(H, D)) + F.softplus(self.sync)
        return lat, dev, eff, H, D


def _normalized_host(host_us: np.ndarray, b: _Batch, model: _Model) -> tuple[list[float], list[float]]:
    """Class costs at their typical operator and the per-class divisor of the multiplier (see
    ``TimelineParams.host_norm``); the host lane they give is the fitted one."""
    import torch

    with torch.no_grad():
        z = HOST_RANGE * torch.tanh(model.host_mlp(b.x).squeeze(-1))
    logm = z.numpy().astype(np.float64)
    cls = b.hcls.numpy()
    w = b.hcnt.numpy().astype(np.float64)
    norm = np.ones(len(HOST_CLASSES))
    for k in np.flatnonzero(_SCALED):
        sel = (cls == k) & (w > 0)
        if sel.any():
            norm[k] = float(np.exp(np.average(logm[sel], weights=w[sel])))
    return (host_us * norm).tolist(), norm.tolist()


@register_predictor("timeline")
class TimelinePredictor(ShippedArtifact, Predictor):
    """Operators under their roofline on a host/device timeline (see the module docstring)."""

    name = "timeline"
    models_frozen = True
    version = "1"
    learns_memory = False
    _requires = ()

    def __init__(self, config: TimelineConfig | None = None, *, host=None) -> None:
        self.config = config or TimelineConfig()
        self.params: TimelineParams | None = None
        self._weights: list[np.ndarray] | None = None
        self._host_weights: list[np.ndarray] | None = None
        self.host_profile = None
        self.cuda_graphs = False  # every kernel replayed from one captured CUDA graph (:meth:`with_cuda_graphs`)
        #: operator model + host costs of the CPU, trained on its operator profiles (``fit_cpu_ops``)
        self._cpu = None
        self._cpu_doc: tuple[dict, str] | None = None  # a loaded artifact's CPU model, built on first use
        if host is not None:
            self.set_host(host)

    @property
    def cpu(self):
        """The CPU operator model, or ``None``. A loaded artifact builds it on first use: it needs
        XGBoost (the ``xgb`` extra), which a GPU estimate does not."""
        if self._cpu is None and self._cpu_doc is not None:
            from ._opmodel import OpTimeline

            self._cpu = OpTimeline.from_dict(*self._cpu_doc)
            self._cpu_doc = None
        return self._cpu

    @cpu.setter
    def cpu(self, value) -> None:
        self._cpu, self._cpu_doc = value, None

    def _has_cpu(self) -> bool:
        return self._cpu is not None or self._cpu_doc is not None

    # ------------------------------------------------------------------ host
    def set_host(self, host) -> "TimelinePredictor":
        """Use a host profile (``HostProfile`` or its JSON path) for the host lane instead of the fitted one."""
        from ..measure.host import load_host

        self.host_profile = load_host(host)
        return self

    def with_host(self, host) -> "TimelinePredictor":
        """A copy that uses ``host`` for its host lane (the shipped, cached instance stays as it is)."""
        other = copy.copy(self)
        other.set_host(host)
        return other

    def with_cuda_graphs(self) -> "TimelinePredictor":
        """A copy that costs the step replayed from one captured CUDA graph (see :data:`CUDA_GRAPHS_NOTE`)."""
        other = copy.copy(self)
        other.cuda_graphs = True
        return other

    def _host_vector(self, dev=None) -> tuple[np.ndarray, str | None]:
        assert self.params is not None
        return host_vector(np.asarray(self.params.host_us, dtype=np.float64), self.host_profile, dev)

    # ------------------------------------------------------------------ fitting
    def fit(self, dataset, *, progress: bool = False) -> "TimelinePredictor":
        """Fit the efficiency MLP, the host costs and the energy model to whole-model rows."""
        idx = [i for i, r in enumerate(dataset.rows) if r.graph_supported]
        ops = packaged_op_runs(progress=progress) if self.config.op_weight > 0 else None
        return self.fit_graphs([dataset.graph(i) for i in idx], [dataset.rows[i] for i in idx], progress=progress,
                               op_runs=ops)

    def fit_graphs(self, graphs, rows, *, device=None, progress: bool = False, op_runs=None) -> "TimelinePredictor":
        """Fit to whole-model ``rows`` and, with ``config.op_weight`` > 0, ``op_runs``' kernels (None: packaged)."""
        import torch
        import torch.nn.functional as F

        cfg = self.config
        torch.manual_seed(cfg.seed)
        devs = [get_device(device or r.device) for r in rows]
        tables = op_tables_by_device(graphs, devs, [r.mode for r in rows])
        x = np.concatenate([t.x for t in tables])
        mean, std = x.mean(0), x.std(0) + 1e-3
        b = _Batch(tables, mean, std)
        y = torch.as_tensor([r.latency_ms * 1e3 for r in rows], dtype=torch.float32)
        stream = stream_prior_terms(tables, devs, FEATURE_NAMES) if cfg.stream_prior > 0 else None
        model = _Model(x.shape[1], cfg.hidden, cfg.host_hidden)
        blind_inputs(model.host_mlp[0], cfg.host_blind)
        blind_inputs(model.mlp[0], cfg.device_blind)
        op_fit = OpLabels(packaged_op_runs() if op_runs is None else op_runs, mean, std) if cfg.op_weight > 0 else None
        n_decode = sum(1 for t in tables if t.decode)
        with torch.no_grad():  # host costs start from a least-squares fit of the lightest rows
            model.host.copy_(torch.as_tensor([_softplus_inv(v) for v in _host_init_us(tables, rows)]))
            if n_decode:
                model.decode.fill_(math.log(_decode_init_us(tables, rows, model.host)))
        groups = [{"params": [*model.mlp.parameters(), *model.host_mlp.parameters()], "weight_decay": cfg.weight_decay},
                  {"params": [model.host, model.floor, model.sync], "lr": cfg.lr * 3}]
        if n_decode:  # log-parametrized: a step moves it by a fraction of itself
            groups.append({"params": [model.decode], "lr": cfg.lr * 3})
        opt = torch.optim.Adam(groups, lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
        it = range(cfg.epochs)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="fitting timeline", unit="epoch")
        for _ in it:
            opt.zero_grad()
            lat, _, eff, _, _ = model.latency_us(b)
            err = torch.log(lat) - torch.log(y)
            loss = err.abs().mean() if cfg.loss == "l1" else (err ** 2).mean()
            if stream is not None:  # large streaming kernels toward the device's copy efficiency
                loss = loss + cfg.stream_prior * ((torch.log(eff[stream[0]]) - stream[1]) ** 2).mean()
            if op_fit is not None:
                loss = loss + cfg.op_weight * op_fit.loss(model, cfg.loss, MIN_EFFICIENCY)
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            lat, dev, eff, _, _ = model.latency_us(b)
        trained_on = {"rows": len(rows), "devices": sorted({d.name for d in devs}), "decode_rows": n_decode,
                      **({"stream_prior_rows": len(stream[0])} if stream is not None else {}),
                      **(op_fit.summary() if op_fit is not None else {})}
        self._weights = [p.detach().numpy().astype(np.float32) for p in model.mlp.parameters()]
        self._host_weights = [p.detach().numpy().astype(np.float32) for p in model.host_mlp.parameters()]
        host_us, host_norm = _normalized_host(F.softplus(model.host).detach().numpy().astype(np.float64), b, model)
        sizes = np.cumsum([len(t.bound_s) for t in tables])[:-1]
        dev_rows = np.split(dev.numpy().astype(np.float64), sizes)
        eff_rows = np.split(eff.numpy().astype(np.float64), sizes)
        ok = [i for i, r in enumerate(rows) if math.isfinite(r.energy_j) and r.energy_j > 0]
        if ok:
            A = energy_design([tables[i] for i in ok], [dev_rows[i] for i in ok], [eff_rows[i] for i in ok],
                               lat.numpy()[ok])
            w = nnls_relative(A, np.asarray([rows[i].energy_j for i in ok]))
        else:
            w = np.zeros(1 + 2 * len(ENERGY_CLASSES) + len(ENERGY_PHASES))
        z = b.x.numpy()
        self.params = TimelineParams(
            mean=mean.tolist(), std=std.tolist(), lo=z.min(0).astype(np.float64).tolist(),
            hi=z.max(0).astype(np.float64).tolist(),
            host_us=host_us, host_norm=host_norm,
            kernel_floor_us=float(F.softplus(model.floor.detach())), sync_us=float(F.softplus(model.sync.detach())),
            **split_weights(w),
            host_source="fitted to the whole-model rows", trained_on=trained_on,
            decode_step_us=float(torch.exp(model.decode.detach())) if n_decode else None,
        )
        return self

    def fit_host(self, graphs, rows, *, device=None, epochs: int = 300) -> "TimelinePredictor":
        """Refit only the host lane (dispatch costs, per-call and sync) to a few rows of another host."""
        import torch
        import torch.nn.functional as F

        assert self.params is not None, "fit the predictor first"
        devs = [get_device(device or r.device) for r in rows]
        tables = op_tables_by_device(graphs, devs, [r.mode for r in rows])
        dev_us = [self._device_us(t)[0] for t in tables]
        host = torch.as_tensor([_softplus_inv(v) for v in self.params.host_us], dtype=torch.float64)
        y = torch.as_tensor([r.latency_ms * 1e3 for r in rows], dtype=torch.float64)
        D = torch.as_tensor([float(d.sum()) for d in dev_us], dtype=torch.float64)
        counts = torch.zeros(len(rows), len(HOST_CLASSES), dtype=torch.float64)
        decode = torch.as_tensor([float(t.decode) * (self.params.decode_step_us or 0.0) for t in tables],
                                 dtype=torch.float64)
        for i, t in enumerate(tables):
            np.add.at(counts[i].numpy(), t.host_class, t.host_count * self._host_multiplier(t))
            counts[i, _HOST_INDEX["call"]] += 1
        # one scale for the whole host lane: 4 rows cannot pin down 13 classes, a speed ratio they can
        log_scale = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        base = F.softplus(host.detach())
        opt = torch.optim.Adam([log_scale], lr=0.05)
        for _ in range(epochs):
            opt.zero_grad()
            H = (counts @ base + decode) * torch.exp(log_scale)
            lat = torch.maximum(H, D) + self.params.sync_us
            loss = ((torch.log(lat) - torch.log(y)) ** 2).mean()
            loss.backward()
            opt.step()
        s = float(torch.exp(log_scale.detach()))
        self.params.host_us = [v * s for v in self.params.host_us]
        if self.params.decode_step_us is not None:
            self.params.decode_step_us *= s
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

    def fit_intervals(self, graphs, rows, groups: Sequence[str], *, coverage: float = 0.9, device=None,
                      progress: bool = False, op_runs=None) -> "TimelinePredictor":
        """Prediction intervals that hold on model families the fit never saw.

        Every group (a model family) is held out in turn: a predictor with this one's
        configuration is fitted on the other groups (and the operator runs of other families,
        ``op_runs`` or the packaged ones, when ``config.op_weight`` > 0) and predicts the held-out rows. The
        finite-sample-corrected ``coverage`` quantile of ``|log(measured / predicted)|`` over those rows, per
        regime (host- and device-bound rows: the host lane is the less certain one) and target, becomes
        the half-width in log space. Call it after :meth:`fit_graphs` (point predictions stay the full fit's).
        """
        if self.params is None:
            raise InvalidInputError("fit the timeline predictor before its intervals (fit_graphs first)")
        if not 0 < coverage < 1:
            raise InvalidInputError(f"expected coverage in (0, 1), got {coverage!r}")
        groups = list(groups)
        if len(groups) != len(rows) or len(graphs) != len(rows):
            raise InvalidInputError(f"expected one graph and one group per row, got {len(graphs)} graphs, "
                                    f"{len(groups)} groups for {len(rows)} rows")
        names = sorted(set(groups))
        if len(names) < 2:
            raise InvalidInputError(f"need at least 2 groups to hold out, got {names}")
        it = names
        if progress:
            from tqdm import tqdm

            it = tqdm(names, desc="intervals (held-out groups)", unit="group")
        held_rows, held_ests = [], []
        runs = (packaged_op_runs() if op_runs is None else op_runs) if self.config.op_weight > 0 else None
        for name in it:
            train = [i for i, g in enumerate(groups) if g != name]
            test = [i for i, g in enumerate(groups) if g == name]
            held = TimelinePredictor(self.config).fit_graphs(
                [graphs[i] for i in train], [rows[i] for i in train], device=device,
                op_runs=None if runs is None else [r for r in runs if r.family != name])
            held_rows += [rows[i] for i in test]
            held_ests += [held.predict(graphs[i], device or rows[i].device, mode=rows[i].mode) for i in test]
        self.params.intervals = interval_table(held_rows, held_ests, coverage=coverage,
                                               held_out=f"{len(names)} groups, one at a time")
        return self

    # ------------------------------------------------------------------ prediction
    def _conv_as_gemm(self) -> bool:
        """Whether the efficiency network reads a table's :attr:`~OpTable.device_x` (fp32 convolutions on a
        GPU without TF32 as CUDA-core matmuls): on, unless a device the rows came from lacks TF32 itself,
        so that a row taught the path (:mod:`._convreading`)."""
        if not _convreading.CUDA_CORE_CONV_AS_GEMM or self.params is None:
            return False
        try:
            return all(get_device(d).peak_tflops.get("tf32") is not None
                       for d in self.params.trained_on.get("devices", []))
        except CostModelError:  # a training device this library does not know
            return False

    def _scaled_x(self, t: OpTable, device_net: bool = False) -> np.ndarray:
        """Standardized features, clipped into the training box.

        The networks are smooth functions fitted on one region of feature space; outside it an MLP
        extrapolates without bound. Clipping makes each feature beyond the training range count as
        its nearest trained value, so the roofline bound (computed outside the networks) carries
        the scaling. A feature that never varied in training (the device's figures, while one GPU
        has rows) is pinned to its training value: the fit could not learn what it does.
        """
        return self._scaled_x_rows([t], device_net)

    def _scaled_x_rows(self, tables: Sequence[OpTable], device_net: bool = False) -> np.ndarray:
        """:meth:`_scaled_x` of several tables' rows, stacked (one standardization for all of them);
        ``device_net``: the efficiency network's reading (:attr:`OpTable.device_x` where it applies)."""
        assert self.params is not None
        if device_net and any(t.device_x is not None for t in tables) and self._conv_as_gemm():
            xs = [t.x if t.device_x is None else t.device_x for t in tables]
        else:
            xs = [t.x for t in tables]
        x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        z = (x - np.asarray(self.params.mean)) / np.asarray(self.params.std)
        if self.params.lo is not None and self.params.hi is not None:
            z = np.clip(z, np.asarray(self.params.lo), np.asarray(self.params.hi))
        return z

    def _device_us(self, t: OpTable, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each row's device time (µs) and its efficiency under the roofline."""
        assert self.params is not None and self._weights is not None
        return self._device_from_z(t, _mlp_numpy(self._weights, self._scaled_x(t, True) if x is None else x))

    def _device_from_z(self, t: OpTable, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_device_us` from the efficiency network's output ``z`` for ``t``'s rows."""
        eff = MIN_EFFICIENCY + (1 - MIN_EFFICIENCY) / (1.0 + np.exp(-z))
        # skinny matrix products: the measured stream line, not the network (._skinny)
        return with_streams((t.bound_s * 1e6 / eff + self.params.kernel_floor_us) * t.kernel, eff, t)

    def _host_multiplier(self, t: OpTable, x: np.ndarray | None = None) -> np.ndarray:
        """Each row's factor on its class's host cost (1 for the optimizer, module and call rows)."""
        assert self._host_weights is not None
        return self._host_from_z(t, _mlp_numpy(self._host_weights, self._scaled_x(t) if x is None else x))

    def _host_from_z(self, t: OpTable, z: np.ndarray) -> np.ndarray:
        """:meth:`_host_multiplier` from the host network's output ``z`` for ``t``'s rows."""
        m = np.exp(HOST_RANGE * np.tanh(z))
        norm = np.asarray(self.params.host_norm if self.params.host_norm else np.ones(len(HOST_CLASSES)))
        return np.where(_SCALED[t.host_class], m / norm[t.host_class], 1.0)

    def operator_times(self, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> list[dict]:
        """Every kernel's predicted times: ``{"node", "op", "phase", "device_ms", "efficiency", "host_ms"}`` (forward
        and backward rows; the optimizer's row has node -1; ``host_ms``, the host's dispatch cost, is None on a CPU,
        whose host costs are per class); ``details["ops"]["top"]`` lists the first ten, for charts."""
        from ._timeline_ops import operator_times

        return operator_times(self, graph, device, mode=mode, optimizer=optimizer)

    def predict(self, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> Estimate:
        with lone_item():
            return self.predict_many(built_graphs([graph], "predict"), device, mode=mode, optimizer=optimizer)[0]

    def predict_many(self, graphs, device, *, mode: str | None = None, optimizer: str = "adam") -> list[Estimate]:
        from .._errors import ModelLoadError
        from ._analytic import AnalyticPredictor

        if self.params is None:
            raise ModelLoadError("the timeline predictor is not fitted (fit() it or load a saved one)")
        graphs = built_graphs(graphs)
        dev = get_device(device)
        optimizer = validate_optimizer(optimizer)
        host, host_note = self._host_vector(dev)
        base = AnalyticPredictor()
        modes = [validate_mode(mode or g.meta.get("mode", "inference")) for g in graphs]
        if _is_cpu(dev) and self.cuda_graphs:
            raise InvalidInputError(f"CUDA graphs replay kernels on a GPU; {dev.name} is a CPU (drop cuda_graphs)")
        if self._has_cpu() and _is_cpu(dev):
            cpu = []
            for i, (g, m) in enumerate(zip(graphs, modes)):
                with items_named(i):
                    cpu.append(self._predict_cpu(g, dev, m, optimizer, base))
            return with_mode_notes(graphs, cpu, mode)
        out: list[Estimate] = []
        for lo in range(0, len(graphs), _CHUNK):
            with items_named(lo):
                out += self._predict_chunk(graphs[lo:lo + _CHUNK], modes[lo:lo + _CHUNK], dev, optimizer, host,
                                           host_note, base)
        return with_mode_notes(graphs, out, mode)

    def _predict_chunk(self, graphs, modes, dev, optimizer: str, host, host_note, base) -> list[Estimate]:
        """:meth:`predict_many` of a few graphs: their operator tables first, then the two networks once
        over all their rows, then each graph's timeline."""
        # one walk over the nodes, read by the operator tables and the analytic model
        cols = node_columns(graphs, params="training" in modes)
        tables = op_tables(graphs, dev, modes=modes, optimizer=optimizer, columns=cols)
        bases = base.estimates(graphs, dev, modes, optimizer, columns=cols)
        xs = self._scaled_x_rows(tables)
        z_dev = _mlp_numpy(self._weights, self._scaled_x_rows(tables, True)
                           if any(t.device_x is not None for t in tables) else xs)
        z_host = _mlp_numpy(self._host_weights, xs)
        lanes = chunk_lanes(tables, z_dev, z_host, host, self)
        p = self.params
        static_k, dynamic_k, power_note = power_scales(p.trained_on.get("devices", []), dev)
        out = []
        for j, (g, m, t, est) in enumerate(zip(graphs, modes, tables, bases)):
            d_us, eff, h_us = lanes.segment(j)
            decode_us = p.decode_step_us if (t.decode and p.decode_step_us is not None) else 0.0
            call_us = float(host[_HOST_INDEX["call"]]) + decode_us
            H, D = float(lanes.host_us[j]) + call_us, float(lanes.device_us[j])
            graphed = self.cuda_graphs and not host_sync_nodes(g).size  # a wait for the device is not captured
            if graphed:  # one graph launch (a kernel launch's host cost) begins the whole device lane
                H, decode_us = float(host[_HOST_INDEX["launch"]]), 0.0
                lat_us, waits = max(D, H) + p.sync_us, 0
            else:
                lat_us, waits = composed_latency_us(g, t, (h_us, d_us), (H, D), call_us, p.sync_us)
            energy_j = call_energy_j(p, lanes.energy_us[j], lanes.useful_us[j], lanes.phase_us[j], lat_us, static_k,
                                     dynamic_k, dev.tdp_w)
            lat_ms = lat_us / 1e3
            # the analytic estimate's: the graph's, the device's, and the peaks its dtypes fell back to (the
            # op table's roofline takes the same fallback: bf16 on a V100 at its fp32 peak)
            notes = [*est.assumptions, *lane_notes(g, cols.scopes[j], m)]
            notes += [sync_note(waits)] if waits else []
            notes += graphed_note(g, graphed) if self.cuda_graphs else []
            if host_note:
                notes.append(host_note)
            elif "H200" not in dev.name:
                notes.append(f"host lane fitted to the machine that measured {', '.join(p.trained_on.get('devices', []))}"
                             " rows (other hosts: 0.5x, 1.3x its launch-bound times); a `costmodel calibrate` profile"
                             " (host=FILE) replaces it, but read 2-4x below model dispatch on the host checked")
            if power_note:
                notes.append(power_note)
            if t.decode:
                notes.append(_decode_note(p) if not graphed else CUDA_GRAPHS_DECODE_NOTE)
            notes.append(PREDICTOR_MEMORY_NOTE)
            analytic = {"latency_ms": est.latency_ms, "memory_mb": est.memory_mb, "energy_j": est.energy_j}
            # one call alone: the first kernel waits for the call's own host cost, then the lanes as replayed
            single = (H + D + p.sync_us if graphed else
                      max(D + max(call_us, call_us + float(lanes.slack_us[j])) + p.sync_us, lat_us if waits else 0.0))
            top = (o := np.argsort(-d_us, kind="stable"))[t.kernel[o] > 0][:10]  # kernels (a module row has none)
            est.latency_ms = lat_ms
            est.energy_j = energy_j
            est.power_w = energy_j / (lat_ms / 1e3) if lat_ms > 0 else 0.0
            est.predictor = self.name
            regime = "host" if (H > D and not t.synchronous) else "device"
            if not graphed:  # the residuals are eager runs': none says how far a graph's replay errs
                attach_intervals(self.params, est, dev, regime)
            est.assumptions = []
            # meta: the devices the rows came from (another device's estimate is flagged as extrapolated)
            finish_estimate(est, dev, version=self.version, meta={"devices": p.trained_on.get("devices", [])})
            if est.extrapolated_device and (conv := cuda_core_conv_note(dev, p.trained_on.get("devices"), g,
                                                                        as_gemm=self._conv_as_gemm())):
                notes.append(conv)
            est.assumptions = list(dict.fromkeys([*notes, *est.assumptions]))
            est.details["analytic"] = analytic
            est.details["ops"] = {
                "host_ms": H / 1e3, "device_ms": D / 1e3,
                "bound": "host" if (H > D and not t.synchronous) else ("serial" if t.synchronous else "device"),
                "host_bound_share": max(0.0, 1.0 - D / lat_us) if not t.synchronous else None,
                "single_call_ms": single / 1e3,
                "decode_step_ms": decode_us / 1e3 if t.decode else None, "host_waits": waits,
                "top": [{"node": int(t.node[i]), "phase": PHASES[int(t.phase[i])],
                         "op": row_op(g, int(t.node[i]), t.host_class[i]),
                         "device_ms": float(d_us[i]) / 1e3, "efficiency": float(eff[i])} for i in top],
            }
            out.append(est)
        return out

    def _predict_cpu(self, g, dev, m: str, optimizer: str, base) -> Estimate:
        """A CPU: the operator model trained on this project's CPU operator profiles, operators in sequence."""
        from ._analytic import graph_assumptions
        from ._opmodel import OPTIMIZERS_WITH_TEMPORARIES, cpu_model_note

        tl = self.cpu
        r = tl.predict(g, m, optimizer)
        est = base._predict(g, dev, mode=m, optimizer=optimizer, mig_details=False)
        est.latency_ms = r["latency_ms"]
        # energy: the analytic model's power (the device entry's figures) over the predicted time
        est.energy_j = est.power_w * r["latency_ms"] / 1e3 if est.power_w else est.energy_j
        est.predictor = self.name
        finish_estimate(est, dev, version=self.version)
        notes = [*graph_assumptions(g), *dev.assumptions, cpu_model_note(tl),
                 "energy: the analytic model's power for this device entry over the predicted time (the profiled "
                 "CPU exposes no energy counter)",
                 PREDICTOR_MEMORY_NOTE]
        if m == "training" and optimizer not in OPTIMIZERS_WITH_TEMPORARIES:
            notes.append(f"optimizer {optimizer}: its step costed by the bytes it moves at the rate fitted on the "
                         "profiled Adam steps (no temporaries)")
        if self.host_profile is not None:
            notes.append("host profile ignored on a CPU: the host costs come from the profiled runs, and a "
                         "calibrated CPU roofline does not carry the operator model to another CPU (docs/results.md)")
        est.assumptions = list(dict.fromkeys(notes))
        est.details["ops"] = {"host_ms": r["host_ms"], "device_ms": r["device_ms"], "bound": "serial",
                              "host_bound_share": None, "single_call_ms": r["latency_ms"],
                              "host_terms_ms": r["host_terms_ms"], "top": r["top"]}
        return est

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        if self.params is None or self._weights is None or self._host_weights is None:
            raise ValueError("nothing to save: the timeline predictor is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"predictor": self.name, "version": self.version, "format_version": FORMAT_VERSION,
               "feature_names": list(FEATURE_NAMES), "host_classes": list(HOST_CLASSES),
               "energy_classes": list(ENERGY_CLASSES), "energy_phases": list(ENERGY_PHASES),
               "kernel_ceilings": kernel_ceilings(),
               "config": asdict(self.config), "params": asdict(self.params), "library_version": __version__}
        files = ["weights.safetensors"]
        if self._has_cpu():
            cfg["cpu_ops"] = "cpu_ops.json"
            (path / "cpu_ops.json").write_text(json.dumps(self.cpu.to_dict()))
            files.append("cpu_ops.json")
        (path / "config.json").write_text(json.dumps(cfg, indent=1))
        tensors = {f"w{i}": w.astype(np.float32) for i, w in enumerate(self._weights)}
        tensors.update({f"h{i}": w.astype(np.float32) for i, w in enumerate(self._host_weights)})
        save_file(tensors, str(path / "weights.safetensors"))
        record_checksums(path / "config.json", files)

    @classmethod
    def load(cls, path: str | Path) -> "TimelinePredictor":
        from .._errors import ArtifactError
        from ._registry import read_artifact_config

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
        need(cfg.get("energy_phases", list(ENERGY_PHASES)) == list(ENERGY_PHASES), "its energy phases differ from this library's")
        need((bad := ceilings_mismatch(cfg.get("kernel_ceilings"))) is None, str(bad))
        try:
            conf = load_timeline_config(cfg.get("config"), where)
            params = TimelineParams(**cfg["params"])
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{where}: bad or missing config/params ({e})") from None
        F = len(FEATURE_NAMES)
        for name, v, n in (("mean", params.mean, F), ("std", params.std, F), ("host_us", params.host_us, len(HOST_CLASSES)),
                           ("energy_a_w", params.energy_a_w, len(ENERGY_CLASSES)),
                           ("host_norm", params.host_norm, len(HOST_CLASSES)),
                           ("lo", params.lo, F), ("hi", params.hi, F),
                           ("energy_b_w", params.energy_b_w, len(ENERGY_CLASSES))):
            need(isinstance(v, list) and len(v) == n and all(isinstance(a, (int, float)) and math.isfinite(a) for a in v),
                 f"params.{name} must be {n} finite numbers")
        need(phase_weights_ok(params.energy_phase_w), f"params.energy_phase_w must be null or {len(ENERGY_PHASES)} "
             "finite numbers >= 0")
        need(all(s > 0 for s in params.std), "params.std must be positive")
        need(all(v > 0 for v in params.host_norm), "params.host_norm must be positive")
        need(all(a <= b for a, b in zip(params.lo, params.hi)), "params.lo must not exceed params.hi")
        iv = params.intervals
        if iv is not None:
            ok = (isinstance(iv, dict) and isinstance(iv.get("coverage"), (int, float)) and 0 < iv["coverage"] < 1
                  and isinstance(iv.get("log_halfwidth"), dict)
                  and all(isinstance(v, dict) and all(q is None or (isinstance(q, (int, float)) and math.isfinite(q)
                                                                    and q >= 0) for q in v.values())
                          for v in iv["log_halfwidth"].values()))
            need(ok, "params.intervals must hold a coverage in (0, 1) and finite half-widths >= 0 per regime")
        need(params.decode_step_us is None or (isinstance(params.decode_step_us, (int, float))
                                                and math.isfinite(params.decode_step_us) and params.decode_step_us >= 0),
             "params.decode_step_us must be null or a finite number >= 0")
        need((bad := trained_on_problem(params.trained_on)) is None, f"params.trained_on {bad}")
        for name in ("kernel_floor_us", "sync_us", "energy_static_w"):
            v = getattr(params, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"params.{name} must be a finite number >= 0")
        wfile = path / "weights.safetensors"
        try:
            from safetensors.numpy import load_file

            raw = load_file(str(wfile))
        except Exception as e:  # noqa: BLE001 - any unreadable weights file is one clean error
            raise ArtifactError(f"{wfile} cannot be read: {e}") from None
        def tensors(prefix: str, hidden: int) -> list[np.ndarray]:
            expect = [(hidden, F), (hidden,), (hidden, hidden), (hidden,), (1, hidden), (1,)]
            out = []
            for i, shp in enumerate(expect):
                w = raw.get(f"{prefix}{i}")
                need(w is not None, f"weights.safetensors lacks tensor {prefix}{i}")
                need(tuple(w.shape) == shp,
                     f"weights.safetensors tensor {prefix}{i} has shape {tuple(w.shape)}, expected {shp}")
                need(bool(np.isfinite(w).all()), f"weights.safetensors tensor {prefix}{i} holds non-finite values")
                out.append(w.astype(np.float32))
            return out

        obj = cls(conf)
        obj.params = params
        obj._weights = tensors("w", conf.hidden)
        obj._host_weights = tensors("h", conf.host_hidden)
        if has_cpu:
            need(cfg["cpu_ops"] == "cpu_ops.json", f"cpu_ops must name cpu_ops.json, got {cfg['cpu_ops']!r}")
            f = path / "cpu_ops.json"
            try:
                d = json.loads(f.read_text())
            except (OSError, ValueError) as e:
                raise ArtifactError(f"{f} cannot be read: {e}") from None
            need(isinstance(d, dict), f"{f} must hold a JSON object")
            obj._cpu_doc = (d, str(f))
        return obj

