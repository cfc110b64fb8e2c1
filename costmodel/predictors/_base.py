"""The Predictor abstraction, the Estimate record and the predictor registry.

Every predictor answers the same question, "what does this graph cost on this
device?", with the same :class:`Estimate`; the registry turns a name from the
CLI or API (``--predictor analytic``) into an instance and fails with the list
of valid names otherwise.
"""

from __future__ import annotations

import abc
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .._errors import InvalidInputError, ModelLoadError, SchemaMismatchError, suggest

MODES = ("inference", "training")
OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw")


@dataclass
class Estimate:
    """What a workload costs.  Units are in the field names.

    ``*_interval`` fields are ``(low, high)`` prediction intervals where the
    predictor can give them, else ``None``.  ``mig_profile`` is the smallest
    MIG slice of ``device`` whose memory holds ``memory_mb`` (``None`` when
    the device has no MIG or nothing fits).

    ``assumptions`` names, one line each, every fallback the estimate rests
    on: a dtype costed at another dtype's peak, operators outside the op
    vocabulary, a model featurized by another capture than asked for, a
    device name that fits several devices, a device without measured rows
    (the learned correction is extrapolated), a predictor answering for
    another.  Empty when nothing was assumed.
    """

    latency_ms: float
    memory_mb: float
    energy_j: float
    power_w: float
    mig_profile: str | None
    predictor: str
    predictor_version: str
    device: str
    model: str | None = None
    batch: int | None = None
    mode: str = "inference"
    dtype: str = "fp32"
    flops: float | None = None
    params: int | None = None
    throughput_samples_s: float | None = None
    latency_ms_interval: tuple[float, float] | None = None
    memory_mb_interval: tuple[float, float] | None = None
    energy_j_interval: tuple[float, float] | None = None
    fits_device: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # an own list (``dataclasses.replace`` would share it), in order, without repeats; a learned
        # predictor's flag for a device without measured rows is named here, whichever predictor set it
        notes = list(self.assumptions or ())
        if self.details.get("extrapolated_device"):
            from ..devices import extrapolation_note

            notes.append(extrapolation_note(self.device, self.details.get("trained_devices"), self.predictor))
        self.assumptions = list(dict.fromkeys(str(a) for a in notes))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("latency_ms_interval", "memory_mb_interval", "energy_j_interval"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def table(self) -> str:
        """A readable multi-line table (what ``costmodel predict`` prints)."""

        def iv(name):
            v = getattr(self, name + "_interval")
            return f"  [{v[0]:.4g}, {v[1]:.4g}]" if v else ""

        rows = [
            ("model", self.model or "?"),
            ("device", self.device),
            ("workload", f"{self.mode}, batch {self.batch}, {self.dtype}"),
            ("predictor", f"{self.predictor} {self.predictor_version}"),
            ("latency", f"{self.latency_ms:.4g} ms{iv('latency_ms')}"),
            ("throughput", f"{self.throughput_samples_s:.4g} samples/s" if self.throughput_samples_s else "-"),
            ("memory", f"{self.memory_mb:.5g} MB{iv('memory_mb')}" + ("" if self.fits_device else "  (exceeds device memory)")),
            ("energy", f"{self.energy_j:.4g} J{iv('energy_j')}"),
            ("power", f"{self.power_w:.4g} W"),
            ("MIG profile", self.mig_profile or "none fits / no MIG"),
        ]
        if self.flops is not None:
            rows.insert(3, ("GFLOPs", f"{self.flops / 1e9:.4g}"))
        if self.params is not None:
            rows.insert(4, ("params", f"{self.params / 1e6:.4g} M"))
        rows += [("assumes", a) for a in self.assumptions]
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)

    def __str__(self) -> str:
        return self.table()


class Predictor(abc.ABC):
    """Abstract cost model.

    Subclasses set ``name`` and ``version`` and implement :meth:`predict`;
    learned ones also implement :meth:`fit`, :meth:`save` and :meth:`load`.
    """

    name: str = "base"
    version: str = "0"

    @abc.abstractmethod
    def predict(self, graph, device, *, mode: str | None = None, optimizer: str = "adam") -> Estimate:
        """Estimate one CostGraph on one device."""

    def predict_many(self, graphs: Sequence, device, *, mode: str | None = None, optimizer: str = "adam") -> list[Estimate]:
        """Estimate many graphs (learned predictors batch this)."""
        return [self.predict(g, device, mode=mode, optimizer=optimizer) for g in graphs]

    def fit(self, dataset) -> "Predictor":
        """Train on a :class:`~costmodel.datasets.PerfDataset`; returns ``self``."""
        raise NotImplementedError(f"predictor {self.name!r} is not trainable")

    @abc.abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the predictor to a directory (config JSON + weights, no pickle)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str | Path) -> "Predictor":
        """Read a predictor written by :meth:`save`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


_REGISTRY: dict[str, Callable[..., Predictor]] = {}

#: the predictor that answers when the caller names none (the most accurate on unseen model families in
#: ``benchmarks/accuracy.py``)
DEFAULT_PREDICTOR = "trappm"
#: the documented fallback order: the first available one answers (a shipped artifact is available when
#: its folder and the modules it needs are installed; ``analytic`` always is)
DEFAULT_ORDER: tuple[str, ...] = (DEFAULT_PREDICTOR, "dippm", "analytic")
# the order get_predictor(None) walks: DEFAULT_ORDER, plus predictors registered with a default_rank
_DEFAULT_ORDER: list[str] = list(DEFAULT_ORDER)


def register_predictor(name: str, *, default_rank: int | None = None):
    """Class decorator adding a predictor to the registry under ``name``.

    ``default_rank`` also puts it at that position of the order in which
    :func:`get_predictor` looks for a default (0: before the built-in
    :data:`DEFAULT_ORDER`); the built-in predictors do not use it, so the
    default never depends on which module was imported first.
    """

    def deco(cls):
        _REGISTRY[name] = cls
        if default_rank is not None:
            if name in _DEFAULT_ORDER:
                _DEFAULT_ORDER.remove(name)
            _DEFAULT_ORDER.insert(min(default_rank, len(_DEFAULT_ORDER)), name)
        return cls

    return deco


def available_predictors() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_predictor(name: str | Predictor | None = None, **kwargs) -> Predictor:
    """Instance of a registered predictor (``None``: the library's default), or one loaded from an
    artifact folder when ``name`` is a directory.

    With ``None``, the first available of :data:`DEFAULT_ORDER` answers.  Shipped
    artifacts are loaded once and cached (:func:`cached_artifact`); each call
    returns its own handle on the cached weights.
    """
    _ensure_builtin()
    if isinstance(name, Predictor):
        return name
    if name is None:
        for cand in _DEFAULT_ORDER:
            cls = _REGISTRY.get(cand)
            if cls is None:
                continue
            avail = getattr(cls, "is_available", None)
            if avail is None or avail():
                return cls.default() if hasattr(cls, "default") else cls(**kwargs)
        raise ModelLoadError(f"no predictor is available (tried {_DEFAULT_ORDER})")  # pragma: no cover
    if name not in _REGISTRY and Path(name).is_dir():
        return load_predictor(name)  # a trained artifact folder
    if name not in _REGISTRY:
        raise InvalidInputError(
            f"unknown predictor {name!r}; expected one of {sorted(_REGISTRY)}." + suggest(name, _REGISTRY)
        )
    cls = _REGISTRY[name]
    return cls.default() if hasattr(cls, "default") and not kwargs else cls(**kwargs)


def load_predictor(path: str | Path) -> Predictor:
    """Load any saved predictor; its ``config.json`` names the class.

    Every file is checked as it is read: a damaged, incomplete or inconsistent
    artifact raises :class:`~costmodel.ArtifactError` naming the file and the
    problem.  Not cached (see :func:`cached_artifact` for the shipped ones).
    """
    _ensure_builtin()
    path = Path(path)
    cfg = read_artifact_config(path, _REGISTRY)
    return _REGISTRY[cfg["predictor"]].load(path)


def read_artifact_config(path: Path, allowed) -> dict:
    """Read ``path/config.json`` and check it names one of ``allowed`` predictors."""
    from .._errors import ArtifactError
    from ._artifact import read_json

    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ArtifactError(f"no saved predictor at {path} (missing config.json)")
    cfg = read_json(cfg_path)
    name = cfg.get("predictor")
    if not isinstance(name, str):
        raise ArtifactError(f"{cfg_path}: field 'predictor' must name the predictor, got {name!r}")
    if name not in allowed:
        raise SchemaMismatchError(f"{cfg_path} holds predictor {name!r}, expected one of {sorted(allowed)}")
    return cfg


# ------------------------------------------------------- loaded-artifact cache
_LOADED: dict[tuple[str, str], tuple[tuple, Any]] = {}
_LOADED_LOCK = threading.RLock()


def _stamp(path: Path) -> tuple:
    """What identifies the current contents of an artifact folder: each file's name, size and mtime."""
    out = []
    for f in sorted(path.iterdir()):
        try:
            st = f.stat()
        except OSError:  # pragma: no cover - removed while listing
            continue
        if f.is_file():
            out.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def cached_artifact(kind: str, path: str | Path, loader: Callable[[Path], Any]):
    """``loader(path)``, loaded once per ``(kind, path)`` while the folder's files keep their size and mtime.

    Thread-safe: concurrent first calls load once.  Returns a handle of the
    cached object (:func:`_handle`): the network weights are shared, which is
    safe because predicting never modifies a predictor; its small records
    (``meta``, ``intervals``, normalization) are the caller's own.
    """
    path = Path(path).resolve()
    key = (kind, str(path))
    with _LOADED_LOCK:
        stamp = _stamp(path)
        hit = _LOADED.get(key)
        if hit is None or hit[0] != stamp:
            _LOADED[key] = hit = (stamp, loader(path))
        return _handle(hit[1])


def clear_artifact_cache() -> None:
    """Forget every cached artifact (the next request loads from disk again)."""
    with _LOADED_LOCK:
        _LOADED.clear()


def _handle(obj):
    """A shallow copy of ``obj`` whose dict, list and small dataclass attributes are copies too."""
    import copy
    from dataclasses import fields, is_dataclass

    new = copy.copy(obj)
    for k, v in vars(obj).items():
        if isinstance(v, dict):
            setattr(new, k, copy.deepcopy(v))
        elif isinstance(v, list):
            setattr(new, k, list(v))
        elif is_dataclass(v) and not isinstance(v, type) and all(
                isinstance(getattr(v, f.name), (list, int, float, str, bool, type(None))) for f in fields(v)):
            setattr(new, k, copy.deepcopy(v))
    return new


def _ensure_builtin() -> None:
    from . import _analytic, _gnn, _gnnllm, _timeline, _trappm, _xgb  # noqa: F401  (register themselves)


def validate_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def validate_optimizer(opt: str) -> str:
    norm = opt.lower().replace("-", "_").replace("+", "_")
    if norm == "momentum":
        norm = "sgd_momentum"
    if norm not in OPTIMIZERS:
        raise InvalidInputError(f"optimizer must be one of {OPTIMIZERS}, got {opt!r}")
    return norm

