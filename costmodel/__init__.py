"""costmodel: what a deep-learning model will cost before you run it.

Public surface (imported lazily so ``import costmodel`` stays fast)::

    costmodel.estimate(model, batch=8, device="h100")  -> Estimate
    costmodel.to_graph(model, batch=8)                 -> CostGraph
    costmodel.get_device("h200"), costmodel.list_devices()
    costmodel.get_predictor("analytic"), costmodel.available_predictors()
    costmodel.PerfDataset.load()
    costmodel.estimate_llm("llama-2-7b", batch=8, seq=512, device="h200")  -> LLMEstimate
    costmodel.bench(torch.matmul, a, b)                -> BenchResult (timed, on the roofline)
    costmodel.onnx.export(model, args, "m.onnx")       (submodule, imported on first use)
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

from ._errors import (  # noqa: E402  (light: stdlib only)
    ArtifactError,
    CostModelError,
    InvalidGraphError,
    DynamicShapeError,
    InvalidInputError,
    ModelLoadError,
    SchemaMismatchError,
    UnknownDeviceError,
    UnknownModelError,
    UnsupportedOpWarning,
    OOMWarning,
)

_LAZY = {
    "estimate": "costmodel.estimate",
    "Estimate": "costmodel.estimate",
    "Predictor": "costmodel.predictors",
    "get_predictor": "costmodel.predictors",
    "load_predictor": "costmodel.predictors",
    "available_predictors": "costmodel.predictors",
    "register_predictor": "costmodel.predictors",
    "CostGraph": "costmodel.ir._graph",
    "Node": "costmodel.ir._graph",
    "OP_KINDS": "costmodel.ir._vocab",
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
    "torch_backend": "costmodel._compile",
    "bench": "costmodel.bench",
    "LLMEstimate": "costmodel.estimate",
}

#: submodules reachable as attributes without an explicit import (loaded on first use)
_LAZY_SUBMODULES = ("onnx",)

__all__ = sorted(
    [
        "__version__",
        "ArtifactError",
        "CostModelError",
        "InvalidGraphError",
        "DynamicShapeError",
        "InvalidInputError",
        "ModelLoadError",
        "SchemaMismatchError",
        "UnknownDeviceError",
        "UnknownModelError",
        "UnsupportedOpWarning",
        "OOMWarning",
        *_LAZY,
        *_LAZY_SUBMODULES,
    ]
)


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        return import_module(f"{__name__}.{name}")  # the import binds it as an attribute too
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'costmodel' has no attribute {name!r}")
    value = getattr(import_module(mod), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
