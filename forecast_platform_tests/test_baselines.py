"""Baselines on tiny hand-made frames, with the expected forecasts worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast_platform.forecasting.baselines import dow_mean, moving_average, seasonal_naive

DAY = pd.Timedelta(days=1)


def _daily(series_id: str, start: str, values: list[float]) -> pd.DataFrame:
    ds = pd.date_range(start, periods=len(values), freq="D")
    return pd.DataFrame({"series_id": series_id, "ds": ds, "y": np.asarray(values, float)})


def _future(series_id: str, start: str, periods: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"series_id": series_id, "ds": pd.date_range(start, periods=periods, freq="D")}
    )


def test_seasonal_naive_repeats_last_season_cyclically() -> None:
    # season 3 over days 1..6 = [1, 2, 3, 4, 5, 6]; origin day 6. Last season = [4, 5, 6].
    # Horizon 7 days: 4, 5, 6, 4, 5, 6, 4 (never anything after the origin).
    hist = _daily("a", "2024-01-01", [1, 2, 3, 4, 5, 6])
    fut = _future("a", "2024-01-07", 7)
    out = seasonal_naive(hist, fut, season=3, step=DAY)
    assert list(out.columns) == ["series_id", "ds", "y_pred"]
    assert out["y_pred"].tolist() == [4, 5, 6, 4, 5, 6, 4]
    assert (out["ds"] == fut["ds"]).all()


def test_seasonal_naive_weekly_per_series_and_row_order() -> None:
    # Two series, 14 days each; weekly season: day 15 -> value of day 8, day 16 -> day 9.
    a = _daily("a", "2024-01-01", list(range(1, 15)))  # day k has value k
    b = _daily("b", "2024-01-01", [10.0 * k for k in range(1, 15)])
    hist = pd.concat([a, b], ignore_index=True)
    fut = pd.concat([_future("b", "2024-01-15", 2), _future("a", "2024-01-15", 2)])
    out = seasonal_naive(hist, fut, season=7, step=DAY)
    assert out["series_id"].tolist() == ["b", "b", "a", "a"]
    assert out["y_pred"].tolist() == [80.0, 90.0, 8.0, 9.0]


def test_seasonal_naive_weekly_data() -> None:
    # Weekly data, season 2: weeks [1, 2, 3, 4] -> next three weeks 3, 4, 3.
    ds = pd.date_range("2024-01-07", periods=4, freq="7D")
    hist = pd.DataFrame({"series_id": "w", "ds": ds, "y": [1.0, 2.0, 3.0, 4.0]})
    fut = pd.DataFrame({"series_id": "w", "ds": pd.date_range("2024-02-04", periods=3, freq="7D")})
    out = seasonal_naive(hist, fut, season=2, step=pd.Timedelta(weeks=1))
    assert out["y_pred"].tolist() == [3.0, 4.0, 3.0]


def test_seasonal_naive_gap_uses_last_value_before_source() -> None:
    # Day 3 missing; season 3, origin day 5: day 6 -> source day 3 -> falls back to day 2 (=2).
    hist = _daily("a", "2024-01-01", [1, 2, 3, 4, 5]).drop(index=2)
    out = seasonal_naive(hist, _future("a", "2024-01-06", 1), season=3, step=DAY)
    assert out["y_pred"].tolist() == [2.0]


def test_seasonal_naive_rejects_dates_not_after_origin() -> None:
    hist = _daily("a", "2024-01-01", [1, 2, 3])
    with pytest.raises(ValueError, match="after the last history date"):
        seasonal_naive(hist, _future("a", "2024-01-03", 1), season=2, step=DAY)


def test_moving_average_uses_last_window_observations() -> None:
    # last 3 of [1, 2, 3, 10, 20] -> (3 + 10 + 20) / 3 = 11, flat over the horizon
    hist = _daily("a", "2024-01-01", [1, 2, 3, 10, 20])
    out = moving_average(hist, _future("a", "2024-01-06", 4), window=3)
    assert out["y_pred"].tolist() == pytest.approx([11.0] * 4)


def test_moving_average_shorter_series_averages_what_it_has() -> None:
    hist = _daily("a", "2024-01-01", [2, 4])
    out = moving_average(hist, _future("a", "2024-01-03", 1), window=5)
    assert out["y_pred"].tolist() == [3.0]


def test_dow_mean_over_last_weeks() -> None:
    # 21 days starting Monday 2024-01-01, day k has value k. weeks=2 -> days 8..21.
    # Mondays in window: day 8 and 15 -> 11.5; Tuesdays: 9 and 16 -> 12.5.
    hist = _daily("a", "2024-01-01", list(range(1, 22)))
    fut = _future("a", "2024-01-22", 2)  # Monday, Tuesday
    out = dow_mean(hist, fut, weeks=2)
    assert out["y_pred"].tolist() == [11.5, 12.5]


def test_dow_mean_missing_weekday_falls_back_to_window_mean() -> None:
    # One week Mon..Sun = 1..7 without the Monday: Monday falls back to mean(2..7) = 4.5.
    hist = _daily("a", "2024-01-01", [1, 2, 3, 4, 5, 6, 7]).iloc[1:]
    out = dow_mean(hist, _future("a", "2024-01-08", 2), weeks=1)
    assert out["y_pred"].tolist() == [4.5, 2.0]


@pytest.mark.parametrize(
    "call",
    [
        lambda h, f: seasonal_naive(h, f, season=7, step=DAY),
        lambda h, f: moving_average(h, f, window=7),
        lambda h, f: dow_mean(h, f, weeks=4),
    ],
)
def test_series_without_history_raise_naming_them(call) -> None:
    hist = _daily("a", "2024-01-01", list(range(1, 15)))
    fut = pd.concat([_future("a", "2024-01-15", 1), _future("zz", "2024-01-15", 1)])
    with pytest.raises(ValueError, match="no history for 1 series: zz"):
        call(hist, fut)
