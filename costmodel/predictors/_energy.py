"""Energy on the timeline: the linear power model fitted to whole-model energies, and how its watts
carry to a board it was not fitted on.

Energy of one call = static power x latency + sum over energy classes of (a_k x kernel time
+ b_k x kernel time x roofline utilisation) + sum over the training phases of (c_p x kernel time of
that phase): one intercept and slope per op class and one power per phase, fitted by non-negative
least squares on relative error (:func:`energy_design`, :func:`nnls_relative`).

The phase terms are there because a training step's kernels draw more than a forward pass's of the
same class, time and utilisation: with the class terms alone, the fit under-predicted the packaged
training steps' energy by a median 18.5 % and the later architectures' by 23-27 %, two hosts alike
(``docs/results.md``, "Power by phase").  Each kernel's time counts as the share of the SMs it keeps
busy, as in the class terms.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..devices import get_device
from ._optable import ENERGY_CLASSES, PHASES, OpTable

#: phases whose kernels draw a power of their own on top of their class's (watts per busy second)
ENERGY_PHASES = ("backward", "optimizer")
_PHASE_CODES = tuple(PHASES.index(p) for p in ENERGY_PHASES)


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
        row += (phase_busy_us(t, d) * 1e-6).tolist()
        cols.append(row)
    return np.asarray(cols)


def phase_busy_us(t: OpTable, d_us: np.ndarray) -> np.ndarray:
    """Per :data:`ENERGY_PHASES`, the table's device time in that phase, each row's time times the share
    of the SMs it keeps busy (µs)."""
    w = d_us * t.busy()
    return np.asarray([float(w[t.phase == c].sum()) for c in _PHASE_CODES])


def split_weights(w: np.ndarray) -> dict:
    """The fitted columns of :func:`energy_design` as :class:`TimelineParams` fields."""
    k = len(ENERGY_CLASSES)
    return {"energy_static_w": float(w[0]), "energy_a_w": w[1:1 + k].tolist(), "energy_b_w": w[1 + k:1 + 2 * k].tolist(),
            "energy_phase_w": w[1 + 2 * k:].tolist()}


def phase_weights_ok(w) -> bool:
    """Whether a saved ``energy_phase_w`` is usable: null (an artifact from before the phase terms) or
    one finite, non-negative watt figure per :data:`ENERGY_PHASES`."""
    return w is None or (isinstance(w, list) and len(w) == len(ENERGY_PHASES) and all(
        isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and a >= 0 for a in w))


def call_energy_j(p, energy_us, useful_us, phase_us, lat_us: float, static_k: float, dynamic_k: float,
                  tdp_w: float) -> float:
    """One call's energy (J) from its lanes' per-class and per-phase busy times (µs) and latency, with
    the fitted watts ``p`` (:class:`TimelineParams`) carried to the board by :func:`power_scales`; a
    board cannot draw more than its power limit on average."""
    dynamic = (sum(a * e for a, e in zip(p.energy_a_w, energy_us)) + sum(b * u for b, u in zip(p.energy_b_w, useful_us))
               + sum(c * u for c, u in zip(p.energy_phase_w or (), phase_us)))  # older artifacts: no phase terms
    return min(p.energy_static_w * static_k * lat_us + dynamic * dynamic_k, tdp_w * lat_us) * 1e-6


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
