"""Frontends: everything a user can hand us -> one :class:`CostGraph`.

:func:`to_graph` dispatches on the input: an ``.onnx`` path or
``onnx.ModelProto`` (ONNX frontend), an ``nn.Module`` (PyTorch frontend), a
zoo name or data spec (built on the meta device, then the PyTorch frontend),
or a CostGraph (returned as is).  Zoo graphs are cached on disk, keyed by
everything that changes them, so a second request costs a file read.  The
key names the capture method that actually built the graph: when
``torch.export`` fails and the dispatch trace builds the graph instead, it
is stored under the trace key, never under the export one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError, ModelLoadError
from ..ir import GRAPH_FORMAT_VERSION, MODEL_DTYPES as DTYPES, MODES, VOCAB_VERSION, CostGraph
from ._builder import GraphBuilder
from ._cudnn_rnn import cudnn_rnn_kernels
from ._common import check_batch, parse_shape
from ._fastpath import cuda_attention, inference_fast_paths
from ._moe import grouped_mm_fallback
from ._scopes import recording_scopes
from .zoo import SOURCES as ZOO_SOURCES, TRAINABLE_CHOICES, build_zoo_model, freeze

__all__ = [
    "GraphBuilder", "TRAINABLE_CHOICES", "ZOO_SOURCES", "build_zoo_model", "freeze", "cache_dir", "cache_key",
    "cached_graph", "check_batch",
    "cuda_attention", "cudnn_rnn_kernels", "grouped_mm_fallback", "inference_fast_paths", "recording_scopes",
    "from_onnx", "from_relax", "from_torch", "hf_graph", "looks_like_onnx_path", "parse_shape",
    "meta_tensor_attributes", "preserved_tensor_attributes", "to_graph", "zoo_graph",
]

#: bump whenever a frontend change alters the graphs it emits (invalidates caches)
FRONTEND_VERSION = 19  # 19: a Python number made a tensor (scalar_tensor) costs no kernel, as eager CUDA makes it on the CPU, and operands a kernel overwrites or takes as a template count no reads; 18: and of a training graph, LSTM and GRU cells as their fused kernels; 17: recurrent layers of an inference graph as cuDNN's kernels (fused=True); 16: encoder-
# decoders built with their LM head (AutoModelForSeq2SeqLM), T5 given its decoder tokens; 15: group norms carry ``groups``, layer norms ``normalized_shape`` (the rows they reduce)


def from_torch(*args, **kwargs) -> CostGraph:
    from .pytorch import from_torch as f

    return f(*args, **kwargs)


def preserved_tensor_attributes(model):
    """A context that puts back the plain tensor attributes of ``model``'s modules that a capture on meta
    or fake tensors replaced (cached anchors and the like), so that no capture changes the user's module."""
    from ._metacall import preserved_tensor_attributes as f

    return f(model)


def meta_tensor_attributes(model):
    """A context within which ``model``'s plain tensor attributes off the meta device (an FX graph's
    constants) are meta tensors of their shapes; the module's own come back on exit."""
    from ._metacall import meta_tensor_attributes as f

    return f(model)


def from_onnx(*args, **kwargs) -> CostGraph:
    from ._onnx import from_onnx as f

    return f(*args, **kwargs)


def from_relax(*args, **kwargs) -> CostGraph:
    from ._relax import from_relax as f

    return f(*args, **kwargs)


def cache_dir() -> Path:
    """Where featurized graphs are cached (``$COSTMODEL_CACHE`` or ``~/.cache/costmodel``)."""
    root = os.environ.get("COSTMODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "costmodel"
    )
    return Path(root)


def cache_key(desc: dict) -> str:
    """The cache key of a graph description; the graph format, vocabulary, frontend, library and torch
    versions are part of it."""
    from .. import __version__

    try:
        import torch

        tv = torch.__version__
    except ImportError:  # pragma: no cover
        tv = "none"
    blob = json.dumps(
        dict(desc, format=GRAPH_FORMAT_VERSION, vocab=VOCAB_VERSION, frontend=FRONTEND_VERSION, lib=__version__, torch=tv),
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def _cache_path(desc: dict) -> Path:
    return cache_dir() / "graphs" / f"{cache_key(desc)}.json.gz"


def cached_graph(desc: dict, build, *, cache: bool = True) -> CostGraph:
    """Return the cached graph described by ``desc`` or ``build()`` and cache it.

    ``desc`` must hold everything that changes the graph; the library, graph
    format, vocabulary and torch versions are added to the key.  When
    ``desc`` names a capture ``method`` and ``build()`` fell back to another
    one (``meta["capture"]``), the graph is stored under the key of the
    method that built it (without the fallback note, which only the caller
    that asked for the other method gets), and an entry whose capture does
    not match its key is not used.
    """
    path = _cache_path(desc)
    if cache and path.exists():
        try:
            g = CostGraph.load(path)
        except Exception:  # noqa: BLE001 - a corrupt cache entry is rebuilt
            g = None
        if g is not None and ("method" not in desc or g.meta.get("capture") == desc["method"]):
            return g
        try:
            path.unlink(missing_ok=True)  # corrupt, or written under the wrong method's key
        except OSError:
            pass  # read-only cache: rebuilt, not replaced
    g = build()
    if cache:
        store, built_by = g, g.meta.get("capture")
        if "method" in desc and built_by is not None and built_by != desc["method"]:
            from ._capture_rules import without_capture_fallback

            store, path = without_capture_fallback(g), _cache_path(dict(desc, method=built_by))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            store.save(path)
        except OSError:
            pass  # read-only cache: still answer
    return g


def zoo_graph(
    ref,
    *,
    batch: int = 1,
    input_shape=None,
    mode: str = "inference",
    method: str = "export",
    cache: bool = True,
    fused: bool = True,
) -> CostGraph:
    """Graph of a zoo name / data spec at a batch size (fp32; cast afterwards); ``fused``: see
    :func:`from_torch`."""
    from .zoo import build_zoo_model, parse_model_ref

    spec = parse_model_ref(ref)

    def build():
        zm = build_zoo_model(spec)
        shape = parse_shape(input_shape) if input_shape is not None else zm.input_shape
        g = from_torch(zm.module, input_shape=shape, batch=batch, mode=mode, method=method, name=zm.name,
                       fused=fused)
        g.meta["spec"] = zm.spec
        return g

    desc = {"zoo": spec, "batch": batch, "input_shape": input_shape, "mode": mode, "method": method}
    if input_shape is None and "res" not in spec:
        from .zoo import default_resolution

        res = default_resolution(spec)[0]
        if res != 224:  # a model evaluated at another resolution (inception_v3: 299) gets its own entry
            desc["res"] = res
    if not fused:
        desc["fused"] = False
    return cached_graph(desc, build, cache=cache)


def hf_graph(model_type: str, config: dict, *, batch: int, seq: int, mode: str = "inference",
             method: str = "export", causal: bool | None = None, cache: bool = True,
             decode: bool = False, fused: bool = True, lora: dict | None = None,
             target_seq: int | None = None, ssm_kernels: str = "reference") -> CostGraph:
    """Graph of a transformers config on ``(batch, seq)`` token ids, or with ``decode=True`` of one
    decode step (one token per sequence) against a KV cache of ``seq`` tokens (cached). ``mode="training"``:
    a decoder's fine-tuning step, its loss included; ``lora``: ``frontends.hf.lora_spec``'s adapters;
    ``target_seq``: an encoder-decoder's decoder tokens (default ``seq``); ``ssm_kernels="fused"``: Mamba's
    selective scans as ``mamba_ssm``'s fused kernels."""
    from .hf import hf_graph as build_hf

    desc = {"hf": model_type, "config": config, "batch": batch, "seq": seq, "mode": mode,
            "method": method, "causal": causal}
    if mode == "training":  # the step's graph carries the model's own loss and names its decoder layers
        desc["step_graph"] = 2
    if lora:
        desc["lora"] = lora
    if decode:
        desc["decode"] = True
    if not fused:
        desc["fused"] = False
    if target_seq is not None:
        desc["target_seq"] = target_seq
    if ssm_kernels != "reference":
        desc["ssm_kernels"] = ssm_kernels
    return cached_graph(
        desc,
        lambda: build_hf(model_type, config, batch=batch, seq=seq, causal=causal, method=method, mode=mode,
                         decode=decode, fused=fused, lora=lora, target_seq=target_seq, ssm_kernels=ssm_kernels),
        cache=cache,
    )


def looks_like_onnx_path(model: Any) -> bool:
    """Whether ``model`` names an ONNX file: a ``Path``, a ``.onnx`` name, a path with a separator or an
    existing file, other than a JSON spec (inline, or a ``.json`` file: :func:`~costmodel.frontends.zoo.parse_model_ref`)."""
    if isinstance(model, Path):
        return model.suffix.lower() != ".json"
    if isinstance(model, str):
        if model.lstrip().startswith("{") or model.lower().endswith(".json"):
            return False
        return model.endswith(".onnx") or os.path.sep in model or os.path.exists(model)
    return False


def to_graph(
    model,
    *,
    batch: int | None = None,
    input_shape=None,
    inputs=None,
    dtype: str | None = None,
    mode: str = "inference",
    method: str = "export",
    cache: bool = True,
    autocast: str | None = None,
) -> CostGraph:
    """Featurize anything costmodel accepts into a CostGraph.

    Args:
        model: ``.onnx`` path, ``onnx.ModelProto``, ``nn.Module``, a TVM
            Relax ``IRModule`` (its ``main``), zoo name
            (``torchvision:resnet50``, ``timm:poolformer_s12``), data spec
            dict/JSON, or a CostGraph.
        batch: batch size (first input dimension).
        input_shape: one input's shape without the batch dimension.
        inputs: example inputs for an ``nn.Module`` (instead of ``input_shape``); for an ONNX model
            with several inputs, ``{input name: full shape incl. batch}`` (a shape or an array with one).
        dtype: ``fp32``, ``fp16`` or ``bf16``: floating tensors are re-typed.
        mode: ``inference`` or ``training``.
        method: PyTorch capture, ``export`` (default) or ``trace``.
        autocast: ``fp16`` or ``bf16``: the fp32 model as ``torch.autocast("cuda", autocast)`` runs
            it (:func:`~costmodel.analysis.autocast_graph`: GEMMs and convolutions in ``autocast``,
            the casts autocast inserts, its fp32 operators in fp32, the weights fp32).
    """
    from ..analysis import apply_autocast, cast_graph, check_autocast

    if batch is not None:
        check_batch(batch)
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
    if dtype is not None and dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    check_autocast(autocast)
    if autocast is not None and dtype not in (None, "fp32"):
        raise InvalidInputError(f"autocast={autocast!r} runs an fp32 model in mixed precision; dtype={dtype!r} "
                                "casts the whole model instead: pass one of them (dtype='fp32' with autocast)")

    if isinstance(model, CostGraph):
        g = model
    elif _is_onnx_proto(model) or looks_like_onnx_path(model):
        if isinstance(model, (str, Path)) and not Path(model).exists():
            raise ModelLoadError(f"no such file: {model}")
        g = from_onnx(model, batch=batch, input_shape=input_shape, input_shapes=_onnx_input_shapes(inputs),
                      mode=mode)
    elif _is_relax_module(model):
        g = from_relax(model, batch=batch, mode=mode)
    elif _is_module(model):
        g = from_torch(model, inputs, input_shape=input_shape, batch=batch, mode=mode, method=method)
    elif isinstance(model, (str, dict, Path)):  # a zoo name, a spec, or a .json spec file
        g = zoo_graph(model if not isinstance(model, Path) else str(model), batch=batch or 1,
                      input_shape=input_shape, mode=mode, method=method, cache=cache)
    else:
        raise InvalidInputError(
            f"cannot featurize a {type(model).__name__}; expected an .onnx path, onnx.ModelProto, "
            "torch.nn.Module, tvm.IRModule, zoo name (e.g. torchvision:resnet50) or spec dict"
        )
    if dtype is not None and dtype != g.meta.get("dtype"):
        g = cast_graph(g, dtype)
    g = apply_autocast(g, autocast)
    # every frontend's graph must hold work a device can run (an nn.Identity has none)
    return g.check_costable()


def _onnx_input_shapes(inputs) -> dict[str, tuple] | None:
    """``inputs`` given with an ONNX model: ``{input name: full shape}`` (an array or tensor stands for
    its shape), as :func:`from_onnx` takes ``input_shapes``."""
    if inputs is None:
        return None
    if not isinstance(inputs, dict):
        raise InvalidInputError(
            f"inputs for an ONNX model must be a dict of input name -> full shape incl. batch, e.g. "
            f"{{'input_ids': (8, 128)}}; got {type(inputs).__name__}"
        )
    return {k: tuple(v.shape) if hasattr(v, "shape") else v for k, v in inputs.items()}


def _is_module(obj) -> bool:
    mod = type(obj).__module__ or ""
    if not (mod.startswith("torch") or hasattr(obj, "forward")):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, torch.nn.Module)


def _is_relax_module(obj) -> bool:
    """A ``tvm.IRModule`` or ``relax.Function`` (checked without importing TVM)."""
    t = type(obj)
    return (t.__module__ or "").startswith("tvm") and t.__name__ in ("IRModule", "Function")


def _is_onnx_proto(obj) -> bool:
    return type(obj).__name__ == "ModelProto" and hasattr(obj, "graph")


def capture_lock():
    """The process-wide lock every PyTorch capture holds (``torch.export``, the dispatch trace,
    ``torch.onnx.export``): export patches ``nn.Module`` for the whole process while it runs, so two
    captures in two threads must not overlap."""
    from .pytorch import _CAPTURE_LOCK

    return _CAPTURE_LOCK
