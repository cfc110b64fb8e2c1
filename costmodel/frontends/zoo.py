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

Models are built on the ``meta`` device with random-init code paths, so nothing
is downloaded and no weight memory is allocated. torchvision's other tasks come
too: segmentation models at 520 x 520, video models on a 16-frame clip at
their weights' crop, and detectors at their own resize size. A detector is the
exception to the meta device: its graph needs one run on data (its box
filtering), so it is built on the CPU with seeded random weights. Optical flow
(two frames) and the int8 ``quantized_*`` models are refused with what to do
instead.
"""

from __future__ import annotations

import inspect
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


#: torchvision's model modules beside classification, and what each takes
TV_TASKS = ("segmentation", "detection", "video", "optical_flow", "quantization")
#: frames of a video model's clip (torchvision's video weights are evaluated on 16)
VIDEO_FRAMES = 16


@cache
def tv_task(name: str) -> str:
    """Which of torchvision's model modules ``name`` comes from: ``classification`` or one of
    :data:`TV_TASKS`."""
    import torchvision

    for task in TV_TASKS:
        if name in torchvision.models.list_models(module=getattr(torchvision.models, task)):
            return task
    return "classification"


def _tv_task_resolution(name: str, task: str) -> int | None:
    """The input size a torchvision model of another task is built for: a segmentation model's weights
    resize to 520; a detector resizes every image to its own ``min_size`` (800, 320 for the ``_320_``
    variants, 300 for SSD300), so its input is that square."""
    if task == "segmentation":
        return 520
    if task == "detection":
        return 320 if "320" in name else 300 if name.startswith("ssd300") else 800
    return None


@cache
def _timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def parse_model_ref(ref) -> dict:
    """Turn a zoo name / spec / JSON string / ``.json`` spec file into a spec dict (validated)."""
    from pathlib import Path

    if isinstance(ref, Path) or (isinstance(ref, str) and ref.lower().endswith(".json")):
        ref = _spec_file(Path(ref))
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
    if "res" in spec:
        from .._validate import positive_int

        positive_int(spec["res"], "spec 'res' (the input resolution)")
    if "kw" in spec and not isinstance(spec["kw"], dict):
        raise InvalidInputError(f"spec 'kw' (the constructor's keyword arguments) must be a JSON object, "
                                f"got {spec['kw']!r}")
    return spec


def _spec_file(path) -> dict:
    """A model spec read from a JSON file."""
    from .._errors import ModelLoadError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelLoadError(f"no such model spec file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"cannot read the model spec file {path}: {e}") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"model spec file {path} is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise InvalidInputError(f"model spec file {path} must hold a JSON object (a spec with a 'name'), "
                                f"got {type(spec).__name__}")
    return spec


def _resolve_src(name: str) -> str:
    if name in _tv_names():
        return "tv"
    if name in _timm_names():
        return "timm"
    _transformer_hint(name)
    raise UnknownModelError(
        f"unknown model {name!r} (not a torchvision or timm model)."
        + suggest(name, _tv_names() + _timm_names())
    )


def _transformer_hint(name: str) -> None:
    """A transformers name is a workload of token sequences, not of images: say where it is costed."""
    from .._errors import CostModelError
    from ..llm import resolve_llm

    try:
        resolve_llm(name)
    except CostModelError:
        return
    raise UnknownModelError(f"{name!r} is a transformer, costed per sequence of tokens: "
                            f"costmodel.estimate_llm({name!r}, batch=..., seq=..., device=...) or "
                            f"costmodel llm {name} --batch B --seq S")


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
        task_res = _tv_task_resolution(spec["name"], tv_task(spec["name"]))
        if task_res is not None:
            return task_res, f"torchvision {tv_task(spec['name'])} models"
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
        _check_tv_task(name)
        if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(name)).parameters:
            kw.setdefault("weights_backbone", None)  # its default is ImageNet weights, which it would download
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


def _check_tv_task(name: str) -> None:
    """Refuse, saying what to do instead, the torchvision models a zoo name cannot feed or no device runs."""
    task = tv_task(name)
    if task == "optical_flow":
        raise InvalidInputError(
            f"torchvision:{name} takes two frames, which a zoo name cannot give: build it "
            f"(torchvision.models.optical_flow.{name}()) and pass inputs=(frame1, frame2) to costmodel.estimate")
    if task == "quantization":
        raise InvalidInputError(
            f"torchvision:{name} is an int8 model for the CPU's fbgemm and qnnpack kernels, which costmodel does not "
            f"cost; ask for the float model, torchvision:{name.removeprefix('quantized_')} (dtype='fp16' or 'bf16' "
            "for a GPU's reduced precision)")


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
    task = tv_task(name) if src == "tv" else "classification"
    # a detector's graph needs one run on data (its box filtering): real weights, seeded on the CPU, so that
    # a GPU that measures it runs the same weights (and keeps the same boxes) as the capture
    build_on = "cpu" if task == "detection" else device

    def construct():
        try:
            return _construct(src, name, spec, dict(kw), res)
        except TypeError as e:  # a keyword the constructor does not take
            if not kw:
                raise
            raise InvalidInputError(f"spec 'kw' {kw!r} does not fit the constructor of {src}:{name} ({e})") from None

    if build_on != "meta":
        with torch.random.fork_rng(devices=[]), torch.device(build_on):
            torch.manual_seed(0)
            module, res = construct()
        if build_on != device and device != "meta":
            module = module.to(device)
    else:
        try:
            with torch.device("meta"):
                module, res = construct()
        except (NotImplementedError, RuntimeError):
            # some constructors compute layer widths with tensor ops that need data
            # (regnet); build on the CPU once and move the weights to meta
            module, res = construct()
            module = module.to("meta")
    module.eval()
    freeze(module, spec.get("trainable"))
    prefix = {"tv": "torchvision", "timm": "timm"}.get(src)
    label = f"{prefix}:{name}" if prefix else f"{src}:{json.dumps(kw, sort_keys=True)}"
    trainable = spec.get("trainable", "all")
    if trainable != "all":
        label += f" (trainable: {trainable if isinstance(trainable, str) else ', '.join(trainable)})"
    full_spec = dict(spec, src=src, res=res)
    # a video model's clip: 16 frames of res x res
    shape = (3, int(spec.get("frames", VIDEO_FRAMES)), res, res) if task == "video" else (3, res, res)
    return ZooModel(module, shape, label, full_spec)
