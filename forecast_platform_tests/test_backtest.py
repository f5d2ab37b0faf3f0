"""The backtest and the gate on real features: no leakage, every method on the same points."""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.synthetic import SyntheticConfig, generate_sales
from forecast_platform.features import offline
from forecast_platform.features.sql import plan_features
from forecast_platform.forecasting.backtest import CHAMPION, MODEL, origins_for, run_backtest
from forecast_platform.forecasting.forecaster import (
    Forecaster,
    ForecasterParams,
    default_model_features,
)
from forecast_platform.forecasting.gate import evaluate

SPEC = get_spec("synthetic")
PLAN = plan_features(SPEC)
END = dt.date(2017, 12, 31)


def feature_frame(tamper_after: dt.date | None = None, zero_series: str | None = None
                  ) -> pd.DataFrame:
    sales, _ = generate_sales(SyntheticConfig(n_stores=2, n_items=3, start=dt.date(2015, 6, 1),
                                              end=END, anomaly_share=0.0))
    sales = sales.assign(series_id=sales["store"].astype(str) + "|" + sales["item"].astype(str),
                         sales=sales["sales"].astype(float))
    if zero_series is not None:
        sales.loc[sales["series_id"] == zero_series, "sales"] = 0.0
    if tamper_after is not None:
        late = sales["date"] > pd.Timestamp(tamper_after)
        sales.loc[late, "sales"] = sales.loc[late, "sales"] * 3 + 50
    con = duckdb.connect()
    offline.load_sales(con, SPEC, sales)
    return offline.feature_frame(con, PLAN, dt.date(2016, 1, 1), END)


def small_model() -> Forecaster:
    # The features the forecaster asset trains on, with fewer rounds.
    features = default_model_features(PLAN.names, SPEC.frequency, list(SPEC.known))
    return Forecaster(ForecasterParams(n_estimators=40), features, PLAN.horizon)


@pytest.fixture(scope="module")
def clean_and_tampered():
    origins = origins_for(END, PLAN.horizon, 1, count=2, spacing=28)
    # Tamper with everything after the last origin: actuals change, forecasts must not.
    run = [run_backtest(feature_frame(t), small_model, origins, PLAN.horizon, 1, 364)
           for t in (None, origins[-1])]
    return origins, run[0], run[1]


def test_forecasts_ignore_data_after_their_origin(clean_and_tampered):
    origins, clean, tampered = clean_and_tampered
    last = pd.Timestamp(origins[-1])
    a = clean.predictions[clean.predictions["origin"] == last]
    b = tampered.predictions[tampered.predictions["origin"] == last]
    assert not np.allclose(a["y"], b["y"])  # the future really changed
    for col in ("p10", "p50", "p90", "seasonal_naive_7", "moving_average_28"):
        np.testing.assert_allclose(a[col], b[col], err_msg=col)


def test_every_method_is_scored_on_the_same_points(clean_and_tampered):
    _, clean, _ = clean_and_tampered
    overall = clean.metrics[clean.metrics["origin"] == "all"]
    assert overall["points"].nunique() == 1
    assert {MODEL, "seasonal_naive_7", "dow_mean_8w", "moving_average_28"} <= set(clean.methods)
    assert len(clean.origins) == 2 and clean.predictions["origin"].nunique() == 2


def test_gate_names_the_baseline_a_model_fails_to_beat(clean_and_tampered):
    _, clean, _ = clean_and_tampered
    bad = clean.predictions.assign(p50=clean.predictions["p50"] * 3)
    worse = type(clean)(clean.origins, bad, clean.metrics.copy(), clean.methods, 0.0)
    from forecast_platform.forecasting.backtest import score

    worse = type(clean)(clean.origins, bad, score(bad, clean.methods), clean.methods, 0.0)
    verdict = evaluate(worse, "smape", 0.0)
    assert not verdict.passed
    assert any(r.startswith("does not beat seasonal_naive_7: smape ") for r in verdict.reasons)
    # With no champion there is none to keep; a margin of 0 is not written out.
    assert verdict.summary.startswith("not promoted: ") and " by 0%" not in verdict.summary
    assert verdict.summary.endswith("no champion yet")


def test_a_retrain_of_the_champions_recipe_on_newer_data_replaces_it(clean_and_tampered):
    from forecast_platform.forecasting.backtest import score

    _, clean, _ = clean_and_tampered
    # A challenger whose backtest beats every baseline (its P50 is the actual).
    exact = clean.predictions.assign(p50=clean.predictions["y"])
    clean = type(clean)(clean.origins, exact, score(exact, clean.methods), clean.methods, 0.0)
    champion, retrain = small_model(), small_model()
    older = END - dt.timedelta(days=28)
    verdict = evaluate(clean, "smape", 0.0, champion=champion, champion_version=1,
                       champion_train_end=older, challenger_train_end=END,
                       challenger_model=retrain)
    assert verdict.passed, verdict.reasons
    assert "retrains champion v1's recipe on newer data" in verdict.reasons[-1]
    assert verdict.champion == verdict.challenger  # one recipe, one backtest

    # A changed recipe is not a retrain: it must beat the champion on points the champion has
    # not seen, and here there are none to compare on.
    changed = small_model()
    changed.params = dataclasses.replace(changed.params, max_depth=changed.params.max_depth + 1)
    verdict = evaluate(clean, "smape", 0.0, champion=champion, champion_version=1,
                       champion_train_end=END, challenger_train_end=END,
                       challenger_model=changed)
    assert not verdict.passed
    # Nor is the same recipe on the same data.
    verdict = evaluate(clean, "smape", 0.0, champion=champion, champion_version=1,
                       champion_train_end=END, challenger_train_end=END,
                       challenger_model=retrain)
    assert not verdict.passed


def test_a_changed_recipe_meets_the_champions_recipe_refit_at_the_same_origins():
    """The gate's fair comparison: both recipes trained up to each origin, scored on the same
    points; the better one wins whichever of the two is the champion."""
    frame = feature_frame()
    origins = origins_for(END, PLAN.horizon, 1, count=2, spacing=28)

    def weak() -> Forecaster:  # two shallow trees: far from converged
        model = small_model()
        model.params = dataclasses.replace(model.params, n_estimators=2, max_depth=1)
        return model

    for challenger, champion, wins in ((small_model, weak, True), (weak, small_model, False)):
        result = run_backtest(frame, challenger, origins, PLAN.horizon, 1, 364,
                              rivals={CHAMPION: champion})
        assert CHAMPION in result.methods
        scored = result.predictions
        assert scored[["p50", CHAMPION]].notna().all().all()
        verdict = evaluate(result, "smape", 0.0, features=frame, champion=champion(),
                           champion_version=1, champion_train_end=END,
                           challenger_train_end=END, challenger_model=challenger())
        assert CHAMPION not in verdict.baselines
        assert verdict.compared_on == (
            f"champion v1's recipe refit at the same 2 origins, on the same {len(scored)} points")
        assert verdict.champion == round(result.overall(CHAMPION)["smape"], 4)
        assert (verdict.challenger < verdict.champion) is wins
        assert any(r.startswith("beats champion v1" if wins else "does not beat champion v1")
                   for r in verdict.reasons), verdict.reasons


def test_too_little_history_is_refused_clearly():
    frame = feature_frame()
    short = frame[frame["ds"] > pd.Timestamp(END - dt.timedelta(days=60))]
    with pytest.raises(ValueError, match="backtest origin"):
        run_backtest(short, small_model, [END - dt.timedelta(days=90)], PLAN.horizon, 1, 364)


def test_a_new_series_gets_no_forecast_instead_of_a_wrong_one():
    """A series that appears only in the last week has no level yet: NaN, not a crash."""
    frame = feature_frame()
    model = small_model().fit(frame[frame["ds"] <= pd.Timestamp("2017-09-30")])
    late = frame[frame["ds"] > pd.Timestamp("2017-12-24")].copy()
    late.loc[late["series_id"] == "1|1", ["norm", "share_item", "series_dev"]] = np.nan
    preds = model.predict(late)
    assert preds.loc[late["series_id"] == "1|1", "p50"].isna().all()
    assert preds.loc[late["series_id"] != "1|1", "p50"].notna().all()


def test_an_all_zero_series_and_a_missing_week_train_and_forecast():
    frame = feature_frame(zero_series="2|3")  # never sold anything
    assert (frame.loc[frame["series_id"] == "2|3", "y"] == 0).all()
    gap = (frame["ds"] >= pd.Timestamp("2017-06-01")) & (frame["ds"] < pd.Timestamp("2017-06-08"))
    frame = frame[~gap]  # a feature partition missing in the training window
    model = small_model().fit(frame[frame["ds"] <= pd.Timestamp("2017-09-30")])
    future = frame[frame["ds"] > pd.Timestamp("2017-09-30")]
    preds = model.predict(future)
    assert (preds["p10"].dropna() >= 0).all()
    assert preds["p50"].notna().any()
    zero_p50 = preds.loc[future["series_id"] == "2|3", "p50"]
    assert zero_p50.isna().all() or zero_p50.max() < 1.0  # no level, or forecast ~0
