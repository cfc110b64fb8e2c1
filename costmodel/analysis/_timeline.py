"""Two-lane host/device timeline: operators dispatched by the host, run in order by the device.

Where it sits: per-operator host costs (dispatch, launch) and device times (kernel
durations) go in; model latency, the idle gaps of the device and the per-operator
start/end times come out. One mechanism covers the launch-bound regime (the host
is the bottleneck, the device waits between kernels) and the compute-bound one
(kernels queue up behind each other), and everything between.

The recurrence, for operators ``i = 1..n`` with host cost ``h_i`` and device time
``d_i`` on one in-order stream::

    dispatched_i = h_1 + ... + h_i                     (= H_i)
    start_i      = max(dispatched_i, end_{i-1})        (end_0 = 0)
    end_i        = start_i + d_i

Unrolling the max-plus recursion gives a closed form that needs no loop::

    end_i = D_i + max_{k <= i} (H_k - D_{k-1})         (D_i = d_1 + ... + d_i, D_0 = 0)

so a whole timeline is two cumulative sums and one cumulative max (``numpy``
``maximum.accumulate``; ``torch.cummax`` for the differentiable version used to
fit per-operator models through measured whole-model latencies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timeline:
    """One replayed timeline (times in milliseconds from the first dispatch).

    ``latency_ms`` is when the last kernel ends plus the final synchronisation;
    ``device_idle_ms`` the time the device waited for the host; ``host_bound[i]``
    says operator ``i`` started when the host dispatched it (the device was idle
    before it) rather than when the previous kernel ended.
    """

    latency_ms: float
    start_ms: np.ndarray
    end_ms: np.ndarray
    host_bound: np.ndarray
    device_busy_ms: float
    device_idle_ms: float
    sync_ms: float

    @property
    def host_bound_share(self) -> float:
        """Fraction of the latency the device spent waiting for the host (0: compute-bound)."""
        return self.device_idle_ms / self.latency_ms if self.latency_ms > 0 else 0.0


def _check(host_ms, device_ms) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(host_ms, dtype=np.float64)
    d = np.asarray(device_ms, dtype=np.float64)
    if h.ndim != 1 or d.ndim != 1 or h.shape != d.shape:
        raise ValueError(
            f"host_ms and device_ms must be 1-D of one length, got shapes {h.shape} and {d.shape}"
        )
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(d))) or (h < 0).any() or (d < 0).any():
        raise ValueError("host_ms and device_ms must be finite and non-negative")
    return h, d


def replay(host_ms, device_ms, *, sync_ms: float = 0.0) -> Timeline:
    """Replay one operator sequence on the two lanes; see the module docstring for the model."""
    h, d = _check(host_ms, device_ms)
    if sync_ms < 0 or not np.isfinite(sync_ms):
        raise ValueError(f"sync_ms must be finite and >= 0, got {sync_ms!r}")
    if h.size == 0:
        empty = np.zeros(0)
        return Timeline(float(sync_ms), empty, empty, np.zeros(0, bool), 0.0, 0.0, float(sync_ms))
    H = np.cumsum(h)
    D = np.cumsum(d)
    D_prev = np.concatenate(([0.0], D[:-1]))
    end = D + np.maximum.accumulate(H - D_prev)
    start = end - d
    prev_end = np.concatenate(([0.0], end[:-1]))
    host_bound = H > prev_end
    busy = float(D[-1])
    last = float(end[-1])
    return Timeline(last + sync_ms, start, end, host_bound, busy, last - busy, float(sync_ms))


def latency_ms(host_ms, device_ms, *, sync_ms: float = 0.0) -> float:
    """The latency of :func:`replay` alone (the common case, no per-op arrays kept)."""
    h, d = _check(host_ms, device_ms)
    if h.size == 0:
        return float(sync_ms)
    H = np.cumsum(h)
    D = np.cumsum(d)
    return float(D[-1] + np.max(H - (D - d)) + sync_ms)


def latency_ms_torch(host_ms, device_ms, sync_ms=0.0):
    """Differentiable latency (``torch`` tensors, last dimension = operators; leading dims batch).

    The gradient of the max flows to the operators on the critical path: the
    kernels after the last host-bound point and the host costs before it.
    """
    import torch

    H = torch.cumsum(host_ms, dim=-1)
    D = torch.cumsum(device_ms, dim=-1)
    return D[..., -1] + torch.amax(H - (D - device_ms), dim=-1) + sync_ms
