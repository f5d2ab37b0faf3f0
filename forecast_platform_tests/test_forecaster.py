"""The forecaster on synthetic data through the real feature SQL: ordered, calibrated-ish bands,
a lossless round trip, contributions that add up, and clear errors."""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.synthetic import SyntheticConfig, generate_sales
from forecast_platform.features.offline import feature_frame, load_sales
from forecast_platform.features.sql import plan_features
from forecast_platform.forecasting import metrics
from forecast_platform.forecasting.baselines import seasonal_naive
from forecast_platform.forecasting.forecaster import Forecaster, ForecasterParams, model_features

SPEC = get_spec("synthetic")
PLAN = plan_features(SPEC)
START, END = dt.date(2013, 1, 1), dt.date(2016, 12, 31)
ORIGIN = dt.date(2016, 9, 30)  # last training day; the 90 days after it are held out
PARAMS = ForecasterParams(n_estimators=150)
FEATURES = model_features(PLAN.names, SPEC.frequency, extra=list(SPEC.known))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Feature rows of 3 stores x 4 items, 2013..2016, from the platform's feature SQL."""
    sales, _ = generate_sales(SyntheticConfig(n_stores=3, n_items=4, start=START, end=END,
                                              seed=3))
    sales = sales.drop(columns=["holiday"]).assign(
        date=lambda f: pd.to_datetime(f["date"]).dt.date,
        series_id=lambda f: f["store"].astype(str) + "|" + f["item"].astype(str),
    )
    con = duckdb.connect()
    load_sales(con, SPEC, sales, calendar=(START, END))
    out = feature_frame(con, PLAN, START, END)
    out["ds"] = pd.to_datetime(out["ds"])
    return out.sort_values(["series_id", "ds"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def split(frame):
    origin = pd.Timestamp(ORIGIN)
    train = frame[frame["ds"] <= origin]
    test = frame[(frame["ds"] > origin) & (frame["ds"] <= origin + pd.Timedelta(days=90))]
    return train, test.reset_index(drop=True)


@pytest.fixture(scope="module")
def model(split) -> Forecaster:
    return Forecaster(PARAMS, FEATURES, PLAN.horizon).fit(split[0])


def test_model_features_are_the_recipe_set():
    assert FEATURES == ["dow", "month", "dom", "doy", "yoy", "promo"]
    weekly = plan_features(dataclasses.replace(SPEC, frequency="W", horizon=13))
    # Weekly: the seasonal recipe's parts (forecasting/seasonal.py) and where the holiday falls.
    assert model_features(weekly.names, "W") == ["recipe_h", "recipe_growth",
                                                 "recipe_own_growth", "recipe_holiday",
                                                 "days_to_holiday", "holiday_in_week"]
    with pytest.raises(ValueError, match="none of the model features"):
        model_features(["y_lag_91"])


def test_training_skips_rows_without_a_norm(frame, split, model):
    train = split[0]
    usable = train["y"].notna() & (train["norm"] > 0)
    assert model.train_rows == int(usable.sum()) < len(train)  # the first ~1.5 years lack one
    lo, hi = model.band
    assert lo < 0 < hi


def test_importance_names_the_features_the_trees_split_on(model):
    """The booster trains on bare arrays (its own names are f0, f1, ...): every split's gain is
    reported under our feature name, and the weekday and season carry the synthetic data."""
    importance = model.importance()
    total = sum(model.booster.get_score(importance_type="total_gain").values())
    assert list(importance.index) == sorted(FEATURES, key=lambda f: -importance[f])
    assert importance.sum() == pytest.approx(total) and total > 0
    assert importance[["dow", "doy"]].min() > 0


def test_quantiles_are_ordered_and_cover_about_80_percent(split, model):
    _, test = split
    preds = model.predict(test)
    assert preds.index.equals(test.index) and preds.notna().all().all()
    assert (preds["p10"] <= preds["p50"]).all() and (preds["p50"] <= preds["p90"]).all()
    assert (preds["p10"] >= 0).all()
    cover = metrics.coverage(test["y"], preds["p10"], preds["p90"])
    assert 0.65 <= cover <= 0.93, cover


def test_the_model_beats_the_weekly_seasonal_naive(split, model):
    """On MAE: with 12 series, SMAPE is dominated by the one intermittent series' zeros."""
    train, test = split
    naive = seasonal_naive(train[["series_id", "ds", "y"]], test[["series_id", "ds"]], 7,
                           pd.Timedelta(days=1))
    model_mae = metrics.mae(test["y"], model.predict(test)["p50"])
    assert model_mae < 0.9 * metrics.mae(test["y"], naive["y_pred"])


def test_round_trip_gives_identical_predictions(split, model):
    _, test = split
    loaded = Forecaster.from_bytes(model.to_bytes())
    assert loaded.band == model.band and loaded.features == model.features
    assert loaded.params == model.params and loaded.train_rows == model.train_rows
    pd.testing.assert_frame_equal(loaded.predict(test), model.predict(test))
    pd.testing.assert_frame_equal(loaded.contributions(test), model.contributions(test))


def test_contributions_sum_to_the_p50(split, model):
    _, test = split
    contribs = model.contributions(test)
    assert list(contribs.columns) == [*FEATURES, "bias"]
    total = contribs.sum(axis=1).to_numpy()
    p50 = model.predict(test)["p50"].to_numpy()
    positive = p50 > 0  # the P50 is the sum, clipped at 0
    assert positive.mean() > 0.9
    np.testing.assert_allclose(total[positive], p50[positive], rtol=1e-3)
    assert (p50[~positive] == 0).all() and (total[~positive] <= 1e-3).all()


def test_rows_without_a_usable_norm_are_nan(split, model):
    _, test = split
    rows = test.head(6).copy()
    rows.loc[rows.index[:2], "norm"] = np.nan
    rows.loc[rows.index[2], "norm"] = 0.0
    preds = model.predict(rows)
    assert preds.iloc[:3].isna().all().all() and preds.iloc[3:].notna().all().all()
    assert model.contributions(rows).iloc[:3].isna().all().all()


def test_no_usable_row_is_a_clear_error(split):
    train = split[0]
    with pytest.raises(ValueError, match="no training rows"):
        Forecaster(PARAMS, FEATURES, 90).fit(train.assign(norm=np.nan))
    with pytest.raises(ValueError, match="no training rows"):
        Forecaster(PARAMS, FEATURES, 90).fit(train.assign(y=np.nan))
    with pytest.raises(ValueError, match="lacks feature columns"):
        Forecaster(PARAMS, FEATURES, 90).fit(train.drop(columns=["norm"]))


def test_a_constant_feature_is_harmless(split):
    """Weekly data has a constant weekday: fitting and explaining still work."""
    train, test = split
    model = Forecaster(dataclasses.replace(PARAMS, n_estimators=30), FEATURES, 90).fit(
        train.assign(dow=3))
    preds = model.predict(test.assign(dow=3))
    assert preds.notna().all().all()
    assert (model.contributions(test.assign(dow=3))["dow"] == 0).all()


def test_top_contributions_are_each_forecasts_largest_by_size():
    from forecast_platform.forecasting.forecast import top_contributions

    contribs = pd.DataFrame({"a": [1.0, -5.0], "b": [-3.0, 2.0], "c": [2.0, np.nan],
                             "bias": [10.0, 10.0]})
    rows = pd.DataFrame({"ds": ["2017-01-01", "2017-01-02"], "series_id": ["s1", "s2"]})
    out = top_contributions(contribs, rows, 2)
    assert list(out["feature"]) == ["b", "c", "a", "b"]  # a NaN contribution ranks last
    assert list(out["rank"]) == [1, 2, 1, 2] and list(out["series_id"]) == ["s1", "s1", "s2", "s2"]
    assert list(out["contribution"]) == [-3.0, 2.0, -5.0, 2.0]
