"""The predictor registry: a name from the CLI or API (``--predictor analytic``) -> a predictor.

The built-in predictors are named in :data:`BUILTIN` with the module that
defines each; a module is imported the first time the registry is asked
(registering its class with :func:`register_predictor`), so nothing here
imports an implementation up front.  An unknown name fails with the list of
valid ones.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any, Callable

from .._errors import InvalidInputError, ModelLoadError, SchemaMismatchError, suggest
from ._artifacts import DEFAULT_ORDER
from ._base import Predictor

#: built-in graph predictors and the module (of this package) that defines each
BUILTIN = {
    "analytic": "._analytic",
    "dippm": "._dippm",
    "gnn-llm": "._gnnllm",
    "timeline": "._timeline",
    "trappm": "._trappm",
    "xgb-static": "._xgb_static",
}

_REGISTRY: dict[str, Callable[..., Predictor]] = {}
# the order get_predictor(None) walks: DEFAULT_ORDER, plus predictors registered with a default_rank
_DEFAULT_ORDER: list[str] = list(DEFAULT_ORDER)


def register_predictor(name: str, *, default_rank: int | None = None):
    """Class decorator adding a predictor to the registry under ``name``.

    ``default_rank`` also puts it at that position of the order in which
    :func:`get_predictor` looks for a default (0: before the built-in
    :data:`~costmodel.predictors.DEFAULT_ORDER`); the built-in predictors do
    not use it, so the default never depends on which module was imported first.
    """

    def deco(cls):
        _REGISTRY[name] = cls
        if default_rank is not None:
            if name in _DEFAULT_ORDER:
                _DEFAULT_ORDER.remove(name)
            _DEFAULT_ORDER.insert(min(default_rank, len(_DEFAULT_ORDER)), name)
        return cls

    return deco


def _ensure_builtin() -> None:
    for module in BUILTIN.values():
        import_module(module, __package__)  # registers its predictor


def available_predictors() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_predictor(name: str | Predictor | None = None, **kwargs) -> Predictor:
    """Instance of a registered predictor (``None``: the library's default), or one loaded from an
    artifact folder when ``name`` is a directory.

    With ``None``, the first available of :data:`~costmodel.predictors.DEFAULT_ORDER` answers.
    Shipped artifacts are loaded once and cached
    (:func:`~costmodel.predictors.cached_artifact`); each call returns its own handle on the cached
    weights.
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
    problem.  The predictor's ``artifact`` is the folder, which the estimates of
    :func:`costmodel.estimate` name.  Not cached (see :func:`~costmodel.predictors.cached_artifact` for the shipped ones).
    """
    _ensure_builtin()
    path = Path(path)
    cfg = read_artifact_config(path, _REGISTRY)
    pred = _REGISTRY[cfg["predictor"]].load(path)
    pred.artifact = str(path.resolve())  # what an estimate by it names (``details["artifact"]``)
    return pred


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


def _why_unavailable(cls) -> str:
    missing = getattr(cls, "_missing", None)
    if callable(missing):
        mods = missing()
        if mods:
            return f"needs {', '.join(mods)}"
    return "no usable shipped artifact"


def default_fallback_note(pred) -> str | None:
    """The assumption of an estimate by ``pred`` when it answered because the predictors before it
    in the default order were not available; ``None`` when ``pred`` is the first choice (or not in
    the default order at all)."""
    _ensure_builtin()
    name = getattr(pred, "name", None)
    if name not in _DEFAULT_ORDER:
        return None
    before = _DEFAULT_ORDER[: _DEFAULT_ORDER.index(name)]
    skipped = [f"{c}: {_why_unavailable(_REGISTRY[c])}" for c in before if c in _REGISTRY]
    if not skipped:
        return None
    return (f"the default predictor is not available ({'; '.join(skipped)}); "
            f"the {name} predictor answered instead")


def with_cuda_graphs(pred, cuda_graphs: bool):
    """``pred`` costing the step replayed from one captured CUDA graph when ``cuda_graphs`` is true (the timeline:
    its device lane without per-operator host dispatch); a predictor without host and device lanes cannot,
    and says so."""
    if not isinstance(cuda_graphs, bool):
        raise InvalidInputError(f"cuda_graphs must be True or False, got {cuda_graphs!r}")
    if not cuda_graphs:
        return pred
    if not hasattr(pred, "with_cuda_graphs"):
        raise InvalidInputError(f"cuda_graphs=True needs a predictor with a host and a device lane (predictor="
                                f"'timeline'); the {getattr(pred, 'name', pred)} predictor learned whole eager steps")
    return pred.with_cuda_graphs()


def with_host_profile(pred, host) -> tuple[Any, list[str]]:
    """``(predictor, notes)``: ``pred`` with ``host`` (a :class:`~costmodel.measure.host.HostProfile` or the path
    of one that ``costmodel calibrate`` saved) as its host lane, where it has one (``"timeline"``); otherwise
    ``pred`` unchanged and a note saying the profile was ignored. A missing or damaged file fails here."""
    if host is None:
        return pred, []
    from ..measure.host import load_host

    profile = load_host(host)
    if hasattr(pred, "with_host"):
        return pred.with_host(profile), []
    return pred, [f"host profile ignored: the {getattr(pred, 'name', pred)} predictor has no host lane "
                  "(predictor='timeline' uses one)"]
