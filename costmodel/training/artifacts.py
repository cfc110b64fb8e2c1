"""Where trained artifacts go: the user's data folder, ``-o`` or (maintainers) the package."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError


@dataclass
class TrainResult:
    """What :func:`~costmodel.training.train` and :func:`~costmodel.training.pretrain` produced."""

    artifact: Path  # the folder the model was saved to
    seconds: float  # featurizing, fitting and saving
    model: Any  # the fitted predictor or encoder
    evaluation: dict = field(default_factory=dict)  # held-out metrics (pretraining)


def user_data_dir() -> Path:
    """Where commands write by default: ``$COSTMODEL_HOME``, else ``$XDG_DATA_HOME/costmodel``,
    else ``~/.local/share/costmodel``.  The installed package is never written at run time."""
    root = os.environ.get("COSTMODEL_HOME")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(xdg) / "costmodel"


def artifact_dir(name: str, *, output=None, to_package: bool = False) -> Path:
    """The artifact folder of a trained model: ``output``, the package (``to_package``) or the user's."""
    if output and to_package:
        raise InvalidInputError("give either -o/--output or --to-package, not both")
    if output:
        return output_folder(output)
    if to_package:
        from ..predictors import ARTIFACTS_DIR

        return ARTIFACTS_DIR / name
    return user_data_dir() / "artifacts" / name


def output_folder(output) -> Path:
    """``output`` as an artifact folder, refused before any work when it names something that is not a folder
    (an existing file): saving there would fail only once the model is trained."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"-o/--output {str(output)!r} is an existing file, not a folder: an artifact is a "
                                "folder of files; give a folder path (new or existing)")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise InvalidInputError(f"-o/--output {str(output)!r} lies under {str(parent)!r}, which is a file")
    return out


def pretrained_dir(name: str, marker: str, shipped: str | None = None) -> Path:
    """A pretrained encoder folder: the user's (``costmodel pretrain``) if there is one, else the shipped
    one (in the artifact folder ``shipped``, default ``name``: the GAE ships inside ``trappm``)."""
    from ..predictors import ARTIFACTS_DIR

    mine = user_data_dir() / "artifacts" / name
    return mine if (mine / marker).exists() else ARTIFACTS_DIR / (shipped or name)
