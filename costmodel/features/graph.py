"""Features for learned predictors: node matrix, edges, static vector.

Node features (thesis ch. 4: op one-hot + attributes + output shape, extended
with per-node costs):

* one-hot op kind over :data:`costmodel.ir.OP_KINDS`;
* log-scaled FLOPs, MACs, bytes read/written, parameters, arithmetic intensity;
* the first output's shape, right-aligned and padded to 4 dims (so NCHW and
  (batch, tokens, channels) line up on their last axes), log-scaled;
* attributes: kernel (2), stride (2), log groups, dilation, in-place and
  training flags, output dtype width.

Static features (:func:`static_features`): the graph's totals and per-kind counts/FLOPs (log-scaled),
workload facts (batch, mode, dtype), the device's hardware features (so one
model can span devices) and, optionally, the analytic predictor's estimate.

Views and no-op nodes are dropped before featurization (their dependencies
are bridged): they launch nothing and only dilute message passing.

:data:`FEATURE_SCHEMA_VERSION` and the name lists are stored with every
trained artifact; loading refuses an artifact with a different schema.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from ..ir import OP_KINDS, CostGraph, Node, dtype_bytes, numel

FEATURE_SCHEMA_VERSION = 1

_COST_NAMES = ["log_flops", "log_macs", "log_bytes_read", "log_bytes_written", "log_params", "log_intensity"]
_SHAPE_NAMES = [f"log_out_dim{i}" for i in range(4)] + ["log_out_numel"]
_ATTR_NAMES = ["kernel_h", "kernel_w", "stride_h", "stride_w", "log_groups", "dilation", "inplace", "training", "out_dtype_bytes"]
NODE_FEATURE_NAMES: tuple[str, ...] = tuple([f"op_{k}" for k in OP_KINDS] + _COST_NAMES + _SHAPE_NAMES + _ATTR_NAMES)

_LOG_STATIC = {"flops", "macs", "tensor_flops", "params", "weights_bytes", "bytes_moved", "num_nodes",
               "num_edges", "num_kernels", "depth", "batch", "input_numel"}

ANALYTIC_NAMES = ("analytic_log_latency_ms", "analytic_log_memory_mb", "analytic_log_energy_j")


def _l(x: float) -> float:
    return math.log1p(max(0.0, float(x)))


def _pair(v, default: float) -> tuple[float, float]:
    if not v:
        return default, default
    v = list(v)
    if len(v) == 1:
        return float(v[0]), float(v[0])
    return float(v[-2]), float(v[-1])


def node_features(n: Node) -> list[float]:
    oh = [0.0] * len(OP_KINDS)
    oh[OP_KINDS.index(n.kind)] = 1.0
    moved = n.bytes_read + n.bytes_written
    cost = [_l(n.flops), _l(n.macs), _l(n.bytes_read), _l(n.bytes_written), _l(n.params),
            _l(n.flops / moved) if moved else 0.0]
    shp = list(n.out_shapes[0]) if n.out_shapes else []
    dims = ([1] * 4 + shp)[-4:]
    numel = math.prod(shp) if shp else 0
    shape = [_l(d) for d in dims] + [_l(numel)]
    a = n.attrs
    kh, kw = _pair(a.get("kernel"), 0.0)
    sh, sw = _pair(a.get("stride"), 0.0)
    dil = max(a.get("dilation") or [1])
    out_bytes = dtype_bytes(n.out_dtypes[0]) if n.out_dtypes else 0
    attrs = [kh, kw, sh, sw, _l(a.get("groups", 1) or 1), float(dil), float(bool(a.get("inplace"))),
             float(bool(a.get("training"))), float(out_bytes)]
    return oh + cost + shape + attrs


@dataclass
class GraphFeatures:
    """Arrays for one graph: ``x`` (N, F) float32, ``edge_index`` (2, E) int64, ``static`` (S,) float32."""

    x: np.ndarray
    edge_index: np.ndarray
    static: np.ndarray


def static_features(graph: CostGraph) -> dict[str, float]:
    """Graph-level features: totals, counts per op kind, workload facts."""
    m = graph.meta
    shape = list(m.get("input_shape") or [])
    feats: dict[str, float] = {
        "flops": graph.flops,
        "macs": graph.macs,
        "tensor_flops": graph.tensor_flops,
        "params": float(graph.params),
        "weights_bytes": float(graph.weights_bytes),
        "bytes_moved": graph.bytes_moved,
        "num_nodes": float(graph.num_nodes),
        "num_edges": float(graph.num_edges),
        "num_kernels": float(graph.num_kernels),
        "depth": float(graph.depth()),
        "batch": float(m.get("batch") or 1),
        "input_numel": float(numel(shape)) if shape else 0.0,
        "input_rank": float(len(shape)),
        "is_training": 1.0 if m.get("mode") == "training" else 0.0,
        "dtype_bytes": float(dtype_bytes(m.get("dtype", "fp32"))),
    }
    counts = graph.op_counts(include_views=False)
    fl = graph.flops_by_kind()
    for k in OP_KINDS:
        feats[f"count_{k}"] = float(counts.get(k, 0))
    for k in OP_KINDS:
        feats[f"flops_{k}"] = float(fl.get(k, 0.0))
    return feats


def static_feature_names(device_feature_names: tuple[str, ...], analytic: bool) -> tuple[str, ...]:
    base = list(static_features(CostGraph(nodes=[], edges=[])))
    names = [f"log_{k}" if k in _LOG_STATIC else k for k in base]
    names += [f"hw_{k}" for k in device_feature_names]
    if analytic:
        names += list(ANALYTIC_NAMES)
    return tuple(names)


def edge_index(graph: CostGraph) -> np.ndarray:
    """The graph's edges as a ``(2, E)`` int64 array (PyG layout)."""
    if not graph.edges:
        return np.zeros((2, 0), dtype=np.int64)
    return np.asarray(graph.edges, dtype=np.int64).T.copy()


def node_arrays(graph: CostGraph) -> tuple[np.ndarray, np.ndarray]:
    """Node matrix ``(N, F)`` and edge index ``(2, E)`` (views and dropout bridged); device-independent."""
    g = graph.without(["dropout"], views=True)
    if g.num_nodes == 0:  # degenerate graph: one placeholder node keeps pooling defined
        return np.zeros((1, len(NODE_FEATURE_NAMES)), dtype=np.float32), np.zeros((2, 0), dtype=np.int64)
    return np.asarray([node_features(n) for n in g.nodes], dtype=np.float32), edge_index(g)


def featurize(graph: CostGraph, device, *, analytic_estimate=None) -> GraphFeatures:
    """Node matrix, edges (views bridged) and static vector of a graph on a device."""
    x, ei = node_arrays(graph)
    sf = static_features(graph)
    static = [(_l(v) if k in _LOG_STATIC else float(v)) for k, v in sf.items()]
    for k, v in device.hardware_features().items():
        static.append(_l(v))  # peaks, bandwidth, memory span orders of magnitude
    if analytic_estimate is not None:
        e = analytic_estimate
        static += [math.log(e.latency_ms), math.log(e.memory_mb), math.log(max(e.energy_j, 1e-9))]
    return GraphFeatures(x, ei, np.asarray(static, dtype=np.float32))


def schema_fingerprint(static_names: tuple[str, ...]) -> str:
    """Short hash of the feature layout (node + static names and the schema version)."""
    blob = "|".join([str(FEATURE_SCHEMA_VERSION), *NODE_FEATURE_NAMES, "#", *static_names])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]
