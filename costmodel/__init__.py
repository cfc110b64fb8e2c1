"""costmodel: what a deep-learning model will cost before you run it.

Public surface (imported lazily so ``import costmodel`` stays fast)::

    costmodel.estimate(model, batch=8, device="h100")  -> Estimate
    costmodel.to_graph(model, batch=8)                 -> CostGraph
    costmodel.get_device("h200"), costmodel.list_devices()
    costmodel.get_predictor("analytic"), costmodel.available_predictors()
    costmodel.PerfDataset.load()
    costmodel.estimate_llm("llama-2-7b", batch=8, seq=512, device="h200")  -> LLMEstimate
    costmodel.bench(torch.matmul, a, b)                -> BenchResult (timed, on the roofline)
    costmodel.onnx.export(model, args, "m.onnx")       (the ONNX metadata hook, costmodel.integrations.onnx_hook)
"""

from __future__ import annotations

import sys
from importlib import import_module

__version__ = "0.1.0"

from ._errors import (  # noqa: E402  (light: stdlib only)
    ArtifactError,
    CostModelError,
    InvalidGraphError,
    TensorTooLargeError,
    DynamicShapeError,
    InvalidInputError,
    ModelLoadError,
    SchemaMismatchError,
    UnknownDeviceError,
    UnknownModelError,
    UnsupportedOpWarning,
    OOMRiskWarning,
    OOMWarning,
)
from .integrations import onnx_hook as onnx  # noqa: E402  (light: stdlib only; torch and onnx load on use)

# ``import costmodel.onnx`` and ``from costmodel.onnx import export`` name the same module
sys.modules[f"{__name__}.onnx"] = onnx

_LAZY = {
    "estimate": "costmodel.estimate",
    "Estimate": "costmodel.estimate",
    "Predictor": "costmodel.predictors",
    "get_predictor": "costmodel.predictors",
    "load_predictor": "costmodel.predictors",
    "available_predictors": "costmodel.predictors",
    "register_predictor": "costmodel.predictors",
    "CostGraph": "costmodel.ir",
    "Node": "costmodel.ir",
    "OP_KINDS": "costmodel.ir",
    "to_graph": "costmodel.frontends",
    "from_onnx": "costmodel.frontends",
    "from_torch": "costmodel.frontends",
    "from_relax": "costmodel.frontends",
    "get_device": "costmodel.devices",
    "list_devices": "costmodel.devices",
    "Device": "costmodel.devices",
    "recommend_mig": "costmodel.estimate",
    "PerfDataset": "costmodel.datasets",
    "estimate_llm": "costmodel.estimate",
    "largest_batch": "costmodel.estimate",
    "largest_llm_batch": "costmodel.estimate",
    "torch_backend": "costmodel.integrations.torch_compile",
    "bench": "costmodel.measure.bench",
    "LLMEstimate": "costmodel.estimate",
}

__all__ = sorted(
    [
        "__version__",
        "ArtifactError",
        "CostModelError",
        "InvalidGraphError",
        "TensorTooLargeError",
        "DynamicShapeError",
        "InvalidInputError",
        "ModelLoadError",
        "SchemaMismatchError",
        "UnknownDeviceError",
        "UnknownModelError",
        "UnsupportedOpWarning",
        "OOMRiskWarning",
        "OOMWarning",
        "onnx",
        *_LAZY,
    ]
)


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'costmodel' has no attribute {name!r}")
    value = getattr(import_module(mod), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
