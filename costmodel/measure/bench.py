"""Time one kernel and place it on the roofline.

>>> import torch, costmodel
>>> a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
>>> r = costmodel.bench(torch.matmul, a, b)          # FLOPs and bytes counted
>>> r.achieved_gflops, r.fraction_of_roofline, r.bound
>>> print(r.table())

:func:`bench` calls ``fn(*args, **kwargs)`` once to count its work, warms it
up, then times it:

* **timing**: CUDA events around the calls (after a ``torch.cuda.synchronize``)
  when a tensor argument or result lives on a CUDA device, else
  ``time.perf_counter``.  The number of calls per timed sample is calibrated so
  that one sample lasts at least ``sample_s`` (1 ms); at least ``repeats``
  samples are taken, more until they add up to ``min_time_s``.  ``time_ms`` is
  the median time of ONE call over the samples, with min, max and quartiles.
  The same inputs are reused for every call, so caches are warm: tensors that
  fit in a cache can beat the DRAM bandwidth ceiling.
* **FLOPs** (unless ``flops=`` is given): the total of
  :class:`torch.utils.flop_counter.FlopCounterMode` (matmul, convolution,
  attention and their variants, 2 FLOPs per multiply-add), plus ONE FLOP per
  output element of each pointwise or softmax-like aten op of
  :data:`POINTWISE_OPS` (add, mul, relu, gelu, softmax...), whatever the
  function's real instruction count (a GELU or a softmax takes several).  Any
  other op counts 0 FLOPs; a callable whose total is 0 is reported with
  ``flops_source == "unknown"`` and treated as memory-bound.
* **bytes** (unless ``bytes=`` is given): the compulsory traffic, a LOWER
  BOUND of the real DRAM traffic: the size of every distinct tensor argument
  (read once; the parameters and buffers too when ``fn`` is an
  ``nn.Module``) plus the size of every distinct tensor returned (written
  once, also when it is an input updated in place, or a view of one).
  Intermediates, re-reads and cache misses are not counted.
* **ceilings**: a compute peak and a bandwidth from the device database
  (``device=``, or the entry of the GPU the tensors live on, or ``"cpu"``), or
  from a measured :class:`~costmodel.devices.profile.MachineProfile` (``profile=``).
  The peak is the tensor-core rate of the dtype (``Device.peak_flops(dtype,
  tensor=True)``) when the counted FLOPs come from matmul/convolution/attention
  ops on a GPU, else the vector (CUDA-core, or a CPU's SIMD) rate; fp32 matmuls and convolutions on CUDA
  count as TF32 when PyTorch allows TF32 for them.  The attainable ceiling is
  ``min(peak, intensity x bandwidth)``; ``fraction_of_roofline`` is the achieved
  FLOP/s over it, which on the memory side equals achieved over ceiling
  bandwidth -- the figure used when the op has no FLOPs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from .._errors import CostModelError, InvalidInputError, UnknownDeviceError
from .._validate import int_at_least, non_negative_number

__all__ = ["POINTWISE_OPS", "BenchResult", "bench", "count_work"]

#: aten ops (overload packet names, in-place ``_`` variants included) counted
#: as one FLOP per output element; FlopCounterMode counts none of them.
POINTWISE_OPS: frozenset[str] = frozenset({
    "add", "sub", "rsub", "mul", "div", "neg", "abs", "reciprocal", "sqrt", "rsqrt", "pow", "exp", "log",
    "maximum", "minimum", "clamp", "clamp_min", "clamp_max", "where", "addcmul", "addcdiv", "lerp",
    "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardtanh", "hardswish", "hardsigmoid", "leaky_relu",
    "elu", "mish", "softplus", "threshold",
    "_softmax", "_log_softmax", "softmax", "log_softmax",
})  # fmt: skip

#: default minimum duration of one timed sample (seconds)
SAMPLE_S = 1e-3
#: never take more samples than this, whatever ``min_time_s`` asks
MAX_SAMPLES = 10_000

_TORCH_DTYPES = {
    "float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64", "int8": "int8",
    "uint8": "uint8", "int16": "int16", "int32": "int32", "int64": "int64", "bool": "bool",
    "complex64": "complex64",
}  # fmt: skip


# --------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchResult:
    """One benchmarked callable on the roofline.  Units are in the field names.

    ``time_ms`` is the median time of one call; ``time_ms_min``/``_max``/
    ``_q1``/``_q3`` its spread over the ``repeats`` samples of
    ``calls_per_sample`` calls each.  ``flops_source`` is ``"given"``,
    ``"counted"`` or ``"unknown"`` (nothing counted: 0 FLOPs, memory-bound);
    ``bytes_source`` is ``"given"`` or ``"counted"`` (the compulsory-traffic
    lower bound).  ``peak_gflops`` and ``bandwidth_gbps`` are the ceilings
    used (``ceiling_dtype``, tensor-core rate when ``tensor_cores``),
    ``ceiling_gflops = min(peak, intensity x bandwidth)`` the attainable rate;
    ``fraction_of_roofline`` is ``achieved_gflops / ceiling_gflops`` (achieved
    over ceiling bandwidth when there are no FLOPs), ``None`` when neither
    FLOPs nor bytes are known.  ``bound`` is ``"compute"`` or ``"memory"``
    (``"unknown"`` in that case).  ``memory_levels_gbps`` are the bandwidth
    ceilings drawn by :meth:`chart` (a measured profile's cache levels too).
    """

    name: str
    device: str
    device_source: str
    timer: str
    time_ms: float
    time_ms_min: float
    time_ms_max: float
    time_ms_q1: float
    time_ms_q3: float
    repeats: int
    calls_per_sample: int
    flops: float
    bytes: float
    flops_source: str
    bytes_source: str
    achieved_gflops: float
    achieved_gbps: float
    intensity: float | None
    ceiling_dtype: str
    tensor_cores: bool
    peak_gflops: float
    bandwidth_gbps: float
    ceiling_gflops: float
    fraction_of_roofline: float | None
    bound: str
    memory_levels_gbps: dict[str, float] = field(default_factory=dict)
    #: the memory level whose bandwidth ``bandwidth_gbps`` is: with a measured profile, the smallest cache
    #: that holds the call's bytes (the same tensors every call: they stay there), else ``"DRAM"``
    bandwidth_level: str = "DRAM"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def table(self) -> str:
        """A readable multi-line table (what ``costmodel bench`` prints)."""
        flop_note = {"given": "given", "counted": "counted", "unknown": "none counted: memory-bound"}[self.flops_source]
        byte_note = "given" if self.bytes_source == "given" else "counted: inputs read + outputs written, a lower bound"
        kind = "tensor" if self.tensor_cores else "vector"
        if self.intensity is None:
            ceiling = f"{_g(self.peak_gflops)} GFLOP/s {self.ceiling_dtype} {kind} (no bytes: compute only)"
        else:
            ceiling = (f"min({_g(self.peak_gflops)} GFLOP/s {self.ceiling_dtype} {kind}, "
                       f"{self.intensity:.4g} FLOP/B x {_g(self.bandwidth_gbps)} GB/s {self.bandwidth_level}) = "
                       f"{_g(self.ceiling_gflops)} GFLOP/s")
        frac = "-" if self.fraction_of_roofline is None else f"{100 * self.fraction_of_roofline:.1f} % of attainable"
        rows = [
            ("op", self.name),
            ("device", f"{self.device} ({self.device_source} ceilings)"),
            ("time", f"{self.time_ms:.4g} ms median  [min {self.time_ms_min:.4g}, max {self.time_ms_max:.4g}, "
                     f"IQR {self.time_ms_q1:.4g}..{self.time_ms_q3:.4g}]"),
            ("samples", f"{self.repeats} x {self.calls_per_sample} calls ({self.timer})"),
            ("FLOPs", f"{self.flops / 1e9:.4g} GFLOP ({flop_note})"),
            ("bytes", f"{self.bytes / 1e6:.4g} MB ({byte_note})"),
            ("intensity", "-" if self.intensity is None else f"{self.intensity:.4g} FLOP/byte"),
            ("achieved", f"{_g(self.achieved_gflops)} GFLOP/s, {_g(self.achieved_gbps)} GB/s"),
            ("ceiling", ceiling),
            ("roofline", f"{frac}, {self.bound}-bound" if self.bound != "unknown" else frac),
        ]
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)

    def __str__(self) -> str:
        return self.table()

    def chart(self, output=None, *, title: str | None = None):
        """Draw the point on its roofline (the ceilings used); returns the matplotlib Figure.

        ``output`` is a ``.png``/``.svg``/``.pdf`` path or ``None``.  Needs FLOPs
        and bytes > 0 (a point with no FLOPs has no place on a log-scale roofline).
        """
        return _chart(self, output, title)


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _g(v: float) -> str:
    """4 significant digits, without exponent for large rates (67,000 rather than 6.7e+04)."""
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def _fn_name(fn: Any) -> str:
    import torch

    if isinstance(fn, torch.nn.Module):
        return type(fn).__name__
    if isinstance(fn, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return "torch.ops." + str(fn).replace("::", ".")
    name = getattr(fn, "__name__", None) or type(fn).__name__
    mod = getattr(fn, "__module__", None)
    return f"{mod}.{name}" if isinstance(mod, str) and mod else str(name)


# --------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------


def _tensors(obj: Any, out: list, depth: int = 0) -> list:
    import torch

    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif depth < 4 and isinstance(obj, (list, tuple)):
        for o in obj:
            _tensors(o, out, depth + 1)
    elif depth < 4 and isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, out, depth + 1)
    return out


def _distinct_bytes(tensors: list) -> int:
    seen: set = set()
    total = 0
    for t in tensors:
        n = t.numel() * t.element_size()
        try:
            key = (t.device.type, t.data_ptr(), n, tuple(t.shape), tuple(t.stride()))
        except RuntimeError:  # tensors without storage (meta, functional wrappers)
            key = id(t)
        if key in seen:
            continue
        seen.add(key)
        total += n
    return total


def _packet_name(func: Any) -> str:
    try:
        return func.overloadpacket.__name__
    except AttributeError:
        return str(func)


def count_work(fn, *args, **kwargs) -> dict[str, Any]:
    """Call ``fn(*args, **kwargs)`` once and count its work (see the module docstring).

    Returns a dict with ``result`` (what ``fn`` returned), ``flops`` (counted
    total), ``matmul_flops`` (the FlopCounterMode part), ``pointwise_flops``,
    ``bytes`` (compulsory traffic), ``ops`` (aten op names seen, in order of
    first call) and ``counted`` (False when the counting modes could not run
    the callable and it was called plainly instead: FLOPs are then 0).
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class _Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: dict[str, None] = {}
            self.pointwise = 0

        def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = _packet_name(func)
            self.ops[name] = None
            base = name[:-1] if name.endswith("_") and not name.startswith("_") else name
            if base in POINTWISE_OPS:
                self.pointwise += sum(t.numel() for t in _tensors(out, []))
            return out

    counted = True
    try:
        with FlopCounterMode(display=False) as fc, _Recorder() as rec:
            result = fn(*args, **kwargs)
        matmul = int(fc.get_total_flops())
        pointwise = int(rec.pointwise)
        ops = list(rec.ops)
    except CostModelError:
        raise
    except Exception:  # noqa: BLE001 - e.g. a compiled kernel the dispatch modes cannot see through
        counted, matmul, pointwise, ops = False, 0, 0, []
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            raise InvalidInputError(f"calling {_fn_name(fn)} with the given arguments failed: "
                                    f"{type(e).__name__}: {e}") from e
    inputs = _tensors(list(args), []) + _tensors(dict(kwargs), [])
    if isinstance(fn, torch.nn.Module):
        inputs += list(fn.parameters()) + list(fn.buffers())
    nbytes = _distinct_bytes(inputs) + _distinct_bytes(_tensors(result, []))
    return {"result": result, "flops": matmul + pointwise, "matmul_flops": matmul, "pointwise_flops": pointwise,
            "bytes": nbytes, "ops": ops, "counted": counted}


# --------------------------------------------------------------------------
# ceilings
# --------------------------------------------------------------------------


def _cuda_index(tensors: list) -> int | None:
    for t in tensors:
        if t.device.type == "cuda":
            return t.device.index if t.device.index is not None else 0
    return None


def _gpu_device(index: int):
    import torch

    from ..devices import get_device

    name = torch.cuda.get_device_name(index)
    try:
        return get_device(name)
    except UnknownDeviceError as e:
        raise UnknownDeviceError(
            f"the GPU the tensors live on ({name!r}) is not in the device database; pass device= "
            f"(a database name such as 'h100') or profile=. {e}"
        ) from None


def _load_profile(profile: Any):
    from ..devices.profile import MachineProfile

    if profile is None or isinstance(profile, MachineProfile):
        return profile
    if isinstance(profile, (str, os.PathLike)):
        return MachineProfile.load(profile)
    raise InvalidInputError(
        f"expected profile to be None, a MachineProfile or the path of its JSON file, got {type(profile).__name__}"
    )


def _resolve_device(device: Any, profile: Any, cuda_index: int | None):
    """(Device, memory levels in GB/s, capacity of each cache level in bytes) of the ceilings."""
    from ..devices import Device, get_device

    if device is not None and not isinstance(device, (str, Device)):
        raise InvalidInputError(f"expected device to be None, a device name or a Device, got {type(device).__name__}")
    if isinstance(device, str) and device.strip().lower().split(":")[0] in ("cuda", "gpu"):
        import torch

        if not torch.cuda.is_available():
            raise InvalidInputError(f"device={device!r} asks for the CUDA GPU's ceilings, but no CUDA device is usable")
        idx = device.split(":")[1] if ":" in device else (cuda_index or 0)
        device = _gpu_device(int(idx))
    prof = _load_profile(profile)
    if prof is not None and (prof.kind == "cuda") != (cuda_index is not None):
        where = "a CUDA device" if cuda_index is not None else "the CPU"
        raise InvalidInputError(f"the measured profile is of a {prof.kind} ({prof.name!r}) but the tensors live on {where}")
    if prof is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a short sweep's DRAM figure: see MachineProfile.to_device
            dev = prof.to_device(base=device)
        levels = {str(k): float(v) for k, v in prof.levels.items() if v}
        levels["DRAM"] = dev.memory_bandwidth_gbps
        sizes = {f"L{c['level']}": int(c["aggregate_bytes"]) for c in prof.caches
                 if c.get("aggregate_bytes") and str(c.get("type", "Unified")).lower() in ("data", "unified")}
        return dev, levels, sizes
    if device is not None:
        dev = get_device(device)
    elif cuda_index is not None:
        dev = _gpu_device(cuda_index)
    else:
        dev = get_device("cpu")
    return dev, {"DRAM": dev.memory_bandwidth_gbps}, {}


def _holding_level(nbytes: float, levels: dict[str, float], sizes: dict[str, int]) -> str:
    """The smallest measured cache level that holds ``nbytes`` (within half its capacity: the rest is other
    data and conflict misses), else ``"DRAM"``."""
    for name in sorted(sizes, key=lambda k: sizes[k]):
        if name in levels and 0 < nbytes <= sizes[name] / 2:
            return name
    return "DRAM"


def _ceiling_dtype(tensors: list, ops: list[str], tensor: bool, on_cuda: bool) -> str:
    dtype = None
    for t in tensors:
        if t.is_floating_point() or t.is_complex():
            dtype = _TORCH_DTYPES.get(str(t.dtype).removeprefix("torch."))
            break
    if dtype is None and tensors:
        dtype = _TORCH_DTYPES.get(str(tensors[0].dtype).removeprefix("torch."))
    dtype = dtype or "fp32"
    if dtype == "fp32" and tensor and on_cuda:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conv_tf32 = bool(torch.backends.cudnn.allow_tf32)
            mm_tf32 = torch.get_float32_matmul_precision() != "highest" or bool(torch.backends.cuda.matmul.allow_tf32)
        has_conv = any("convolution" in o for o in ops)
        has_mm = any("mm" in o or "attention" in o or "matmul" in o for o in ops)
        if (has_conv and conv_tf32) or (has_mm and mm_tf32):
            dtype = "tf32"
    return dtype


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------


def _timer(fn, args, kwargs, cuda_index: int | None):
    """A function ``run(n) -> seconds`` timing ``n`` back-to-back calls."""
    if cuda_index is None:
        def run(n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                fn(*args, **kwargs)
            return time.perf_counter() - t0

        return run, "perf_counter"

    import torch

    dev = torch.device("cuda", cuda_index)

    def run_cuda(n: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(dev)
        start.record()
        for _ in range(n):
            fn(*args, **kwargs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    return run_cuda, "cuda_event"


def _quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


# --------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------


def _sample(run, repeats: int, min_time_s: float, sample_s: float) -> tuple[list[float], int]:
    """Seconds per call of each timed sample, and the calls per sample (calibrated to ``sample_s``)."""
    one = max(run(1), 1e-9)
    n = max(1, math.ceil(sample_s / one)) if sample_s > 0 else 1
    if n > 1:  # re-calibrate on a group of calls: a single one is dominated by timer overhead
        one = max(run(n) / n, 1e-9)
        n = max(1, math.ceil(sample_s / one))
    samples: list[float] = []
    total = 0.0
    while len(samples) < repeats or (total < min_time_s and len(samples) < MAX_SAMPLES):
        s = run(n)
        samples.append(s / n)
        total += s
    return samples, n


def _place(nflops, nbytes, intensity, achieved_flops, achieved_bw, peak, bw):
    """The roofline ceiling (FLOP/s), the fraction of it achieved and what bounds the kernel."""
    if nflops > 0:
        ceiling = peak if intensity is None else min(peak, intensity * bw)
        bound = "compute" if intensity is None or intensity * bw >= peak else "memory"
        return ceiling, achieved_flops / ceiling, bound
    if nbytes > 0:
        return 0.0, achieved_bw / bw, "memory"
    return 0.0, None, "unknown"


def bench(fn, *args, flops=None, bytes=None, device=None, warmup: int = 3, repeats: int = 10,  # noqa: A002
          min_time_s: float = 0.1, sample_s: float = SAMPLE_S, profile=None, **kwargs) -> BenchResult:
    """Time ``fn(*args, **kwargs)`` and place it on the roofline.

    Args:
        fn: any callable (a torch op, an ``nn.Module``, a compiled kernel).
        *args, **kwargs: passed to ``fn`` on every call (the same tensors each
            time).  A keyword argument named like one of bench's own
            (``device``, ``flops``...) is taken by bench: wrap ``fn`` in a
            lambda to pass it through.
        flops: FLOPs of ONE call; default: counted (see the module docstring).
        bytes: bytes moved by ONE call; default: the compulsory traffic
            (tensor inputs read + outputs written), a lower bound.
        device: device whose ceilings to use: a database name (``"h100"``,
            ``"cpu"``), a :class:`~costmodel.devices.Device`, or ``"cuda"`` /
            ``"cuda:N"`` for the GPU of that index.  Default: the database entry
            of the GPU the tensors live on, else ``"cpu"``.
        warmup: untimed calls before calibration (>= 0; the counting call comes on top).
        repeats: minimum number of timed samples (>= 1).
        min_time_s: keep sampling until the samples add up to this many seconds
            (at most :data:`MAX_SAMPLES` samples).
        sample_s: minimum duration of one sample; the calls per sample are
            calibrated to reach it (default 1 ms).
        profile: a measured :class:`~costmodel.devices.profile.MachineProfile` or the
            path of its JSON; its peaks and bandwidth replace the database's
            (``device``, when given, is the base entry it refines).

    Returns:
        :class:`BenchResult`.

    Raises:
        InvalidInputError: a bad argument (the message names it and the valid
            values), or ``fn`` failing on the given arguments.
        UnknownDeviceError: a device name, or the GPU the tensors live on, is
            not in the device database.
    """
    if not callable(fn):
        raise InvalidInputError(f"expected fn to be a callable (a torch op, module or kernel), got {type(fn).__name__}")
    given_flops = non_negative_number(flops, "flops", or_none=True)
    given_bytes = non_negative_number(bytes, "bytes", or_none=True)
    warmup = int_at_least(warmup, "warmup", 0)
    repeats = int_at_least(repeats, "repeats", 1)
    min_time_s = non_negative_number(min_time_s, "min_time_s", "seconds")
    sample_s = non_negative_number(sample_s, "sample_s", "seconds")
    tensors = _tensors(list(args), []) + _tensors(dict(kwargs), [])
    cuda_index = _cuda_index(tensors)
    dev, levels, sizes = _resolve_device(device, profile, cuda_index)  # fail on bad ceilings before running

    work = count_work(fn, *args, **kwargs)
    outputs = _tensors(work.pop("result"), [])
    if cuda_index is None:
        cuda_index = _cuda_index(outputs)
    run, timer = _timer(fn, args, kwargs, cuda_index)

    for _ in range(warmup):
        fn(*args, **kwargs)
    samples, n = _sample(run, repeats, min_time_s, sample_s)

    t = statistics.median(samples)
    q1, q3 = _quartiles(samples)
    nflops = given_flops if given_flops is not None else float(work["flops"])
    nbytes = given_bytes if given_bytes is not None else float(work["bytes"])
    flops_source = "given" if given_flops is not None else ("counted" if nflops > 0 else "unknown")
    tensor = work["matmul_flops"] > 0 and dev.vendor.lower() in ("nvidia", "amd")  # a CPU: its vector units
    dtype = _ceiling_dtype(tensors or outputs, work["ops"], tensor, cuda_index is not None)
    peak = dev.peak_flops(dtype, tensor=tensor)
    level = _holding_level(nbytes, levels, sizes)
    bw = levels[level] * 1e9 if level != "DRAM" else dev.bandwidth_bytes_s
    intensity = nflops / nbytes if nbytes > 0 else None
    achieved_flops, achieved_bw = nflops / t, nbytes / t
    ceiling, fraction, bound = _place(nflops, nbytes, intensity, achieved_flops, achieved_bw, peak, bw)
    return BenchResult(
        name=_fn_name(fn),
        device=dev.name,
        device_source=dev.source,
        timer=timer,
        time_ms=t * 1e3,
        time_ms_min=min(samples) * 1e3,
        time_ms_max=max(samples) * 1e3,
        time_ms_q1=q1 * 1e3,
        time_ms_q3=q3 * 1e3,
        repeats=len(samples),
        calls_per_sample=n,
        flops=nflops,
        bytes=nbytes,
        flops_source=flops_source,
        bytes_source="given" if given_bytes is not None else "counted",
        achieved_gflops=achieved_flops / 1e9,
        achieved_gbps=achieved_bw / 1e9,
        intensity=intensity,
        ceiling_dtype=dtype,
        tensor_cores=tensor,
        peak_gflops=peak / 1e9,
        bandwidth_gbps=bw / 1e9,
        ceiling_gflops=ceiling / 1e9,
        fraction_of_roofline=fraction,
        bound=bound,
        memory_levels_gbps=levels,
        bandwidth_level=level,
    )


# --------------------------------------------------------------------------
# chart
# --------------------------------------------------------------------------


def _chart(r: BenchResult, output, title: str | None):
    from .charts import check_output, _draw_ceilings, _finish, pyplot

    plt = pyplot("bench charts")

    out = check_output(output)
    if not (r.flops > 0 and r.bytes > 0 and r.intensity):
        raise InvalidInputError(
            f"{r.name} has {r.flops:g} FLOPs and {r.bytes:g} bytes: a point needs both > 0 to sit on a log-scale "
            "roofline (pass flops= / --flops)"
        )
    kind = "tensor" if r.tensor_cores else "vector"
    c = {"compute": {f"{r.ceiling_dtype} {kind}": r.peak_gflops * 1e9},
         "memory": {k: v * 1e9 for k, v in r.memory_levels_gbps.items()}}
    c["memory"].setdefault("DRAM", r.bandwidth_gbps * 1e9)
    ridge = r.peak_gflops / r.bandwidth_gbps
    lo = min(r.intensity, ridge)
    hi = max(r.intensity, ridge)
    x_lo = 10 ** math.floor(math.log10(lo / 4))
    x_hi = 10 ** math.ceil(math.log10(hi * 8))
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    _draw_ceilings(ax, c, x_lo, x_hi)
    y = r.achieved_gflops * 1e9
    ax.scatter([r.intensity], [y], s=60, color="#d62728", zorder=4)
    frac = "" if r.fraction_of_roofline is None else f", {100 * r.fraction_of_roofline:.0f}% of roof"
    ax.annotate(f"{r.name}\n{_g(r.achieved_gflops)} GFLOP/s{frac}", (r.intensity, y), textcoords="offset points",
                xytext=(8, -14), fontsize=8)
    ax.scatter([r.intensity], [r.ceiling_gflops * 1e9], s=40, marker="_", color="#d62728", zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(min(y, r.ceiling_gflops * 1e9, r.bandwidth_gbps * 1e9 * x_lo) / 3, r.peak_gflops * 1e9 * 4)
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(title or f"{r.name} on {r.device} ({r.device_source} ceilings), median {r.time_ms:.4g} ms",
                 fontsize=9)
    return _finish(fig, ax, out)
