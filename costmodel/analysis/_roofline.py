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

import numpy as np

from ..ir import OP_KINDS, TENSOR_KINDS, CostGraph, Node

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


_BOUNDS = ("compute", "memory", "overhead")


@dataclass
class RooflineResult:
    """Totals of a roofline pass, and each operator's times as arrays over the graph's kernels (the
    nodes that are not views, in graph order); :attr:`ops` gives them as :class:`OpTime` records."""

    latency_s: float
    busy_s: float  # time the device does useful roofline work
    #: substituted compute ceilings, one line per dtype (bf16 on a V100 costed at the fp32 peak...)
    assumptions: list[str] = field(default_factory=list)
    node: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    compute_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    memory_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    device_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    total_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bound_code: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # index into _BOUNDS

    @property
    def latency_ms(self) -> float:
        return self.latency_s * 1e3

    @property
    def ops(self) -> list[OpTime]:
        return [OpTime(int(n), float(c), float(m), float(d), float(t), _BOUNDS[b])
                for n, c, m, d, t, b in zip(self.node, self.compute_s, self.memory_s, self.device_s, self.total_s,
                                            self.bound_code)]

    def bound_counts(self) -> dict[str, int]:
        """Kernels bound by compute, by memory and by the host's dispatch ("overhead")."""
        counts = np.bincount(self.bound_code, minlength=len(_BOUNDS))
        return {b: int(c) for b, c in zip(_BOUNDS, counts)}


def _tensor_dtype(node: Node, dtype: str, cfg: RooflineConfig) -> str | None:
    """The tensor-core dtype ``node`` runs at (``None``: not a tensor-core op)."""
    return _tensor_dtype_of(node.kind, dtype, cfg)


def _tensor_dtype_of(kind: str, dtype: str, cfg: RooflineConfig) -> str | None:
    if kind not in TENSOR_KINDS:
        return None
    if dtype == "fp32":
        use_tf32 = cfg.conv_tf32 if kind in ("conv", "conv_transpose") else cfg.matmul_tf32
        return "tf32" if use_tf32 else "fp32"
    return dtype


def _peak(node: Node, dtype: str, device, cfg: RooflineConfig) -> float:
    dt = _tensor_dtype(node, dtype, cfg)
    if dt is not None:
        return device.peak_flops(dt, tensor=True)
    return device.peak_flops(dtype, tensor=False)


_FLOAT_DTYPES = frozenset(("fp32", "fp16", "bf16", "fp64", "int8", "fp8"))


def _op_dtype(node: Node, default: str) -> str:
    for d in node.out_dtypes + node.in_dtypes:
        if d in _FLOAT_DTYPES:
            return d
    return default


def roofline(graph: CostGraph, device, *, mode: str | None = None, cfg: RooflineConfig | None = None) -> RooflineResult:
    """Latency of one inference call or one training step (over arrays: one pass over the nodes reads
    what each costs, the times are computed for all of them at once)."""
    return roofline_many([graph], device, modes=[mode], cfg=cfg)[0]


def _analytic_dtypes(cols, ops: np.ndarray, defaults: list[str]) -> list[str]:
    """The dtype each operator is costed at: its first output's float dtype, else the first float dtype
    among its operands, else the graph's dtype (``defaults[j]`` for operator ``j``)."""
    d0 = cols.dtype0
    out = [d0[i] for i in ops.tolist()]
    for j, d in enumerate(out):
        if d not in _FLOAT_DTYPES:
            out[j] = _op_dtype(cols.nodes[int(ops[j])], defaults[j])
    return out


def roofline_many(graphs, device, *, modes, cfg: RooflineConfig | None = None, columns=None) -> list[RooflineResult]:
    """:func:`roofline` of several graphs on one device (``modes[g]``: ``None`` reads the graph's own);
    ``columns``: their :func:`~costmodel.ir.node_columns`, when the caller has them already."""
    from ..ir import node_columns

    cfg = cfg or RooflineConfig()
    cols = columns if columns is not None else node_columns(graphs)
    launch_s = device.kernel_launch_overhead_us * 1e-6
    host_s = cfg.host_overhead_us * 1e-6
    bw = device.bandwidth_bytes_s * cfg.efficiency
    ops = np.flatnonzero(~cols.view)
    # operators per graph: positions lo[g]:lo[g + 1] of ``ops``
    lo = np.searchsorted(ops, cols.offsets)
    counts = np.diff(lo)
    defaults = [g.meta.get("dtype", "fp32") for g in graphs]
    dtypes = _analytic_dtypes(cols, ops, np.repeat(np.asarray(defaults, object), counts).tolist())
    kind = cols.kind[ops]
    # (kind, op dtype) -> FLOP/s and its tensor-core dtype: one lookup per pair the graphs use
    dt_names = list(dict.fromkeys(dtypes))
    dt_code = np.fromiter(map({d: i for i, d in enumerate(dt_names)}.__getitem__, dtypes), np.int64, len(ops))
    keys, code = np.unique(kind * len(dt_names) + dt_code, return_inverse=True)
    code = code.reshape(-1)
    pairs = [(k // len(dt_names), dt_names[k % len(dt_names)]) for k in keys.tolist()]
    tdts = [_tensor_dtype_of(OP_KINDS[k], d, cfg) for k, d in pairs]
    peaks = np.array([(device.peak_flops(t, tensor=True) if t is not None else device.peak_flops(d, tensor=False))
                      * cfg.efficiency for t, (_, d) in zip(tdts, pairs)])
    peak = peaks[code] if len(ops) else np.zeros(0)
    flops = cols.flops[ops]
    c = np.divide(flops, peak, out=np.zeros(len(ops)), where=peak > 0)
    m = cols.nbytes[ops] / bw if bw > 0 else np.zeros(len(ops))
    work = np.maximum(c, m)
    # per graph: the (kind, dtype) pairs its operators with FLOPs use, in order of first use
    used = flops > 0
    graph_of = np.repeat(np.arange(len(graphs)), counts)[used]
    n_pairs = max(1, len(pairs))
    first_use, at = np.unique(graph_of * n_pairs + code[used], return_index=True)
    used_by: list[list[int]] = [[] for _ in graphs]
    for key in first_use[np.argsort(at)].tolist():  # positions grow with the graph: grouped by graph
        used_by[key // n_pairs].append(key % n_pairs)
    out = []
    for g, graph in enumerate(graphs):
        mode = modes[g] or graph.meta.get("mode", "inference")
        factor = 1.0 + (BACKWARD_FACTOR if mode == "training" else 0.0)
        a, b = int(lo[g]), int(lo[g + 1])
        w = work[a:b]
        # a training step runs the op forward, then ~2 backward kernels
        dev = factor * (w + launch_s)
        host = factor * host_s
        t = np.maximum(dev, host)
        bound = np.where(host >= dev, 2, np.where(c[a:b] >= m[a:b], 0, 1))
        total = float(t.sum())
        busy = float(factor * w.sum())
        if mode == "training":
            # optimizer step: memory-bound sweep over the parameters
            step = ADAM_BYTES_PER_PARAM_BYTE * graph.weights_bytes / bw if bw > 0 else 0.0
            total += step + host_s * 4
            busy += step
        # tensor-core dtypes of the operators with FLOPs, in order of first use: the substituted ceilings
        costed = dict.fromkeys(tdts[k] for k in used_by[g] if tdts[k] is not None)
        notes = list(dict.fromkeys(x for x in map(device.peak_assumption, costed) if x))
        node = ops[a:b] - cols.offsets[g]
        out.append(RooflineResult(total, busy, notes, node, c[a:b], m[a:b], dev, t, bound))
    return out


def average_power_w(device, latency_s: float, busy_s: float) -> float:
    """Board power: idle floor plus the busy share of the dynamic range."""
    if latency_s <= 0:
        return float(device.idle_power_w)
    util = min(1.0, busy_s / latency_s)
    return float(device.idle_power_w + (device.tdp_w - device.idle_power_w) * util)
