"""Measured coverage of split-conformal intervals, and how far from nominal it may honestly fall.

With ``n`` calibration rows, the interval at nominal level ``c`` uses the
``k = ceil((n + 1) c)``-th smallest calibration error.  For a new row
exchangeable with them, the probability of falling inside is, over the draw
of the calibration rows, Beta(k, n + 1 - k) distributed (mean ``k / (n + 1)``);
the fraction of ``m`` test rows inside is that probability plus binomial noise.
:func:`expected_coverage` gives the mean and standard deviation of that
fraction (law of total variance), and the tests accept a measured coverage
within three standard deviations of the mean.
"""

from __future__ import annotations

import math

import numpy as np


def expected_coverage(n_cal: int, n_test: int, level: float) -> tuple[float, float]:
    """Mean and standard deviation of the fraction of ``n_test`` held-out rows inside the intervals."""
    k = min(n_cal, math.ceil((n_cal + 1) * level))
    a, b = k, n_cal + 1 - k
    mean = a / (a + b)
    var_c = a * b / ((a + b) ** 2 * (a + b + 1))
    e_c_1mc = mean - (var_c + mean ** 2)  # E[C (1 - C)]
    return mean, math.sqrt(var_c + e_c_1mc / n_test)


def measured_coverage(pred, data, test_idx, items) -> np.ndarray:
    """Per target: the fraction of test rows whose measured label lies inside the Estimate's interval.

    ``items`` are the test rows' ``(features, analytic estimate)`` in ``test_idx`` order; the intervals are
    the ones the predictor's Estimates carry (``latency_ms_interval``..., ``details["power_w_interval"]``).
    """
    from costmodel.devices import get_device

    vals = pred._predict_features(items)
    inside = [[] for _ in pred.targets]
    for i, v, (_, est) in zip(test_idx, vals, items):
        r = data[i]
        e = pred._estimate(data.graph(i), get_device(r.device), r.mode, v, est)
        for t, name in enumerate(pred.targets):
            iv = getattr(e, f"{name}_interval", None) if name != "power_w" else e.details.get("power_w_interval")
            y = r.target(name)
            if iv is not None and np.isfinite(y):
                inside[t].append(iv[0] <= y <= iv[1])
    return np.asarray([np.mean(x) if x else np.nan for x in inside])
