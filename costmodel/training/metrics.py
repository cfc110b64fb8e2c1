"""Accuracy metrics used by every benchmark (numpy only).

* MAPE: mean absolute percentage error, in percent;
* RMSE: root mean squared error, in the target's unit;
* Kendall tau-b: rank agreement (what matters when a NAS loop or a scheduler
  only compares candidates);
* Acc(x%): share of predictions within x % of the measurement.
"""

from __future__ import annotations

import numpy as np


def _arrays(y_true, y_pred):
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"expected equal shapes, got {t.shape} and {p.shape}")
    if t.size == 0:
        raise ValueError("expected at least one value")
    return t, p


def mape(y_true, y_pred) -> float:
    t, p = _arrays(y_true, y_pred)
    return float(np.mean(np.abs(p - t) / np.abs(t)) * 100)


def rmse(y_true, y_pred) -> float:
    t, p = _arrays(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def acc_within(y_true, y_pred, tol: float = 0.10) -> float:
    """Percent of predictions with relative error <= ``tol``."""
    t, p = _arrays(y_true, y_pred)
    return float(np.mean(np.abs(p - t) / np.abs(t) <= tol) * 100)


def kendall_tau(y_true, y_pred) -> float:
    """Kendall's tau-b (ties handled); O(n^2), fine for benchmark-sized sets."""
    t, p = _arrays(y_true, y_pred)
    n = t.size
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, k=1)
    dt = np.sign(t[i] - t[j])
    dp = np.sign(p[i] - p[j])
    concordant_minus_discordant = float(np.sum(dt * dp))
    n_t = float(np.sum(dt != 0))
    n_p = float(np.sum(dp != 0))
    if n_t == 0 or n_p == 0:
        return float("nan")
    return concordant_minus_discordant / np.sqrt(n_t * n_p)


def report(y_true, y_pred) -> dict[str, float]:
    """All metrics at once: ``mape``, ``rmse``, ``kendall_tau``, ``acc10``."""
    return {
        "mape": mape(y_true, y_pred),
        "rmse": rmse(y_true, y_pred),
        "kendall_tau": kendall_tau(y_true, y_pred),
        "acc10": acc_within(y_true, y_pred, 0.10),
    }
