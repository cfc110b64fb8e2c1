"""Model-zoo names and the measured data's spec format -> ``nn.Module``.

Accepted forms:

* ``"torchvision:resnet50"`` (alias ``"tv:resnet50"``): ``torchvision.models.get_model``;
* ``"timm:poolformer_s12"``: ``timm.create_model(..., pretrained=False)``;
* a bare name (``"resnet50"``): torchvision first, then timm;
* a spec dict as in ``costmodel/data/*/vision.jsonl`` (``{"src": "tv", "name":
  "resnet50", "res": 224, "kw": {...}}`` with ``src`` in ``tv``, ``tv_resnet``,
  ``tv_vit``, ``timm``), or the same as a JSON string.

A spec's optional ``trainable`` key says which parameters a training step
updates (:func:`freeze`): ``"all"`` (the default), ``"head"`` (the last
module with parameters: a linear probe) or a list of parameter-name
prefixes (``["layer4", "fc"]``); the others get ``requires_grad=False``.

Models are always built on the ``meta`` device with random-init code paths,
so nothing is downloaded and no weight memory is allocated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from .._errors import InvalidInputError, UnknownModelError, suggest

SOURCES = ("tv", "tv_resnet", "tv_vit", "timm")
_PREFIX = {"torchvision": "tv", "tv": "tv", "timm": "timm"}


@dataclass(frozen=True)
class ZooModel:
    module: Any
    input_shape: tuple[int, ...]  # without batch
    name: str
    spec: dict


@cache
def _tv_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models())


@cache
def _timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def parse_model_ref(ref) -> dict:
    """Turn a zoo name / spec / JSON string into a spec dict (validated)."""
    if isinstance(ref, dict):
        spec = dict(ref)
    elif isinstance(ref, str) and ref.strip().startswith("{"):
        try:
            spec = json.loads(ref)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"model spec is not valid JSON: {e}") from None
    elif isinstance(ref, str):
        if ":" in ref:
            prefix, name = ref.split(":", 1)
            if prefix.lower() not in _PREFIX:
                raise UnknownModelError(
                    f"unknown model source {prefix!r} in {ref!r}; expected one of "
                    f"{sorted(set(_PREFIX))} (e.g. torchvision:resnet50, timm:poolformer_s12)"
                )
            spec = {"src": _PREFIX[prefix.lower()], "name": name}
        else:
            spec = {"src": None, "name": ref}
    else:
        raise InvalidInputError(f"expected a model name or spec dict, got {type(ref).__name__}")
    if not isinstance(spec, dict) or ("name" not in spec and spec.get("src") not in ("tv_vit", "tv_resnet")):
        raise InvalidInputError(f"model spec needs a 'name' field, got {spec!r}")
    if spec.get("src") not in (None, *SOURCES):
        raise InvalidInputError(f"spec src must be one of {SOURCES}, got {spec.get('src')!r}")
    return spec


def _resolve_src(name: str) -> str:
    if name in _tv_names():
        return "tv"
    if name in _timm_names():
        return "timm"
    raise UnknownModelError(
        f"unknown model {name!r} (not a torchvision or timm model)."
        + suggest(name, _tv_names() + _timm_names())
    )


def tv_native_resolution(name: str) -> int | None:
    """The input resolution torchvision evaluates ``name``'s published weights at (the crop of their
    transforms), the smallest where weights differ: 299 for ``inception_v3``, 300 for ``efficientnet_b3``,
    256 for ``swin_v2_t``, 224 for most. ``None`` when the model has no weights to read it from.

    Read from the weight enums' metadata, which ships with torchvision: nothing is downloaded."""
    try:
        from torchvision.models import get_model_weights

        weights = list(get_model_weights(name))
    except (ValueError, KeyError, ImportError):
        return None
    sizes = []
    for w in weights:
        crop = getattr(w.transforms, "keywords", {}).get("crop_size")
        crop = crop[0] if isinstance(crop, (list, tuple)) else crop
        if isinstance(crop, int) and crop > 0:
            sizes.append(crop)
    return min(sizes) if sizes else None


def default_resolution(spec: dict) -> tuple[int, str]:
    """The square input resolution a zoo spec is built at, and where it comes from: the spec's
    ``res``; for a torchvision model without one, its weights' evaluation crop
    (:func:`tv_native_resolution`; a model built with ``weights=None`` has the same layers); for timm,
    its ``pretrained_cfg`` (read when the model is built); else 224."""
    if "res" in spec:
        return int(spec["res"]), "spec"
    src = spec.get("src") or (_resolve_src(spec["name"]) if "name" in spec else None)
    if src == "tv":
        native = tv_native_resolution(spec["name"])
        if native is not None:
            return native, "torchvision weights"
    return 224, "default"


def _construct(src: str, name: str, spec: dict, kw: dict, res: int):
    """Instantiate the module (on the current default device)."""
    if src == "tv":
        if name not in _tv_names():
            raise UnknownModelError(f"unknown torchvision model {name!r}." + suggest(name, _tv_names()))
        import torchvision

        if name in ("inception_v3", "googlenet"):
            kw.setdefault("init_weights", False)  # its scipy initialisation is slow and warns; values don't matter
        module = torchvision.models.get_model(name, weights=None, **kw)
    elif src == "tv_resnet":
        from torchvision.models import resnet

        block = getattr(resnet, spec.get("block", kw.pop("block", "Bottleneck")))
        layers = spec.get("layers", kw.pop("layers", [3, 4, 6, 3]))
        module = resnet.ResNet(block, layers, **kw)
    elif src == "tv_vit":
        from torchvision.models.vision_transformer import VisionTransformer

        kw.setdefault("image_size", res)
        module = VisionTransformer(**kw)
    else:  # timm
        if name not in _timm_names():
            raise UnknownModelError(f"unknown timm model {name!r}." + suggest(name, _timm_names()))
        import timm

        module = timm.create_model(name, pretrained=False, **kw)
        if "res" not in spec:
            cfg = getattr(module, "pretrained_cfg", None) or {}
            size = cfg.get("input_size")
            if size:
                res = int(size[-1])
    return module, res


#: the ``trainable`` values other than a list of parameter-name prefixes
TRAINABLE_CHOICES = ("all", "head")


def freeze(module, trainable) -> Any:
    """Set ``requires_grad`` on ``module``'s parameters as ``trainable`` says (in place; returns it):
    ``"all"`` keeps every parameter trainable, ``"head"`` only those of the last module (in
    ``named_modules`` order) that has parameters of its own, and a list of prefixes those whose
    qualified name starts with one (``"layer4"`` matches ``layer4.0.conv1.weight``, not ``layer40``).
    A prefix no parameter matches is an error naming the module's top-level children."""
    if trainable is None or trainable == "all":
        return module
    names = [n for n, _ in module.named_parameters()]
    if trainable == "head":
        owners = [n for n, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]
        if not owners:
            raise InvalidInputError("trainable='head': the model has no parameters")
        head = owners[-1]
        keep = {f"{head}.{n}" if head else n for n, _ in module.get_submodule(head).named_parameters(recurse=False)}
    elif isinstance(trainable, (list, tuple)) and trainable and all(isinstance(p, str) and p for p in trainable):
        def match(name: str, prefix: str) -> bool:
            return name == prefix or name.startswith(prefix.rstrip(".") + ".")

        unknown = [p for p in trainable if not any(match(n, p) for n in names)]
        if unknown:
            children = ", ".join(n for n, _ in module.named_children())
            raise InvalidInputError(f"trainable prefixes {unknown} match no parameter; the model's top-level "
                                    f"modules are: {children}")
        keep = {n for n in names if any(match(n, p) for p in trainable)}
    else:
        raise InvalidInputError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)} or a non-empty list of "
                                f"parameter-name prefixes, got {trainable!r}")
    for n, p in module.named_parameters():
        p.requires_grad_(n in keep)
    return module


def build_zoo_model(ref, *, device: str = "meta") -> ZooModel:
    """Build the module of a zoo name or data spec (on the meta device by default;
    ``device="cpu"`` gives real, randomly initialized weights for measuring)."""
    import torch

    spec = parse_model_ref(ref)
    src = spec.get("src") or _resolve_src(spec["name"])
    name = spec.get("name", src)
    kw = dict(spec.get("kw") or {})
    res = default_resolution(dict(spec, src=src))[0]
    if device != "meta":
        with torch.device(device):
            module, res = _construct(src, name, spec, dict(kw), res)
    else:
        try:
            with torch.device("meta"):
                module, res = _construct(src, name, spec, dict(kw), res)
        except (NotImplementedError, RuntimeError):
            # some constructors compute layer widths with tensor ops that need data
            # (regnet); build on the CPU once and move the weights to meta
            module, res = _construct(src, name, spec, dict(kw), res)
            module = module.to("meta")
    module.eval()
    freeze(module, spec.get("trainable"))
    prefix = {"tv": "torchvision", "timm": "timm"}.get(src)
    label = f"{prefix}:{name}" if prefix else f"{src}:{json.dumps(kw, sort_keys=True)}"
    trainable = spec.get("trainable", "all")
    if trainable != "all":
        label += f" (trainable: {trainable if isinstance(trainable, str) else ', '.join(trainable)})"
    full_spec = dict(spec, src=src, res=res)
    return ZooModel(module, (3, res, res), label, full_spec)
