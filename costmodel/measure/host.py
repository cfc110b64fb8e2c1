"""Host profiles: what this machine's CPU adds to every operator PyTorch eager dispatches.

Where it sits: the host lane of the operator timeline
(:mod:`costmodel.analysis._timeline`). A latency label is a property of (GPU,
host, software stack): the same H200 on a faster host runs launch-bound models
up to 2x faster while compute-bound ones agree within 1 %. The host part is
therefore measured, or fitted, separately and per machine.

``calibrate()`` (``costmodel calibrate``) measures, in a few seconds:

* ``dispatch_us[op class]``: the wall time of one eager call on a tiny tensor
  (Python binding, dispatcher, autograd bookkeeping, allocation; with CUDA also
  the kernel launch), per operator class, since a convolution's dispatch costs
  several times an add's;
* ``module_call_us``: what ``nn.Module.__call__`` adds around ``forward``;
* with CUDA, ``kernel_us``: the device time of the smallest kernel (a chain of
  tiny adds replayed as a CUDA graph, so no host is involved) and ``sync_us``:
  ``torch.cuda.synchronize()`` on an idle device;
* without CUDA (or with ``device="cpu"``), ``roofline``: the CPU's fp32 GEMM
  rate and copy bandwidth at the process's torch thread count, recorded to
  compare CPUs (CPU estimates do not use it: it did not carry the CPU operator
  model to another CPU, ``benchmarks/cpu_transfer.py``).

A profile is JSON (``HostProfile.save``/``load``), tagged with a format name,
a schema version and the library version; a profile that is missing, corrupt
or from another version is refused with an error naming the file.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .._errors import ArtifactError, InvalidInputError

FORMAT = "costmodel.host-profile"
SCHEMA_VERSION = 1
#: operator classes with their own dispatch cost; ``default`` covers every other kind
OP_CLASSES = ("elementwise", "activation", "matmul", "conv", "norm", "pool", "reduction", "softmax", "layout")
#: op kinds whose class is not their category's name
_KIND_CLASS = {"conv": "conv", "conv_transpose": "conv", "matmul": "matmul", "attention": "matmul", "softmax": "softmax"}


def op_class(kind: str) -> str:
    """The dispatch class of a CostGraph op kind (``default`` when it has none of its own)."""
    from ..ir import category, is_kind

    if kind in _KIND_CLASS:
        return _KIND_CLASS[kind]
    cat = category(kind) if is_kind(kind) else "other"
    return cat if cat in OP_CLASSES else "default"


@dataclass
class HostProfile:
    """Per-operator host costs of one machine (microseconds)."""

    dispatch_us: dict[str, float]
    module_call_us: float
    #: CPU execution: the host runs each operator itself, so the two lanes are one
    synchronous: bool
    kernel_us: float | None = None
    sync_us: float = 0.0
    host: dict[str, Any] = field(default_factory=dict)
    #: how the numbers were obtained ("measured on this machine", "fitted to ... rows")
    source: str = "measured"
    notes: list[str] = field(default_factory=list)
    library_version: str = ""
    #: a CPU profile's measured roofline at the thread count it was calibrated at:
    #: ``{"peak_gflops_fp32", "bandwidth_gbps", "threads", "how"}`` (a record to compare CPUs; the target of
    #: ``OpTimeline.predict(..., target=cpu_target(profile))``); ``None`` for a GPU host's profile
    roofline: dict[str, Any] | None = None

    def dispatch_for(self, kind: str) -> float:
        """Host cost of one operator of CostGraph kind ``kind`` (µs)."""
        return self.dispatch_us.get(op_class(kind), self.dispatch_us["default"])

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format": FORMAT, "schema_version": SCHEMA_VERSION, **d}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        except OSError as e:
            raise InvalidInputError(f"cannot write the host profile to {path}: {e.strerror or e}") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HostProfile":
        """Read a profile written by :meth:`save`; refuse anything else with a clear error."""
        from .. import __version__

        path = Path(path)
        if path.is_dir():
            raise ArtifactError(f"host profile {path} is a directory; give the JSON file `costmodel calibrate -o FILE` "
                                "wrote")
        if not path.is_file():
            raise ArtifactError(f"host profile {path} does not exist (make one with `costmodel calibrate -o {path}`)")
        try:
            raw = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArtifactError(f"host profile {path} is not valid JSON: {e}") from None
        except OSError as e:
            raise ArtifactError(f"cannot read host profile {path}: {e.strerror or e}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise ArtifactError(f"{path} is not a costmodel host profile (format {got!r}, expected {FORMAT!r})")
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise ArtifactError(
                f"host profile {path} has schema version {raw.get('schema_version')!r}; this library reads "
                f"version {SCHEMA_VERSION}. Re-run `costmodel calibrate -o {path}`"
            )
        if raw.get("library_version") != __version__:
            raise ArtifactError(
                f"host profile {path} was written by costmodel {raw.get('library_version')!r}, this is "
                f"{__version__}. Re-run `costmodel calibrate -o {path}`"
            )
        return cls._from_raw(raw, path)

    @classmethod
    def _from_raw(cls, raw: dict, path: Path) -> "HostProfile":
        def bad(what: str):
            return ArtifactError(f"host profile {path}: {what}")

        def us(v, name, *, optional=False):
            if v is None and optional:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < 1e6):
                raise bad(f"{name} must be a number of microseconds in [0, 1e6), got {v!r}")
            return float(v)

        disp = raw.get("dispatch_us")
        if not isinstance(disp, dict) or "default" not in disp:
            raise bad("dispatch_us must be an object with at least a 'default' entry")
        unknown = sorted(set(disp) - set(OP_CLASSES) - {"default"})
        if unknown:
            raise bad(f"dispatch_us has unknown operator classes {unknown}; known: {['default', *OP_CLASSES]}")
        if not isinstance(raw.get("synchronous"), bool):
            raise bad(f"synchronous must be true or false, got {raw.get('synchronous')!r}")
        notes = raw.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise bad("notes must be a list of strings")
        host = raw.get("host", {})
        if not isinstance(host, dict):
            raise bad("host must be an object")
        roof = raw.get("roofline")
        if roof is not None:
            if not isinstance(roof, dict):
                raise bad(f"roofline must be an object or null, got {type(roof).__name__}")
            for k in ("peak_gflops_fp32", "bandwidth_gbps"):
                v = roof.get(k)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < 1e7):
                    raise bad(f"roofline[{k!r}] must be a positive number, got {v!r}")
            t = roof.get("threads")
            if isinstance(t, bool) or not isinstance(t, int) or t < 1:
                raise bad(f"roofline['threads'] must be a positive integer, got {t!r}")
        return cls(
            dispatch_us={k: us(v, f"dispatch_us[{k!r}]") for k, v in disp.items()},
            module_call_us=us(raw.get("module_call_us"), "module_call_us"),
            synchronous=raw["synchronous"],
            kernel_us=us(raw.get("kernel_us"), "kernel_us", optional=True),
            sync_us=us(raw.get("sync_us", 0.0), "sync_us"),
            host=host,
            source=str(raw.get("source", "measured")),
            notes=notes,
            library_version=raw["library_version"],
            roofline=dict(roof) if roof is not None else None,
        )


def load_host(host: "HostProfile | str | os.PathLike | None") -> HostProfile | None:
    """``host=`` as the API and CLI accept it: a profile, a path to one, or ``None``."""
    if host is None or isinstance(host, HostProfile):
        return host
    if isinstance(host, (str, os.PathLike)):
        return HostProfile.load(host)
    raise InvalidInputError(f"host must be a HostProfile or the path of a saved one, got {type(host).__name__}")


# ---------------------------------------------------------------------- measuring
def _describe_host() -> dict[str, Any]:
    import torch

    from .probes import cpu_name  # the same CPU description collected rows carry

    cpu = cpu_name()
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _per_call_us(fn: Callable[[], Any], budget_s: float, sync: Callable[[], Any] | None = None) -> float:
    """Median wall time of one call over a few timed chunks that fit in ``budget_s``."""
    for _ in range(20):  # warm-up (allocator, lazy kernels, branch predictors)
        fn()
    if sync:
        sync()
    s = time.perf_counter()
    for _ in range(50):
        fn()
    if sync:
        sync()
    first = max((time.perf_counter() - s) / 50, 1e-7)
    n = int(min(20000, max(20, budget_s / 5 / first)))
    chunks = []
    for _ in range(5):
        s = time.perf_counter()
        for _ in range(n):
            fn()
        if sync:
            sync()
        chunks.append((time.perf_counter() - s) / n * 1e6)
    return statistics.median(chunks)


def _op_calls(dev) -> dict[str, Callable[[], Any]]:
    """One tiny eager call per operator class: the work is negligible, the dispatch is not."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(1, 4, 8, 8, device=dev)
    w = torch.randn(4, 4, 3, 3, device=dev)
    a = torch.randn(8, 8, device=dev)
    b = torch.randn(8, 8, device=dev)
    bias = torch.randn(8, device=dev)
    rm, rv = torch.zeros(4, device=dev), torch.ones(4, device=dev)
    return {
        "elementwise": lambda: torch.add(a, b),
        "activation": lambda: torch.relu(a),
        "matmul": lambda: F.linear(a, b, bias),
        "conv": lambda: F.conv2d(x, w, padding=1),
        "norm": lambda: F.batch_norm(x, rm, rv, training=False),
        "pool": lambda: F.max_pool2d(x, 2),
        "reduction": lambda: a.sum(-1),
        "softmax": lambda: torch.softmax(a, -1),
        "layout": lambda: a.t().contiguous(),
    }


#: the operator classes :func:`dispatch_reference` times: the cheapest call, a GEMM and a convolution
#: (one each of the dispatch paths PyTorch, cuBLAS and cuDNN take)
REFERENCE_CLASSES = ("elementwise", "matmul", "conv")


def dispatch_reference(device: str = "cpu", *, budget_s: float = 0.1) -> float:
    """Microseconds this host takes right now to dispatch one tiny eager operator on ``device``: the
    median over :data:`REFERENCE_CLASSES` of :func:`calibrate`'s per-call time, at one intra-op thread,
    under ``inference_mode``. On a GPU it is the enqueue time (no synchronisation inside the loop): what
    a launch-bound row's latency is made of, and what a slow spell of the host stretches even where a
    GEMM rate or a copy bandwidth barely move."""
    import torch

    dev = torch.device(device)
    calls = _op_calls(dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            times = [_per_call_us(calls[c], budget_s / len(REFERENCE_CLASSES), sync) for c in REFERENCE_CLASSES]
    finally:
        torch.set_num_threads(threads)
    return round(statistics.median(times), 3)


def calibrate(*, budget_s: float = 6.0, device: str | None = None, progress: bool = False) -> HostProfile:
    """Measure this host's per-operator costs in about ``budget_s`` seconds (at most 10).

    ``device``: ``"cpu"`` or ``"cuda"`` (default: CUDA when available). Without
    CUDA the CPU part is measured and the profile says so in ``notes``.
    """
    import torch

    from .. import __version__

    if not (0 < budget_s <= 10):
        raise InvalidInputError(f"budget_s must be in (0, 10] seconds, got {budget_s!r}")
    if device not in (None, "cpu", "cuda"):
        raise InvalidInputError(f"device must be 'cpu' or 'cuda', got {device!r}")
    notes: list[str] = []
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise InvalidInputError("device='cuda' was asked for but this machine has no usable CUDA device")
    use_cuda = cuda and device != "cpu"
    if not use_cuda:
        notes.append(
            "CPU only: no CUDA device here, so kernel launch and synchronisation were not measured; "
            "the profile describes PyTorch's CPU execution (host and device are one lane)"
            if not cuda else "CPU only, as asked"
        )
    dev = torch.device("cuda" if use_cuda else "cpu")
    calls = _op_calls(dev)
    # the budget: one share per op class, two for the module call, two for the CUDA-only figures or, on
    # the CPU path, two for the CPU's roofline
    share = budget_s / (len(calls) + 4)
    it = calls.items()
    if progress:
        from tqdm import tqdm

        it = tqdm(list(it), desc="calibrating", unit="op class")
    # one intra-op thread: the operators are tiny, and a thread pool woken per call measures the
    # pool's wake-up (milliseconds on a busy machine), not the dispatch
    threads = torch.get_num_threads()
    roofline = None
    if not use_cuda:  # at the process's thread count
        from .opprofile import measure_roofline

        roofline = measure_roofline("cpu", budget_s=2 * share)
    torch.set_num_threads(1)
    try:
        dispatch, module_call, kernel_us, sync_us = _measure(torch, dev, it, share, use_cuda)
    finally:
        torch.set_num_threads(threads)
    dispatch["default"] = statistics.median(dispatch.values())
    return HostProfile(
        dispatch_us=dispatch,
        module_call_us=module_call,
        synchronous=not use_cuda,
        kernel_us=kernel_us,
        sync_us=sync_us,
        host={**_describe_host(), "device": torch.cuda.get_device_name() if use_cuda else "cpu"},
        source="measured by costmodel calibrate",
        notes=notes,
        library_version=__version__,
        roofline=roofline,
    )


def _measure(torch, dev, it, share: float, use_cuda: bool):
    with torch.inference_mode():
        dispatch = {name: _per_call_us(fn, share, None) for name, fn in it}
        ident = torch.nn.Identity()
        x = torch.randn(8, device=dev)
        module_call = max(0.0, _per_call_us(lambda: ident(x), share) - _per_call_us(lambda: ident.forward(x), share))
        kernel_us = None
        sync_us = 0.0
        if use_cuda:
            kernel_us = _cuda_graph_kernel_us(torch, dev, share)
            sync_us = _per_call_us(torch.cuda.synchronize, share)
    return dispatch, module_call, kernel_us, sync_us


def _cuda_graph_kernel_us(torch, dev, budget_s: float) -> float:  # pragma: no cover - needs a GPU
    """Device time of one tiny kernel: a chain of adds captured once and replayed (no host in the loop)."""
    t = torch.zeros(1, device=dev)
    n = 200
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            t.add_(1)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            t.add_(1)
    per_replay = _per_call_us(g.replay, budget_s, torch.cuda.synchronize)
    return per_replay / n
