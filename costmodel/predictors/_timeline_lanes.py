"""The two lanes of a chunk of operator tables, computed over all their rows at once (what
``TimelinePredictor.predict_many`` composes each table's estimate from)."""

from __future__ import annotations

import math

import numpy as np

from ._energy import _PHASE_CODES
from ._optable import ENERGY_CLASSES
from ._skinny import stream_column_of


class _ChunkLanes:
    """The two lanes of every table of a chunk, computed over all their rows at once: per row the device
    time, efficiency and host time (µs); per table the lanes' sums, the device time per energy class (each
    row's time x the share of the SMs its bound keeps busy, and the useful share: that x efficiency), and
    the host lane's largest lead over the device lane (what a single call waits for beyond the kernels,
    before its own call cost), and the same busy device time per phase of :data:`~._energy.ENERGY_PHASES`."""

    def __init__(self, starts, device_row, eff_row, host_row, host_us, device_us, energy_us, useful_us, slack_us,
                 phase_us):
        self.starts, self.device_row, self.eff_row, self.host_row = starts, device_row, eff_row, host_row
        self.host_us, self.device_us, self.energy_us, self.useful_us = host_us, device_us, energy_us, useful_us
        self.slack_us, self.phase_us = slack_us, phase_us

    def segment(self, j: int):
        a, b = self.starts[j], self.starts[j + 1]
        return self.device_row[a:b], self.eff_row[a:b], self.host_row[a:b]


def chunk_lanes(tables, z_dev: np.ndarray, z_host: np.ndarray, host: np.ndarray, pred) -> _ChunkLanes:
    from types import SimpleNamespace

    n = np.array([len(t.bound_s) for t in tables])
    starts = np.concatenate([[0], np.cumsum(n)])
    rows = SimpleNamespace(bound_s=np.concatenate([t.bound_s for t in tables]),
                           kernel=np.concatenate([t.kernel for t in tables]),
                           host_class=np.concatenate([t.host_class for t in tables]),
                           stream_us=None if all(t.stream_us is None for t in tables) else stream_column_of(tables))
    d_us, eff = pred._device_from_z(rows, z_dev)
    count = np.concatenate([t.host_count for t in tables])
    h_us = host[rows.host_class] * count * pred._host_from_z(rows, z_host)
    first = starts[:-1]  # every table has a row (its module-call row)
    H_sum, D_sum = np.add.reduceat(h_us, first), np.add.reduceat(d_us, first)
    k = len(ENERGY_CLASSES)
    which = np.repeat(np.arange(len(tables)), n) * k + np.concatenate([t.energy_class for t in tables])
    busy = np.concatenate([t.busy() for t in tables])  # a norm bound by its rows keeps few SMs busy
    energy = np.bincount(which, weights=d_us * busy, minlength=k * len(tables)).reshape(-1, k)
    useful = np.bincount(which, weights=d_us * eff * busy, minlength=k * len(tables)).reshape(-1, k)
    phase = np.concatenate([t.phase for t in tables])
    table = np.repeat(np.arange(len(tables)), n)
    phase_us = np.stack([np.bincount(table, weights=d_us * busy * (phase == c), minlength=len(tables))
                         for c in _PHASE_CODES], axis=1)
    # within each table: host cost dispatched up to row i, less the device time of the rows before i
    Hc, Dc = np.cumsum(h_us), np.cumsum(d_us)
    base_h, base_d = np.repeat(Hc[first] - h_us[first], n), np.repeat(Dc[first] - d_us[first], n)
    lead = (Hc - base_h) - (Dc - base_d - d_us)
    slack = np.maximum.reduceat(lead, first)
    return _ChunkLanes(starts.tolist(), d_us, eff, h_us, H_sum, D_sum, energy, useful, slack, phase_us)


#: operators whose output size the host must read before it can go on (a device-to-host copy and a wait for
#: the device): ``nonzero`` and what is built on it, ``unique``, and torchvision's NMS, which copies its
#: overlap mask to the host and walks it there (ONNX's names too)
HOST_SYNC_OPS = frozenset(
    "nonzero _unique _unique2 unique_dim unique_consecutive argwhere masked_select nms batched_nms "
    "NonZero NonMaxSuppression Unique Compress".split())


#: the kinds those operators are registered as (an unknown one is ``other``)
_SYNC_KINDS = frozenset({"reduction", "gather", "other"})


def host_sync_nodes(graph) -> np.ndarray:
    """Indices of ``graph``'s nodes after which the host waits for the device: :data:`HOST_SYNC_OPS`, and
    indexing by a boolean mask (``x[mask]``, ``x[mask] = v``), which runs ``nonzero`` inside."""
    out = []
    for i, n in enumerate(graph.nodes):
        if n.kind not in _SYNC_KINDS:  # most nodes: no string work at every prediction
            continue
        base = n.op.split(".")[1] if "." in n.op else n.op  # aten.nonzero -> nonzero
        if base in HOST_SYNC_OPS or (base in ("index", "index_put", "index_put_") and "bool" in n.in_dtypes[1:]):
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def synced_latency_us(h_us: np.ndarray, d_us: np.ndarray, node: np.ndarray, syncs: np.ndarray,
                      call_us: float) -> tuple[float, int]:
    """The two lanes of one table composed with the host waiting for the device after each node of
    ``syncs``: the sum over the stretches between waits of max(host, device), each stretch starting with
    both lanes level. Without a wait it is max(H, D), the timeline's composition. Rows that belong to no
    node (module calls, extra launches, the optimizer) and the call's own host cost are spread over the
    stretches in proportion to each lane's time in them. Returns (µs, waits)."""
    on = node >= 0
    wait = on & np.isin(node, syncs)
    stretch = (np.cumsum(wait) - wait)[on]  # a waiting row ends its stretch
    k = int(stretch.max()) + 1 if stretch.size else 1
    H = np.bincount(stretch, weights=h_us[on], minlength=k)
    D = np.bincount(stretch, weights=d_us[on], minlength=k)
    h_rest, d_rest = float(h_us[~on].sum()) + call_us, float(d_us[~on].sum())
    H = H + (h_rest * H / H.sum() if H.sum() > 0 else h_rest / k)
    D = D + (d_rest * D / D.sum() if D.sum() > 0 else d_rest / k)
    return float(np.maximum(H, D).sum()), int(wait.sum())


def composed_latency_us(graph, table, rows_us, lanes_us, call_us: float, sync_us: float) -> tuple[float, int]:
    """One call's latency from its lanes (µs) and the host's waits for the device in it: ``rows_us`` the
    table's rows' (host, device) times, ``lanes_us`` their sums (host with the call's cost), ``sync_us``
    the fitted cost of a synchronisation. A CPU runs each operator on the host (the sum); a GPU overlaps
    the lanes, up to each wait (:func:`synced_latency_us`) and the final synchronisation."""
    H, D = lanes_us
    if table.synchronous:
        return H + D + sync_us, 0
    syncs = host_sync_nodes(graph)
    if not syncs.size:
        return max(H, D) + sync_us, 0
    lat, waits = synced_latency_us(*rows_us, table.node, syncs, call_us)
    return lat + (waits + 1) * sync_us, waits


def sync_note(waits: int) -> str:
    return (f"the host waits for the device {waits} time(s) in the call: operators whose output size it reads "
            "(nonzero, boolean-mask indexing, unique, NMS); the lanes overlap only between the waits")


#: what a CUDA-graph estimate (:meth:`TimelinePredictor.with_cuda_graphs`) rests on
CUDA_GRAPHS_NOTE = ("CUDA graphs: every kernel replayed from one captured graph (no host dispatch per operator): "
                    "the device lane begun by one graph launch, costed as a kernel launch on the host lane, plus "
                    "the synchronisation; no row measured a graph's replay, and the memory is eager PyTorch's (a "
                    "graph's private memory pool is not modelled)")

def graphed_note(graph, graphed: bool) -> list[str]:
    """What a CUDA-graph estimate of ``graph`` rests on: :data:`CUDA_GRAPHS_NOTE`, or, where the host waits
    for the device in the call (:func:`host_sync_nodes`), why it was costed as eager dispatch instead."""
    if graphed:
        return [CUDA_GRAPHS_NOTE]
    ops = sorted({graph.nodes[int(i)].op for i in host_sync_nodes(graph)})
    return [f"CUDA graphs: not applied: the host reads the size of an output in the call ({', '.join(ops)}), "
            "which a CUDA graph cannot capture (torch.cuda.graphs fails on the synchronisation; torch.compile runs "
            "such a graph without one), so the call is costed as eager dispatch"]


#: a decode step's, in a CUDA graph: what its device lane alone rests on
CUDA_GRAPHS_DECODE_NOTE = ("decode step in a CUDA graph: the eager decode loop's per-step host cost is left out, and "
                           "the device lane is all that remains; its one-token matrix products are costed by the "
                           "stream line measured on the H200's skinny products (a kernel start plus the weights at "
                           "0.85 of the bandwidth), but no measured decode step checks the lane as a whole, so it "
                           "is unchecked")


def attach_intervals(params, est, dev, regime: str) -> None:
    """Latency and energy intervals from the held-out-family residuals of ``regime`` (none for a device the
    predictor has no rows of: its residuals say nothing about another device)."""
    iv = params.intervals if params else None
    if not iv or dev.name not in params.trained_on.get("devices", []):
        return
    q = iv["log_halfwidth"].get(regime, {})
    for t in ("latency_ms", "energy_j"):
        w = q.get(t)
        if w is not None:
            v = getattr(est, t)
            setattr(est, t + "_interval", (v * math.exp(-w), v * math.exp(w)))
    est.details["interval_coverage"] = iv["coverage"]


def host_vector(h, hp, dev=None) -> tuple[np.ndarray, str | None]:
    """The host lane's per-class costs (us): ``h`` (the fitted ones), or the host profile ``hp``'s where one
    is set, with the note that says so: which classes it lacks (their cost is its default), and, for a GPU
    ``dev``, whether it was calibrated without CUDA (PyTorch's CPU operators: no kernel launch in its
    dispatch costs)."""
    from ..measure.host import OP_CLASSES
    from ._optable import _HOST_INDEX, _is_cpu

    if hp is None:
        return h, None
    h = h.copy()
    for c in ("default", *OP_CLASSES):
        h[_HOST_INDEX[c]] = hp.dispatch_us.get(c, hp.dispatch_us["default"])
    note = f"host lane from the host profile of {hp.host.get('hostname', '?')} ({hp.source})"
    missing = [c for c in OP_CLASSES if c not in hp.dispatch_us]
    if missing:
        note += f"; it has no dispatch cost for {', '.join(missing)}, which take its default"
    if hp.synchronous and dev is not None and not _is_cpu(dev):
        note += ("; it was calibrated without CUDA (PyTorch's CPU operators), so its dispatch costs leave out "
                 f"the kernel launch each operator adds on {dev.name}: calibrate on the GPU's host")
    return h, note
