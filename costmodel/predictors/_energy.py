"""Energy on the timeline: the linear power model fitted to whole-model energies, and how its watts
carry to a board it was not fitted on.

Energy of one call = static power x latency + sum over energy classes of (a_k x kernel time
+ b_k x kernel time x roofline utilisation): one intercept and slope per op class, fitted by
non-negative least squares on relative error (:func:`energy_design`, :func:`nnls_relative`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..devices import get_device
from ._optable import ENERGY_CLASSES, OpTable


def energy_design(tables: Sequence[OpTable], dev_us: Sequence[np.ndarray], eff: Sequence[np.ndarray],
                   lat_us: np.ndarray) -> np.ndarray:
    """Columns of the linear energy model (joules = design @ watts)."""
    cols = []
    for t, d, e, lat in zip(tables, dev_us, eff, lat_us):
        row = [lat * 1e-6]
        busy = t.busy()  # the share of the SMs a row keeps busy: the rest idle, clock-gated
        for k in range(len(ENERGY_CLASSES)):
            m = t.energy_class == k
            row.append(float((d[m] * busy[m]).sum()) * 1e-6)
        for k in range(len(ENERGY_CLASSES)):
            m = t.energy_class == k
            row.append(float((d[m] * e[m] * busy[m]).sum()) * 1e-6)  # time weighted by utilisation of the roofline
        cols.append(row)
    return np.asarray(cols)


def nnls_relative(A: np.ndarray, y: np.ndarray, iters: int = 3000) -> np.ndarray:
    """Non-negative least squares on relative error (projected gradient; a handful of columns)."""
    W = A / y[:, None]
    t = np.ones(len(y))
    w = np.maximum(np.linalg.lstsq(W, t, rcond=None)[0], 0.0)
    L = np.linalg.norm(W, 2) ** 2
    for _ in range(iters):
        w = np.maximum(w - (W.T @ (W @ w - t)) / L, 0.0)
    return w


def power_scales(fitted_devices: Sequence[str], dev) -> tuple[float, float, str]:
    """``(static, dynamic, note)``: how watts fitted on ``fitted_devices`` carry to ``dev``.

    Another board's static power scales with its idle power and the power its kernels add with its
    dynamic range (power limit minus idle), so an L4 (72 W) is not predicted to draw an H200's
    500 W; the caller also caps the average at the power limit. The note says so (empty on a
    fitted device)."""
    if not fitted_devices or dev.name in fitted_devices:
        return 1.0, 1.0, ""
    try:
        ref = get_device(fitted_devices[0])
    except Exception:  # noqa: BLE001 - an artifact naming a device this library lacks keeps its watts
        return 1.0, 1.0, ""
    static = dev.idle_power_w / ref.idle_power_w if ref.idle_power_w > 0 else 1.0
    span, ref_span = dev.tdp_w - dev.idle_power_w, ref.tdp_w - ref.idle_power_w
    dynamic = span / ref_span if ref_span > 0 else 1.0
    note = (f"power fitted on {ref.name} rows, carried to {dev.name} by idle power (x{static:.2f}) and power "
            f"range above idle (x{dynamic:.2f}), capped at its {dev.tdp_w:.0f} W limit")
    return static, dynamic, note
