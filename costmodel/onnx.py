"""ONNX export hook: cost estimates written into the ONNX file itself.

``export`` wraps ``torch.onnx.export`` and then :func:`annotate` the file it
wrote; ``annotate`` works on any existing ``.onnx`` file.  Estimates go into
the model's ``metadata_props`` under ``costmodel.*`` keys (one key per
number, plus ``costmodel.estimate`` with the whole estimate as JSON), so any
ONNX tool shows them and :func:`read_annotations` (or ``costmodel annotate
FILE --show``) reads them back.  Weights stored as external data stay where
they are: the file is rewritten without loading them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._errors import InvalidInputError, ModelLoadError

PREFIX = "costmodel."
_KEYS = ("latency_ms", "memory_mb", "energy_j", "power_w", "mig_profile", "predictor", "device", "batch", "mode",
         "dtype")


def annotate(path: str | Path, *, device="h200", batch: int | None = None, input_shape=None,
             mode: str = "inference", dtype: str | None = None, predictor=None, output: str | Path | None = None):
    """Estimate the ONNX model at ``path`` and store the estimate in its metadata; returns the Estimate.

    ``output`` writes an annotated copy instead of rewriting ``path``.
    Estimates for several devices can live side by side: keys of a device
    other than the first are suffixed with ``@<device>``.
    """
    import onnx

    from . import __version__
    from ._estimate import estimate

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"no such ONNX file: {path}")
    model = onnx.load(str(path), load_external_data=False)  # the frontend never reads weights
    if batch is None:
        batch = _static_batch(model, path)
    kw = {"dtype": dtype} if dtype else {}
    est = estimate(model, batch=batch, input_shape=input_shape, device=device, mode=mode, predictor=predictor,
                   **kw)
    props = {p.key: p.value for p in model.metadata_props}
    first = props.get(PREFIX + "device")
    suffix = "" if first in (None, est.device) else f"@{est.device}"
    d = est.to_dict()
    for k in _KEYS:
        props[f"{PREFIX}{k}{suffix}"] = "" if d.get(k) is None else str(d[k])
    props[f"{PREFIX}estimate{suffix}"] = json.dumps(d, default=str)
    props[PREFIX + "version"] = __version__
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    out = Path(output) if output else path
    onnx.save(model, str(out))
    return est


def _static_batch(model, path) -> int:
    """The first graph input's leading dimension, when the file fixes it."""
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return int(dims[0].dim_value)
        break
    raise InvalidInputError(f"{path} has a dynamic batch dimension: pass batch=...")


def read_annotations(path: str | Path) -> dict[str, Any]:
    """The stored estimates of an annotated ONNX file: ``{device: estimate dict}`` (empty if none)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"no such ONNX file: {path}")
    model = onnx.load(str(path), load_external_data=False)
    out = {}
    for p in model.metadata_props:
        if p.key.startswith(PREFIX + "estimate"):
            d = json.loads(p.value)
            out[d["device"]] = d
    return out


def export(model, args, f: str | Path, *, device="h200", mode: str = "inference", predictor=None,
           **export_kwargs):
    """``torch.onnx.export(model, args, f, **export_kwargs)``, then :func:`annotate` ``f``; returns the Estimate.

    The batch is read from the first tensor in ``args``.
    """
    import torch

    args_t = args if isinstance(args, tuple) else (args,)
    first = next((a for a in args_t if isinstance(a, torch.Tensor)), None)
    if first is None or first.dim() == 0:
        raise InvalidInputError("export needs a batched example tensor among args to know the batch size")
    f = Path(f)
    torch.onnx.export(model, args_t, str(f), **export_kwargs)
    return annotate(f, device=device, batch=int(first.shape[0]), input_shape=tuple(first.shape[1:]), mode=mode,
                    predictor=predictor)
