"""The TVM Relax module pass and the ``tvm.relax.build`` wrapper (public import path: :mod:`tvm_passes`)."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import tvm
from tvm import relax

from .. import _errors
from .._errors import InvalidInputError
from ..ir import MODES

log = logging.getLogger("costmodel.tvm")


def _register_errors() -> None:
    """Make costmodel's errors cross TVM's FFI as themselves: an exception a Python pass raises comes back
    to the caller of the pass through TVM's C++ pass infrastructure, which turns an unregistered class into a
    plain ``RuntimeError`` (``strict=True`` would raise ``RuntimeError`` for a ``DynamicShapeError``)."""
    try:
        from tvm_ffi import register_error
    except ImportError:  # pragma: no cover - TVM before the tvm_ffi split
        from tvm.error import register_error
    for name in dir(_errors):
        cls = getattr(_errors, name)
        if isinstance(cls, type) and issubclass(cls, _errors.CostModelError):
            register_error(f"costmodel.{name}", cls)


_register_errors()


def _relax_functions(mod) -> list[str]:
    return sorted(gv.name_hint for gv, f in mod.functions_items() if isinstance(f, relax.Function))


def estimate_module(mod, *, device: str = "h100", predictor=None, batch: int | None = None, func: str = "main",
                    mode: str = "inference", bindings: dict[str, int] | None = None, host=None):
    """The :class:`costmodel.Estimate` of one Relax function of ``mod`` (default ``main``); ``host``: a host
    profile for the timeline's host lane (``costmodel calibrate``'s JSON path or a HostProfile)."""
    from ..devices import get_device
    from ..estimate import with_notes
    from ..frontends import from_relax
    from ..predictors import get_predictor, with_host_profile

    dev = get_device(device)
    pred, host_notes = with_host_profile(get_predictor(predictor), host)
    graph = from_relax(mod, func=func, batch=batch, bindings=bindings, mode=mode)
    if batch is not None and graph.meta.get("batch") not in (None, batch):
        raise InvalidInputError(
            f"function {func!r} has batch {graph.meta.get('batch')} in its static shapes but batch={batch} was "
            "requested; batch= binds a symbolic batch dimension only"
        )
    from ..estimate import Estimate, graph_memory_into

    est = pred.predict(graph, dev, mode=mode)
    if not isinstance(est, Estimate):
        return est  # the pass reports what it lacks (see _attrs_of)
    est = graph_memory_into(est, graph, dev, mode=mode, learns_memory=getattr(pred, "learns_memory", True))
    return with_notes(est, host_notes) if host_notes else est


def _check_bindings(bindings) -> None:
    from .._validate import is_int

    if bindings is not None and not (isinstance(bindings, dict) and all(
            isinstance(k, str) and is_int(v) and v > 0 for k, v in bindings.items())):
        raise InvalidInputError(f"bindings must map shape-variable names to positive ints, got {bindings!r}")


def _attrs_of(est) -> dict[str, Any]:
    """The ``perf.*`` attributes of an estimate; raises ``TypeError`` naming what an object that is not
    a usable estimate (``None``, a missing or non-numeric field) lacks."""
    if est is None:
        raise TypeError("the predictor returned None instead of an Estimate")
    try:
        return {
            "perf.latency_ms": float(est.latency_ms),
            "perf.memory_mb": float(est.memory_mb),
            "perf.energy_j": float(est.energy_j),
            "perf.mig_profile": str(est.mig_profile or ""),
            "perf.predictor": str(est.predictor),
            "perf.device": str(est.device),
            "perf.batch": int(est.batch or 0),
            "perf.dtype": str(est.dtype),
            # a Relax function has no module to run on fake tensors: "liveness-fallback" when its
            # liveness walk went through the caching allocator, "predictor" for a learned memory model
            "perf.memory_path": str((getattr(est, "details", None) or {}).get("memory", {}).get("path", "predictor")),
            # the upper end of the memory's 90 % interval (what perf.mig_profile holds); the memory itself
            # where the estimate has no interval
            "perf.memory_mb_upper": float((getattr(est, "memory_mb_interval", None) or (0, est.memory_mb))[1]),
        }
    except (AttributeError, TypeError, ValueError) as e:
        raise TypeError(f"the predictor returned an unusable estimate ({type(est).__name__}: {e})") from e


@tvm.transform.module_pass(opt_level=0, name="AnnotatePerformance")
class AnnotatePerformance:
    """Attach costmodel estimates to an IRModule and to each of its Relax functions.

    The module gets the estimate of its entry function (``main``, or the only
    Relax function); every Relax function gets its own.  Keys:
    ``perf.latency_ms``, ``perf.memory_mb``, ``perf.energy_j``,
    ``perf.mig_profile`` (``""`` when no MIG slice fits or the device has no
    MIG), ``perf.predictor``, plus ``perf.device``, ``perf.batch``,
    ``perf.dtype``, ``perf.memory_path`` (which path answered the memory:
    ``liveness-fallback`` or ``predictor``, since a Relax function holds no
    PyTorch module to trace) and ``perf.memory_mb_upper`` (the upper end of
    the memory's 90 % interval, which the MIG profile holds).  The module's
    code is not changed.

    Args:
        device: device name from the database (``"h100"``, ``"a100-80gb"``...).
        predictor: registered predictor name, artifact folder, Predictor, or
            ``None`` for the library default.
        batch: value of a symbolic leading (batch) dimension of the inputs.
        mode: ``"inference"`` or ``"training"``.
        bindings: values of other symbolic shape variables, ``{"seq": 128}``.
        strict: raise when a function cannot be estimated; by default the
            failure becomes a warning and compilation goes on.
        host: a host profile for the timeline's host lane (``costmodel
            calibrate``'s JSON path or a HostProfile); other predictors
            ignore it and say so in the estimates' assumptions.

    Usable like any TVM pass: called on a module, inside
    ``tvm.transform.Sequential``, under a user's ``PassContext`` (it runs at
    ``opt_level=0``, so every context runs it).

    Without ``strict``, nothing the pass does can break a compile: a function
    that cannot be estimated (any exception, a predictor that returns
    ``None`` or an object without the estimate's fields, attributes that
    cannot be attached) gets a ``RuntimeWarning`` naming it and no
    attributes, and if annotating the module fails as a whole, the module
    passes through unchanged with a ``RuntimeWarning``.  ``strict=True``
    raises instead.
    """

    def __init__(self, device: str = "h100", predictor=None, batch: int | None = None, *,
                 mode: str = "inference", bindings: dict[str, int] | None = None, strict: bool = False,
                 host=None) -> None:
        from ..devices import get_device
        from ..frontends import check_batch
        from ..predictors import get_predictor, with_host_profile

        if mode not in MODES:
            raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
        if batch is not None:
            check_batch(batch)
        _check_bindings(bindings)  # a bad value fails here, not as a warning in every compile
        self.device = get_device(device)  # unknown names fail here, with suggestions
        # a missing or damaged host profile fails here, like an unknown device
        self.predictor, host_notes = with_host_profile(get_predictor(predictor), host)
        self.batch = batch
        self.mode = mode
        self.bindings = bindings
        self.strict = strict
        # the predictor answering in place of an unavailable default says so in every estimate
        from ..predictors import default_fallback_note

        self._notes = ([default_fallback_note(self.predictor)] if predictor is None else []) + host_notes
        self.estimates: dict[str, Any] = {}
        self.seconds = 0.0

    def _estimate(self, mod, name: str):
        from ..estimate import with_notes

        est = estimate_module(mod, device=self.device, predictor=self.predictor, batch=self.batch, func=name,
                              mode=self.mode, bindings=self.bindings)
        attrs = _attrs_of(est)  # a None or incomplete estimate fails here, for this function only
        if self._notes and isinstance(getattr(est, "assumptions", None), list):
            with_notes(est, self._notes)
        return est, attrs

    def _failed(self, what: str, e: Exception) -> None:
        """A failure: raised under ``strict``, else a RuntimeWarning (which, should the user's warning
        filters turn it into an exception, is logged instead: it must not break the compile)."""
        if self.strict:
            raise e
        msg = f"AnnotatePerformance: {what}: {type(e).__name__}: {e}"
        try:
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        except Exception:  # noqa: BLE001 - an "error" warning filter: log, never break the compile
            log.warning("%s", msg)

    def transform_module(self, mod, ctx):  # noqa: ARG002 - the PassContext is not needed
        t0 = time.perf_counter()
        self.estimates = {}
        try:
            return self._annotate(mod)
        except Exception as e:  # noqa: BLE001 - never break the user's compile unless asked to
            self.estimates = {}
            self._failed("the module could not be annotated; it passes through unchanged", e)
            return mod
        finally:
            self.seconds = time.perf_counter() - t0

    def _annotate(self, mod):
        names = _relax_functions(mod)
        entry = "main" if "main" in names else (names[0] if len(names) == 1 else None)
        attrs: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                self.estimates[name], attrs[name] = self._estimate(mod, name)
            except Exception as e:  # noqa: BLE001 - never break the user's compile unless asked to
                self._failed(f"no estimate for Relax function {name!r}", e)
        out = mod.clone()  # update_func mutates in place; the caller's module stays as it was
        for name, a in attrs.items():
            gv = out.get_global_var(name)
            func = out[gv]
            for k, v in a.items():
                func = func.with_attr(k, v)
            out.update_func(gv, func)
        if entry in attrs:
            out = out.with_attrs(attrs[entry])
        return out


def read_annotations(obj) -> dict[str, Any]:
    """The ``perf.*`` attributes of an IRModule or a Relax function, as plain Python values."""
    attrs = obj.attrs
    if attrs is None:
        return {}
    out = {}
    for k in attrs.keys():
        k = str(k)
        if k.startswith("perf."):
            v = attrs[k]
            if hasattr(v, "value"):
                v = v.value
            out[k] = v if isinstance(v, (int, float)) else str(v)
    return out


def build(mod, target=None, *, device: str = "h100", predictor=None, batch: int | None = None,
          mode: str = "inference", bindings: dict[str, int] | None = None, strict: bool = False, host=None,
          **build_kwargs):
    """``tvm.relax.build`` with :class:`AnnotatePerformance` in front of the pipeline.

    Logs one line (logger ``costmodel.tvm``, level INFO) with the estimate of
    the entry function and returns the executable; the annotated module's
    attributes travel through the build.  Extra keyword arguments go to
    ``tvm.relax.build``.  Runs under the caller's ``PassContext``.
    """
    ann = AnnotatePerformance(device=device, predictor=predictor, batch=batch, mode=mode, bindings=bindings,
                              strict=strict, host=host)
    mod = ann(mod)
    est = ann.estimates.get("main") or next(iter(ann.estimates.values()), None)
    if est is not None:
        try:
            log.info(
                "costmodel: %s on %s (%s): %.3g ms, %.0f MB, %.3g J, MIG %s [%.0f ms to estimate]",
                getattr(est, "model", None) or "main", est.device, est.predictor, est.latency_ms, est.memory_mb,
                est.energy_j, est.mig_profile or "none", ann.seconds * 1e3,
            )
        except Exception as e:  # noqa: BLE001 - the log line must not break the build
            ann._failed("the estimate could not be logged", e)
    return relax.build(mod, target, **build_kwargs)
