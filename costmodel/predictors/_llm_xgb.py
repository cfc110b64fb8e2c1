"""XGBoost cost model for transformer workloads (thesis ch. 6, roofline-normalized).

One XGBoost regressor per quantity (``xgboost.train``; evaluated with numpy at
prediction time, :mod:`._trees`), trained on the transformer features of
:mod:`costmodel.llm`:

* latency: ``log(measured / roofline latency)`` -- the inverse efficiency
  against the device's own peaks and bandwidth;
* memory: ``log(measured / analytic memory)`` (weights + KV cache +
  activation peak + the framework's context);
* power: ``log(power / TDP)``.

Throughput (samples/s, tokens/s) follows from the latency, energy per sample
from power x latency / batch, carbon and cloud cost from energy and
throughput (:mod:`costmodel.economics.carbon`, :mod:`costmodel.economics.pricing`).  Because the
targets are ratios to a physical model of the device, a device with no
labels is predicted through its own hardware numbers; such predictions are
flagged (``extrapolated_device``).

Artifacts: ``config.json`` (feature names and fingerprint, hyperparameters
and the grid search that chose them, training-data hash, library version,
trained devices) and one XGBoost JSON model per target; no pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from .._errors import InvalidInputError, ModelLoadError, SchemaMismatchError
from ..devices import HARDWARE_FEATURE_NAMES, get_device
from ..estimate import LLMEstimate, finish_estimate, held_power
from ..features import LLMWorkload, llm_feature_names, llm_feature_vector, llm_workload
from ..features.llm import seq2seq_cache_bytes
from ..llm import llm_features
from ..ir import LLM_MODES
from . import _artifact as A
from ._artifacts import ShippedArtifact
from ._base import Predictor

LLM_TARGETS = ("latency_ms", "memory_mb", "power_w")
LLM_SCHEMA_VERSION = 2
#: chosen by ``python benchmarks/llm_accuracy.py --grid`` (recorded in ``costmodel/llm/grid_search.json``)
LLM_DEFAULT_PARAMS = dict(n_estimators=500, learning_rate=0.1, max_depth=5, subsample=1.0)
#: quantized dtypes the measured data holds no rows of (an artifact's ``meta["dtypes"]`` may list them)
_UNLABELED_DTYPES = ("int8", "int4")


def _fingerprint(names: Sequence[str]) -> str:
    return hashlib.sha1("|".join([str(LLM_SCHEMA_VERSION), *names]).encode()).hexdigest()[:16]


def workload_of_row(row) -> LLMWorkload:
    """The :class:`LLMWorkload` of a measured LLM row of a :class:`~costmodel.datasets.PerfDataset`."""
    from dataclasses import replace

    from ..llm import resolve_llm

    spec = resolve_llm(dict(row.spec["config"], model_type=row.spec["model_type"]))
    causal = spec.causal if row.spec.get("causal") is None else bool(row.spec["causal"])
    return LLMWorkload(replace(spec, name=row.model, causal=causal), row.batch, row.seq, row.phase, row.dtype,
                       row.spec.get("target_seq"))


class XGBLLMPredictor(ShippedArtifact, Predictor):
    """XGBoost on model + workload + hardware features, one regressor per target.

    A :class:`~costmodel.predictors.Predictor` whose workload is a transformer
    described by name or config (:meth:`predict` takes the model, ``batch``
    and ``seq``, not a graph); :func:`~costmodel.estimate_llm` calls it.
    """

    #: hold latency over shorter sequences too, not only smaller batches (off: the measured host-bound latencies
    #: fall with a longer sequence in a quarter of the doublings; ``benchmarks/llm_accuracy.py`` scores both)
    hold_latency_over_seq = False
    #: how latency is kept from falling as the batch grows: ``"isotonic"``, the trees' batch sweep at the call's
    #: sequence (1 to :data:`ISOTONIC_TO`) fitted non-decreasing by least squares in log space, read at the call's
    #: batch (a run of violators is averaged); ``"max"``, the largest over the smaller batches (biased high where
    #: the trees fit noisy host-bound rows). ``benchmarks/llm_accuracy.py`` scores both
    latency_hold = "isotonic"

    name = "llm-xgb"
    version = "1"
    _requires = ()
    _train_hint = "costmodel train --predictor llm-xgb"

    def __init__(self, params: dict | None = None, *, seed: int = 0) -> None:
        self.params = dict(LLM_DEFAULT_PARAMS, **(params or {}))
        self.seed = seed
        self.models: list = []
        self.meta: dict = {}
        self.feature_names = llm_feature_names(HARDWARE_FEATURE_NAMES)

    # ---------------------------------------------------------------- data
    def features(self, w: LLMWorkload, device) -> tuple[np.ndarray, dict]:
        self.check_workload(w)
        vals, costs = llm_feature_vector(w, get_device(device))
        return np.asarray(vals, np.float64), costs

    def check_workload(self, w: LLMWorkload) -> None:
        """Raise where the trees' features cannot describe ``w`` (a training step, no attention, a target
        sequence other than the source's)."""
        if w.mode not in LLM_MODES:
            raise InvalidInputError(f"the {self.name} predictor learned inference calls ({', '.join(LLM_MODES)}); "
                                    f"a {w.mode} step goes through predictor='timeline'")
        if not llm_features(w.spec)["num_heads"]:
            raise InvalidInputError(f"{w.spec.name} has no attention (a state-space model); the {self.name} predictor's "
                                    "features describe attention blocks: use predictor='timeline', which costs its graph")
        if w.target_seq not in (None, w.seq):
            raise InvalidInputError(f"{w.spec.name}: a target of {w.target_seq} tokens against a source of {w.seq}; "
                                    f"the {self.name} predictor's features have one sequence length: use "
                                    "predictor='timeline', which costs the graph")

    @staticmethod
    def targets_of(row, costs: dict, device) -> list[float]:
        dev = get_device(device)
        return [math.log(row.latency_ms / costs["latency_ms"]), math.log(row.memory_mb / costs["memory_mb"]),
                math.log(row.power_w / dev.tdp_w)]

    def featurize_rows(self, dataset, indices: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, list]:
        """(X, Y normalized targets, analytic costs) of LLM rows."""
        idx = list(range(len(dataset))) if indices is None else list(indices)
        X, Y, C = [], [], []
        for i in idx:
            r = dataset[i]
            x, c = self.features(workload_of_row(r), r.device)
            X.append(x)
            Y.append(self.targets_of(r, c, r.device))
            C.append(c)
        return np.asarray(X), np.asarray(Y), C

    # ----------------------------------------------------------------- fit
    def fit_arrays(self, X: np.ndarray, Y: np.ndarray, *, devices: Sequence[str] = (), rows_hash: str = "") \
            -> "XGBLLMPredictor":
        try:
            import xgboost  # noqa: F401
        except ImportError:
            raise InvalidInputError("the LLM predictor needs xgboost: pip install 'costmodel[xgb]'") from None
        if len(X) < 4:
            raise InvalidInputError(f"need at least 4 training rows, got {len(X)}")
        from ._trees import TreeEnsemble, train_booster

        t0 = time.perf_counter()
        self.models = []
        for t in range(Y.shape[1]):
            m = train_booster(X, Y[:, t], self.params, seed=self.seed)
            # predictions go through the numpy evaluator, trained or loaded alike
            self.models.append(TreeEnsemble.from_xgboost(m))
        if not rows_hash:  # arrays without row identities: the hash of the arrays themselves
            rows_hash = hashlib.sha1(np.ascontiguousarray(X, np.float64).tobytes()
                                     + np.ascontiguousarray(Y, np.float64).tobytes()).hexdigest()[:16]
        self.meta = {"trained_rows": int(len(X)), "devices": sorted(set(devices)), "data_hash": rows_hash,
                     "train_seconds": round(time.perf_counter() - t0, 2)}
        return self

    def fit(self, dataset, indices: Sequence[int] | None = None) -> "XGBLLMPredictor":
        idx = list(range(len(dataset))) if indices is None else list(indices)
        X, Y, _ = self.featurize_rows(dataset, idx)
        h = hashlib.sha1(json.dumps([[dataset[i].model, dataset[i].batch, dataset[i].seq, dataset[i].phase,
                                      dataset[i].dtype, dataset[i].latency_ms] for i in idx]).encode()).hexdigest()
        return self.fit_arrays(X, Y, devices=[dataset[i].device for i in idx], rows_hash=h[:16])

    # ------------------------------------------------------------- predict
    def predict_arrays(self, X: np.ndarray, costs: Sequence[dict], devices: Sequence) -> np.ndarray:
        """Physical predictions ``(n, 3)``: latency_ms, memory_mb, power_w."""
        if not self.models:
            raise ModelLoadError(f"predictor {self.name!r} is not trained: call fit() or load an artifact")
        Z = np.stack([m.predict(np.asarray(X)) for m in self.models], axis=1).astype(np.float64)
        base = np.asarray([[c["latency_ms"], c["memory_mb"], get_device(d).tdp_w] for c, d in zip(costs, devices)])
        return base * np.exp(np.clip(Z, -20, 20))

    def predict(self, model: Any, *, batch: int, seq: int, device="h200", mode: str | None = None,
                dtype: str = "fp16", region: str = "world", carbon_intensity_g_per_kwh: float | None = None,
                price_per_gpu_hour_usd: float | None = None, provider: str | None = None,
                instance: str | None = None) -> LLMEstimate:
        """Estimate one workload; see :class:`LLMEstimate` for the fields."""
        w = llm_workload(model, batch=batch, seq=seq, mode=mode, dtype=dtype)
        dev = get_device(device)
        x, c = self.features(w, dev)
        (lat, mem, power), held = self._held([w], dev)
        return self._estimate(w, dev, c, float(lat[0]), float(mem[0]), float(power[0]), region,
                              carbon_intensity_g_per_kwh, price_per_gpu_hour_usd, provider, instance, held[0])

    def predict_many(self, workloads: Sequence[LLMWorkload], device="h200") -> np.ndarray:
        """Fast path for sweeps: ``(n, 3)`` latency_ms, memory_mb, power_w (held as :meth:`predict` holds them:
        latency and memory over the sweeps, power between the board's idle power and its limit)."""
        workloads, dev = llm_workloads(workloads), get_device(device)
        for i, w in enumerate(workloads):
            try:
                self.check_workload(w)
            except InvalidInputError as e:
                raise InvalidInputError(f"predict_many: item {i} ({w.spec.name}, {w.mode}): {e}") from None
        if not workloads:
            return np.zeros((0, 3))
        (lat, mem, power), _ = self._held(workloads, dev)
        power = np.array([held_power(dev, float(w), self.name)[0] for w in power])
        return np.stack([lat, mem, power], axis=1)

    def _raw(self, workloads: list, dev, costs: list | None = None) -> np.ndarray:
        """Predictions ``(n, 3)`` of ``workloads`` as the trees give them; ``costs`` (a list) gets each one's
        closed-form costs."""
        feats = [self.features(w, dev) for w in workloads]
        if costs is not None:
            costs.extend(c for _, c in feats)
        return self.predict_arrays(np.stack([x for x, _ in feats]), [c for _, c in feats], [dev] * len(feats))

    def _held(self, workloads: list, dev) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], list[str | None]]:
        """Latency, memory and power of ``workloads`` on ``dev``, held where the trees would break what a larger
        call cannot do:

        * run faster than the same call at a smaller batch: latency is read from the trees' batch sweep at the
          call's sequence fitted non-decreasing (:data:`latency_hold`, ``"isotonic"``; ``"max"`` takes the
          largest over the smaller batches instead, biased high);
        * hold less than the same call at a smaller batch or a shorter sequence (each workload is also
          predicted at every smaller batch up to :data:`HELD_EVERY`, and at sixteen per octave above it, each
          at its sequence and at every power of two below it down to the shortest the trees learned from,
          :data:`HELD_SEQ_FROM`), taking the largest. Latency is not held over shorter sequences: the measured
          latencies of host-bound calls fall with a longer sequence in a quarter of the doublings;
        * hold less memory than its weights and key/value cache (and the device's framework overhead);
        * run faster on a MIG slice than on its whole GPU.

        Boosted trees on a few hundred rows are piecewise constant and do not know that (GPT-2's int4 decode
        step at batch 4 predicted at 58.4 ms, at batch 8 at 57.7 ms; Mixtral-8x7B's fp16 prefill at 73.5 GB, its weights being
        87 GiB). Returns the three arrays and, per workload, what held it (``None``: nothing)."""
        from ..devices import mig_parent

        ladders = [held_ladder(w) for w in workloads]
        iso = self.latency_hold == "isotonic"
        sweeps = [sorted(set(held_batches(max(w.batch, ISOTONIC_TO))) | {w.batch}) if iso else [] for w in workloads]
        # each point once: a sweep's workloads share most of their ladders. Equal specs resolved apart (a model
        # name per workload) are one spec: keyed by object, each would predict its whole ladder again
        same: dict = {}
        sid = [id(same.setdefault(w.spec, w.spec)) for w in workloads]
        index: dict = {}
        for s, w, lad, sweep in zip(sid, workloads, ladders, sweeps):
            for b, q in [*lad, *((b, w.seq) for b in sweep)]:
                index.setdefault((s, w.mode, w.dtype, w.target_seq, b, q),
                                 (len(index), dataclasses.replace(w, batch=b, seq=q)))
        costs: list = []
        flat = [x for _, x in index.values()]
        out = self._raw(flat, dev, costs)
        whole = mig_parent(dev)
        if whole is not None:  # a slice runs no faster than its GPU
            out[:, 0] = np.maximum(out[:, 0], self._raw(flat, whole)[:, 0])
        lat, mem, power, held = [], [], [], []
        for s, w, lad, sweep in zip(sid, workloads, ladders, sweeps):
            at = [index[(s, w.mode, w.dtype, w.target_seq, b, q)][0] for b, q in lad]
            rows, c = out[at], costs[at[-1]]
            top = rows[-1]  # the workload itself (last in its ladder)
            # latency over the smaller batches at the call's own sequence only: the measured latencies of a
            # host-bound call fall with a longer sequence as often as not (33 of 124 doublings in the rows), so
            # the largest over shorter ones is biased high; memory is deterministic and held over both
            own_seq = np.asarray([q == w.seq or self.hold_latency_over_seq for _, q in lad])
            i_l = int(np.flatnonzero(own_seq)[np.argmax(rows[own_seq, 0])])
            i_m = int(np.argmax(rows[:, 1]))
            cache = c["kv_cache_bytes"] or seq2seq_cache_bytes(w)  # a T5's or BART's self and cross caches
            floor_mb = dev.framework_overhead_mb + (c["weights_bytes"] + cache) / 2**20
            if iso:  # the batch sweep at the call's sequence fitted monotone, read at its batch
                curve = out[[index[(s, w.mode, w.dtype, w.target_seq, b, w.seq)][0] for b in sweep], 0]
                lat.append(float(np.exp(isotonic(np.log(curve))[sweep.index(w.batch)])))
            else:
                lat.append(rows[i_l, 0])
            mem.append(max(rows[i_m, 1], floor_mb))
            power.append(top[2])

            def at_(i):
                b, q = lad[i]
                return f"batch {b}'s" if q == w.seq else f"seq {q}'s" if b == w.batch else f"batch {b} x seq {q}'s"

            why = [f"{what} held at {at_(i)} {rows[i, k]:,.4g} (its own {top[k]:,.4g})"
                   for what, i, k in (("latency_ms", i_l, 0), ("memory_mb", i_m, 1))
                   if rows[i, k] > top[k] and not (iso and k == 0)]
            if iso and abs(lat[-1] / top[0] - 1) > 1e-6:
                why.insert(0, f"latency_ms {lat[-1]:,.4g} from its batch sweep (1 to {sweep[-1]:,}) fitted to rise "
                              f"with the batch (its own {top[0]:,.4g})")
            if floor_mb > rows[i_m, 1]:
                why.append(f"memory_mb held at its weights and key/value cache, {floor_mb:,.0f} MB with the "
                           f"framework's overhead (the trees' {rows[i_m, 1]:,.4g})")
            held.append("; ".join(why) or None)
        return (np.asarray(lat), np.asarray(mem), np.asarray(power)), held

    def _estimate(self, w, dev, c, lat, mem, power, region, intensity, price, provider, instance,
                  held: str | None = None) -> LLMEstimate:
        assumptions = []
        if held:
            assumptions.append(f"{self.name}: {held}, since a larger batch neither runs faster nor holds less, a "
                               "longer sequence holds no less, and no call holds less than its weights and cache "
                               "(the learned trees predicted otherwise)")
        if w.dtype in _UNLABELED_DTYPES and w.dtype not in (self.meta.get("dtypes") or ()):
            labels = ", ".join(self.meta.get("dtypes") or ()) or "floating-point"
            assumptions.append(f"no measured {w.dtype} rows behind this prediction: the {self.name} predictor "
                               f"learned from {labels} runs; the {w.dtype} figures come from its byte counts "
                               "and peak alone")
        est = compose_llm_estimate(w, dev, c, lat, mem, power, region=region, intensity=intensity, price=price,
                                   provider=provider, instance=instance, predictor=self.name,
                                   version=self.version, assumptions=assumptions)
        est.details["efficiency"] = c["latency_ms"] / lat
        return finish_estimate(est, dev, version=self.version, meta=self.meta)

    # --------------------------------------------------------- persistence
    def save(self, path: str | Path, *, extra: dict | None = None) -> None:
        if not self.models:
            raise ModelLoadError("cannot save an untrained predictor")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files = [f"{t}.json" for t in LLM_TARGETS]
        for f, m in zip(files, self.models):
            m.save(path / f)
        cfg = {"predictor": self.name, "version": self.version, "params": self.params, "seed": self.seed,
               "targets": list(LLM_TARGETS), "target_scale": ["log(latency/roofline)", "log(memory/analytic)",
                                                              "log(power/tdp)"],
               "schema": {"version": LLM_SCHEMA_VERSION, "fingerprint": _fingerprint(self.feature_names),
                          "features": list(self.feature_names)},
               "meta": dict(self.meta, library_version=__version__), **(extra or {}),
               A.CHECKSUMS: A.checksums(path, files)}
        (path / "config.json").write_text(json.dumps(A.seal(cfg), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "XGBLLMPredictor":
        """Load an artifact, checking every file; prediction needs numpy only (no ``xgboost`` import).

        A damaged or inconsistent artifact raises :class:`~costmodel.ArtifactError` naming the file.
        """
        from .._errors import ArtifactError
        from ._trees import TreeEnsemble

        path = Path(path)
        f = path / "config.json"
        if not f.is_file():
            raise ArtifactError(f"{path} holds no LLM predictor (config.json missing)")
        cfg = A.read_json(f)
        A.check(cfg.get("predictor"), A.Str(), f, "predictor")
        if cfg["predictor"] != cls.name:
            raise SchemaMismatchError(f"{f} holds a {cfg['predictor']!r} artifact, not {cls.name!r}")
        A.check(cfg, A.Fields({
            "version": A.Str(), "params": A.Fields({}, extra=True), "seed": A.Int(0),
            "targets": A.Where(A.ListOf(A.Str()), lambda v: v == list(LLM_TARGETS), f"must be {list(LLM_TARGETS)}"),
            "target_scale": A.ListOf(A.Str(), length=len(LLM_TARGETS)),
            "schema": A.Fields({"version": A.Int(0), "fingerprint": A.Str(pattern=A.HEX16),
                                "features": A.ListOf(A.Str())}),
            "meta": A.META, "grid_search": A.Str(),
        }, optional=("target_scale", "grid_search"), extra=True), f)
        if cfg["version"] != cls.version:
            raise SchemaMismatchError(f"{f} holds {cls.name} version {cfg['version']!r}; this library reads "
                                      f"version {cls.version!r}")
        obj = cls(A.xgb_params(cfg["params"], f), seed=cfg["seed"])
        want = _fingerprint(obj.feature_names)
        schema = cfg["schema"]
        if schema["version"] != LLM_SCHEMA_VERSION or schema["fingerprint"] != want:
            raise SchemaMismatchError(
                f"{path} was trained with LLM feature schema v{schema['version']} ({schema['fingerprint']}); "
                f"this library computes v{LLM_SCHEMA_VERSION} ({want}). Retrain it with "
                "`python benchmarks/llm_accuracy.py --train`."
            )
        if schema["features"] != list(obj.feature_names):
            raise A.fail(f, "schema.features do not match the schema fingerprint")
        files = [f"{t}.json" for t in LLM_TARGETS]
        A.verify_checksums(cfg, f, files)
        obj.meta = cfg["meta"]
        for name in files:
            trees = TreeEnsemble.load(path / name)
            if trees.num_feature != len(obj.feature_names):
                raise A.fail(path / name, f"has {trees.num_feature} features; the LLM features are "
                                          f"{len(obj.feature_names)}")
            obj.models.append(trees)
        return obj


#: :meth:`XGBLLMPredictor._held` compares a workload with the same call at every smaller batch up to this one
HELD_EVERY = 64


#: the shortest sequence of each mode in the rows the shipped trees learned from (costmodel/data/h200/llm.jsonl):
#: below it the trees extrapolate (Llama-2-7B's fp16 prefill at seq 4 put at 29 ms, at its measured 128 at 20),
#: so no prediction is held at a shorter sequence than this
HELD_SEQ_FROM = {"forward": 64, "prefill": 128, "decode": 512}


def held_ladder(w) -> list[tuple[int, int]]:
    """The ``(batch, seq)`` points a prediction of workload ``w`` is held against, ``w``'s own last: every
    pair of one of its :func:`held_batches` and its sequence or a power of two below it down to the mode's
    :data:`HELD_SEQ_FROM` (a fixed grid, so two workloads on it are in order in both)."""
    low = HELD_SEQ_FROM.get(w.mode, min(HELD_SEQ_FROM.values()))
    seqs = [1 << k for k in range(max(w.seq - 1, 0).bit_length()) if low <= 1 << k < w.seq] + [w.seq]
    return [(b, q) for b in held_batches(w.batch) for q in seqs if (b, q) != (w.batch, w.seq)] + [(w.batch, w.seq)]


#: the batch sweep an isotonic latency hold fits goes up to this batch (or the call's, if larger)
ISOTONIC_TO = 4096


def isotonic(y: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``y`` in least squares (pool adjacent violators)."""
    vals: list[float] = []
    sizes: list[int] = []
    for v in np.asarray(y, float):
        vals.append(float(v))
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            n = sizes[-2] + sizes[-1]
            vals[-2] = (vals[-2] * sizes[-2] + vals[-1] * sizes[-1]) / n
            sizes[-2] = n
            vals.pop()
            sizes.pop()
    return np.repeat(vals, sizes)


def held_batches(batch: int) -> list[int]:
    """The batches a prediction at ``batch`` is held against, ``batch`` last: every one up to
    :data:`HELD_EVERY`, then sixteen per octave (a fixed grid, so two batches on it are always in order)."""
    grid = set(range(1, min(batch, HELD_EVERY) + 1))
    k = 16 * 6  # 2 ** (96 / 16) == 64: the grid above goes on from there
    while (b := int(round(2 ** (k / 16)))) < batch:
        grid.add(b)
        k += 1
    return sorted(grid | {batch})


def compose_llm_estimate(w: LLMWorkload, dev, c: dict, lat: float, mem: float, power: float, *, region: str,
                         intensity, price, provider, instance, predictor: str, version: str,
                         assumptions=()) -> LLMEstimate:
    """An :class:`LLMEstimate` from one call's latency (ms), memory (MB) and average power (W).

    Throughput and tokens/s follow from the latency, energy per call and per sample from power x
    latency, carbon from the energy and the grid's intensity, cloud cost from the throughput and the
    price (none where the device has no priced instance and no price was given). ``c`` holds the
    closed-form costs of the workload (:func:`~costmodel.features.llm_feature_vector`). Not finished:
    the caller runs :func:`~costmodel.estimate.finish_estimate`.
    """
    from ..economics.carbon import carbon_g, carbon_intensity_g_per_kwh, region_info
    from ..economics.pricing import cost_per_1k_samples_usd, cost_per_1m_tokens_usd, price_per_gpu_hour_usd

    power, held = held_power(dev, power, predictor)
    thr = w.batch / (lat / 1e3)  # the finishing step records it; the cost per sample needs it here
    tok = w.query_tokens / (lat / 1e3)
    e_call = power * lat / 1e3
    e_sample = e_call / w.batch
    ci = float(intensity) if intensity is not None else carbon_intensity_g_per_kwh(region)
    carbon = carbon_g(e_sample, region, intensity_g_per_kwh=intensity)
    try:
        p = price if price is not None else price_per_gpu_hour_usd(dev, provider=provider, instance=instance)
        c1k = cost_per_1k_samples_usd(thr, device=dev, price_per_gpu_hour_usd=p)
        c1m = cost_per_1m_tokens_usd(tok, device=dev, price_per_gpu_hour_usd=p)
    except InvalidInputError:
        if price is not None or provider is not None or instance is not None:
            raise
        p = c1k = c1m = None  # no priced instance for this device
    notes = [*dev.assumptions, dev.peak_assumption(w.dtype), *assumptions, held]
    return LLMEstimate(
        model=w.spec.name, device=dev.name, batch=w.batch, seq=w.seq, mode=w.mode, dtype=w.dtype,
        latency_ms=lat, tokens_s=tok, memory_mb=mem, power_w=power,
        energy_j=e_sample, energy_j_per_call=e_call, carbon_g=carbon,
        region=region_info(region)["region"] if intensity is None else "custom", carbon_intensity_g_per_kwh=ci,
        cost_per_1k_samples_usd=c1k, cost_per_1m_tokens_usd=c1m,
        price_per_gpu_hour_usd=p, mig_profile=None, predictor=predictor, predictor_version=version,
        params=int(c["params"]), flops=float(c["flops"]),
        details={"analytic": {k: c[k] for k in ("latency_ms", "memory_mb", "compute_ms", "memory_ms",
                                                "launch_ms", "kv_cache_bytes", "activation_bytes")}},
        assumptions=list(dict.fromkeys(a for a in notes if a)),
    )


def llm_workloads(workloads, where: str = "predict_many") -> list:
    """``workloads`` as a list of :class:`~costmodel.features.LLMWorkload` (an error names the first item
    that is not one)."""
    if isinstance(workloads, (str, bytes, LLMWorkload)) or not hasattr(workloads, "__iter__"):
        raise InvalidInputError(f"{where} takes a list of workloads (LLMWorkload), got a {type(workloads).__name__}")
    out = list(workloads)
    for i, w in enumerate(out):
        if not isinstance(w, LLMWorkload):
            raise InvalidInputError(f"{where}: item {i} is a {type(w).__name__} ({w!r:.60}), not a workload "
                                    "(LLMWorkload); build it with costmodel.features.llm_workload(model, batch=..., "
                                    "seq=...)")
    return out


def default_llm_predictor() -> XGBLLMPredictor:
    """The shipped transformer model (loaded once, then cached; a handle on it per call)."""
    return XGBLLMPredictor.default()
