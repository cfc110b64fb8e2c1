"""Accuracy metrics: MAPE, RMSE, Acc(x %), Kendall tau-b."""

import math

import pytest

from costmodel.training import acc_within, kendall_tau, mape, report, rmse


def test_values():
    t, p = [1.0, 2.0, 4.0], [1.05, 2.0, 3.0]
    assert mape(t, p) == pytest.approx((5 + 0 + 25) / 3)
    assert rmse(t, p) == pytest.approx(math.sqrt((0.0025 + 0 + 1) / 3))
    assert acc_within(t, p, 0.10) == pytest.approx(200 / 3)
    assert kendall_tau(t, p) == pytest.approx(1.0)
    assert kendall_tau(t, p[::-1]) == pytest.approx(-1.0)
    assert set(report(t, p)) == {"mape", "rmse", "kendall_tau", "acc10"}


def test_bad_shapes():
    with pytest.raises(ValueError, match="equal shapes"):
        mape([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        rmse([], [])
    assert math.isnan(kendall_tau([1.0], [1.0]))
