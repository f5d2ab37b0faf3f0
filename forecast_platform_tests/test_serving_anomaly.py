"""Online anomaly scoring core (``serving.anomaly``) against the asset's own computation, on a
cross-section big enough for day factors (the serving module's 6 series never get one).

The asset's computation is written out here with the anomaly core's public functions exactly as
``sales_anomalies`` calls them (``score_context``, i.e. ``context_features(with_day_factors(
frame), start=D)`` over ``D - CONTEXT_DAYS .. D``, then ``AnomalyDetector.score``); the online
side is the serving module's one-series path. Small synthetic data: 40 series x 260 days, no
Dagster, no HTTP.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types

import numpy as np
import pandas as pd
import pytest

from forecast_platform.anomalies.context import context_features, with_day_factors
from forecast_platform.anomalies.detector import AnomalyDetector
from forecast_platform.anomalies.scoring import score_context
from forecast_platform.serving.anomaly import (
    ActualOutOfRange,
    AnomalyContext,
    Expected,
    NotScorable,
    expected_from_row,
    score_day,
)

CONTEXT_DAYS = 210  # the asset's window (anomalies/expected.py); the bundle packs the asset's own
CONTEXT_PERIODS = 210  # anomalies/expected.py: in periods, so 210 weeks for weekly data
N_SERIES, N_DAYS = 40, 260
SHIFT = 1.6  # every series sells this much above expectation on the last three days
DAILY = types.SimpleNamespace(step_days=1)  # what score_context reads of a DatasetSpec


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    days = pd.date_range("2021-01-01", periods=N_DAYS, freq="D")
    level = rng.uniform(8, 80, N_SERIES)
    weekly = 1 + 0.25 * np.sin(2 * np.pi * np.arange(N_DAYS) / 7)
    p50 = weekly[:, None] * level[None, :]
    y = rng.poisson(p50).astype(float)
    y[-3:] = rng.poisson(p50[-3:] * SHIFT)
    ids = np.array([f"s{i:02d}" for i in range(N_SERIES)])
    return pd.DataFrame({
        "series_id": np.tile(ids, N_DAYS), "ds": np.repeat(days, N_SERIES),
        "y": y.ravel(), "p10": (0.75 * p50).ravel(), "p50": p50.ravel(),
        "p90": (1.3 * p50).ravel(),
    })


@pytest.fixture(scope="module")
def detector(frame) -> AnomalyDetector:
    fit_start = frame["ds"].min() + pd.Timedelta(days=CONTEXT_DAYS)
    train = frame[frame["ds"] < frame["ds"].max() - pd.Timedelta(days=5)]
    return AnomalyDetector().fit(context_features(with_day_factors(train), start=fit_start))


def asset_rows(frame: pd.DataFrame, day: pd.Timestamp, detector: AnomalyDetector
               ) -> pd.DataFrame:
    """What ``sales_anomalies`` computes for the partition ``day``."""
    window = frame[(frame["ds"] >= day - pd.Timedelta(days=CONTEXT_DAYS)) & (frame["ds"] <= day)]
    features = score_context(window, DAILY, day)
    return pd.concat([features.rows, detector.score(features)], axis=1).set_index("series_id")


def online_score(context: AnomalyContext, detector: AnomalyDetector, series_id: str,
                 day: pd.Timestamp, actual: float) -> dict:
    """The service's path for a recent observed day (``OnlineModel.expected_for``)."""
    history, at_day = context.rows(series_id, day.date())
    expected = dataclasses.replace(expected_from_row(at_day, "out_of_sample"),
                                   day_factor=context.day_factor(series_id, day.date(), actual))
    return score_day(detector, history, series_id, day.date(), actual, expected)


def test_one_series_scored_online_equals_the_asset_on_a_shifted_day(frame, detector):
    days = sorted(frame["ds"].unique())
    context = AnomalyContext(with_day_factors(frame), CONTEXT_DAYS,
                             days[-30].date(), days[-1].date() + dt.timedelta(days=1))
    for day in (pd.Timestamp(days[-2]), pd.Timestamp(days[-20])):
        asset = asset_rows(frame, day, detector)
        for series_id in ("s00", "s07", "s31"):
            row = asset.loc[series_id]
            got = online_score(context, detector, series_id, day, float(row["y"]))
            assert got["score"] == pytest.approx(row["score"], rel=1e-12), (series_id, day)
            assert got["is_anomaly"] == bool(row["is_anomaly"])
            assert got["day_factor"] == pytest.approx(row["day_factor"], rel=1e-12)
            assert [got["p10"], got["expected"], got["p90"]] == pytest.approx(
                [row["p10"], row["p50"], row["p90"]], rel=1e-12)
    # The shifted day was judged against the shifted expectation, not the forecaster's.
    assert asset_rows(frame, pd.Timestamp(days[-2]), detector)["day_factor"].iloc[0] \
        == pytest.approx(SHIFT, rel=0.1)


def test_a_what_if_actual_moves_the_day_factor_as_in_the_asset(frame, detector):
    """Another actual for one series: the asset, re-run on data holding that actual, gives
    the endpoint's answer (the day factor is re-measured with it)."""
    days = sorted(frame["ds"].unique())
    day = pd.Timestamp(days[-2])
    context = AnomalyContext(with_day_factors(frame), CONTEXT_DAYS,
                             days[-30].date(), days[-1].date())
    changed = frame.copy()
    hit = (changed["series_id"] == "s03") & (changed["ds"] == day)
    base = float(changed.loc[hit, "p50"].iloc[0])
    for actual in (0.0, 40 * base):
        changed.loc[hit, "y"] = actual
        row = asset_rows(changed, day, detector).loc["s03"]
        got = online_score(context, detector, "s03", day, actual)
        assert got["score"] == pytest.approx(row["score"], rel=1e-12)
        assert got["day_factor"] == pytest.approx(row["day_factor"], rel=1e-12)
        assert got["is_anomaly"] == bool(row["is_anomaly"])
    assert got["is_anomaly"] and got["anomaly_type"] == "spike"


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the point
def test_an_actual_that_overflows_the_features_is_refused_naming_actual(detector):
    """A slow mover (expected 0.3 a day) sold 1.7e308: the standardised residual overflows to
    inf; the answer is a refusal naming ``actual``, never a detector crash (a 500)."""
    days = pd.date_range("2022-01-01", periods=220, freq="D")
    rng = np.random.default_rng(5)
    history = pd.DataFrame({"series_id": "tiny", "ds": days[:-1],
                            "y": rng.poisson(0.3, len(days) - 1).astype(float),
                            "p10": 0.0, "p50": 0.3, "p90": 1.0})
    expected = Expected(0.0, 0.3, 1.0, source="test")
    ok = score_day(detector, history, "tiny", days[-1].date(), 1.0, expected)
    assert ok["expected"] == pytest.approx(0.3)
    with pytest.raises(ActualOutOfRange, match="overflow") as err:
        score_day(detector, history, "tiny", days[-1].date(), 1.7e308, expected)
    assert err.value.field == "actual"


def test_weekly_series_scored_online_equals_the_asset(frame):
    """Weekly data: the asset reads CONTEXT_PERIODS weeks and counts every window in weeks;
    the online path, given the bundle's step (7 days), computes the asset's row."""
    k = (frame["ds"] - frame["ds"].min()).dt.days
    weekly = frame.assign(ds=pd.Timestamp("2010-02-05") + pd.to_timedelta(7 * k, unit="D"))
    days, step = sorted(weekly["ds"].unique()), 7
    context_days = CONTEXT_PERIODS * step
    fit_start = weekly["ds"].min() + pd.Timedelta(days=context_days)
    train = weekly[weekly["ds"] < weekly["ds"].max() - pd.Timedelta(weeks=5)]
    detector = AnomalyDetector().fit(context_features(with_day_factors(train), start=fit_start,
                                                      step_days=step))
    context = AnomalyContext(with_day_factors(weekly), context_days, days[-30].date(),
                             days[-1].date() + dt.timedelta(days=step), step_days=step)
    day = pd.Timestamp(days[-2])
    window = weekly[(weekly["ds"] >= day - pd.Timedelta(days=context_days))
                    & (weekly["ds"] <= day)]
    features = score_context(window, types.SimpleNamespace(step_days=step), day)
    asset = pd.concat([features.rows, detector.score(features)], axis=1).set_index("series_id")
    assert len(asset) == N_SERIES  # every series has 28+ past weekly residuals
    for series_id in ("s00", "s19"):
        row = asset.loc[series_id]
        history, at_day = context.rows(series_id, day.date())
        expected = dataclasses.replace(
            expected_from_row(at_day, "out_of_sample"),
            day_factor=context.day_factor(series_id, day.date(), float(row["y"])))
        got = score_day(detector, history, series_id, day.date(), float(row["y"]), expected,
                        step_days=step)
        assert got["score"] == pytest.approx(row["score"], rel=1e-12)
        assert got["is_anomaly"] == bool(row["is_anomaly"])
        assert got["context"]["ref_points"] == row["ref_points"] == 182  # 182 weeks, not 26
    # Without the step the same rows are a daily grid with six empty days between weeks:
    # 182 days hold 26 weekly residuals, fewer than min_history, and nothing is scorable.
    history, at_day = context.rows("s00", day.date())
    with pytest.raises(NotScorable, match="fewer than 28 past residuals"):
        score_day(detector, history, "s00", day.date(), float(asset.loc["s00", "y"]),
                  expected_from_row(at_day, "out_of_sample"))
