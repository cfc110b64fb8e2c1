"""Loading the package's compiled modules (``costmodel._roofline``, ``costmodel._nodes``).

``pip install .`` builds them into the installed package.  A source checkout on ``sys.path``
(``python -m pytest`` from the repository root) shadows the installed package; when the checkout has
no compiled module, the installed one is used if it speaks the version this code expects.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType


def load_extension(name: str, version_attr: str, version: int) -> tuple[ModuleType | None, str | None]:
    """``(module, None)`` for ``costmodel.<name>``, or ``(None, why)`` when it cannot be used."""
    import importlib
    import importlib.machinery
    import importlib.util

    full = f"costmodel.{name}"
    try:
        mod = importlib.import_module(full)
        error = None
    except ImportError as e:
        mod, error = None, e
    if mod is None:
        here = Path(__file__).resolve().parent  # the costmodel package
        for entry in sys.path:
            try:
                pkg = (Path(entry) if entry else Path.cwd()).resolve() / "costmodel"
            except OSError:
                continue
            if pkg == here or not pkg.is_dir():
                continue
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = pkg / f"{name}{suffix}"
                if not path.is_file():
                    continue
                spec = importlib.util.spec_from_file_location(full, path)
                try:
                    cand = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(cand)
                except ImportError:
                    continue
                if getattr(cand, version_attr, None) == version:
                    sys.modules[full] = cand
                    mod = cand
                    break
            if mod is not None:
                break
    if mod is None:
        return None, f"{type(error).__name__}: {error}"
    found = getattr(mod, version_attr, None)
    if found != version:
        return None, f"{getattr(mod, '__file__', full)} has {version_attr} {found!r}, this costmodel expects {version}"
    return mod, None
