"""The weekly seasonal recipe (forecasting/seasonal.py) and the forecaster built on it: what a
forecast from an origin reads, Easter, holidays, growth pools, and the anchored model's life
(round trip, a later origin, the correction's identity) on small panels; then its accuracy on
the real Walmart holdout."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast_platform.forecasting import metrics
from forecast_platform.forecasting.forecaster import Forecaster, ForecasterParams, model_features
from forecast_platform.forecasting.seasonal import SEASON, Panel, Recipe, anchor_at
from forecast_platform_tests.conftest import SHARED_DATA

FIRST = pd.Timestamp("2010-01-08")  # a Friday: weeks labelled by their last day
WEEKS = 130
WALMART_TRAIN = SHARED_DATA / "walmart_recruiting" / "train.csv.gz"


def weekly_rows(stores: int = 3, depts: int = 4, weeks: int = WEEKS, growth: float = 1.0,
                seed: int = 0) -> pd.DataFrame:
    """Stores x departments with a yearly shape per department, a level per store, a steady
    growth per week and a little noise; every 52nd week from week 10 is a holiday peak."""
    rng = np.random.default_rng(seed)
    t = np.arange(weeks)
    rows = []
    for s in range(1, stores + 1):
        for d in range(1, depts + 1):
            shape = 1 + 0.3 * np.sin(2 * np.pi * (t + 7 * d) / SEASON)
            peak = np.where(t % SEASON == 10, 2.0, 1.0)
            y = 100 * s * d * shape * peak * growth ** t * rng.normal(1, 0.01, weeks)
            rows.append(pd.DataFrame({"series_id": f"{s}|{d}", "ds": FIRST + pd.to_timedelta(
                7 * t, "D"), "y": y, "is_holiday": (t % SEASON == 10).astype(int)}))
    return pd.concat(rows, ignore_index=True)


def test_the_anchor_reads_nothing_after_its_origin():
    rows = weekly_rows()
    origin = 100
    before = anchor_at(Panel.from_rows(rows, 7), origin, 13)
    changed = rows.copy()
    late = changed["ds"] > FIRST + pd.Timedelta(weeks=origin)
    changed.loc[late, "y"] *= 50  # the future is different
    after = anchor_at(Panel.from_rows(changed, 7), origin, 13)
    assert np.array_equal(before.base, after.base)
    assert before.origin == FIRST + pd.Timedelta(weeks=origin)


def test_base_is_last_years_week_times_the_growth():
    """Steady growth of 0.5 % a week: the base is the same weeks a year back (smoothed) x
    the measured growth, 1.005 ** 52 (below the 2.0 clip); within 5 % (the smoothing spreads
    a quarter of the holiday peak onto each of its neighbours)."""
    rows = weekly_rows(growth=1.005)
    panel = Panel.from_rows(rows, 7)
    anchor = anchor_at(panel, 110, 19, Recipe(rank=0, easter_block=0))
    assert anchor.growth == pytest.approx(1.005 ** 52, rel=0.02)
    assert anchor.own_growth == pytest.approx(1.005 ** 52, rel=0.02)
    actual = panel.y[:, 111:130]
    assert metrics.mae(actual.ravel(), anchor.base.ravel()) < 0.05 * actual.mean()


def test_holiday_weeks_are_not_smoothed_away():
    """Week 10 of every year is a peak (2x) flagged as a holiday: copied unsmoothed."""
    rows = weekly_rows()
    panel = Panel.from_rows(rows, 7)
    origin = 2 * SEASON + 10 - 5  # the peak 5 weeks ahead
    plain = anchor_at(panel, origin, 10, Recipe(rank=0, easter_block=0))
    assert plain.holiday[4] == 1 and plain.holiday.sum() == 1
    unflagged = anchor_at(Panel.from_rows(rows.assign(is_holiday=0), 7), origin, 10,
                          Recipe(rank=0, easter_block=0))
    peak = panel.y[:, origin + 5]
    assert np.abs(plain.base[:, 4] / peak - 1).max() < 0.05
    assert (unflagged.base[:, 4] < 0.8 * peak).all()  # a smoothed peak is flattened


def test_easter_weeks_copy_last_years_easter():
    """Sales triple in the week that holds Easter Sunday (2011-04-24, 2012-04-08): the recipe
    takes 2012's Easter week from 2011's, not from the week 52 weeks back (50 weeks apart);
    smoothed over its neighbours, the copied peak is 2x, the aligned one about 1x."""
    rows = weekly_rows()
    ds = rows["ds"]
    easter_weeks = {pd.Timestamp("2011-04-29"), pd.Timestamp("2012-04-13")}  # Friday labels
    rows.loc[ds.isin(easter_weeks), "y"] *= 3
    panel = Panel.from_rows(rows, 7)
    origin = panel.index(pd.Timestamp("2012-03-16"))
    swapped = anchor_at(panel, origin, 8, Recipe(rank=0))
    aligned = anchor_at(panel, origin, 8, Recipe(rank=0, easter_block=0))
    target = panel.index(pd.Timestamp("2012-04-13")) - origin - 1
    assert (swapped.base[:, target] > 1.7 * aligned.base[:, target]).all()
    # Copied 52 weeks back, last year's Easter peak lands two weeks after this year's Easter.
    assert (swapped.base.argmax(axis=1) == target).all()
    assert (aligned.base.argmax(axis=1) == target + 2).all()


def test_too_short_a_history_gives_no_anchor_and_a_clear_error():
    rows = weekly_rows(weeks=Recipe().min_periods - 1)
    assert anchor_at(Panel.from_rows(rows, 7), Recipe().min_periods - 2, 13) is None
    model = Forecaster(ForecasterParams(n_estimators=5), weekly_features(), 13)
    with pytest.raises(ValueError, match="needs 53 periods of history"):
        model.fit(features_of(rows))
    with pytest.raises(ValueError, match="too long"):
        anchor_at(Panel.from_rows(weekly_rows(), 7), 100, SEASON)


def test_a_year_and_a_week_of_history_forecasts_with_no_growth():
    """53 periods hold last year's week and its neighbour but no growth window a season back:
    the growth is 1 (as for a series that sold nothing a year ago), not a guess."""
    rows = weekly_rows(weeks=Recipe().min_periods, growth=1.01)
    anchor = anchor_at(Panel.from_rows(rows, 7), Recipe().min_periods - 1, 13)
    assert np.allclose(anchor.growth, 1.0) and np.allclose(anchor.own_growth, 1.0)
    assert (anchor.base > 0).all()


def weekly_features() -> list[str]:
    return model_features(["days_to_holiday", "holiday_in_week"], "W")


def features_of(rows: pd.DataFrame) -> pd.DataFrame:
    """The two row features the weekly model reads, from the week's holiday flag."""
    return rows.assign(days_to_holiday=np.where(rows["is_holiday"] == 1, 3, 99),
                       holiday_in_week=rows["is_holiday"])


def test_anchored_model_round_trip_and_a_later_origin():
    rows = features_of(weekly_rows(weeks=WEEKS))
    origin = FIRST + pd.Timedelta(weeks=110)
    model = Forecaster(ForecasterParams(n_estimators=20), weekly_features(), 13).fit(
        rows[rows["ds"] <= origin])
    assert model.anchor.origin == origin and model.info["anchor_origin"] == str(origin.date())
    future = rows[(rows["ds"] > origin) & (rows["ds"] <= origin + pd.Timedelta(weeks=13))]
    preds = model.predict(future)
    assert preds.notna().all().all() and (preds["p10"] <= preds["p90"]).all()
    loaded = Forecaster.from_bytes(model.to_bytes())
    pd.testing.assert_frame_equal(loaded.predict(future), preds)
    # Four weeks later: the same trained model, its recipe recomputed at the new origin.
    later = origin + pd.Timedelta(weeks=4)
    moved = model.at_origin(rows[rows["ds"] <= later])
    assert moved.anchor.origin == later and moved.booster is model.booster
    assert moved.predict(future[future["ds"] <= later])["p50"].isna().all()  # before it
    ahead = future[future["ds"] > later]
    fresh = anchor_at(Panel.from_rows(rows[rows["ds"] <= later], 7), 114, 13)
    assert np.allclose(moved.anchor.base, fresh.base)
    assert moved.predict(ahead)["p50"].notna().all()
    # A series the anchor does not hold cannot be forecast: NaN, not a guess.
    assert model.predict(future.head(3).assign(series_id="9|9"))["p50"].isna().all()
    contribs = model.contributions(future.head(20))
    assert np.allclose(contribs.sum(axis=1), model.predict(future.head(20))["p50"], rtol=1e-4)


def test_the_correction_is_the_identity_when_it_cannot_be_judged():
    """With under a horizon of history beyond what the recipe needs, no whole horizon can
    judge a correction: the model forecasts the recipe's base exactly."""
    rows = features_of(weekly_rows(weeks=Recipe().min_periods + 15))
    model = Forecaster(ForecasterParams(n_estimators=50), weekly_features(), 13).fit(rows)
    assert model.info["correction_rounds"] == 0
    # The last horizon starts 2 weeks after the recipe's first usable origin: no origin before
    # it can train a correction, so none is judged.
    assert model.info["correction_train_rows"] == 0 < model.info["correction_valid_rows"]
    assert "correction_valid_error_recipe" not in model.info
    last = rows["ds"].max()
    future = pd.DataFrame({"series_id": "2|3", "ds": [last + pd.Timedelta(weeks=k)
                                                     for k in range(1, 14)],
                           "days_to_holiday": 99, "holiday_in_week": 0})
    base = model.anchor.lookup(future)["recipe_base"].to_numpy()
    assert np.allclose(model.predict(future)["p50"], np.clip(base, 0, None))


@pytest.mark.skipif(not WALMART_TRAIN.is_file(), reason="Walmart data not present")
def test_walmart_holdout_recipe_beats_the_seasonal_naive_by_15_percent():
    """The Kaggle holdout (train to 2012-01-27, the next 39 weeks), every department of every
    store: the recipe at the origin against the 52-week seasonal naive on the same points."""
    frame = duckdb.sql(f"""
        SELECT concat_ws('|', Store, Dept) AS series_id, CAST(Date AS DATE) AS ds,
               sum(Weekly_Sales) AS y, max(CAST(IsHoliday = 'TRUE' AS INTEGER)) AS is_holiday
        FROM read_csv('{WALMART_TRAIN}', header = true, types = {{'IsHoliday': 'VARCHAR'}})
        GROUP BY ALL""").df()
    origin = pd.Timestamp(dt.date(2012, 1, 27))
    panel = Panel.from_rows(frame[frame["ds"] <= origin], 7)
    anchor = anchor_at(panel, panel.index(origin), 39)
    test = frame[frame["ds"] > origin]
    pred = anchor.lookup(test)["recipe_base"].to_numpy()
    last_year = frame.assign(ds=frame["ds"] + pd.Timedelta(weeks=52))
    naive = test.merge(last_year, on=["series_id", "ds"], how="left")["y_y"].to_numpy()
    ok = ~np.isnan(pred) & ~np.isnan(naive)
    holiday = test["is_holiday"].to_numpy() == 1
    y = test["y"].to_numpy()
    recipe = metrics.wmae(y[ok], pred[ok], holiday[ok])
    baseline = metrics.wmae(y[ok], naive[ok], holiday[ok])
    assert ok.mean() > 0.95  # series new in the holdout's year have no naive forecast
    assert recipe < 0.85 * baseline, (recipe, baseline)


def test_a_base_of_almost_nothing_does_not_break_the_correction():
    """A series that sold 1e-40 a year ago and 50 now (an SVD reconstruction of nothing can
    look like that) gives y / base beyond float32: the label is capped, the fit goes on, and
    the series is still forecast."""
    rows = weekly_rows()
    ghost = rows[rows["series_id"] == "1|1"].assign(series_id="9|9", y=1e-40)
    ghost.loc[ghost.index[-30:], "y"] = 50.0
    rows = features_of(pd.concat([rows, ghost], ignore_index=True))
    model = Forecaster(ForecasterParams(n_estimators=30), weekly_features(), 13).fit(rows)
    future = features_of(weekly_rows(weeks=WEEKS + 13)).query("series_id == '1|1'")
    future = future[future["ds"] > rows["ds"].max()].assign(series_id="9|9")
    assert model.predict(future)["p50"].notna().all()


def test_one_key_series_pool_over_all_series():
    """Series ids without a separator (a one-key dataset): both growth pools are all series,
    and the SVD runs over all of them once there are more than its rank."""
    rows = weekly_rows(stores=1, depts=12, growth=1.004)
    rows["series_id"] = rows["series_id"].str.replace("|", "-", regex=False)
    panel = Panel.from_rows(rows, 7)
    anchor = anchor_at(panel, 110, 13)
    assert len(anchor.series) == 12 and np.isfinite(anchor.base).all()
    assert anchor.growth == pytest.approx(1.004 ** 52, rel=0.03)
    two_keys = anchor_at(Panel.from_rows(weekly_rows(stores=1, depts=12, growth=1.004), 7), 110,
                         13)
    assert not np.allclose(anchor.base, two_keys.base)  # SVD over all 12 vs none per dept
