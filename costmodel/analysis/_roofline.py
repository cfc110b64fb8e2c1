"""Analytic roofline latency and power.

Per operator, the device needs ``max(FLOPs / peak, bytes / bandwidth)`` plus a
kernel-launch latency; the host needs a fixed dispatch cost per operator
(PyTorch eager).  Kernels run asynchronously, so each operator costs the
slower of the two: small workloads are dispatch-bound, large ones
compute- or bandwidth-bound (the observation that motivates the thesis' GNN:
at batch 1 the number of kernels decides latency, at batch 128 the FLOPs do).

Which compute ceiling applies depends on the operator and dtype: conv,
matmul and attention run on tensor cores (fp32 convolutions use TF32 because
PyTorch enables ``cudnn.allow_tf32`` by default, fp32 matmuls do not because
``cuda.matmul.allow_tf32`` is off by default); everything else runs on the
vector units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import TENSOR_KINDS, CostGraph, Node

#: backward pass costs about twice the forward (grad w.r.t. input and weights)
BACKWARD_FACTOR = 2.0
#: Adam touches param, grad, exp_avg, exp_avg_sq (read) and writes three of them
ADAM_BYTES_PER_PARAM_BYTE = 7.0


@dataclass(frozen=True)
class RooflineConfig:
    """Knobs of the analytic model (all documented defaults, none fitted).

    ``host_overhead_us`` is PyTorch eager's per-operator dispatch cost on the
    host; ~15-20 µs per executed operator is what small-batch runs show on a
    modern server (measurements like ``costmodel/data/h200/device_constants.json``).  ``conv_tf32``
    and ``matmul_tf32`` mirror PyTorch's default TF32 switches.
    """

    host_overhead_us: float = 15.0
    conv_tf32: bool = True
    matmul_tf32: bool = False
    efficiency: float = 1.0  # fraction of peak reached; 1.0 = pure roofline


@dataclass
class OpTime:
    node: int
    compute_s: float
    memory_s: float
    device_s: float  # roofline + launch
    total_s: float  # max(device, host)
    bound: str  # "compute", "memory" or "overhead"


@dataclass
class RooflineResult:
    latency_s: float
    busy_s: float  # time the device does useful roofline work
    ops: list[OpTime] = field(default_factory=list)
    #: substituted compute ceilings, one line per dtype (bf16 on a V100 costed at the fp32 peak...)
    assumptions: list[str] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        return self.latency_s * 1e3


def _tensor_dtype(node: Node, dtype: str, cfg: RooflineConfig) -> str | None:
    """The tensor-core dtype ``node`` runs at (``None``: not a tensor-core op)."""
    if node.kind not in TENSOR_KINDS:
        return None
    if dtype == "fp32":
        use_tf32 = cfg.conv_tf32 if node.kind in ("conv", "conv_transpose") else cfg.matmul_tf32
        return "tf32" if use_tf32 else "fp32"
    return dtype


def _peak(node: Node, dtype: str, device, cfg: RooflineConfig) -> float:
    dt = _tensor_dtype(node, dtype, cfg)
    if dt is not None:
        return device.peak_flops(dt, tensor=True)
    return device.peak_flops(dtype, tensor=False)


def _op_dtype(node: Node, default: str) -> str:
    for d in node.out_dtypes + node.in_dtypes:
        if d in ("fp32", "fp16", "bf16", "fp64", "int8", "fp8"):
            return d
    return default


def roofline(graph: CostGraph, device, *, mode: str | None = None, cfg: RooflineConfig | None = None) -> RooflineResult:
    """Latency of one inference call or one training step."""
    cfg = cfg or RooflineConfig()
    mode = mode or graph.meta.get("mode", "inference")
    factor = 1.0 + (BACKWARD_FACTOR if mode == "training" else 0.0)
    launch_s = device.kernel_launch_overhead_us * 1e-6
    host_s = cfg.host_overhead_us * 1e-6
    bw = device.bandwidth_bytes_s * cfg.efficiency
    default_dtype = graph.meta.get("dtype", "fp32")
    ops: list[OpTime] = []
    notes: dict[str, None] = {}  # ordered set
    total = 0.0
    busy = 0.0
    peaks: dict[tuple[str, str | None], float] = {}  # (op dtype, tensor dtype) -> FLOP/s, one lookup each
    for n in graph.nodes:
        if n.is_view:
            continue
        dtype = _op_dtype(n, default_dtype)
        tdt = _tensor_dtype(n, dtype, cfg)
        if tdt is not None and n.flops > 0:
            note = device.peak_assumption(tdt)
            if note:
                notes[note] = None
        peak = peaks.get((dtype, tdt))
        if peak is None:
            peak = peaks[(dtype, tdt)] = _peak(n, dtype, device, cfg) * cfg.efficiency
        c = n.flops / peak if peak > 0 else 0.0
        m = (n.bytes_read + n.bytes_written) / bw if bw > 0 else 0.0
        work = max(c, m)
        # a training step runs the op forward, then ~2 backward kernels
        dev = factor * (work + launch_s)
        host = factor * host_s
        t = max(dev, host)
        bound = "overhead" if host >= dev else ("compute" if c >= m else "memory")
        ops.append(OpTime(n.id, c, m, dev, t, bound))
        total += t
        busy += factor * work
    if mode == "training":
        # optimizer step: memory-bound sweep over the parameters
        step = ADAM_BYTES_PER_PARAM_BYTE * graph.weights_bytes / bw if bw > 0 else 0.0
        total += step + host_s * 4
        busy += step
    return RooflineResult(total, busy, ops, list(notes))


def average_power_w(device, latency_s: float, busy_s: float) -> float:
    """Board power: idle floor plus the busy share of the dynamic range."""
    if latency_s <= 0:
        return float(device.idle_power_w)
    util = min(1.0, busy_s / latency_s)
    return float(device.idle_power_w + (device.tdp_w - device.idle_power_w) * util)
