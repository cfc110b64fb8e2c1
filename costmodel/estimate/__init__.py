"""Estimates: the :class:`Estimate` record, the one finishing step, the MIG rule, and the public calls.

>>> import costmodel
>>> est = costmodel.estimate("torchvision:resnet50", batch=8, device="h200")   # -> Estimate
>>> llm = costmodel.estimate_llm("llama-2-7b", batch=8, seq=512)               # -> LLMEstimate

This package is also callable: ``costmodel.estimate(...)`` is :func:`estimate`
whether the name resolves to the function or to this package (importing a
submodule binds the package under that name).
"""

from __future__ import annotations

import sys
import types

from ._api import DTYPES, MODES, estimate, estimate_llm
from ._fit import fit_answer, fit_limit_mb, largest_batch, largest_llm_batch, rebatch_inputs, search_batch
from ._finish import bound_power, finish_estimate, held_power, mig_details
from ._memory import MEMORY_PATHS, PREDICTOR_MEMORY_NOTE, graph_memory_into, replay_into
from ._types import Estimate, LLMEstimate, with_notes
from .mig import mig_latency_penalty, recommend_mig, slice_device

__all__ = [
    "PREDICTOR_MEMORY_NOTE",
    "graph_memory_into",
    "DTYPES",
    "Estimate",
    "LLMEstimate",
    "MEMORY_PATHS",
    "MODES",
    "estimate",
    "estimate_llm",
    "bound_power",
    "finish_estimate",
    "held_power",
    "fit_answer",
    "fit_limit_mb",
    "largest_batch",
    "largest_llm_batch",
    "mig_details",
    "mig_latency_penalty",
    "rebatch_inputs",
    "recommend_mig",
    "replay_into",
    "search_batch",
    "slice_device",
    "with_notes",
]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`estimate`."""

    def __call__(self, *args, **kwargs):
        return estimate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
