"""Anomaly core: the injector, leak-free context features, calibrated detector, types, reasons.

Forecasts here are the true Poisson means (a perfect forecaster), so each test controls exactly
what is anomalous; the benchmark measures the real thing on real data.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from forecast_platform.models.anomaly import (
    AnomalyDetector,
    classify,
    context_features,
)
from forecast_platform.models.injection import inject_anomalies

START = pd.Timestamp("2017-01-01")
N_DAYS = 260
FIT_END = START + pd.Timedelta(days=179)  # fit on days 40..179, score 180..259


def forecast_frame(n_series: int = 40, seed: int = 0) -> pd.DataFrame:
    """series_id, ds, y, p10, p50, p90 with y ~ Poisson(p50) and an honest Poisson band."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(START, periods=N_DAYS, freq="D")
    weekly = np.array([0.8, 0.9, 0.95, 1.0, 1.1, 1.3, 0.95])[days.dayofweek]
    level = rng.uniform(15, 90, n_series)
    p50 = level[None, :] * weekly[:, None]
    y = rng.poisson(p50).astype(float)
    root = np.sqrt(p50)
    return pd.DataFrame({
        "series_id": np.tile([f"s{i:02d}" for i in range(n_series)], N_DAYS),
        "ds": np.repeat(days, n_series),
        "y": y.ravel(), "p10": (p50 - 1.28 * root).ravel(), "p50": p50.ravel(),
        "p90": (p50 + 1.28 * root).ravel(),
    })


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return forecast_frame()


@pytest.fixture(scope="module")
def detector(clean) -> AnomalyDetector:
    fit = context_features(clean[clean["ds"] <= FIT_END], start=START + pd.Timedelta(days=40))
    return AnomalyDetector(target_false_alarm_rate=0.01).fit(fit, info={"forecaster": "v-test"})


def set_y(frame: pd.DataFrame, series: str, first: pd.Timestamp, days: int, factor: float
          ) -> pd.DataFrame:
    out = frame.copy()
    last = first + pd.Timedelta(days=days - 1)
    hit = (out["series_id"] == series) & out["ds"].between(first, last)
    out.loc[hit, "y"] = np.rint(out.loc[hit, "p50"] * factor)
    return out


def scored(frame: pd.DataFrame, detector: AnomalyDetector) -> pd.DataFrame:
    feats = context_features(frame, start=FIT_END + pd.Timedelta(days=1))
    out = pd.concat([feats.rows, detector.score(feats)], axis=1)
    return pd.concat([out, classify(out)], axis=1)


# --------------------------------------------------------------------------- injector


def test_injector_labels_exactly_the_share_inside_the_window_only():
    rng = np.random.default_rng(1)
    days = pd.date_range("2016-01-01", periods=400, freq="D")
    sales = pd.DataFrame({"series_id": np.tile([f"{i}" for i in range(25)], len(days)),
                          "date": np.repeat(days, 25),
                          "sales": rng.poisson(40, 25 * len(days)).astype(float)})
    start, end = dt.date(2016, 8, 1), dt.date(2017, 2, 3)
    modified, labels = inject_anomalies(sales, start, end, share=0.03, seed=7)
    window = sales["date"].between(pd.Timestamp(start), pd.Timestamp(end))
    assert len(labels) == round(0.03 * window.sum())
    assert labels["date"].between(pd.Timestamp(start), pd.Timestamp(end)).all()
    assert set(labels["anomaly_type"]) <= {"spike", "dip", "level_shift", "zero_run"}
    changed = modified["sales"].to_numpy() != sales["sales"].to_numpy()
    assert not changed[~window.to_numpy()].any()  # nothing outside the window moves
    keys = modified.loc[changed, ["series_id", "date"]].merge(labels, on=["series_id", "date"])
    assert len(keys) == changed.sum()  # every changed point is labelled
    again, labels2 = inject_anomalies(sales, start, end, share=0.03, seed=7)
    pd.testing.assert_frame_equal(labels, labels2)  # seeded


# --------------------------------------------------------------------------- features


def test_reference_statistics_never_see_the_scored_day(clean):
    day = FIT_END + pd.Timedelta(days=30)
    frame = clean[clean["ds"] <= day]
    base = context_features(frame, start=day - pd.Timedelta(days=5)).rows
    tampered = frame.copy()
    tampered.loc[tampered["ds"] == day, "y"] *= 20
    after = context_features(tampered, start=day - pd.Timedelta(days=5)).rows
    today_a, today_b = base[base["ds"] == day], after[after["ds"] == day]
    np.testing.assert_allclose(today_a["ref_median"], today_b["ref_median"])
    np.testing.assert_allclose(today_a["ref_scale"], today_b["ref_scale"])
    assert (today_b["z"].to_numpy() > today_a["z"].to_numpy() + 5).all()
    earlier = base["ds"] < day  # earlier days are untouched by a later day
    pd.testing.assert_frame_equal(base[earlier], after[earlier])
    with pytest.raises(ValueError, match="reference rows must all be before"):
        context_features(frame, reference=frame, start=day)


def test_rows_without_expected_values_or_history_are_skipped_and_counted(clean):
    frame = clean.copy()
    frame.loc[(frame["ds"] == FIT_END + pd.Timedelta(days=3)) & (frame["series_id"] == "s01"),
              ["p10", "p50", "p90"]] = np.nan
    young = forecast_frame(n_series=1, seed=3).assign(series_id="new")
    young = young[young["ds"] > FIT_END - pd.Timedelta(days=10)]  # 10 days of history
    feats = context_features(pd.concat([frame, young]), start=FIT_END + pd.Timedelta(days=1))
    assert feats.skipped["missing_expected"] == 1
    assert feats.skipped["short_history"] == 18  # 'new' reaches 28 past days on day 19
    assert any("no expected value" in m for m in feats.messages)
    assert not ((feats.rows["series_id"] == "s01")
                & (feats.rows["ds"] == FIT_END + pd.Timedelta(days=3))).any()


# --------------------------------------------------------------------------- detector


def test_calibrated_false_alarm_rate_on_clean_data(clean, detector):
    other = forecast_frame(seed=11)  # fresh clean data from the same process
    out = detector.score(context_features(other, start=FIT_END + pd.Timedelta(days=1)))
    assert 0.003 <= out["is_anomaly"].mean() <= 0.025
    assert detector.metadata["target_false_alarm_rate"] == 0.01
    assert detector.metadata["training_window"][0] == str((START + pd.Timedelta(days=40)).date())


def test_big_spike_is_flagged_typed_and_explained(clean, detector):
    day = FIT_END + pd.Timedelta(days=20)
    out = scored(set_y(clean, "s05", day, 1, 3.5), detector)
    row = out[(out["series_id"] == "s05") & (out["ds"] == day)].iloc[0]
    assert row["is_anomaly"] and row["anomaly_type"] == "spike"
    assert f"sales {row['y']:.0f}" in row["reason"] and f"expected {row['p50']:.0f}" \
        in row["reason"]
    assert "3.5x the usual" in row["reason"] or "3.4x" in row["reason"] or "3.6x" in row["reason"]


def test_zero_run_is_typed_zero_run(clean, detector):
    day = FIT_END + pd.Timedelta(days=30)
    out = scored(set_y(clean, "s07", day, 6, 0.0), detector)
    run = out[(out["series_id"] == "s07") & out["ds"].between(day, day + pd.Timedelta(days=5))]
    assert run["is_anomaly"].all()
    assert (run["anomaly_type"] == "zero_run").all()
    assert "no sales for 6 days" in run["reason"].iloc[-1]


def test_sustained_dip_is_one_level_shift(clean, detector):
    day = FIT_END + pd.Timedelta(days=40)
    out = scored(set_y(clean, "s09", day, 14, 0.55), detector)
    run = out[(out["series_id"] == "s09") & out["ds"].between(day, day + pd.Timedelta(days=13))]
    assert run["is_anomaly"].mean() >= 0.8
    late = run.iloc[4:]
    assert (late.loc[late["is_anomaly"], "anomaly_type"] == "level_shift").all()
    assert "below expectation" in late["reason"].iloc[-1]


def test_round_trip_and_version_mismatch(clean, detector):
    feats = context_features(clean, start=FIT_END + pd.Timedelta(days=1))
    again = AnomalyDetector.from_bytes(detector.to_bytes())
    pd.testing.assert_frame_equal(detector.score(feats), again.score(feats))
    assert again.metadata == detector.metadata and again.metadata["forecaster"] == "v-test"
    with pytest.raises(ValueError, match="features lack columns"):
        detector.score(feats.rows.drop(columns=["run_stat"]))
    feats.version = "context-v0"
    with pytest.raises(ValueError, match="retrain the detector"):
        detector.score(feats)
