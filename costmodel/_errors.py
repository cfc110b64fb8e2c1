"""Exceptions and warnings raised by costmodel.

Every error a user can trigger with bad input derives from :class:`CostModelError`
so that the CLI can turn it into a one-line message and a non-zero exit code.
Input errors also derive from :class:`ValueError` so plain ``except ValueError``
keeps working for library users.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class CostModelError(Exception):
    """Base class of every error costmodel raises on purpose."""


class InvalidInputError(CostModelError, ValueError):
    """An argument has a bad value (batch <= 0, unknown dtype, bad shape...)."""


class UnknownDeviceError(InvalidInputError):
    """The device name is not in the device database."""


class UnknownModelError(InvalidInputError):
    """The model name is not a known zoo entry."""


class DynamicShapeError(InvalidInputError):
    """A model input has a dynamic dimension and no concrete shape was given."""


class ModelLoadError(CostModelError):
    """A model file is missing, unreadable, truncated or not of the expected format."""


class SchemaMismatchError(CostModelError):
    """A stored artifact was written for a different feature schema."""


class ArtifactError(ModelLoadError):
    """A saved predictor, encoder or profile is damaged, incomplete or inconsistent with its config.

    The message names the file and what is wrong with it (missing field, bad type, weight shape that
    does not match the config, unreadable bytes).
    """


class InvalidGraphError(ModelLoadError, ValueError):
    """A model's graph cannot be costed: it has a cycle, no operators, or dimensions no device can hold."""


class TensorTooLargeError(InvalidGraphError):
    """A tensor of the graph is larger than any device holds (an absurd dimension or batch size): no other
    way of capturing the model changes that."""


class UnsupportedOpWarning(UserWarning):
    """An operator is not in the op vocabulary; it was mapped to ``other``."""


class OOMWarning(UserWarning):
    """A compiled graph is predicted to need more memory than the device (or the given limit) has."""


class OOMRiskWarning(OOMWarning):
    """A compiled graph is predicted to fit, but the upper end of its memory's 90 % interval does not:
    it may run out of memory. A subclass of :class:`OOMWarning`, so filters on that catch it too."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean: a, b?"`` for the closest choices, or ``""``."""
    close = difflib.get_close_matches(name, list(dict.fromkeys(choices)), n=n, cutoff=0.5)  # each name once
    return f" Did you mean: {', '.join(close)}?" if close else ""
