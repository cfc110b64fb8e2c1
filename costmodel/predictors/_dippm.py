"""DIPPM: the graph neural network predictor (GraphSAGE), and its GNN baselines.

Architecture (thesis ch. 4, DIPPM): node features -> linear embedding ->
three message-passing layers (GraphSAGE by default; GCN, GAT or GIN for the
baselines; none for the static-feature MLP) -> mean and max pooling ->
concatenated with an MLP embedding of the static features -> MLP head with
one output per target (latency, memory, energy), trained jointly on
standardized log targets with the Huber loss.

Two choices go beyond the thesis and are tested by ``benchmarks/accuracy.py``:

* the analytic predictor's estimate is an input feature, and with
  ``residual=True`` the network predicts the log-ratio between measurement and
  the analytic estimate (a learned correction over physics);
* edges are used in both directions (a DAG's forward edges alone only let
  information flow towards the output).

Artifacts are a directory with ``config.json`` (config, feature schema,
normalization, training-data hash, library version, SHA-256 of the weights) and
``weights.safetensors``; nothing is pickled, a schema mismatch is refused with
a clear error, and a damaged or inconsistent file with
:class:`~costmodel.ArtifactError` (:mod:`._artifact` checks every field, the
weights' shapes against the configured network, and the checksums).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__
from .._errors import InvalidInputError, ModelLoadError, SchemaMismatchError
from ..devices import HARDWARE_FEATURE_NAMES, get_device
from ..features import (
    FEATURE_SCHEMA_VERSION,
    NODE_FEATURE_NAMES,
    GraphFeatures,
    featurize,
    schema_fingerprint,
    static_feature_names,
)
from ..estimate import Estimate, finish_estimate
from . import _artifact as A
from ._artifacts import ShippedArtifact
from ._base import (Predictor, built_graphs, conformal_quantile, items_named, lone_item, validate_mode,
                    validate_optimizer, with_mode_notes)
from ._registry import read_artifact_config, register_predictor

TARGETS = ("latency_ms", "memory_mb", "energy_j")
ALL_TARGETS = ("latency_ms", "memory_mb", "energy_j", "power_w")
CONVS = ("sage", "gcn", "gat", "gin", "none")
POOLS = ("meanmax", "sum")
LOSSES = ("huber", "mse")


def check_targets(targets: tuple[str, ...]) -> None:
    """Distinct names of :data:`ALL_TARGETS`, ``latency_ms`` among them."""
    bad = [t for t in targets if t not in ALL_TARGETS]
    if bad or not targets or len(set(targets)) != len(targets):
        raise InvalidInputError(f"targets must be distinct names from {ALL_TARGETS}, got {list(targets)}")
    if "latency_ms" not in targets:
        raise InvalidInputError("targets must include latency_ms (energy and power are derived from it)")


@dataclass(frozen=True)
class GNNConfig:
    """Hyperparameters (defaults chosen on random splits of the H200 data)."""

    conv: str = "sage"
    hidden: int = 64
    layers: int = 3
    dropout: float = 0.05
    lr: float = 2e-3
    weight_decay: float = 1e-5
    epochs: int = 60
    batch_size: int = 32
    use_analytic: bool = True
    residual: bool = True
    seed: int = 0
    #: regression targets; ``power_w`` may replace ``energy_j`` (TraPPM predicts power)
    targets: tuple[str, ...] = TARGETS
    #: graph readout: ``"meanmax"`` (DIPPM here) or ``"sum"`` (NNLQP, TraPPM)
    pool: str = "meanmax"
    #: ``"huber"`` on standardized log targets, or ``"mse"`` (NNLQP, thesis TraPPM)
    loss: str = "huber"

    def __post_init__(self):
        if self.conv not in CONVS:
            raise InvalidInputError(f"conv must be one of {CONVS}, got {self.conv!r}")
        object.__setattr__(self, "targets", tuple(self.targets))
        check_targets(self.targets)
        if self.pool not in POOLS:
            raise InvalidInputError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.loss not in LOSSES:
            raise InvalidInputError(f"loss must be one of {LOSSES}, got {self.loss!r}")


#: what each GNNConfig field may hold in a saved config.json
GNN_CONFIG_RULES = {
    "conv": A.Str(CONVS), "hidden": A.Int(2), "layers": A.Int(1), "dropout": A.Num(0, 1, hi_open=True),
    "lr": A.Num(0, lo_open=True), "weight_decay": A.Num(0), "epochs": A.Int(0), "batch_size": A.Int(1),
    "use_analytic": A.Bool(), "residual": A.Bool(), "seed": A.Int(0),
    "targets": A.ListOf(A.Str(ALL_TARGETS), min_len=1), "pool": A.Str(POOLS), "loss": A.Str(LOSSES),
}
#: fields added after the first artifacts shipped: an artifact without them was trained with the defaults
GNN_CONFIG_LATER = ("targets", "pool", "loss")


def load_gnn_config(cfg: dict, path: Path) -> GNNConfig:
    """The checked ``config`` section of ``path/config.json``."""
    file = path / "config.json"
    c = A.load_config(GNNConfig, cfg.get("config"), GNN_CONFIG_RULES, file, optional=GNN_CONFIG_LATER)
    if c.conv == "gat" and c.hidden % 4:
        raise A.fail(file, f"config.hidden must be a multiple of 4 for conv 'gat', got {c.hidden}")
    return c


def _analytic_log(est: Estimate, target: str) -> float:
    """log of the analytic estimate of one target (the residual's base)."""
    v = {"latency_ms": est.latency_ms, "memory_mb": est.memory_mb, "energy_j": est.energy_j,
         "power_w": est.power_w}[target]
    return math.log(max(float(v), 1e-9))


#: the NNLQP-style baseline (Liu et al., 2022, as the thesis ran it in ch. 5):
#: GraphSAGE, sum readout, static features, MLP, MSE loss, no analytic feature
NNLQP = dict(conv="sage", pool="sum", loss="mse", use_analytic=False, residual=False)


def _quiet_pyg() -> None:
    """Import torch_geometric once, silencing its import-time deprecation noise."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch_geometric  # noqa: F401


def _build_net(cfg: GNNConfig, node_dim: int, static_dim: int, n_out: int):
    from ._nets import DIPPMNet

    return DIPPMNet(cfg, node_dim, static_dim, n_out)


_CLIP = 8.0


def safe_std(a: np.ndarray) -> list[float]:
    """Per-column std ignoring missing labels; constant columns are left unscaled."""
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (unmeasured targets)
        sd = np.nanstd(a, axis=0) if np.isnan(a).any() else a.std(0)
    return np.where(~np.isfinite(sd) | (sd < 1e-3), 1.0, sd).tolist()


def _safe_mean(a: np.ndarray) -> list[float]:
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(a, axis=0) if np.isnan(a).any() else a.mean(0)
    return np.where(np.isfinite(m), m, 0.0).tolist()


@dataclass
class FeatureNorm:
    """Feature and target standardization (means and standard deviations) of a trained network."""

    static_mean: list[float] = field(default_factory=list)
    static_std: list[float] = field(default_factory=list)
    node_mean: list[float] = field(default_factory=list)
    node_std: list[float] = field(default_factory=list)
    y_mean: list[float] = field(default_factory=list)
    y_std: list[float] = field(default_factory=list)


def data_hash(rows) -> str:
    """Hash of the training rows' identity and labels (stored in artifacts)."""
    h = hashlib.sha1()
    for r in rows:
        h.update(json.dumps([r.model, r.batch, r.mode, r.dtype, r.seq, r.latency_ms, r.memory_mb, r.energy_j],
                            default=str).encode())
    return h.hexdigest()[:16]


class GNNPredictor(Predictor):
    """GNN cost model (``conv="sage"`` is DIPPM; see module docstring)."""

    name = "gnn"
    version = "1"

    def __init__(self, config: GNNConfig | None = None) -> None:
        self.config = config or GNNConfig()
        self.net = None
        self.norm = FeatureNorm()
        self.meta: dict = {}
        self._analytic = None
        #: conformal half-widths of |log(measured / predicted)| per target, and their coverage
        self.intervals: dict | None = None
        self._static_names = static_feature_names(HARDWARE_FEATURE_NAMES, self.config.use_analytic)

    # ------------------------------------------------------------- features
    def _analytic_pred(self):
        if self._analytic is None:
            from ._analytic import AnalyticPredictor

            self._analytic = AnalyticPredictor()
        return self._analytic

    def features(self, graph, device, mode: str, optimizer: str = "adam") -> tuple[GraphFeatures, Estimate]:
        """Features of one workload plus the analytic estimate it builds on.

        The measured training rows used Adam; another optimizer changes the
        analytic memory estimate the network corrects, not the correction.
        """
        dev = get_device(device)
        est = self._analytic_pred()._predict(graph, dev, mode=mode, optimizer=optimizer, mig_details=False)
        f = featurize(graph, dev, analytic_estimate=est if self.config.use_analytic else None)
        return f, est

    def _to_data(self, f: GraphFeatures, y=None):
        _quiet_pyg()
        import torch
        from torch_geometric.data import Data
        from torch_geometric.utils import to_undirected

        n = self.norm
        # clipping keeps a feature never seen varying in training (an op kind
        # only a held-out family uses) from blowing up the network
        x = np.clip((f.x - np.asarray(n.node_mean, np.float32)) / np.asarray(n.node_std, np.float32), -_CLIP, _CLIP)
        s = np.clip((f.static - np.asarray(n.static_mean, np.float32)) / np.asarray(n.static_std, np.float32),
                    -_CLIP, _CLIP)
        ei = torch.from_numpy(f.edge_index)
        if ei.numel():
            ei = to_undirected(ei, num_nodes=x.shape[0])
        d = Data(x=torch.from_numpy(x), edge_index=ei, static=torch.from_numpy(s).unsqueeze(0))
        if y is not None:
            d.y = torch.as_tensor(np.asarray(y, np.float32)).unsqueeze(0)
        return d

    @property
    def targets(self) -> tuple[str, ...]:
        return self.config.targets

    def _target(self, row, est) -> list[float]:
        ys = [math.log(row.target(t)) for t in self.targets]
        if self.config.residual:
            ys = [a - _analytic_log(est, t) for a, t in zip(ys, self.targets)]
        return ys

    # ------------------------------------------------------------------ fit
    def fit(self, dataset, indices: Sequence[int] | None = None, *, progress: bool = True,
            cached: dict | None = None, init_from: "GNNPredictor | None" = None) -> "GNNPredictor":
        """Train on rows of a :class:`~costmodel.datasets.PerfDataset`.

        ``cached`` may map row index -> ``(GraphFeatures, analytic Estimate)``
        to share featurization across many fits (benchmarks).  Missing labels
        (NaN, e.g. no energy counter on a CPU) are left out of the loss.
        ``init_from`` fine-tunes a trained predictor of the same configuration:
        its weights and feature normalization are the starting point
        (transfer to a new device with few samples).
        """
        import torch
        from torch_geometric.loader import DataLoader

        idx = list(range(len(dataset))) if indices is None else list(indices)
        if len(idx) < 4:
            raise InvalidInputError(f"need at least 4 training rows, got {len(idx)}")
        cfg = self.config
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        feats, ys = [], []
        for i in idx:
            if cached is not None and i in cached:
                f, est = cached[i]
            else:
                r = dataset[i]
                f, est = self.features(dataset.graph(i), r.device, r.mode)
            feats.append(f)
            ys.append(self._target(dataset[i], est))
        X = np.concatenate([f.x for f in feats])
        S = np.stack([f.static for f in feats])
        Y = np.asarray(ys, np.float64)
        if init_from is not None:
            if init_from.net is None or asdict(init_from.config) | {"epochs": 0, "lr": 0, "seed": 0} != asdict(
                cfg
            ) | {"epochs": 0, "lr": 0, "seed": 0}:
                raise InvalidInputError("init_from must be a trained predictor with the same architecture")
            self.norm = FeatureNorm(**asdict(init_from.norm))
        else:
            self.norm = FeatureNorm(
                static_mean=S.mean(0).tolist(), static_std=safe_std(S),
                node_mean=X.mean(0).tolist(), node_std=safe_std(X),
                y_mean=_safe_mean(Y), y_std=safe_std(Y),
            )
        ynorm = (Y - np.asarray(self.norm.y_mean)) / np.asarray(self.norm.y_std)
        data = [self._to_data(f, y) for f, y in zip(feats, ynorm)]
        self.net = _build_net(cfg, X.shape[1], S.shape[1], len(self.targets))
        if init_from is not None:
            self.net.load_state_dict(init_from.net.state_dict())
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.epochs * math.ceil(len(data) / cfg.batch_size)
        )
        loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(cfg.seed))
        loss_fn = torch.nn.HuberLoss(delta=1.0) if cfg.loss == "huber" else torch.nn.MSELoss()
        it = range(cfg.epochs)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = it = tqdm(it, desc=f"training {self.name}", unit="epoch", leave=False)
        t0 = time.perf_counter()
        self.net.train()
        for _ in it:
            total = 0.0
            for b in loader:
                opt.zero_grad()
                out = self.net(b.x, b.edge_index, b.batch, b.static)
                known = torch.isfinite(b.y)
                loss = loss_fn(out[known], b.y[known])
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * b.num_graphs
            if bar is not None:
                bar.set_postfix(loss=f"{total / len(data):.4f}")
        self.net.eval()
        rows = [dataset[i] for i in idx]
        self.meta = {
            "trained_rows": len(idx),
            "data_hash": data_hash(rows),
            "train_seconds": round(time.perf_counter() - t0, 2),
            # a GPU the database does not list comes as the hardware.json deriving it: record its name
            "devices": sorted({get_device(r.device).name if r.device.endswith(".json") else r.device for r in rows}),
        }
        return self

    # ---------------------------------------------------------- uncertainty
    def calibrate(self, dataset, indices: Sequence[int], *, coverage: float = 0.9,
                  cached: dict | None = None) -> "GNNPredictor":
        """Split-conformal intervals from rows the model was NOT trained on.

        Stores, per target, the finite-sample-corrected ``coverage`` quantile
        of ``|log(measured / predicted)|``; every later Estimate carries
        ``[pred * exp(-q), pred * exp(q)]``.
        """
        if not 0 < coverage < 1:
            raise InvalidInputError(f"coverage must be in (0, 1), got {coverage}")
        idx = list(indices)
        if len(idx) < 5:
            raise InvalidInputError(f"need at least 5 calibration rows, got {len(idx)}")
        items = [cached[i] if cached is not None and i in cached
                 else self.features(dataset.graph(i), dataset[i].device, dataset[i].mode) for i in idx]
        pred = self._predict_features(items)
        meas = np.asarray([[dataset[i].target(t) for t in self.targets] for i in idx])
        with np.errstate(all="ignore"):  # a target with no labels on these rows has no interval
            err = np.abs(np.log(meas / pred))
        self.intervals = {"coverage": coverage, "calibration_rows": len(idx),
                          "log_halfwidth": [conformal_quantile(c, coverage, min_rows=1) for c in err.T]}
        return self

    def fit_calibrated(self, dataset, indices: Sequence[int] | None = None, *, calibration_fraction: float = 0.2,
                       coverage: float = 0.9, progress: bool = True, cached: dict | None = None,
                       **fit_kw) -> "GNNPredictor":
        """Fit on part of the rows, calibrate intervals on the rest, then refit on all of them.

        ``fit_kw`` goes to both :meth:`fit` calls (e.g. gnn-llm's ``encoder``).
        """
        import random

        idx = list(range(len(dataset))) if indices is None else list(indices)
        shuffled = idx[:]
        random.Random(self.config.seed).shuffle(shuffled)
        n_cal = max(5, round(len(idx) * calibration_fraction))
        cal, fit_idx = shuffled[:n_cal], shuffled[n_cal:]
        self.fit(dataset, fit_idx, progress=progress, cached=cached, **fit_kw)
        self.calibrate(dataset, cal, coverage=coverage, cached=cached)
        intervals = self.intervals
        self.fit(dataset, idx, progress=progress, cached=cached, **fit_kw)
        self.intervals = intervals
        return self

    # -------------------------------------------------------------- predict
    def _predict_features(self, items: list[tuple[GraphFeatures, Estimate]]) -> np.ndarray:
        import torch
        from torch_geometric.data import Batch

        if self.net is None:
            raise ModelLoadError(f"predictor {self.name!r} is not trained: call fit() or load an artifact")
        out = []
        with torch.no_grad():
            for k in range(0, len(items), 256):
                chunk = items[k:k + 256]
                b = Batch.from_data_list([self._to_data(f) for f, _ in chunk])
                y = self.net(b.x, b.edge_index, b.batch, b.static).numpy().astype(np.float64)
                y = y * np.asarray(self.norm.y_std) + np.asarray(self.norm.y_mean)
                if self.config.residual:
                    y = y + np.asarray([[_analytic_log(e, t) for t in self.targets] for _, e in chunk])
                out.append(np.exp(np.clip(y, -30, 30)))
        return np.concatenate(out)

    def _estimate(self, graph, dev, mode, vals, est: Estimate) -> Estimate:
        v = {t: float(x) for t, x in zip(self.targets, vals)}
        lat = v["latency_ms"]
        mem = v.get("memory_mb", est.memory_mb)
        # energy and power: whichever is predicted, the other follows from the latency
        if "energy_j" in v:
            en = v["energy_j"]
            power = en / (lat / 1e3) if lat > 0 else est.power_w
        elif "power_w" in v:
            power = v["power_w"]
            en = power * lat / 1e3
        else:
            en, power = est.energy_j, est.power_w
        iv = {}
        if self.intervals:
            for t, q in zip(self.targets, self.intervals["log_halfwidth"]):
                if q is not None and math.isfinite(q):
                    iv[t] = (v[t] * math.exp(-q), v[t] * math.exp(q))
        if "memory_mb" in iv:  # no process holds less than its weights and the framework's context
            floor = est.details.get("memory_breakdown_mb", {}).get("weights_mb", 0.0) + dev.framework_overhead_mb
            iv["memory_mb"] = (min(max(iv["memory_mb"][0], floor), mem), max(iv["memory_mb"][1], mem))
        out = replace(
            est, latency_ms=lat, memory_mb=mem, energy_j=en, power_w=power, predictor=self.name,
            latency_ms_interval=iv.get("latency_ms"), memory_mb_interval=iv.get("memory_mb"),
            energy_j_interval=iv.get("energy_j"),
            details=dict(est.details, analytic={"latency_ms": est.latency_ms, "memory_mb": est.memory_mb,
                                                "energy_j": est.energy_j}),
        )
        # the MIG pick keeps a margin up to the interval's upper memory bound
        finish_estimate(out, dev, version=self.version, meta=self.meta, graph=graph,
                        margin_mb=(iv["memory_mb"][1] - mem) if "memory_mb" in iv else 0.0)
        if out.extrapolated_device and any(t in iv for t in ("latency_ms", "energy_j", "power_w")):
            # the residuals that set the widths are of the rows' device; they say nothing about another one
            # (as the timeline's intervals); memory, which hardly depends on the GPU, keeps its interval
            out.latency_ms_interval = out.energy_j_interval = None
            iv = {k: v for k, v in iv.items() if k == "memory_mb"}
            out.assumptions.append(f"no latency, energy or power interval on {dev.name}: the intervals' widths come "
                                   "from held-out rows of the devices the predictor was trained on")
        out.details.update(interval_coverage=self.intervals["coverage"] if self.intervals and iv else None,
                           power_w_interval=iv.get("power_w"))
        return out

    def predict(self, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> Estimate:
        with lone_item():
            return self.predict_many(built_graphs([graph], "predict", need_work=True), device, mode=mode,
                                     optimizer=optimizer)[0]

    def predict_many(self, graphs, device, *, mode: str | None = None, optimizer: str = "adam") -> list[Estimate]:
        """Featurize and predict many graphs in batches through the GNN."""
        graphs = built_graphs(graphs, need_work=True)
        dev = get_device(device)
        optimizer = validate_optimizer(optimizer)
        if not graphs:
            return []
        modes = [validate_mode(mode or g.meta.get("mode", "inference")) for g in graphs]
        items = self._features_many(graphs, dev, modes, optimizer)
        vals = self._predict_features(items)
        return with_mode_notes(graphs, [self._estimate(g, dev, m, v, e)
                                        for g, m, v, (_, e) in zip(graphs, modes, vals, items)], mode)

    def _features_many(self, graphs, dev, modes, optimizer, features=None) -> list:
        """Each graph's :meth:`features` (``features``: another function of the same arguments); a graph
        refused is named by its item."""
        out = []
        for i, (g, m) in enumerate(zip(graphs, modes)):
            with items_named(i):
                out.append((features or self.features)(g, dev, m, optimizer))
        return out

    # ---------------------------------------------------------- persistence
    def _artifact_config(self, **extra) -> dict:
        """The ``config.json`` every learned artifact shares (plus ``extra``)."""
        return {
            "predictor": self.name,
            "version": self.version,
            "config": asdict(self.config),
            "targets": list(self.targets),
            "schema": {
                "version": FEATURE_SCHEMA_VERSION,
                "fingerprint": schema_fingerprint(self._static_names),
                # a predictor of graph-level features only records none it does not read
                **({"node_features": list(NODE_FEATURE_NAMES)} if self._uses_node_features else {}),
                "static_features": list(self._static_names),
            },
            "intervals": self.intervals,
            "meta": dict(self.meta, library_version=__version__),
            **extra,
        }

    #: data files config.json owns (their checksums are recorded in it)
    _files: tuple[str, ...] = ("weights.safetensors",)
    #: whether config.json holds the feature normalization (``norm``), and its node-feature width
    _has_norm = True
    _node_norm = len(NODE_FEATURE_NAMES)
    #: whether the model reads node features (then config.json's schema must list them)
    _uses_node_features = True

    def _check_schema(self, cfg: dict, path: Path) -> None:
        """Check every field of ``path/config.json`` against this predictor, then take its meta and intervals.

        Refuses an artifact whose features were computed differently
        (:class:`SchemaMismatchError`), and a damaged or inconsistent one
        (:class:`ArtifactError` naming the field); verifies the recorded
        checksums of the data files.
        """
        file = path / "config.json"
        n_t, n_s, n_n = len(self.targets), len(self._static_names), self._node_norm
        rules = {
            "version": A.Str(),
            "targets": A.Where(A.ListOf(A.Str()), lambda v: v == list(self.targets),
                               f"does not match config.targets {list(self.targets)}"),
            "schema": A.Fields({"version": A.Int(0), "fingerprint": A.Str(pattern=A.HEX16),
                                "node_features": A.ListOf(A.Str()), "static_features": A.ListOf(A.Str())},
                               optional=() if self._uses_node_features else ("node_features",)),
            "intervals": A.Opt(A.Fields({
                "coverage": A.Num(0, 1, lo_open=True, hi_open=True), "calibration_rows": A.Int(1),
                "log_halfwidth": A.ListOf(A.Opt(A.Num(0)), length=n_t)})),
            "meta": A.META,
        }
        if self._has_norm:
            rules["norm"] = A.Fields({
                "static_mean": A.ListOf(A.Num(), length=n_s),
                "static_std": A.ListOf(A.Num(0, lo_open=True), length=n_s),
                "node_mean": A.ListOf(A.Num(), length=n_n), "node_std": A.ListOf(A.Num(0, lo_open=True), length=n_n),
                "y_mean": A.ListOf(A.Num(), length=n_t), "y_std": A.ListOf(A.Num(0, lo_open=True), length=n_t),
            })
        A.check(cfg, A.Fields(rules, extra=True), file)
        if cfg["version"] != self.version:
            raise SchemaMismatchError(f"{file} holds {self.name} version {cfg['version']!r}; this library reads "
                                      f"version {self.version!r}. Retrain it with `costmodel train`.")
        schema = cfg["schema"]
        want = schema_fingerprint(self._static_names)
        if schema["version"] != FEATURE_SCHEMA_VERSION or schema["fingerprint"] != want:
            raise SchemaMismatchError(
                f"{file} was trained with feature schema v{schema['version']} "
                f"({schema['fingerprint']}); this library computes v{FEATURE_SCHEMA_VERSION} ({want}). "
                "Retrain it with `costmodel train`."
            )
        if schema.get("node_features", list(NODE_FEATURE_NAMES)) != list(NODE_FEATURE_NAMES):
            raise A.fail(file, "schema.node_features do not match the schema fingerprint")
        if schema["static_features"] != list(self._static_names):
            raise A.fail(file, "schema.static_features do not match the schema fingerprint")
        A.verify_checksums(cfg, file, self._files)
        self.meta = cfg["meta"]
        self.intervals = cfg["intervals"]

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        if self.net is None:
            raise ModelLoadError("cannot save an untrained predictor")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path / "weights.safetensors"))
        cfg = self._artifact_config(norm=asdict(self.norm), **{A.CHECKSUMS: A.checksums(path, self._files)})
        (path / "config.json").write_text(json.dumps(A.seal(cfg), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "GNNPredictor":
        path = Path(path)
        cfg = read_artifact_config(path, _GNN_NAMES)
        return _GNN_NAMES[cfg["predictor"]](load_gnn_config(cfg, path))._load_weights(cfg, path)

    def _load_weights(self, cfg: dict, path: Path) -> "GNNPredictor":
        """Check config.json, then restore normalization and weights from an artifact folder."""
        self._check_schema(cfg, path)
        self.norm = FeatureNorm(**cfg["norm"])
        self.net = _build_net(self.config, len(NODE_FEATURE_NAMES), len(self._static_names), len(self.targets))
        A.load_weights(self.net, path / "weights.safetensors", what=f"the {self.name} network")
        self.net.eval()
        return self


@register_predictor("dippm")
class DIPPMPredictor(ShippedArtifact, GNNPredictor):
    """DIPPM: GraphSAGE + static features, trained on the measured data."""

    name = "dippm"

    def __init__(self, config: GNNConfig | None = None) -> None:
        super().__init__(config or GNNConfig(conv="sage"))


_GNN_NAMES = {"gnn": GNNPredictor, "dippm": DIPPMPredictor}

