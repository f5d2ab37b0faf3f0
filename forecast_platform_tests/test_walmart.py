"""Walmart Recruiting (weekly, store x department, static store attributes, WMAE) through the
platform: the spec, weekly partitions, the weekly features, and the whole graph on a few stores.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast_platform.datasets.registry import get_spec, land_walmart, walmart_select
from forecast_platform.defs.partitions import partitions_for
from forecast_platform.features.calendar import calendar_frame
from forecast_platform.features.offline import CALENDAR, HOLIDAYS_SOURCE, history_source
from forecast_platform.features.sql import features_select, plan_features
from forecast_platform.forecasting.forecaster import default_model_features
from forecast_platform.forecasting.future import future_params, future_source
from forecast_platform_tests.conftest import (
    SHARED_DATA,
    check_results,
    make_settings,
    materialized,
    run_job,
)

WALMART_DIR = SHARED_DATA / "walmart_recruiting"
SPEC = get_spec("walmart")
STORES = [3, 5, 33]  # three small stores, one of each type (B, B, A): a fast sample
needs_data = pytest.mark.skipif(not WALMART_DIR.is_dir(), reason="Walmart data not present")


def test_spec_columns_statics_and_metric():
    assert SPEC.frequency == "W" and SPEC.step_days == 7 and SPEC.season_length == 52
    assert SPEC.columns[:4] == ["Date", "Store", "Dept", "Weekly_Sales"]
    assert SPEC.columns[-2:] == ["Type", "Size"]
    assert SPEC.metric == "wmae" and SPEC.allow_negative_target
    assert SPEC.trained_covariates == []  # weather, CPI... are not known for future weeks


def test_static_text_codes_need_their_categories():
    import dataclasses

    with pytest.raises(ValueError, match="need their categories"):
        dataclasses.replace(SPEC, categories={})
    with pytest.raises(ValueError, match="static_keys"):
        dataclasses.replace(SPEC, static_keys=("Region",))


def test_weekly_partitions_are_the_data_fridays():
    parts = partitions_for(SPEC)
    keys = parts.get_partition_keys()
    assert keys[0] == "2010-02-05" and keys[-1] == "2012-10-26"
    assert len(keys) == 143  # the training file's 143 weeks
    assert all(dt.date.fromisoformat(k).isoweekday() == 5 for k in keys)
    window = parts.time_window_for_partition_key("2011-11-25")
    assert window.start.date() == dt.date(2011, 11, 25)
    assert (window.end - window.start).days == 7


@pytest.fixture(scope="module")
def warehouse():
    """validated_sales (typed, as validation writes it) and the calendar for the sample."""
    frame = duckdb.sql(walmart_select(WALMART_DIR, SPEC, STORES)).df()
    frame["Date"] = pd.to_datetime(frame["Date"]).dt.date
    frame["series_id"] = frame["Store"].astype(str) + "|" + frame["Dept"].astype(str)
    con = duckdb.connect()
    con.register("_v", frame)
    con.execute("CREATE TABLE validated_sales AS SELECT * FROM _v")
    con.register("_c", calendar_frame(SPEC.start, SPEC.end))
    con.execute(f"CREATE TABLE {CALENDAR} AS SELECT CAST(ds AS DATE) AS ds, * EXCLUDE (ds) "
                "FROM _c")
    return con


def features(con, plan, start, end, tamper_after=None):
    source = history_source(SPEC)
    if tamper_after is not None:  # every target after the date multiplied by 10
        source = (f"SELECT * REPLACE (CASE WHEN ds > DATE '{tamper_after}' THEN y * 10 ELSE y "
                  f"END AS y) FROM ({source})")
    sql = features_select(plan, source, HOLIDAYS_SOURCE)
    out = con.execute(sql, [SPEC.start, SPEC.end, start, end]).df()
    return out.set_index(["series_id", "ds"]).sort_index()


@needs_data
def test_weekly_features_never_read_past_the_horizon(warehouse):
    plan = plan_features(SPEC)
    origin = dt.date(2012, 1, 27)
    first, last = origin + dt.timedelta(days=7), origin + dt.timedelta(days=7 * SPEC.horizon)
    clean = features(warehouse, plan, first, last)
    tampered = features(warehouse, plan, first, last, tamper_after=origin)
    cols = [c for c in plan.names if c not in SPEC.known]
    assert clean["norm"].notna().mean() > 0.9
    pd.testing.assert_frame_equal(clean[cols], tampered[cols])
    # ... and they do change when the data inside the lookback changes.
    earlier = features(warehouse, plan, first, last, tamper_after=origin - dt.timedelta(days=28))
    assert not np.allclose(clean["growth_13"], earlier["growth_13"], equal_nan=True)


@needs_data
def test_statics_holidays_and_the_weekly_norm(warehouse):
    plan = plan_features(SPEC)
    rows = features(warehouse, plan, dt.date(2011, 11, 18), dt.date(2011, 12, 30)).reset_index()
    store3 = rows[rows["series_id"].str.startswith("3|")]
    assert (store3["Type"] == 2).all() and (store3["Size"] == 37392).all()  # B -> 2
    assert (rows.loc[rows["series_id"].str.startswith("33|"), "Type"] == 1).all()  # A -> 1
    by_day = rows.groupby(rows["ds"].astype(str))[["is_holiday", "holiday_in_week"]].max()
    # IsHoliday (the data's own flag) marks Thanksgiving and the week after Christmas.
    assert by_day.loc["2011-11-25", "is_holiday"] == 1 and by_day.loc["2011-12-30",
                                                                       "is_holiday"] == 1
    assert by_day.loc["2011-12-02", "is_holiday"] == 0
    # The calendar's week flag: the week Sat 2011-11-19 .. Fri 11-25 holds Thanksgiving.
    assert by_day.loc["2011-11-25", "holiday_in_week"] == 1
    assert by_day.loc["2011-12-09", "holiday_in_week"] == 0
    ok = rows.dropna(subset=["norm", "snaive_growth", "pooled_profile"])
    expected = 0.5 * ok["snaive_growth"] + 0.5 * ok["pooled_profile"]
    assert np.allclose(ok["norm"], expected)
    assert np.allclose(ok["snaive_ratio"] + ok["pooled_ratio"], 2.0)
    # The model reads the seasonal recipe at its origin (forecasting/seasonal.py), not these rows.
    assert set(default_model_features(plan.names, "W", [])) >= {"recipe_h", "recipe_growth"}


@needs_data
def test_weekly_growth_is_one_where_the_history_cannot_measure_it(warehouse):
    """Growth needs lag0 + a season + a quarter of history: before that it is 1 ("unknown"),
    not the clip's lower bound 0.5 (DuckDB's greatest skips NULLs). Most of Walmart's training
    rows are such rows; with 0.5 their norm was halved and the backtest lost to seasonal naive.
    """
    plan = plan_features(SPEC)
    early = features(warehouse, plan, dt.date(2011, 3, 4), dt.date(2011, 3, 4))
    assert len(early) > 0 and (early["growth_13"] == 1.0).all()
    assert np.allclose(early["snaive_growth"], early["y_tri_52"], equal_nan=True)
    late = features(warehouse, plan, dt.date(2012, 10, 26), dt.date(2012, 10, 26))
    assert (late["growth_13"] != 1.0).mean() > 0.5  # measured once the history allows


@needs_data
def test_future_rows_get_statics_from_their_store(warehouse):
    plan = plan_features(SPEC)
    origin = dt.date(2012, 10, 26)
    sql = features_select(plan, future_source(SPEC, plan.horizon), HOLIDAYS_SOURCE)
    history_start = origin - dt.timedelta(days=plan.lookback_days)
    future = warehouse.execute(sql, [*future_params(history_start, origin),
                                     origin + dt.timedelta(days=7),
                                     origin + dt.timedelta(days=7 * plan.horizon)]).df()
    assert len(future) > 0 and future["y"].isna().all()
    assert future["Type"].notna().all() and future["Size"].notna().all()
    assert future["norm"].notna().mean() > 0.9


# -- the whole graph on three stores -----------------------------------------------------------

# Two origins 4 weeks apart (the default spacing for weekly data): 2011-12-30 and 2012-01-27.
TRAIN_CONFIG = {"ops": {"forecaster": {"config": {"backtest_origins": 2}}}}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("walmart"), dataset="walmart",
                             source=WALMART_DIR)
    land_walmart(SPEC, settings.landing_dir(), settings.source_dir, stores=STORES)
    instance = dg.DagsterInstance.ephemeral()

    def run(job, start=None, end=None, config=None):
        return run_job(settings, start, end, job, instance, run_config=config)

    ingest = run("ingest_job", SPEC.start, SPEC.end)
    train = run("train_job", config=TRAIN_CONFIG)
    scored = run("anomaly_job", dt.date(2012, 6, 1), SPEC.end)
    monitor = run("monitor_job", SPEC.end, SPEC.end)
    return settings, ingest, train, scored, monitor


def query(settings, sql):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql).df()


@needs_data
def test_walmart_lands_and_validates_with_its_returns(graph):
    settings, ingest, *_ = graph
    assert ingest.success
    checks = check_results(ingest)
    assert checks["validated_sales.valid_rows_contract"].passed
    counts = query(settings, "SELECT (SELECT count(*) FROM raw_sales) AS raw, "
                             "(SELECT count(*) FROM validated_sales) AS valid, "
                             "(SELECT count(*) FROM sales_rejects) AS rejects, "
                             "(SELECT count(*) FROM validated_sales WHERE Weekly_Sales < 0) AS neg")
    row = counts.iloc[0]
    assert row["raw"] == row["valid"] + row["rejects"] and row["rejects"] == 0
    assert row["neg"] > 0  # returns are kept, not quarantined


@needs_data
def test_walmart_completeness_uses_the_spec_tolerance(graph):
    """Departments skip weeks (a gap is "no row", not zero): Walmart's tolerance is 15 %."""
    _, ingest, *_ = graph
    completeness = check_results(ingest)["validated_sales.completeness"]
    assert completeness.passed, completeness.description
    assert completeness.metadata["missing_series_days"].value > 0  # the gaps are there


@needs_data
def test_walmart_trains_gates_on_wmae_and_forecasts(graph):
    settings, _, train, *_ = graph
    gate = check_results(train)["forecaster.champion_gate"]
    assert gate.metadata["metric"].value == "wmae"
    assert gate.passed, gate.description
    assert {"forecaster", "forecasts"} <= materialized(train)
    fc = query(settings, "SELECT * FROM forecasts")
    assert fc["ds"].min() == pd.Timestamp("2012-11-02")
    assert fc["ds"].nunique() == SPEC.horizon
    assert (pd.to_datetime(fc["ds"]).dt.dayofweek == 4).all()  # Fridays
    assert ((fc["p10"] <= fc["p50"]) & (fc["p50"] <= fc["p90"])).all()
    assert fc["series_id"].nunique() > 0.9 * query(
        settings, "SELECT count(DISTINCT series_id) AS n FROM validated_sales "
                  "WHERE Date > DATE '2012-09-28'")["n"].iloc[0]
    # The recipe from the last week, and the correction kept only where it won its horizon.
    meta = train.asset_materializations_for_node("forecaster")[0].metadata
    assert meta["anchor_origin"].value == "2012-10-26"
    judged = {k: meta[k].value for k in meta if k.startswith("correction_valid_error")}
    assert meta["correction_valid_rows"].value >= 100 and len(judged) == 2
    won = judged["correction_valid_error_corrected"] < judged["correction_valid_error_recipe"]
    assert (meta["correction_rounds"].value > 0) == won
    # The model trained on the weekly recipe, not on weather, CPI or the markdowns.
    version = query(settings, "SELECT features FROM model_registry "
                              "WHERE model_name = 'walmart_forecaster'")["features"].iloc[0]
    assert "Temperature" not in str(version) and "recipe_growth" in str(version)


@needs_data
def test_walmart_expected_sales_anomalies_and_bundle(graph):
    """The anomaly assets count in weeks (expected values after 13 weeks of usable rows,
    context windows of periods), and the bundle serves a weekly series in process."""
    from forecast_platform.defs.bentoml_store import load_stored_bundle
    from forecast_platform.serving.online import OnlineModel
    from forecast_platform.serving.requests import InvalidInput

    settings, _, train, scored, _ = graph
    assert {"expected_sales", "anomaly_model", "serving_bundle"} <= materialized(train)
    assert scored.success
    anomalies = query(settings, "SELECT * FROM sales_anomalies")
    assert len(anomalies) > 0 and str(anomalies["ds"].min())[:10] >= "2012-06-01"
    assert (pd.to_datetime(anomalies["ds"]).dt.dayofweek == 4).all()  # weekly rows only
    flagged = anomalies[anomalies["is_anomaly"]]
    assert not flagged["reason"].str.contains(" day").any()  # reasons speak of weeks

    meta = train.asset_materializations_for_node("serving_bundle")[0].metadata
    model = OnlineModel(load_stored_bundle(meta["bentoml_tag"].value, settings.bentoml_home))
    assert model.anomaly_missing is None  # the detector and its weekly context were packed
    served = model.forecast([{"Store": 3, "Dept": 1}])[0]
    offline = query(settings, "SELECT ds, p50 FROM forecasts WHERE series_id = '3|1' "
                              "ORDER BY ds")
    assert served["dates"] == [str(d)[:10] for d in offline["ds"]]
    assert served["p50"] == pytest.approx(offline["p50"].tolist(), rel=1e-6)
    # Explanations: the recipe's base is the bias, its parts are features with their values.
    week = served["dates"][3]
    why = model.explain({"Store": 3, "Dept": 1}, week)
    assert why["p50"] == pytest.approx(served["p50"][3], rel=1e-6)
    assert why["bias"] + sum(c["contribution"] for c in why["contributions"]) + why["rest"] \
        == pytest.approx(why["raw_p50"], rel=1e-6)
    values = {c["feature"]: c["value"] for c in model.explain({"Store": 3, "Dept": 1}, week,
                                                              top=10)["contributions"]}
    assert values["recipe_h"] == 4.0 and all(v is not None for v in values.values())
    with pytest.raises(InvalidInput, match="no forecast for series"):  # a past week: no recipe
        model.explain({"Store": 3, "Dept": 1}, str(model.windows.origin))
    day = model.windows.origin  # the last observed week, scored as the asset scores it
    actual = query(settings, "SELECT Weekly_Sales FROM validated_sales WHERE series_id = '3|1' "
                             f"AND Date = DATE '{day}'").iloc[0, 0]
    answer = model.score_anomaly({"Store": 3, "Dept": 1}, day.isoformat(), float(actual))
    assert answer["context"]["ref_points"] >= 28  # 28+ past WEEKLY residuals, not 26 days' worth


@needs_data
def test_walmart_drift_report_is_for_the_partitions_week(graph):
    """A weekly partition's window runs a week past its date: the report is for the partition's
    own Friday, the last 4 weeks against the same weeks a year earlier."""
    settings, *_, monitor = graph
    assert monitor.success, [e.message for e in monitor.all_events if e.is_failure]
    assert {"drift_report", "forecast_performance"} <= materialized(monitor)
    summary = query(settings, "SELECT * FROM drift_summary")
    assert len(summary) == 1
    assert str(summary.iloc[0]["ds"])[:10] == str(SPEC.end)


@needs_data
def test_walmart_drift_p50_forecasts_each_window_from_just_before_it(graph):
    """Drift compares the champion's P50 over windows a year apart (one per reference year): a
    weekly model forecasts each window from the week before it, and a window too early for the
    seasonal recipe gets no P50 rather than a failed report."""
    from forecast_platform.forecasting import registry
    from forecast_platform.forecasting.forecaster import Forecaster
    from forecast_platform.forecasting.future import at_origin
    from forecast_platform.monitoring.windows import with_predictions

    settings = graph[0]
    windows = [(dt.date(2010, 3, 5), dt.date(2010, 3, 26)),  # 5 weeks into the data
               (dt.date(2011, 9, 30), dt.date(2011, 10, 21)),
               (dt.date(2012, 9, 28), dt.date(2012, 10, 19))]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        model = Forecaster.from_bytes(registry.champion(con, "walmart_forecaster").model_bytes)
        frame = con.execute(
            "SELECT * FROM sales_features WHERE y IS NOT NULL AND ("
            + " OR ".join("ds BETWEEN ? AND ?" for _ in windows) + ")",
            [d for w in windows for d in w]).df()
        out = with_predictions(con, SPEC, frame, model)
        last = frame["ds"] >= pd.Timestamp(windows[2][0])
        direct = at_origin(con, SPEC, model, dt.date(2012, 9, 21)).predict(frame[last])
    early = frame["ds"] < pd.Timestamp(windows[1][0])
    assert early.any() and out.loc[early, "p50"].isna().all()
    assert out.loc[~early, "p50"].notna().mean() > 0.9
    assert np.allclose(out.loc[last, "p50"], direct["p50"], equal_nan=True)
