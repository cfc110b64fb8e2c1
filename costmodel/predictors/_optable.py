"""The operator table of the timeline predictor: one row per kernel a graph launches.

For a CostGraph on a device, :func:`op_table` lists the operators in launch
order (forward; for training the backward kernels and the optimizer update),
each with its roofline bound, kernel floor, host class, energy class and the
features the efficiency network reads (:data:`FEATURE_NAMES`).  The learned
parts and the composition on the timeline are in :mod:`._timeline`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from ..measure.host import OP_CLASSES, op_class
from ..ir import CATEGORIES, OP_KINDS, TENSOR_KINDS, category, node_columns
from . import _convreading, _launches, _skinny
from ._backward import _KIND_ID, backward_plans, buffer_only_mask, frozen_mask
from ._skinny import operator_streams

PHASES = ("forward", "backward", "optimizer")
#: host lane classes: the forward dispatch classes of a host profile, then one for autograd's
#: backward kernels, one per optimizer parameter tensor, one per call (loss, zero_grad, Python) and one
#: per kernel an operator launches beyond its first (:mod:`._launches`)
HOST_CLASSES = ("default", *OP_CLASSES, "backward", "optimizer_tensor", "module", "call", "launch")
_HOST_INDEX = {c: i for i, c in enumerate(HOST_CLASSES)}
#: energy classes: tensor-core work, everything else that moves memory
ENERGY_CLASSES = ("tensor", "vector")
DTYPES = ("fp32", "fp16", "bf16")
#: bytes Adam reads and writes per parameter byte (param, grad, 2 moments read; param, 2 moments written)
_OPT_BYTES = {"adam": 7.0, "adamw": 7.0, "sgd": 3.0, "sgd_momentum": 5.0}
_OPT_FLOPS = {"adam": 12.0, "adamw": 14.0, "sgd": 2.0, "sgd_momentum": 4.0}
#: compact per-operator features: few enough that 342 whole-model labels constrain them, coarse
#: enough (categories, not kinds) that an op kind absent from training inherits its category's efficiency
FEATURE_NAMES = (
    *(f"cat_{c}" for c in CATEGORIES), "is_conv", "is_depthwise", "is_attention",
    "dtype_fp32", "dtype_fp16", "dtype_bf16", "tensor_core", "phase_forward", "phase_backward", "phase_optimizer",
    "log_flops", "log_bytes", "log_intensity", "log_bound_us", "compute_over_memory", "wave_efficiency",
    "log_kernel_area", "stride", "log_out_numel",
    "hw_log_peak_tflops", "hw_log_bandwidth_gbps", "hw_sm_count",
)

@dataclass
class OpTable:
    """The operator sequence of one workload on one device, as arrays."""

    x: np.ndarray  # (n, F) features
    bound_s: np.ndarray  # (n,) roofline bound
    kernel: np.ndarray  # (n,) 1.0 where a kernel is launched
    host_class: np.ndarray  # (n,) index into HOST_CLASSES
    host_count: np.ndarray  # (n,) how many host units the op costs (parameter tensors for the optimizer)
    energy_class: np.ndarray  # (n,) index into ENERGY_CLASSES
    node: np.ndarray  # (n,) CostGraph node id (-1: optimizer / call)
    phase: np.ndarray  # (n,) index into PHASES
    synchronous: bool = False
    #: one decoding step of a causal language model with its KV cache (the host pays its decode loop once)
    decode: bool = False
    #: (n,) the share of the device a row's bound keeps busy: its roofline over ``bound_s`` (below 1 where
    #: a norm's rows, not the device's rates, bound it; :data:`NORM_ROW_RATES`); what the energy model
    #: scales the row's utilisation by. ``None``: 1 everywhere
    occupancy: np.ndarray | None = None
    #: (n, F) the features of another reading of the rows for the efficiency network, where one applies:
    #: on a GPU without TF32, fp32 convolutions read as the CUDA-core matmuls they run as
    #: (:mod:`._convreading`); the host network always reads :attr:`x`. ``None``: no other reading
    device_x: np.ndarray | None = None
    #: (n,) a skinny matrix product's time by the stream line (:mod:`._skinny`), NaN elsewhere; or ``None``
    stream_us: np.ndarray | None = None

    def busy(self) -> np.ndarray:
        """:attr:`occupancy`, ones where it is ``None``."""
        return np.ones(len(self.bound_s)) if self.occupancy is None else self.occupancy


def _op_dtype(n, default: str) -> str:
    for d in n.out_dtypes + n.in_dtypes:
        if d in DTYPES:
            return d
    return default


def _wave_efficiency(n, sm_count: int) -> float:
    """Fraction of the last wave that is busy, for an output tiled 128x128 over ``sm_count`` SMs."""
    if not sm_count or not n.out_shapes or n.kind not in TENSOR_KINDS:
        return 1.0
    shp = n.out_shapes[0]
    if not shp:
        return 1.0
    numel = math.prod(shp)
    tiles = max(1, math.ceil(numel / (128 * 128)))
    waves = tiles / sm_count
    return waves / math.ceil(waves)


def _op_features(n, dtype: str, phase: int, tensor: bool, c: float, m: float, sm_count: int) -> list[float]:
    lg = lambda v: math.log10(1.0 + max(0.0, v))  # noqa: E731
    cat = [0.0] * len(CATEGORIES)
    kind = n.kind if n is not None else "other"
    if n is not None:
        cat[CATEGORIES.index(n.category)] = 1.0
    a = n.attrs if n is not None else {}
    groups = a.get("groups", 1) or 1
    k = a.get("kernel") or [1]
    st = a.get("stride") or [1]
    out = math.prod(n.out_shapes[0]) if (n is not None and n.out_shapes and n.out_shapes[0]) else 0
    depthwise = kind == "conv" and groups > 1 and n.out_shapes and len(n.out_shapes[0]) > 1 and groups == n.out_shapes[0][1]
    flops = n.flops if n is not None else 0.0
    nbytes = (n.bytes_read + n.bytes_written) if n is not None else 0.0
    return [*cat, float(kind in ("conv", "conv_transpose")), float(bool(depthwise)), float(kind == "attention"),
            *(float(dtype == d) for d in DTYPES), float(tensor), *(float(phase == p) for p in range(3)),
            lg(flops) / 10, lg(nbytes) / 10, lg(flops / nbytes if nbytes else 0.0), lg(max(c, m) * 1e6),
            max(-3.0, min(3.0, math.log10((c + 1e-12) / (m + 1e-12)))),
            _wave_efficiency(n, sm_count) if n is not None else 1.0,
            lg(float(math.prod(k[-2:]))), float(max(st)), lg(out) / 10]


def trainable_tensors(graph, operands: int) -> int:
    """The parameter tensors one optimizer step updates (each costs the host a share of the step's
    bookkeeping: its gradient accumulation, its ``zero_grad``, its place in the optimizer's tensor
    lists): ``meta["trainable_tensors"]`` as the frontend counted it (trainable parameters some
    operator reads, directly or through a view, each once). A graph built without the count (an older
    one) falls back to ``operands``, the parameter operands of its operators as the caller counted
    them, which include buffers (a batch norm's running statistics) and miss weights read through a
    view."""
    n = graph.meta.get("trainable_tensors")
    if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
        return n
    return int(operands)


def optimizer_operands(graph) -> tuple[float, float]:
    """The elements and bytes an optimizer step streams: the graph's weights (buffers included, as the
    packaged fits saw them) less its frozen parameters, which the optimizer never touches."""
    numel = float(graph.params - int(graph.meta.get("frozen_params") or 0))
    nbytes = float(graph.meta.get("weights_bytes") or graph.params * 4) - float(graph.meta.get("frozen_bytes") or 0)
    return max(numel, 0.0), max(nbytes, 0.0)


def module_calls(graph, scopes: set | None = None) -> int:
    """``nn.Module.__call__`` invocations behind one forward of the graph: as the PyTorch frontend
    counted them while capturing (``meta["module_calls"]``), else (ONNX files, Relax modules, graphs
    built before the count was recorded) from the nodes' module scopes in execution order: a call
    starts wherever a node's scope or one of its ancestors is entered that the node before it was not
    in, so a module used several times (one ReLU applied three times in a ResNet block) counts each
    time, as it runs. What no scope shows is missed: the modules that run no operator (dropout and
    stochastic depth at inference). ``scopes``: the set of the nodes' scopes, when the caller has read
    it (a graph without any is answered from it at once)."""
    n = graph.meta.get("module_calls")
    if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
        return n
    if scopes is not None and not (set(scopes) - {"", None}):
        return 0
    calls, before, chains = 0, frozenset(), {}
    for node in graph.nodes:
        scope = node.scope or ""
        chain = chains.get(scope)
        if chain is None:  # the scope and its ancestors ("a.b.c", "a.b", "a"), once per distinct scope
            parts = scope.split(".") if scope else []
            chain = chains[scope] = frozenset(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        calls += len(chain - before)
        before = chain
    return calls


# Per op kind, what the array version of op_table reads from tables instead of per operator:
# the category one-hot followed by is_conv, is_depthwise (set per operator) and is_attention;
# whether the kind runs on tensor cores; whether fp32 runs at TF32; the forward host class.
_N_CAT = len(CATEGORIES)
_KIND_HEAD = np.zeros((len(OP_KINDS), _N_CAT + 3))
for _k, _i in _KIND_ID.items():
    _KIND_HEAD[_i, CATEGORIES.index(category(_k))] = 1.0
    _KIND_HEAD[_i, _N_CAT] = float(_k in ("conv", "conv_transpose"))
    _KIND_HEAD[_i, _N_CAT + 2] = float(_k == "attention")
_KIND_TENSOR = np.array([k in TENSOR_KINDS for k in OP_KINDS])
_KIND_TF32 = np.array([k in ("conv", "conv_transpose") for k in OP_KINDS])
_KIND_HOST = np.array([_HOST_INDEX[op_class(k)] for k in OP_KINDS], np.int64)
del _k, _i
#: dtype index (``len(DTYPES)``: a graph dtype outside DTYPES) -> the dtype one-hot
_DTYPE_ID = {d: i for i, d in enumerate(DTYPES)}
_DTYPE_ONEHOT = np.vstack([np.eye(len(DTYPES)), np.zeros((1, len(DTYPES)))])
_PHASE_ONEHOT = np.eye(len(PHASES))
#: the dtypes op_table asks peak_flops for, in the order of the peak codes
_PEAK_DTYPES = ("fp32", "fp16", "bf16", "tf32")
#: the share of the CUDA cores' FP32 rate that a direct depthwise convolution reaches, per dtype
#: (fp32, fp16, bf16, tf32): the fastest depthwise kernels profiled on an H200 in the packaged
#: architectures (3 x 3 and 5 x 5, strides 1 and 2, batch 1 and 32) ran at 3.12 TFLOP/s in fp32 and 7.06
#: in fp16, of 67. Each multiply-add waits on a load from shared memory, and half-precision kernels
#: pack two lanes per instruction and load half the bytes. ``None``: the CUDA cores' full rate.
DEPTHWISE_SHARE: tuple[float, ...] | None = (3.12 / 67.0, 7.06 / 67.0, 7.06 / 67.0, 3.12 / 67.0)
#: Normalizations that reduce one row per thread block, so that a few long rows cannot use the GPU's
#: bandwidth. PyTorch's group norm reduces each (sample, group) row in one block: ``GroupNorm(1, C)`` at
#: batch 1 is one block on one SM. Its fastest rows in the packaged H200 profiles (PoolFormer, fp32,
#: batch 1) ran at 2.27 G elements/s each, where the bytes alone would take 1/280th of the time. A block
#: of 512 threads leaves room for 4 per SM (2,048 threads). Two more kinds are bound by their rows and
#: measured, but not applied (``None``): under an efficiency fitted through whole-model rows alone
#: neither made unseen families better (docs/results.md). A training step's batch norm reduces each
#: channel the same way (its fastest channels: 2.55 G elements/s, MnasNet's and MobileNet's stems); a
#: layer norm over short rows runs at up to 6.76 M rows/s per SM (fp16, 96 channels). A GPU's bound for
#: these kinds is the larger of its roofline and these rates (:func:`norm_row_bound_s`); the whole dict
#: ``None``: the roofline alone.
NORM_ROW_RATES: dict[str, float | None] | None = {"group_norm_elems_s": 2.27e9, "batch_norm_elems_s": None,
                                                  "blocks_per_sm": 4.0, "layer_norm_rows_s_per_sm": None}
#: Kernels PyTorch runs element by element, in elements of their output per second per SM: the fastest
#: forward kernel of each kind in the packaged H200 profiles (12 kinds with at least 100 kernels of at
#: least 1e5 elements; the generic ``elementwise`` and ``activation`` kinds, whose kernels differ, are
#: left out), over 132 SMs. These kernels compute in fp32 whatever their dtype, and several do not
#: reach the bandwidth in half precision: a batch norm in eval ran at most 529 G elements/s in fp16 and
#: 491 in fp32, where fp16's bytes would allow 1,200; a layer norm 374 and 278, a copy 412 and 342.
MEASURED_ELEMENT_RATES: dict[str, float] = {
    "batch_norm": 4.00e9, "relu": 10.3e9, "add": 7.49e9, "copy": 3.12e9, "mul": 9.06e9, "gelu": 6.05e9,
    "layer_norm": 2.84e9, "silu": 7.36e9, "group_norm": 0.444e9, "softmax": 3.66e9, "pad": 9.01e9,
    "clamp": 8.99e9}
#: The element rates a GPU's bound applies: the larger of its roofline and ``elements / (rate x SMs)``
#: (:func:`element_bound_s`). ``None`` (the default): the roofline alone. :data:`MEASURED_ELEMENT_RATES`
#: makes the kernels right (per kernel, fp16 batch norms from 0.55 to 0.66 of their time) but, under an
#: efficiency fitted through whole-model rows alone, the later architectures worse with both seeds
#: (docs/results.md, "Kernels run element by element").
ELEMENT_RATES: dict[str, float] | None = None
_C = _N_CAT + 3  # first column after the kind head
(_COL_DTYPE, _COL_TENSOR, _COL_PHASE, _COL_FLOPS, _COL_BYTES, _COL_INTENSITY, _COL_BOUND, _COL_RATIO, _COL_WAVE,
 _COL_KERNEL, _COL_STRIDE, _COL_OUT, _COL_HW) = (_C, _C + 3, _C + 4, _C + 7, _C + 8, _C + 9, _C + 10, _C + 11,
                                                 _C + 12, _C + 13, _C + 14, _C + 15, _C + 16)


def cuda_core_conv_as_gemm(x: np.ndarray, rows: np.ndarray, device) -> np.ndarray | None:
    """A copy of the features ``x`` whose rows ``rows`` (a mask of fp32 tensor-core convolutions) have the
    kind columns of an fp32 matmul, where ``device`` is a GPU without TF32 and there are such rows; else
    ``None``. See :mod:`._convreading`."""
    if not _convreading.CUDA_CORE_CONV_AS_GEMM or _is_cpu(device) or device.peak_tflops.get("tf32") is not None or not rows.any():
        return None
    x = x.copy()
    x[rows, :_C] = _KIND_HEAD[_KIND_ID["matmul"]]
    x[rows, _COL_KERNEL] = math.log10(2.0)  # a matmul's kernel area, 1
    x[rows, _COL_STRIDE] = 1.0
    return x


def _log10_1p(*arrays: np.ndarray) -> list[np.ndarray]:
    """``log10(1 + max(0, v))`` of every element, one call for several arrays."""
    sizes = [len(a) for a in arrays]
    flat = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    out = np.log10(1.0 + np.where(flat > 0.0, flat, 0.0))
    return np.split(out, np.cumsum(sizes)[:-1]) if len(arrays) > 1 else [out]


def _dtype_id(n, default_id: int) -> int:
    """The index in DTYPES of :func:`_op_dtype` (``default_id`` where no operand has one of DTYPES)."""
    for d in n.out_dtypes:
        if d in _DTYPE_ID:
            return _DTYPE_ID[d]
    for d in n.in_dtypes:
        if d in _DTYPE_ID:
            return _DTYPE_ID[d]
    return default_id


#: the kinds :func:`norm_rows` counts rows of, and the :data:`NORM_ROW_RATES` entry that applies a bound to each
NORM_KINDS = ("group_norm", "batch_norm", "layer_norm")
_NORM_RATE_KEYS = {"group_norm": "group_norm_elems_s", "batch_norm": "batch_norm_elems_s",
                   "layer_norm": "layer_norm_rows_s_per_sm"}


def _bounded_norm_ids() -> list[int]:
    """Kind ids of the norms :data:`NORM_ROW_RATES` bounds (a rate of ``None``: no bound, no rows to count)."""
    rates = NORM_ROW_RATES or {}
    return [_KIND_ID[k] for k in NORM_KINDS if rates.get(_NORM_RATE_KEYS[k])]


def kernel_ceilings() -> dict:
    """The bounds below the datasheet roofline that :func:`op_tables` applies (:data:`DEPTHWISE_SHARE`,
    :data:`NORM_ROW_RATES`, :data:`ELEMENT_RATES` where set), the kernel counts of :mod:`._launches` and
    the line skinny matrix products take (:mod:`._skinny`),
    as a saved timeline records them: an efficiency fitted over one set of bounds is wrong over another."""
    out = {"depthwise_share": None if DEPTHWISE_SHARE is None else list(DEPTHWISE_SHARE),
           "norm_row_rates": None if NORM_ROW_RATES is None else dict(NORM_ROW_RATES),
           "native_batch_norm_kernels": _launches.NATIVE_BATCH_NORM_KERNELS,
           "skinny_line": {"start_us": _skinny.STREAM_START_US, "share": _skinny.STREAM_SHARE,
                           "max_rows": dict(_skinny.MAX_ROWS)}}
    if _launches.CONV_KERNELS is not None:
        out["conv_kernels"] = [[*k, v] for k, v in sorted(_launches.CONV_KERNELS.items())]
    if ELEMENT_RATES is not None:  # recorded only where applied: artifacts fitted before it stay valid without
        out["element_rates"] = dict(ELEMENT_RATES)
    return out


def ceilings_mismatch(saved) -> str | None:
    """Why a timeline saved with ``saved`` (its ``kernel_ceilings``) cannot be used with the ceilings this
    library applies, or ``None``. Its efficiency was fitted over those bounds; an artifact saved before
    they were recorded (``None``) is not checked."""
    here = json.loads(json.dumps(kernel_ceilings()))
    if saved is None or saved == here:
        return None
    return (f"it was fitted over kernel ceilings {saved}, this library applies {here}; "
            "retrain it (costmodel train --predictor timeline)")


def norm_rows(n) -> int:
    """The rows a norm node reduces, one block or warp each: (sample, group) pairs of a group norm
    (``groups`` attribute; none: 0), the channels of a batch norm in training (in eval it reduces
    nothing: 0), the elements outside ``normalized_shape`` of a layer norm (the weight's shape where the
    attribute is missing). 0 for other kinds or unknown shapes."""
    if n.kind not in NORM_KINDS or not n.out_shapes or not n.out_shapes[0]:
        return 0
    out = n.out_shapes[0]
    if n.kind == "batch_norm":
        return int(out[1]) if n.attrs.get("training") and len(out) > 1 else 0
    if n.kind == "group_norm":
        g = n.attrs.get("groups")
        return int(out[0]) * int(g) if isinstance(g, int) and g > 0 else 0
    ns = n.attrs.get("normalized_shape")
    if ns is None:
        ns = n.in_shapes[1] if len(n.in_shapes) > 1 and n.in_shapes[1] else out[-1:]
    inner = math.prod(ns)
    total = math.prod(out)
    return int(total // inner) if inner > 0 and len(ns) <= len(out) else 0


def norm_row_bound_s(kind: str, rows: float, numel: float, sm_count: int) -> float:
    """Seconds a group, batch (training) or layer norm's forward needs at :data:`NORM_ROW_RATES` with ``rows`` rows of
    ``numel`` elements in all on ``sm_count`` SMs (0 for other kinds, no rows or no SM count)."""
    if NORM_ROW_RATES is None or rows <= 0 or sm_count <= 0:
        return 0.0
    if kind in ("group_norm", "batch_norm"):
        rate = NORM_ROW_RATES.get(f"{kind}_elems_s")
        busy = min(rows, (NORM_ROW_RATES.get("blocks_per_sm") or 1.0) * sm_count)
        return numel / (busy * rate) if rate else 0.0
    rate = NORM_ROW_RATES.get(_NORM_RATE_KEYS["layer_norm"]) if kind == "layer_norm" else None
    return rows / (sm_count * rate) if rate else 0.0


def element_bound_s(kind: str, numel: float, sm_count: int) -> float:
    """Seconds a forward kernel of ``kind`` with ``numel`` output elements needs at :data:`ELEMENT_RATES`
    on ``sm_count`` SMs (0 for kinds without a rate, or without an SM count)."""
    rate = (ELEMENT_RATES or {}).get(kind)
    return numel / (rate * sm_count) if rate and sm_count > 0 and numel > 0 else 0.0


def _element_rate_by_kind() -> np.ndarray:
    """:data:`ELEMENT_RATES` as an array over OP_KINDS (0: no rate)."""
    rates = ELEMENT_RATES or {}
    return np.array([float(rates.get(k) or 0.0) for k in OP_KINDS])


def _node_columns(cols, ops: np.ndarray, default_ids: list[int]):
    """What op_table reads from each operator (the positions ``ops`` of the node columns ``cols``;
    ``default_ids[j]``: the dtype id of operator ``j``'s graph), as lists and arrays."""
    d0, nodes = cols.dtype0, cols.nodes
    # the first output dtype decides in almost every graph; the full search only where it does not
    dtype = np.fromiter(map(_DTYPE_ID.get, [d0[i] for i in ops.tolist()], [-1] * len(ops)), np.int64, len(ops))
    for j in np.flatnonzero(dtype < 0).tolist():
        dtype[j] = _dtype_id(nodes[int(ops[j])], default_ids[j])
    kind = cols.kind[ops]
    groups = cols.groups[ops]
    # a depthwise convolution: one group per output channel
    depthwise = ((kind == _KIND_ID["conv"]) & (groups > 1) & cols.shaped[ops]
                 & (cols.channels[ops] == groups)).astype(np.float64)
    # the rows a norm reduces (one node at a time, only the norms a rate bounds)
    rows = np.zeros(len(ops))
    bounded = _bounded_norm_ids()
    if bounded:
        for j in np.flatnonzero(np.isin(kind, bounded)).tolist():
            rows[j] = norm_rows(nodes[int(ops[j])])
    return (kind, cols.flops[ops], cols.nbytes[ops], dtype, cols.numel[ops], cols.shaped[ops],
            cols.kernel_area[ops], cols.stride[ops], depthwise, rows)


def _none_row(device, phase: int, flops: float, nbytes: float, dtype: str, bw: float, sm: int, hw: list[float]):
    """Features, bound and kernel flag of a row with no operator (the optimizer update, module calls)."""
    peak = device.peak_flops(dtype if dtype in ("tf32", *DTYPES) else "fp32", tensor=False)
    c = flops / peak if peak > 0 else 0.0
    m = nbytes / bw if bw > 0 else 0.0
    return _op_features(None, dtype, phase, False, c, m, sm) + hw, max(c, m), 1.0 if (flops > 0 or nbytes > 0) else 0.0


def _operator_features(cols, hw: list[float], sm: int):
    """The feature columns of each operator that do not depend on the phase, and its kind, FLOPs, bytes,
    dtype id and tensor-core eligibility (arrays over the operators whose :func:`_node_columns` are
    ``cols``; the operators of several graphs at once), and the row-parallel bound of each norm (s)."""
    kind, flops, nbytes, dtype, numel, shaped, karea, stride, depthwise, rows = cols
    n_ops = len(kind)
    kind = np.array(kind, np.int64)
    flops = np.array(flops, np.float64)
    nbytes = np.array(nbytes, np.float64)
    dtype = np.array(dtype, np.int64)
    numel = np.array(numel, np.float64)
    tensor_kind = _KIND_TENSOR[kind]

    # per operator: the columns that do not depend on the phase
    xn = np.empty((n_ops, len(FEATURE_NAMES)))
    xn[:, :_C] = _KIND_HEAD[kind]
    xn[:, _N_CAT + 1] = depthwise
    xn[:, _COL_DTYPE:_COL_DTYPE + len(DTYPES)] = _DTYPE_ONEHOT[dtype]
    wave = np.ones(n_ops)
    if sm:
        w = tensor_kind & np.array(shaped, bool)
        if w.any():
            tiles = np.maximum(1.0, np.ceil(numel[w] / (128 * 128)))
            waves = tiles / sm
            wave[w] = waves / np.ceil(waves)
    xn[:, _COL_WAVE] = wave
    xn[:, _COL_STRIDE] = stride
    # FLOPs, bytes and intensity features are the operator's own, also on its backward rows
    intensity = np.divide(flops, nbytes, out=np.zeros(n_ops), where=nbytes != 0)
    lg_f, lg_b, lg_i, lg_k, lg_o = _log10_1p(flops, nbytes, intensity, np.array(karea), numel)
    xn[:, _COL_FLOPS] = lg_f / 10
    xn[:, _COL_BYTES] = lg_b / 10
    xn[:, _COL_INTENSITY] = lg_i
    xn[:, _COL_KERNEL] = lg_k
    xn[:, _COL_OUT] = lg_o / 10
    xn[:, _COL_HW:] = hw
    # the forward's row-parallel bound of a norm on a GPU (:data:`NORM_ROW_RATES`)
    row_s = np.zeros(n_ops)
    for j in np.flatnonzero(rows > 0).tolist():
        row_s[j] = norm_row_bound_s(OP_KINDS[kind[j]], rows[j], numel[j], sm)
    if ELEMENT_RATES is not None and sm:  # and the element rate of a kernel run element by element
        rate = _element_rate_by_kind()[kind]
        elem_s = np.divide(numel, rate * sm, out=np.zeros(n_ops), where=rate > 0)
        row_s = np.where(elem_s > row_s, elem_s, row_s)
    return xn, kind, flops, nbytes, dtype, tensor_kind, row_s


def op_table(graph, device, *, mode: str, optimizer: str = "adam") -> OpTable:
    """The operators ``graph`` runs on ``device`` for one call (``mode="training"``: one step).

    Rows: every operator that is not a view, in graph order (forward); for training then the backward
    kernels in reverse order (:func:`backward_plans`: the autograd formulas, plus one sum per extra
    reader of a tensor) and one optimizer row; last one row for the Python-level module calls.
    Computed over arrays (:func:`op_tables`); the tests hold the same table built one operator at a time."""
    return op_tables([graph], device, modes=[mode], optimizer=optimizer)[0]


def op_tables(graphs, device, *, modes, optimizer: str = "adam", columns=None) -> list[OpTable]:
    """:func:`op_table` of several graphs on one device: one Python pass over each graph's operators,
    then one set of array operations over the rows of all of them."""
    if not graphs:
        return []
    hw = [math.log10(1 + device.peak_flops("fp16", tensor=True) / 1e12), math.log10(1 + device.memory_bandwidth_gbps),
          float(device.sm_count or 0) / 100.0]
    bw = device.bandwidth_bytes_s
    sm = device.sm_count or 0
    cols = columns if columns is not None else node_columns(graphs)
    positions = np.flatnonzero(~cols.view)
    counts = np.diff(np.searchsorted(positions, cols.offsets))
    default_ids = np.repeat([_DTYPE_ID.get(g.meta.get("dtype", "fp32"), len(DTYPES)) for g in graphs],
                            counts).tolist()
    # the parameter tensors a training step's optimizer updates, per graph (:func:`trainable_tensors`)
    if "training" in modes:
        if cols.param_count is None:
            raise ValueError("op_tables of a training step need node columns read with params=True")
        ends = np.cumsum(counts)
        p_cum = np.concatenate([[0], np.cumsum(cols.param_count[positions])])
        per = [trainable_tensors(g, int(r)) for g, r in zip(graphs, (p_cum[ends] - p_cum[ends - counts]).tolist())]
    else:
        per = [0] * len(graphs)
    xn, kind, flops, nbytes, dtype, tensor_kind, row_s = _operator_features(
        _node_columns(cols, positions, default_ids), hw, sm)
    n_all = len(kind)

    frozen = None
    if "training" in modes:
        frozen, buffers = frozen_mask(graphs, cols), buffer_only_mask(cols)
        frozen = buffers if frozen is None else frozen if buffers is None else frozen | buffers
    idx, back, acc, scale, out_b, out_n, n_rows = _row_plan(cols, positions, counts.tolist(), modes, n_all, frozen)
    x = xn[idx]
    if out_b is not None:
        f, b = np.where(acc, out_n, flops[idx]), scale * np.where(acc, out_b[idx], nbytes[idx])
    else:
        f, b = flops[idx], scale * nbytes[idx]
    kind_rows = kind[idx]
    stream = None if _is_cpu(device) else operator_streams(cols.nodes, positions, kind == _KIND_ID["matmul"],
                                                           idx, back, bw)
    if acc.any():  # a gradient sum is an elementwise add on the tensor's shape
        ka = _KIND_ID["add"]
        rows = np.flatnonzero(acc)
        kind_rows[rows] = ka
        x[rows, :_C] = _KIND_HEAD[ka]
        lg_f, lg_b = _log10_1p(f[acc], b[acc])
        x[rows, _COL_FLOPS] = lg_f / 10
        x[rows, _COL_BYTES] = lg_b / 10
        x[rows, _COL_INTENSITY] = _log10_1p(f[acc] / np.maximum(b[acc], 1.0))[0]
        x[rows, _COL_WAVE] = 1.0
        x[rows, _COL_KERNEL] = math.log10(2.0)
        x[rows, _COL_STRIDE] = 1.0
    tk = _KIND_TENSOR[kind_rows]
    # a depthwise convolution runs on the CUDA cores (one channel per group gives a GEMM no depth)
    tensor = tk & (f > 0) & (x[:, _N_CAT + 1] == 0)
    dt = dtype[idx]
    # peak codes index _PEAK_DTYPES: fp32 tensor work runs at TF32 for convolutions, a dtype outside DTYPES at fp32
    code = np.where(dt == len(DTYPES), 0, dt)
    code[tensor & (dt == 0) & _KIND_TF32[kind_rows]] = 3
    code = 2 * code + tensor
    peaks = np.zeros(2 * len(_PEAK_DTYPES))
    for pk in set(code.tolist()):  # each (dtype, tensor cores?) pair the rows use, asked once
        peaks[pk] = device.peak_flops(_PEAK_DTYPES[pk // 2], tensor=bool(pk % 2))
    peak = peaks[code]
    if DEPTHWISE_SHARE is not None and not _is_cpu(device):  # a GPU's CUDA cores (a CPU's rate is its own)
        dw = x[:, _N_CAT + 1] != 0
        if dw.any():
            peak = np.where(dw, peak * np.asarray(DEPTHWISE_SHARE)[code // 2], peak)
    c = np.divide(f, peak, out=np.zeros(len(f)), where=peak > 0)
    m = b / bw if bw > 0 else np.zeros(len(b))
    busy = np.ones(len(b))
    if not _is_cpu(device) and row_s.any():  # a norm's rows (a backward row scales with its bytes)
        nb = nbytes[idx]
        r = np.where(kind_rows == kind[idx], row_s[idx], 0.0) * np.divide(b, nb, out=np.ones(len(b)), where=nb > 0)
        if acc.any() and ELEMENT_RATES and sm:  # a gradient sum: an add over the tensor's elements
            r[acc] = f[acc] / (ELEMENT_RATES.get("add", np.inf) * sm)
        roof = np.where(m > c, m, c)
        rows_bound = r > roof
        busy[rows_bound] = roof[rows_bound] / r[rows_bound]
        m = np.where(r > m, r, m)
    bound = np.where(m > c, m, c)
    ratio_arg = (c + 1e-12) / (m + 1e-12)
    ratio = np.log10(ratio_arg)
    lg_bound, = _log10_1p(bound * 1e6)
    x[:, _COL_TENSOR] = tensor
    phase = back.astype(np.int64)
    x[:, _COL_PHASE:_COL_PHASE + 3] = _PHASE_ONEHOT[phase]
    x[:, _COL_BOUND] = lg_bound
    ratio = np.where(ratio < 3.0, ratio, 3.0)
    x[:, _COL_RATIO] = np.where(ratio > -3.0, ratio, -3.0)
    x = x.astype(np.float32)
    xd = cuda_core_conv_as_gemm(x, tensor & (dt == 0) & _KIND_TF32[kind_rows], device)
    kernel = np.where((f > 0) | (b > 0), 1.0, 0.0)
    host = np.where(back, _HOST_INDEX["backward"], _KIND_HOST[kind[idx]])
    node = (positions - np.repeat(cols.offsets[:-1], counts))[idx]
    _launches.launched_rows(graphs, n_rows, node, host, _HOST_INDEX["launch"])
    energy = np.where(tensor, 0, 1)
    launches = _launches.extra_launches(cols, len(graphs), device)
    return _assemble(graphs, (per, launches), modes, cols, device, optimizer, (bw, sm, hw), n_rows,
                     (x, bound, kernel, host, energy, node, phase, busy, xd, stream))


def _assemble(graphs, counts, modes, cols, device, optimizer, hw_facts, n_rows, arrays) -> list[OpTable]:
    """Each graph's OpTable from the operator rows of all of them (``arrays``, stacked graph after
    graph; ``n_rows`` per graph) and the rows without an operator, which go after each graph's
    operator rows; each table is a slice of the chunk's arrays. ``counts``: per graph, the parameter
    tensors its optimizer updates and the kernels its operators launch beyond one each."""
    bw, sm, hw = hw_facts
    x, bound, kernel, host, energy, node, phase, busy, xd, stream = arrays
    cache: dict = {}
    extra = [_extra_rows(graph, n_tensors, device, mode, optimizer, bw, sm, hw, cols.scopes[g], cache, launches)
             for g, (graph, n_tensors, launches, mode) in enumerate(zip(graphs, *counts, modes))]
    n_extra = np.array([len(e) for e in extra], np.int64)
    n_rows = np.asarray(n_rows, np.int64)
    start = np.concatenate([[0], np.cumsum(n_rows + n_extra)])
    dest = np.arange(len(x)) + np.repeat(start[:-1] - np.concatenate([[0], np.cumsum(n_rows)[:-1]]), n_rows)
    flat = [r for e in extra for r in e]
    at = np.concatenate([np.arange(a, a + k) for a, k in zip((start[:-1] + n_rows).tolist(), n_extra.tolist())])
    total = int(start[-1])

    def full(rows, extra_values, dtype):
        out = np.empty((total, *rows.shape[1:]), dtype)
        out[dest] = rows
        out[at] = extra_values
        return out

    X = full(x, np.asarray([r[0] for r in flat], np.float32), np.float32)
    XD = None if xd is None else full(xd, np.asarray([r[0] for r in flat], np.float32), np.float32)
    B = full(bound, [r[1] for r in flat], np.float64)
    K = full(kernel, [r[2] for r in flat], np.float64)
    Hc = full(host, [r[3] for r in flat], np.int64)
    Cn = full(np.ones(len(x)), [r[4] for r in flat], np.float64)
    E = full(energy, 1, np.int64)
    N = full(node, -1, np.int64)
    P = full(phase, [r[5] for r in flat], np.int64)
    U = full(busy, 1.0, np.float64)
    S = None if stream is None else full(stream, np.nan, np.float64)
    sync = _is_cpu(device)
    out = []
    for g, graph in enumerate(graphs):
        sl = slice(int(start[g]), int(start[g + 1]))
        out.append(OpTable(X[sl], B[sl], K[sl], Hc[sl], Cn[sl], E[sl], N[sl], P[sl], synchronous=sync,
                           decode=graph.meta.get("phase") == "decode", occupancy=U[sl],
                           device_x=None if XD is None else XD[sl],
                           stream_us=None if S is None or not np.isfinite(S[sl]).any() else S[sl]))
    return out


def _row_plan(cols, positions: np.ndarray, counts: list[int], modes, n_all: int, frozen=None):
    """Which operator each row of :func:`op_tables` costs: each graph's forward rows, then (training) its
    backward rows in reverse order (:func:`backward_plans`). Returns the row -> operator index, the
    backward flag, the gradient-sum flag and the bytes scale per row, the output bytes per operator and
    the elements per row where gradient sums need them (else ``None``), and the number of rows of each
    graph."""
    if "training" not in modes:  # forward rows only: every operator once, in order
        return np.arange(n_all), np.zeros(n_all, bool), np.zeros(n_all, bool), np.ones(n_all), None, None, counts
    train = [g for g, m in enumerate(modes) if m == "training"]
    b_j, b_scale, b_what, b_count, b_elem = backward_plans(cols, train, positions, frozen)
    b_end = np.cumsum(b_count).tolist()
    idx_parts, back_parts, scale_parts, acc_parts, elem_parts, n_rows = [], [], [], [], [], []
    off, t = 0, 0
    for n_ops, mode in zip(counts, modes):
        idx_parts.append(np.arange(off, off + n_ops))
        back_parts.append(np.zeros(n_ops, bool))
        scale_parts.append(np.ones(n_ops))
        acc_parts.append(np.zeros(n_ops, bool))
        elem_parts.append(np.ones(n_ops))
        n_g = n_ops
        if mode == "training":
            a, b = (b_end[t - 1] if t else 0), b_end[t]
            t += 1
            idx_parts.append(b_j[a:b])
            back_parts.append(np.ones(b - a, bool))
            scale_parts.append(b_scale[a:b])
            acc_parts.append(b_what[a:b].astype(bool))
            elem_parts.append(b_elem[a:b])
            n_g += b - a
        n_rows.append(n_g)
        off += n_ops
    acc = np.concatenate(acc_parts)
    # a gradient sum reads the tensor's bytes and adds its elements (a slice's copy: its share of them)
    out_b, out_n = (cols.out_bytes[positions], cols.numel[positions]) if acc.any() else (None, None)
    idx = np.concatenate(idx_parts)
    if out_n is not None:
        out_n = out_n[idx] * np.concatenate(elem_parts)
    return idx, np.concatenate(back_parts), acc, np.concatenate(scale_parts), out_b, out_n, n_rows


def op_tables_by_device(graphs, devs, modes, *, optimizer: str = "adam") -> list[OpTable]:
    """:func:`op_table` of each (graph, device, mode), batched per device (the rows of a fit may come
    from several); in the order given."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(devs):
        groups.setdefault(d.name, []).append(i)
    out: list = [None] * len(graphs)
    for idx in groups.values():
        tables = op_tables([graphs[i] for i in idx], devs[idx[0]], modes=[modes[i] for i in idx],
                           optimizer=optimizer)
        for i, t in zip(idx, tables):
            out[i] = t
    return out


def _extra_rows(graph, n_tensors: int, device, mode, optimizer, bw, sm, hw, scopes, cache: dict,
                launches: int = 0) -> list[tuple]:
    """One graph's rows without an operator: the optimizer update (training; ``n_tensors``: the parameter
    tensors its operators read), then the module calls, then (``launches`` > 0) the kernels operators
    launch beyond their first (each a kernel floor on the device and a launch on the host, no work of
    its own); each as (features, bound, kernel count, host class, host count, phase). ``cache`` keeps the
    feature rows already computed in this call (the module rows of graphs of one dtype are alike)."""
    default_dtype = graph.meta.get("dtype", "fp32")
    extra = []
    if mode == "training":
        numel, pbytes = optimizer_operands(graph)
        extra.append((2, _OPT_FLOPS[optimizer] * numel, _OPT_BYTES[optimizer] * pbytes, "fp32",
                      "optimizer_tensor", float(max(1, n_tensors))))
    extra.append((0, 0.0, 0.0, default_dtype if default_dtype in DTYPES else "fp32", "module",
                  float(module_calls(graph, scopes) * (2 if mode == "training" else 1))))
    if launches > 0:
        extra.append((0, 0.0, 0.0, default_dtype if default_dtype in DTYPES else "fp32", "launch", float(launches)))
    out = []
    for ph, fl, nb, d, host, count in extra:
        key = (ph, fl, nb, d)
        row = cache.get(key)
        if row is None:
            row = cache[key] = _none_row(device, ph, fl, nb, d, bw, sm, hw)
        feats, bound, kernel = row
        out.append((feats, bound, count if host == "launch" else kernel, _HOST_INDEX[host], count, ph))
    return out


def _is_cpu(dev) -> bool:
    """Whether operators run on the host thread (no accelerator vendor)."""
    return dev.vendor.lower() not in ("nvidia", "amd")
