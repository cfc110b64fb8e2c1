"""ONNX export hook: cost estimates written into the ONNX file itself.

``export`` wraps ``torch.onnx.export`` and then :func:`annotate` the file it
wrote; ``annotate`` works on any existing ``.onnx`` file.  Estimates go into
the model's ``metadata_props`` under ``costmodel.*`` keys (one key per
number, plus ``costmodel.estimate`` with the whole estimate as JSON), so any
ONNX tool shows them and :func:`read_annotations` (or ``costmodel annotate
FILE --show``) reads them back.  Weights stored as external data stay where
they are: the file is rewritten without loading them.  An annotated copy
written to another folder (``output=``) gets a copy of every external-data
file the model references, under the same relative name next to it, so the
copy loads on its own; a different file already there under that name is an
error, never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from .._errors import InvalidInputError, ModelLoadError

PREFIX = "costmodel."
_KEYS = ("latency_ms", "memory_mb", "energy_j", "power_w", "mig_profile", "predictor", "device", "batch", "mode",
         "dtype")


def annotate(path: str | Path, *, device="h200", batch: int | None = None, input_shape=None,
             mode: str = "inference", dtype: str | None = None, predictor=None, output: str | Path | None = None,
             host=None, inputs: dict | None = None):
    """Estimate the ONNX model at ``path`` and store the estimate in its metadata; returns the Estimate.

    ``inputs``: for a model with several inputs, ``{input name: full shape incl. batch}`` for their
    dynamic dimensions (``input_shape`` is for a model with one input).

    ``host``: a host profile for the timeline's host lane (``costmodel calibrate``'s JSON path or a
    HostProfile), as :func:`costmodel.estimate` takes it.

    ``output`` writes an annotated copy instead of rewriting ``path``.
    Estimates for several devices can live side by side: keys of a device
    other than the first are suffixed with ``@<device>``.
    """
    from .. import __version__
    from ..estimate import estimate

    path = Path(path)
    model = _load(path)  # the frontend never reads weights
    out = Path(output) if output else path
    _check_writable(out, in_place=output is None)  # before the estimate, not after it
    if batch is None:
        batch = _static_batch(model, path)
    kw = {"dtype": dtype} if dtype else {}
    est = estimate(model, batch=batch, input_shape=input_shape, device=device, mode=mode, predictor=predictor,
                   host=host, inputs=inputs, **kw)
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
    if output is not None:
        _copy_external_data(model, path.parent, out.parent)
    _save(model, out)
    return est


def _load(path: Path):
    """The model at ``path`` without its external weights; a clean error for anything that is not ONNX."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.exists():
        raise ModelLoadError(f"no such ONNX file: {path}")
    if not path.is_file():
        raise ModelLoadError(f"{path} is not a file (expected an .onnx model)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e.strerror or e}") from None
    except (DecodeError, ValueError, RuntimeError, TypeError) as e:
        raise ModelLoadError(f"{path} is not a readable ONNX model ({type(e).__name__}: {e})") from None
    except Exception as e:  # noqa: BLE001 - any reader failure (a .json name is read as protobuf's JSON form)
        raise ModelLoadError(f"{path} is not a readable ONNX model ({type(e).__name__}: {str(e)[:200]})") from None
    if not model.HasField("graph"):
        raise ModelLoadError(f"{path} is not an ONNX model (empty, or no graph in it)")
    return model


def _check_writable(out: Path, *, in_place: bool) -> None:
    """Refuse, before any work, an output that cannot be written: a missing folder, a folder in
    the way, a read-only file or folder."""
    parent = out.parent
    if not parent.is_dir():
        why = "is not a folder" if parent.exists() else "does not exist"
        raise InvalidInputError(f"cannot write {out}: folder {parent} {why}")
    if out.is_dir():
        raise InvalidInputError(f"cannot write {out}: it is a folder")
    if in_place or out.exists():
        try:
            with open(out, "r+b"):  # opened for writing, nothing changed
                pass
        except OSError as e:
            raise InvalidInputError(f"cannot write {out}: {e.strerror or e}") from None
    elif not os.access(parent, os.W_OK):
        raise InvalidInputError(f"cannot write {out}: folder {parent} is not writable")


def _save(model, out: Path) -> None:
    import onnx

    try:
        onnx.save(model, str(out))
    except OSError as e:
        raise InvalidInputError(f"cannot write {out}: {e.strerror or e}") from None


def _tensors(graph) -> Iterator:
    """Every TensorProto of ``graph``: initializers, sparse initializers, attribute tensors, subgraphs."""
    yield from graph.initializer
    for sp in graph.sparse_initializer:
        yield sp.values
        yield sp.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def external_data_files(model) -> list[str]:
    """Relative locations of the external-data files ``model`` references (in first-use order)."""
    from onnx import TensorProto

    out: dict[str, None] = {}
    for t in _tensors(model.graph):
        if t.data_location == TensorProto.EXTERNAL:
            loc = {e.key: e.value for e in t.external_data}.get("location")
            if loc:
                out[loc] = None
    return list(out)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
        if a.stat().st_size != b.stat().st_size:
            return False
    except OSError:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _copy_external_data(model, src_dir: Path, dst_dir: Path) -> None:
    """Make the external data of ``model`` (stored relative to ``src_dir``) reachable from ``dst_dir``."""
    import warnings

    if src_dir.resolve() == dst_dir.resolve():
        return
    for loc in external_data_files(model):
        rel = Path(loc)
        if rel.is_absolute() or ".." in rel.parts:
            raise ModelLoadError(f"external data location {loc!r} is not a relative path inside {src_dir}; "
                                 "cannot copy it next to the annotated file")
        src, dst = src_dir / rel, dst_dir / rel
        if not src.is_file():
            warnings.warn(f"external data file {src} referenced by the model is missing; the annotated copy "
                          "references it too", stacklevel=3)
            continue
        if dst.exists():
            if _same_file(src, dst):
                continue
            raise InvalidInputError(f"cannot copy the model's external data {src} to {dst}: a different file "
                                    "is already there")
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)  # a copy, not a link: rewriting one file's weights leaves the other's
        except OSError as e:
            raise InvalidInputError(f"cannot copy the model's external data to {dst}: {e.strerror or e}") from None


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
    path = Path(path)
    model = _load(path)
    out = {}
    for p in model.metadata_props:
        if p.key.startswith(PREFIX + "estimate"):
            try:
                d = json.loads(p.value)
            except ValueError:
                d = None
            if not isinstance(d, dict) or not isinstance(d.get("device"), str):
                raise ModelLoadError(
                    f"{path}: metadata key {p.key!r} does not hold a costmodel estimate (a JSON object with a "
                    f"'device'), got {p.value[:80]!r}; annotate the file again to replace it"
                )
            out[d["device"]] = d
    return out


def export(model, args, f: str | Path, *, device="h200", mode: str = "inference", predictor=None, host=None,
           dtype: str | None = None, **export_kwargs):
    """``torch.onnx.export(model, args, f, **export_kwargs)``, then :func:`annotate` ``f``; returns the Estimate.

    The batch is the leading dimension of the first tensor in ``args`` that has one; ``dtype`` (default:
    the dtype the exported graph records, the model's own) and ``host`` as :func:`annotate` takes them.
    Every argument is checked before the export, so a bad one leaves no file written (or replaced)
    without its annotation.
    """
    import torch

    from ..frontends import check_batch
    from ..measure.host import load_host

    from ..devices import get_device
    from ..ir import MODEL_DTYPES
    from ..predictors import get_predictor, validate_mode

    args_t = tuple(args) if isinstance(args, (tuple, list)) else (args,)
    first = next((a for a in args_t if isinstance(a, torch.Tensor) and a.dim() > 0), None)
    if first is None:
        raise InvalidInputError("export needs an example tensor with a batch dimension among args to know the batch "
                                f"size; got {', '.join(type(a).__name__ for a in args_t) or 'no args'}")
    try:
        batch = check_batch(int(first.shape[0]))
    except InvalidInputError:
        raise InvalidInputError(f"the first batched example tensor in args has shape {tuple(first.shape)}: its "
                                "leading (batch) dimension must be at least 1") from None
    f = Path(f)
    # a bad path, device, mode, dtype, predictor or host profile fails before the export: the file is not
    # written (or replaced) unannotated
    _check_writable(f, in_place=False)
    get_device(device)
    validate_mode(mode)
    if dtype is not None and dtype not in MODEL_DTYPES:
        raise InvalidInputError(f"dtype must be one of {', '.join(MODEL_DTYPES)} or None (the model's own), got "
                                f"{dtype!r}")
    get_predictor(predictor)
    host = load_host(host)

    # a file already at f is set aside, not overwritten, until the export is annotated: where the export or the
    # estimate fails, what it wrote is removed and the old file is back
    aside = [(p, p.with_name(f".{p.name}.costmodel-previous")) for p in _written_files(f)]
    for p, q in aside:
        os.replace(p, q)
    try:
        est = _export_and_annotate(model, args_t, f, first, batch, export_kwargs, device=device, mode=mode,
                                   predictor=predictor, host=host, dtype=dtype)
    except BaseException:
        for p in _written_files(f):
            p.unlink(missing_ok=True)
        for p, q in aside:
            os.replace(q, p)
        raise
    for _, q in aside:
        q.unlink(missing_ok=True)
    return est


def _written_files(f: Path) -> list[Path]:
    """The ONNX file at ``f`` (if any) and the external-data files beside it that it references."""
    if not f.is_file():
        return []
    try:
        refs = external_data_files(_load(f))
    except Exception:  # noqa: BLE001 - an unreadable (half-written) file: itself alone
        refs = []
    files = [f.parent / r for r in refs if not Path(r).is_absolute() and ".." not in Path(r).parts]
    return [f, *(p for p in files if p.is_file())]


def _export_and_annotate(model, args_t, f: Path, first, batch: int, export_kwargs, **kw):
    """``torch.onnx.export`` to ``f``, then :func:`annotate` it at the batch its graph fixes or ``first`` gives."""
    import torch

    from ..frontends import capture_lock

    with capture_lock():  # torch.onnx.export runs torch.export: not while another thread captures
        torch.onnx.export(model, args_t, str(f), **export_kwargs)
    # the exported graph's own shapes where it fixed them (an argument folded into a constant is no input);
    # where its first input is dynamic, the example tensor of that rank fills it
    written = _load(f)
    data = [i for i in written.graph.input if i.name not in {t.name for t in written.graph.initializer}]
    dims = data[0].type.tensor_type.shape.dim if data else []
    shape = None
    if len(data) > 1 and any(_dynamic(vi) for vi in data):
        # several inputs, some dynamic: each one's example tensor gives its full shape
        inputs = _example_shapes(model, args_t, data, export_kwargs.get("input_names"))
        if inputs is not None:
            first_shape = inputs[data[0].name]
            return annotate(f, batch=int(first_shape[0]) if first_shape else batch, inputs=inputs, **kw)
    if data and _dynamic(data[0]):
        like = next((a for a in args_t if isinstance(a, torch.Tensor) and a.dim() == len(dims)), first)
        batch, shape = int(like.shape[0]), tuple(like.shape[1:])
    elif dims:
        batch = int(dims[0].dim_value)
    return annotate(f, batch=batch, input_shape=shape, **kw)


def _dynamic(vi) -> bool:
    """Whether a graph input has a dimension without a fixed size."""
    return any(not d.HasField("dim_value") or d.dim_value <= 0 for d in vi.type.tensor_type.shape.dim)


def _example_shapes(model, args_t, data, input_names) -> dict[str, tuple[int, ...]] | None:
    """``{graph input name: shape}`` of the example tensors behind the exported graph's inputs ``data``:
    by ``input_names`` (in the order of the tensors in ``args``), else by the names of ``forward``'s
    parameters, else by position where every tensor became an input; ``None`` where a name or a rank
    does not match."""
    import inspect

    import torch

    tensors = [a for a in args_t if isinstance(a, torch.Tensor)]
    given = dict(zip(input_names or [], tensors))
    try:
        bound = inspect.signature(model.forward).bind(*args_t).arguments
        given.update((k, v) for k, v in bound.items() if isinstance(v, torch.Tensor) and k not in given)
    except (TypeError, ValueError):  # no signature to bind the arguments to
        pass
    names = [vi.name for vi in data]
    if not all(n in given for n in names):
        if len(tensors) != len(names):
            return None
        given = dict(zip(names, tensors))
    for vi in data:
        if given[vi.name].dim() != len(vi.type.tensor_type.shape.dim):
            return None
    return {n: tuple(int(d) for d in given[n].shape) for n in names}
