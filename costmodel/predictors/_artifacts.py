"""The shipped artifacts: where they live, which predictor answers by default, and one cache of loaded models.

Every predictor shipped as a folder under ``costmodel/artifacts/<name>``
(:class:`ShippedArtifact`) is loaded through :func:`cached_artifact`: once per
folder while its files keep their size and mtime, each caller getting its own
handle on the shared weights.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from .._errors import ModelLoadError

#: the folder of the shipped artifacts (one subfolder per predictor)
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "artifacts"

#: the predictor that answers when the caller names none: the most accurate on unseen model families
#: (``benchmarks/timeline.py``: leave-one-family-out and the 13 architectures measured later, latency and
#: energy); it needs no optional package
DEFAULT_PREDICTOR = "timeline"
#: the documented fallback order: the first available one answers (a shipped artifact is available when
#: its folder and the modules it needs are installed; ``analytic`` always is)
DEFAULT_ORDER: tuple[str, ...] = (DEFAULT_PREDICTOR, "trappm", "dippm", "analytic")


def artifact_dir(name: str) -> Path:
    """The shipped artifact folder of the predictor ``name``."""
    return ARTIFACTS_DIR / name


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


class ShippedArtifact:
    """Mixin for predictors shipped as ``costmodel/artifacts/<name>``: ``is_available()`` and ``default()``."""

    #: modules the shipped artifact needs at prediction time, and the extra that installs them
    _requires: tuple[str, ...] = ("torch_geometric",)
    _extra: str | None = None
    #: what trains the artifact (named when it is missing)
    _train_hint = "costmodel train --predictor {name}"

    @classmethod
    def _missing(cls) -> list[str]:
        import importlib.util

        return [m for m in cls._requires if importlib.util.find_spec(m) is None]

    @classmethod
    def is_available(cls) -> bool:
        return (artifact_dir(cls.name) / "config.json").exists() and not cls._missing()

    @classmethod
    def default(cls):
        """The shipped artifact (loaded once, then cached), or an error that says how to get it."""
        path = artifact_dir(cls.name)
        if not (path / "config.json").exists():
            raise ModelLoadError(f"no shipped {cls.name} artifact under {path}; train one with "
                                 f"`{cls._train_hint.format(name=cls.name)}`")
        if cls._missing():
            hint = f": pip install 'costmodel[{cls._extra}]'" if cls._extra else ""
            raise ModelLoadError(f"the {cls.name} predictor needs {', '.join(cls._missing())}{hint}")
        return cached_artifact(cls.name, path, lambda p: cls.load(p))
