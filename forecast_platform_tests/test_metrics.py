"""Metrics against values worked out by hand, so a refactor cannot silently change a score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecast_platform.forecasting import metrics as m

A = np.array([10.0, 20.0, 0.0, 40.0])
F = np.array([12.0, 15.0, 0.0, 40.0])
# errors F - A: [2, -5, 0, 0]; |errors|: [2, 5, 0, 0]


def test_mae() -> None:
    # (2 + 5 + 0 + 0) / 4 = 1.75
    assert m.mae(A, F) == pytest.approx(1.75)


def test_rmse() -> None:
    # sqrt((4 + 25 + 0 + 0) / 4) = sqrt(7.25)
    assert m.rmse(A, F) == pytest.approx(math.sqrt(7.25))


def test_smape_counts_zero_over_zero_as_zero() -> None:
    # terms: 200*2/22 = 18.1818..., 200*5/35 = 28.5714..., 0/0 -> 0, 200*0/80 = 0
    # mean = (400/22 + 1000/35) / 4
    expected = (400 / 22 + 1000 / 35) / 4
    assert m.smape(A, F) == pytest.approx(expected)
    assert m.smape([0.0, 0.0], [0.0, 0.0]) == 0.0


def test_smape_bounds() -> None:
    # actual 0, forecast 5: 200*5/5 = 200, the maximum; sign flips also give 200.
    assert m.smape([0.0], [5.0]) == pytest.approx(200.0)
    assert m.smape([1.0], [-1.0]) == pytest.approx(200.0)


def test_mape_excludes_zero_actuals() -> None:
    # non-zero actuals: 10, 20, 40 -> |F-A|/A = 0.2, 0.25, 0 -> mean 0.15 -> 15 %
    assert m.mape(A, F) == pytest.approx(15.0)


def test_rmspe_excludes_zero_actuals() -> None:
    # ratios (A-F)/A on non-zero actuals: -0.2, 0.25, 0 -> squares 0.04, 0.0625, 0
    # sqrt(0.1025 / 3)
    assert m.rmspe(A, F) == pytest.approx(math.sqrt(0.1025 / 3))


def test_percentage_metrics_fail_when_all_actuals_zero() -> None:
    with pytest.raises(ValueError, match="every actual value is zero"):
        m.mape([0.0, 0.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="every actual value is zero"):
        m.rmspe([0.0], [1.0])


def test_wmae_weights_holidays_by_five() -> None:
    # |A-F| = [2, 5, 0, 0]; holiday on the second point -> weights [1, 5, 1, 1]
    # (1*2 + 5*5 + 0 + 0) / (1 + 5 + 1 + 1) = 27 / 8 = 3.375
    holiday = np.array([False, True, False, False])
    assert m.wmae(A, F, holiday) == pytest.approx(3.375)
    # without holidays it is the plain MAE
    assert m.wmae(A, F, np.zeros(4, dtype=bool)) == pytest.approx(1.75)


def test_bias_sign() -> None:
    # mean(F - A) = (2 - 5 + 0 + 0) / 4 = -0.75: under-prediction is negative
    assert m.bias(A, F) == pytest.approx(-0.75)


def test_r2() -> None:
    # mean(A) = 17.5; SS_tot = 56.25 + 6.25 + 306.25 + 506.25 = 875; SS_res = 29
    assert m.r2(A, F) == pytest.approx(1 - 29 / 875)
    assert m.r2([3.0, 3.0], [3.0, 3.0]) == 1.0
    assert m.r2([3.0, 3.0], [3.0, 4.0]) == float("-inf")


def test_coverage_is_inclusive() -> None:
    # y = [1, 5, 10, 20] in [0,1], [4,6], [11,12], [20,25] -> in, in, out, in (edges count) = 0.75
    y = [1.0, 5.0, 10.0, 20.0]
    lo = [0.0, 4.0, 11.0, 20.0]
    hi = [1.0, 6.0, 12.0, 25.0]
    assert m.coverage(y, lo, hi) == pytest.approx(0.75)


def test_point_metrics_bundle() -> None:
    holiday = np.array([False, True, False, False])
    out = m.point_metrics(A, F, is_holiday=holiday)
    assert set(out) == {"mae", "rmse", "smape", "mape", "rmspe", "wmae", "bias", "r2"}
    assert out["wmae"] == pytest.approx(3.375)
    assert out["smape"] == pytest.approx((400 / 22 + 1000 / 35) / 4)
    assert all(isinstance(v, float) for v in out.values())

    with_band = m.point_metrics(A, F, lo=F - 3, hi=F + 3)
    # |A-F| <= 3 on points 1, 3, 4 -> 0.75
    assert with_band["coverage"] == pytest.approx(0.75)
    # no holiday flags: wmae equals mae
    assert with_band["wmae"] == pytest.approx(with_band["mae"])


def test_point_metrics_needs_both_bounds() -> None:
    with pytest.raises(ValueError, match="both lo and hi"):
        m.point_metrics(A, F, lo=F)


@pytest.mark.parametrize("fn", [m.mae, m.rmse, m.smape, m.mape, m.rmspe, m.bias, m.r2])
def test_empty_inputs_raise(fn) -> None:
    with pytest.raises(ValueError, match="empty"):
        fn([], [])


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        m.smape([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same length"):
        m.wmae([1.0, 2.0], [1.0, 2.0], [True])
    with pytest.raises(ValueError, match="same length"):
        m.coverage([1.0], [0.0, 0.0], [2.0])
