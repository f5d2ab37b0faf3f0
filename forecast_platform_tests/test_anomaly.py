"""Anomaly core: the injector, leak-free context features, calibrated detector, types, reasons.

Forecasts here are the true Poisson means (a perfect forecaster), so each test controls exactly
what is anomalous; the benchmark measures the real thing on real data.
"""

from __future__ import annotations

import datetime as dt
import types

import numpy as np
import pandas as pd
import pytest

from forecast_platform.anomalies.checks import (
    MAX_DAILY_RATE,
    anomaly_rate,
    detector_matches_forecaster,
)
from forecast_platform.anomalies.classify import classify
from forecast_platform.anomalies.context import (
    _nb_tail,
    context_features,
    day_factors,
    with_day_factors,
)
from forecast_platform.anomalies.detector import AnomalyDetector, tail_threshold
from forecast_platform.anomalies.fitting import fit_window_start
from forecast_platform.anomalies.injection import inject_anomalies
from forecast_platform.anomalies.labels import label_scores, labelled_series, labels_between
from forecast_platform.anomalies.scoring import OUTPUT_COLUMNS, ScoredRange, score_range

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


# --------------------------------------------------------------------------- contamination


def contaminated(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, seed: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frame`` with 3 % of its start..end points replaced by injected anomalies."""
    sales = frame.rename(columns={"ds": "date", "y": "sales"})
    modified, labels = inject_anomalies(sales, start.date(), end.date(), share=0.03, seed=seed)
    return modified.rename(columns={"date": "ds", "sales": "y"}), labels


def test_tail_threshold_ignores_a_few_percent_of_anomalies():
    rng = np.random.default_rng(0)
    clean = rng.exponential(2.0, 50_000)  # survival exp(-s / 2): the 0.2 % point is 12.4
    exact = -2.0 * np.log(0.002)
    threshold, info = tail_threshold(clean, 0.002)
    assert threshold == pytest.approx(exact, rel=0.05)
    dirty = np.concatenate([clean, rng.uniform(15, 60, 1_500)])  # 3 % far out
    robust, info = tail_threshold(dirty, 0.002)
    assert robust == pytest.approx(exact, rel=0.08)
    assert np.quantile(dirty, 0.998) > 1.5 * exact  # what the plain quantile would give
    assert info["estimated_contamination"] > 0.01
    with pytest.raises(ValueError, match="must be below"):
        tail_threshold(clean, 0.1)


def test_detector_fit_on_contaminated_window_keeps_recall_and_false_alarms(clean):
    """3 % anomalies in the training window AND the scored window: the robust detector still
    finds most of them at a low false-alarm rate; the plain-quantile / empirical-tail one
    (the v1 detector) puts its threshold among the anomalies and misses most."""
    fit_start = START + pd.Timedelta(days=40)
    frame, labels = contaminated(clean, fit_start, START + pd.Timedelta(days=N_DAYS - 1), 4)
    fit = context_features(frame[frame["ds"] <= FIT_END], start=fit_start)
    feats = context_features(frame, start=FIT_END + pd.Timedelta(days=1))
    truth = feats.rows[["series_id", "ds"]].merge(
        labels.rename(columns={"date": "ds"}), on=["series_id", "ds"], how="left"
    )["event_id"].notna().to_numpy()
    figures = {}
    for name, options in (("robust", {}), ("v1", {"calibration": "quantile",
                                                  "tails": "empirical"})):
        detector = AnomalyDetector(target_false_alarm_rate=0.002, **options).fit(fit)
        flags = detector.score(feats)["is_anomaly"].to_numpy()
        figures[name] = ((flags & truth).sum() / truth.sum(),
                         (flags & ~truth).sum() / (~truth).sum())
    recall, false_alarms = figures["robust"]
    assert recall >= 0.6 and false_alarms <= 0.005, figures
    assert figures["v1"][0] < recall - 0.2, figures


def test_a_shift_every_series_shares_is_absorbed_by_the_day_factor(clean):
    """A day on which all series sell 30 % more (a calendar effect the forecaster missed) is
    not a handful of anomalies (as it is without the factor); a spike on one series that day
    still is."""
    day = FIT_END + pd.Timedelta(days=12)
    shifted = clean.copy()
    on_day = shifted["ds"] == day
    shifted.loc[on_day, "y"] = np.rint(shifted.loc[on_day, "p50"] * 1.3)
    shifted = set_y(shifted, "s03", day, 1, 4.0)
    factors = day_factors(shifted)
    assert factors[day] == pytest.approx(1.3, abs=0.03)
    assert factors.drop(day).between(0.9, 1.1).all()
    assert (day_factors(shifted, min_series=41) == 1.0).all()  # too few series: no factor
    fit = context_features(with_day_factors(clean[clean["ds"] <= FIT_END]),
                           start=START + pd.Timedelta(days=40))
    detector = AnomalyDetector(target_false_alarm_rate=0.01).fit(fit)
    for adjust, expect_many in ((with_day_factors, False), (lambda f: f, True)):
        feats = context_features(adjust(shifted), start=FIT_END + pd.Timedelta(days=1))
        out = pd.concat([feats.rows, detector.score(feats)], axis=1)
        today = out[out["ds"] == day]
        assert today.loc[today["series_id"] == "s03", "is_anomaly"].item()
        flagged = int(today["is_anomaly"].sum())
        assert flagged >= 5 if expect_many else flagged <= 2, (expect_many, flagged)
    row = today[today["series_id"] == "s03"].iloc[0]
    assert row["day_factor"] == 1.0 and row["forecast_p50"] == pytest.approx(row["p50"])
    adjusted = context_features(with_day_factors(shifted), start=day).rows
    first = adjusted[adjusted["ds"] == day].iloc[0]
    assert first["p50"] == pytest.approx(first["forecast_p50"] * factors[day])
    with pytest.raises(ValueError, match="day_factor must be positive"):
        context_features(shifted.assign(day_factor=0.0))


def test_detector_incompatibility_names_the_problem(clean, detector):
    feats = context_features(clean, start=FIT_END + pd.Timedelta(days=1))
    assert detector.incompatibility(feats) is None
    assert "lack columns ['run_stat']" in detector.incompatibility(
        feats.rows.drop(columns=["run_stat"]))
    feats.version = "context-v0"
    assert "retrain the detector" in detector.incompatibility(feats)


# --------------------------------------------------------------------------- weekly periods


def as_weeks(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with period k labelled START + 7k days: weekly data whose weeks carry the
    daily frame's values, so its features must be the daily ones, period for period."""
    k = (frame["ds"] - START).dt.days
    return frame.assign(ds=START + pd.to_timedelta(7 * k, unit="D"))


def test_weekly_periods_give_the_daily_features_period_for_period(clean, detector):
    """Windows, runs and minimum histories count periods: 182 weekly residuals, not the 26 of
    182 days (fewer than min_history, so nothing would be scored), and no empty days between
    weeks to break runs or dilute level_7d."""
    day = FIT_END + pd.Timedelta(days=30)
    frame = set_y(clean, "s07", day, 6, 0.0)  # a zero run of 6 periods
    daily = context_features(frame, start=FIT_END + pd.Timedelta(days=1))
    weekly = context_features(as_weeks(frame), start=START + pd.Timedelta(
        days=7 * (FIT_END - START).days + 7), step_days=7)
    assert len(daily.rows) == len(weekly.rows) == 80 * 40 and weekly.skipped == daily.skipped
    pd.testing.assert_frame_equal(weekly.rows.drop(columns=["ds", "dow"]),
                                  daily.rows.drop(columns=["ds", "dow"]))
    pd.testing.assert_frame_equal(weekly.rows[["ds"]], as_weeks(daily.rows)[["ds"]])
    flagged = weekly.rows.assign(**detector.score(weekly))
    run = flagged[(flagged["series_id"] == "s07") & (flagged["y"] == 0)]
    assert run["is_anomaly"].all() and len(run) == 6
    reason = classify(run, step_days=7)["reason"].iloc[-1]
    assert "no sales for 6 weeks vs expected" in reason and " a week (" in reason
    # Counted in days, the same weekly frame has 26 residuals in its window: nothing scored.
    assert context_features(as_weeks(frame), start=weekly.rows["ds"].min(),
                            window_periods=26, step_days=7).rows.empty


def test_a_date_between_periods_is_refused_naming_it(clean):
    weekly = as_weeks(clean[clean["ds"] <= START + pd.Timedelta(days=60)])
    odd = weekly["ds"] == weekly["ds"].max()
    weekly.loc[odd, "ds"] += pd.Timedelta(days=2)
    with pytest.raises(ValueError, match=r"ds 2018-02-2\d.* is not a period start: with "
                                         r"step_days=7"):
        context_features(weekly, step_days=7)


def test_expected_values_need_a_quarter_of_usable_rows_whatever_the_period():
    from forecast_platform.anomalies.expected import min_train_periods, rolling_origins

    assert min_train_periods(1) == 91 and min_train_periods(7) == 13
    first = dt.date(2011, 2, 4)
    weekly = rolling_origins(first, dt.date(2012, 10, 26), horizon=39, step_days=7)
    assert weekly == [dt.date(2011, 5, 6), dt.date(2012, 2, 3)]  # 13 weeks, then 39 apart
    daily = rolling_origins(dt.date(2017, 1, 1), dt.date(2017, 6, 30), horizon=91, step_days=1)
    assert daily == [dt.date(2017, 4, 2)]  # 91 days, as before


def test_nb_tail_prices_a_sale_by_its_probability_under_the_series_dispersion():
    """Poisson where the residual scale is at its floor: no sale against 10 expected is
    log10 P(Y = 0) = -10 / ln 10; 25 against 10 is as surprising upwards; the same zero on an
    overdispersed series (scale 2, so alpha = 3 / 10) is far less surprising."""
    y = np.array([[0.0, 25.0, 10.0, 0.0]])
    p50 = np.full_like(y, 10.0)
    scale = np.array([[0.5, 0.5, 0.5, 2.0]])
    tail = _nb_tail(y, p50, scale, np.full_like(y, 10.0))[0]
    assert tail[0] == pytest.approx(-10 / np.log(10), rel=1e-5)
    assert tail[1] > 3 and abs(tail[2]) < 0.5
    assert tail[0] < tail[3] < -0.5
    assert np.isnan(_nb_tail(np.array([[np.nan]]), np.array([[1.0]]), np.array([[1.0]]),
                             np.array([[1.0]]))).all()


# --------------------------------------------------------------------------- the assets' core

DAILY = types.SimpleNamespace(step_days=1, keys=["store", "item"])


def test_score_range_gives_the_stored_rows_typed_only_where_flagged(clean, detector):
    day = FIT_END + pd.Timedelta(days=20)
    frame = set_y(clean, "s05", day, 1, 3.5)
    result = score_range(frame, DAILY, FIT_END + pd.Timedelta(days=1), detector, 7)
    rows = result.rows
    assert list(rows.columns) == OUTPUT_COLUMNS and result.problem is None
    assert result.skipped["detector_mismatch"] == 0 and (rows["detector_version"] == 7).all()
    spike = rows[(rows["series_id"] == "s05") & (rows["ds"] == day)].iloc[0]
    assert spike["is_anomaly"] and spike["anomaly_type"] == "spike"
    assert rows.loc[~rows["is_anomaly"], "anomaly_type"].isna().all()
    assert rows.loc[rows["is_anomaly"], "reason"].notna().all()


def test_score_range_skips_what_the_detector_cannot_read(clean, detector):
    stale = AnomalyDetector.from_bytes(detector.to_bytes())
    stale.info = {**stale.info, "feature_version": "context-v0", "forecaster_version": 3}
    result = score_range(clean, DAILY, FIT_END + pd.Timedelta(days=1), stale, 2)
    assert result.rows.empty and list(result.rows.columns) == OUTPUT_COLUMNS
    assert result.skipped["detector_mismatch"] == 80 * 40
    assert "detector v2 cannot score them" in result.messages[-1]
    outcome = detector_matches_forecaster(stale, 2, 3, result)
    assert not outcome.passed and "3200 rows not scored" in outcome.summary
    assert outcome.figures == {"rows_not_scored": 3200}
    fresh = AnomalyDetector.from_bytes(detector.to_bytes())
    fresh.info = {**fresh.info, "forecaster_version": 3}
    ok = score_range(clean, DAILY, FIT_END + pd.Timedelta(days=1), fresh, 2)
    assert detector_matches_forecaster(fresh, 2, 3, ok).passed
    assert not detector_matches_forecaster(fresh, 2, 4, ok).passed


def test_anomaly_rate_reports_bursts_and_days_shifted_as_a_whole():
    days = np.repeat(pd.to_datetime(["2017-03-01", "2017-03-02", "2017-03-03"]), 20)
    flags = np.zeros(60, dtype=bool)
    flags[20:23] = True  # 15 % of the second day's series
    flags[40:42] = True  # 10 % of the third day's, but only two series: no burst
    rows = pd.DataFrame({"ds": days, "series_id": np.tile(np.arange(20), 3),
                         "is_anomaly": flags,
                         "day_factor": np.repeat([1.0, 1.0, 1.5], 20)})
    outcome = anomaly_rate(ScoredRange(rows, {"short_history": 4}, [], None))
    assert not outcome.passed
    assert f"1 days flag more than {MAX_DAILY_RATE:.0%}" in outcome.summary
    assert "1 days have ALL series at a common factor outside 0.8-1.25" in outcome.summary
    assert outcome.figures == {"days_over_limit": 1, "max_daily_share": 0.15,
                               "common_shift_days": 1, "rows_skipped": 4}
    assert list(outcome.examples["what"]) == ["share of series flagged",
                                               "day factor (all series)"]
    calm = rows.assign(is_anomaly=False, day_factor=1.0)
    outcome = anomaly_rate(ScoredRange(calm, {}, [], None))
    assert outcome.passed and outcome.examples is None


def test_label_scores_on_the_scored_range_only():
    labels = labelled_series(pd.DataFrame({
        "store": [1, 1, 2, 2], "item": [5, 5, 5, 5], "event_id": [0, 0, 1, 2],
        "date": ["2017-03-01", "2017-03-02", "2017-03-01", "2017-04-01"],
    }), DAILY)
    assert list(labels["series_id"].unique()) == ["1|5", "2|5"]
    window = labels_between(labels, dt.date(2017, 3, 1), dt.date(2017, 3, 31))
    assert list(window["event_id"]) == [0, 0, 1]
    scored = pd.DataFrame({"series_id": ["1|5", "1|5", "2|5", "3|5"],
                           "ds": pd.to_datetime(["2017-03-01", "2017-03-02", "2017-03-01",
                                                 "2017-03-01"]),
                           "is_anomaly": [True, False, False, True]})
    assert label_scores(scored, window) == {
        "precision": 0.5, "recall": 0.3333, "f1": 0.4, "event_recall": 0.5,
        "labelled_points": 3, "flagged_points": 2,
    }


def test_fit_window_counts_periods_and_starts_no_earlier_than_the_expected_values():
    last = dt.date(2017, 12, 31)
    assert fit_window_start(dt.date(2015, 1, 1), last, 182, 1) == dt.date(2017, 7, 3)
    assert fit_window_start(dt.date(2017, 9, 1), last, 182, 7) == dt.date(2017, 9, 1)
    with pytest.raises(ValueError, match="fit_periods must be at least 1"):
        fit_window_start(dt.date(2015, 1, 1), last, 0, 1)
