"""The two lanes of a chunk of operator tables, computed over all their rows at once (what
``TimelinePredictor.predict_many`` composes each table's estimate from)."""

from __future__ import annotations

import numpy as np

from ._optable import ENERGY_CLASSES


class _ChunkLanes:
    """The two lanes of every table of a chunk, computed over all their rows at once: per row the device
    time, efficiency and host time (µs); per table the lanes' sums, the device time per energy class (each
    row's time x the share of the SMs its bound keeps busy, and the useful share: that x efficiency), and
    the host lane's largest lead over the device lane (what a single call waits for beyond the kernels,
    before its own call cost)."""

    def __init__(self, starts, device_row, eff_row, host_row, host_us, device_us, energy_us, useful_us, slack_us):
        self.starts, self.device_row, self.eff_row, self.host_row = starts, device_row, eff_row, host_row
        self.host_us, self.device_us, self.energy_us, self.useful_us = host_us, device_us, energy_us, useful_us
        self.slack_us = slack_us

    def segment(self, j: int):
        a, b = self.starts[j], self.starts[j + 1]
        return self.device_row[a:b], self.eff_row[a:b], self.host_row[a:b]


def chunk_lanes(tables, z_dev: np.ndarray, z_host: np.ndarray, host: np.ndarray, pred) -> _ChunkLanes:
    from types import SimpleNamespace

    n = np.array([len(t.bound_s) for t in tables])
    starts = np.concatenate([[0], np.cumsum(n)])
    rows = SimpleNamespace(bound_s=np.concatenate([t.bound_s for t in tables]),
                           kernel=np.concatenate([t.kernel for t in tables]),
                           host_class=np.concatenate([t.host_class for t in tables]))
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
    # within each table: host cost dispatched up to row i, less the device time of the rows before i
    Hc, Dc = np.cumsum(h_us), np.cumsum(d_us)
    base_h, base_d = np.repeat(Hc[first] - h_us[first], n), np.repeat(Dc[first] - d_us[first], n)
    lead = (Hc - base_h) - (Dc - base_d - d_us)
    slack = np.maximum.reduceat(lead, first)
    return _ChunkLanes(starts.tolist(), d_us, eff, h_us, H_sum, D_sum, energy, useful, slack)
