"""The models a collection run measures: built with random weights on the measuring device.

``fp16``/``bf16`` convert the fp32 model (``model.half()``, no autocast).
Nothing is downloaded.
"""

from __future__ import annotations

import gc
import json
from typing import Any, Iterable

from .._errors import InvalidInputError, ModelLoadError
from ..frontends import build_zoo_model
from ..frontends.hf import model_class
from .probes import _Device
from .work import WorkItem

_CACHE: dict[str, Any] = {"key": None, "model": None, "info": None}


def _drop_model() -> None:
    _CACHE.update(key=None, model=None, info=None)
    gc.collect()


def _torch_dtype(dtype: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def _convert(model, dtype: str):
    if dtype == "fp16":
        return model.half()
    return model.to(_torch_dtype(dtype))


def build_vision(spec: dict, dev):
    """The module of a vision spec with random weights on ``dev``, and its input shape (no batch)."""
    zm = build_zoo_model(spec, device=str(dev))
    return zm.module, tuple(zm.input_shape)


_HF_DROP = {"transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype", "model_type"}


def build_llm(spec: dict, dev):
    """The fp32 model of a transformer spec (``{"model", "model_type", "config", "causal"}``) with
    random weights on ``dev``, and ``{"config": the config used, "vocab": its vocabulary size}``."""
    import torch

    try:
        import transformers
    except ImportError:
        raise InvalidInputError("measuring a transformer needs the 'transformers' package: "
                                "pip install 'costmodel[llm]'") from None
    from ..features import check_model_type

    check_model_type(spec["model_type"])
    kw = {k: v for k, v in spec["config"].items() if k not in _HF_DROP}
    try:
        cfg = transformers.AutoConfig.for_model(spec["model_type"], **kw)
    except ValueError as e:
        raise InvalidInputError(f"{spec['model']}: invalid {spec['model_type']} config: {e}") from None
    auto = model_class(cfg, spec["causal"])
    with torch.device(dev):
        model = auto.from_config(cfg)
    model = model.to(device=dev, dtype=torch.float32).eval()
    used = {k: v for k, v in model.config.to_dict().items() if _recordable(v)}
    used["model_type"] = spec["model_type"]
    return model, {"config": used, "vocab": int(cfg.vocab_size)}


def _scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _recordable(v) -> bool:
    """Config values a row records: scalars and lists of scalars (DeBERTa's ``pos_att_type``, which the
    config turns from ``"p2c|c2p"`` into a list, changes the model). Rows recorded before lists were
    kept lack them; :func:`run_config` puts them back."""
    return _scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v))


def run_config(row: dict) -> dict:
    """The config a measured transformer row's model was built from, with ``model_type``.

    A row records the config as built; rows recorded before list-valued fields were kept (the
    packaged H200 rows, the second host's) lack them, and DeBERTa-v3's ``pos_att_type``
    (``p2c|c2p``, the two relative-position score terms) is one. Where the row names a model of the
    registry, the fields of the registry's config that the row lacks are put back; the row's own
    values win.
    """
    from .._errors import CostModelError
    from ..llm import resolve_llm

    cfg = dict(row["config"])
    try:
        spec = resolve_llm(row["model"])
    except CostModelError:  # a model the registry does not name: the row's config as recorded
        spec = None
    if spec is not None and spec.model_type == row["model_type"]:
        cfg = {**{k: v for k, v in spec.config.items() if k not in cfg}, **cfg}
    cfg["model_type"] = row["model_type"]
    return cfg


def _model(item: WorkItem, d: _Device):
    """The model of ``item`` on ``d``: built fp32 with random weights, then converted to the
    item's dtype.  Consecutive inference rows of one spec and dtype reuse it; a training row
    or another dtype gets a fresh one (no tensor cached by an inference call, say LeViT's
    attention-bias cache, leaks into training or into another dtype)."""
    key = json.dumps([item.group(), str(d.dev), item.dtype, item.mode == "train"])
    if _CACHE["key"] != key:
        _drop_model()
        d.clear()
        if item.kind == "llm":
            model, info = build_llm(item.spec, d.dev)
        else:
            model, shape = build_vision(item.spec, d.dev)
            model = model.to(d.dev)
            info = {"input": shape}
        if item.dtype != "fp32":
            model = _convert(model, item.dtype)
        _CACHE.update(key=key, model=model, info=info)
    return _CACHE["model"], _CACHE["info"]


def check_buildable(items: Iterable[WorkItem]) -> None:
    """Build the model of every distinct spec in ``items`` on the meta device (no weights, no
    memory); raise :class:`InvalidInputError` naming the first spec that cannot be built (an
    unknown model or keyword, an invalid transformer config).  Failures that only a real
    device shows are left to the measurement."""
    import warnings

    seen: set[str] = set()
    for it in items:
        key = it.group()
        if key in seen:
            continue
        seen.add(key)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if it.kind == "llm":
                    _check_llm_buildable(it.spec)
                else:
                    build_zoo_model(it.spec)
        except (InvalidInputError, ModelLoadError) as e:
            raise InvalidInputError(f"{it.label()}: {e}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            msg = " ".join(str(e).split())
            raise InvalidInputError(f"{it.label()}: cannot build this model: {type(e).__name__}: {msg}") from None


def _check_llm_buildable(spec: dict) -> None:
    import logging

    from ..llm import llm_features, resolve_llm
    from ..features import check_model_type

    check_model_type(spec["model_type"])
    llm_features(resolve_llm(dict(spec["config"], model_type=spec["model_type"])))
    try:
        import transformers
    except ImportError:
        return  # measuring it says which extra to install
    import torch

    hf_log = logging.getLogger("transformers")
    level = hf_log.level
    hf_log.setLevel(logging.ERROR)
    try:
        kw = {k: v for k, v in spec["config"].items() if k not in _HF_DROP}
        cfg = transformers.AutoConfig.for_model(spec["model_type"], **kw)
        auto = model_class(cfg, spec["causal"])
        with torch.device("meta"):
            auto.from_config(cfg)
    except (TypeError, ValueError, KeyError, AttributeError):
        raise
    except Exception as e:  # noqa: BLE001 - transformers' config validation has its own exception types
        cause = e.__cause__ or e
        raise InvalidInputError(f"invalid {spec['model_type']} config: {type(cause).__name__}: "
                                f"{' '.join(str(cause).split())}") from None
    finally:
        hf_log.setLevel(level)

