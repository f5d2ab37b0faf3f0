"""The closures task of ``benchmarks/accuracy.py --closures``: a retailer's export, set up by
configuration alone, forecast with its promotion plan.

Data: Kaggle's Store Item Demand turned into a retailer's export by
``datasets/closures_fixture.py`` (open days only: Sundays closed for 9 of 10 stores, national
and regional holidays, a refurbishment; a store-wide promotion flag with a known lift on
scattered days), from 2015-04-01 to 2017-12-31.

Task: the last ``HORIZON`` days are held out. The spec comes from ``init-dataset``'s own
inference (``inspect_csv`` over the training part only, promo known, region static, horizon 42):
closure rules and all. The plan of the held-out days (each store-day's promo flag, as a planner
knows it weeks ahead) goes through the real plan path (``store_plan``, ``validate_plan``,
``write_plan``) into ``covariate_plan``; the forecast rows are the forecasts asset's
(``future_query(planned=True)``) and closed days get the closures' zero. Scored on the open
days of the holdout (the rows the export has), RMSPE as Rossmann scores it (zero actuals
skipped):

* ``rmspe``: the platform's Forecaster (default parameters, default model features);
* ``rmspe_median_dow_promo``: each series' median over the last 52 weeks before the origin by
  weekday and promo flag, reading the plan (falls back to the weekday's median when the series
  never had that weekday with that flag);
* ``rmspe_seasonal_naive_7``: the platform's seasonal naive baseline (last observed week).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from accuracy import create_validated

from forecast_platform.datasets.closures_fixture import store_item_with_closures
from forecast_platform.datasets.custom import inspect_csv, write_spec
from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.features.offline import history_features_sql, write_calendar
from forecast_platform.features.sql import plan_features
from forecast_platform.forecasting import metrics
from forecast_platform.forecasting.baselines import seasonal_naive
from forecast_platform.forecasting.closed import apply_closures
from forecast_platform.forecasting.forecast import future_query
from forecast_platform.forecasting.forecaster import (
    Forecaster,
    ForecasterParams,
    default_model_features,
)
from forecast_platform.planning.files import partitions_of, plan_range, read_plan, store_plan
from forecast_platform.planning.store import known_series, usage, write_plan
from forecast_platform.planning.store import plan_rows as stored_plan
from forecast_platform.planning.validation import validate_plan

HORIZON = 42
NAME = "store_item_closures"
# About 2.5 years before the holdout: init-dataset asks 911 days of a daily dataset with a
# 42-day horizon (the norm's two-year lookback and the backtest's origins); the fixture's
# default start leaves 903 days once 42 are held out.
START = dt.date(2015, 4, 1)


def fixture(source_dir: Path, work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The retailer-shaped export and its truth's promoted store-days."""
    out = work / "store_item_closures.csv"
    truth = store_item_with_closures(source_dir / "train.csv.gz", out, start=START)
    frame = pd.read_csv(out, parse_dates=["date"])
    return frame, truth.promo


def infer_spec(train: pd.DataFrame, work: Path) -> DatasetSpec:
    """The spec `init-dataset` writes for the training part (nothing hand-tuned)."""
    csv = work / "train.csv"
    train.assign(date=train["date"].dt.strftime("%Y-%m-%d")).to_csv(csv, index=False)
    proposal = inspect_csv(csv, NAME, "date", ["store", "item"], "sales", known=["promo"],
                           static=["region"], horizon=HORIZON)
    folder = work / "datasets"
    write_spec(proposal, folder)
    return get_spec(NAME, folder)


def load(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, train: pd.DataFrame) -> None:
    con.register("_train", train)
    create_validated(con, spec, "SELECT * FROM _train")
    con.unregister("_train")
    first, last = con.execute("SELECT min(date), max(date) FROM validated_sales").fetchall()[0]
    write_calendar(con, first, last)


def land_plan(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, promo: pd.DataFrame,
              series: pd.DataFrame, first: dt.date, last: dt.date, work: Path) -> int:
    """The held-out days' promo flags as a plan file, landed the way `forecast-platform plan`
    lands it; returns the rows planned."""
    days = pd.date_range(first, last, freq="D")
    grid = series.merge(pd.DataFrame({"date": days}), how="cross")
    promoted = set(zip(promo["date"], promo["store"], strict=True))
    grid["promo"] = [int((d, s) in promoted) for d, s in zip(grid["date"], grid["store"],
                                                             strict=True)]
    csv = work / "plan.csv"
    grid.assign(date=grid["date"].dt.strftime("%Y-%m-%d"))[
        ["date", "store", "item", "promo"]].to_csv(csv, index=False)
    window = plan_range(spec)
    stored = store_plan(csv, work / "plans", spec, window)
    frame = read_plan(stored.path, spec)
    parts = partitions_of(frame, spec, window)
    split = validate_plan(frame, parts, spec, stored.version, stored.path.name,
                          known_series(con), first - dt.timedelta(days=1), window)
    if len(split.rejected):
        raise ValueError(f"plan rows refused: {split.rejected['reason'].head(3).tolist()}")
    planned, _ = write_plan(con, spec, first, last, split)
    return planned


def median_dow_promo(history: pd.DataFrame, future: pd.DataFrame, origin: dt.date
                     ) -> np.ndarray:
    """Each series' median of the last 52 weeks by (weekday, promo); the weekday's median
    where the series never had that pair."""
    recent = history[history["ds"] > pd.Timestamp(origin - dt.timedelta(weeks=52))]
    recent = recent.assign(dow=recent["ds"].dt.dayofweek)
    by_pair = recent.groupby(["series_id", "dow", "promo"])["y"].median().rename("pair")
    by_dow = recent.groupby(["series_id", "dow"])["y"].median().rename("day")
    fut = future.assign(dow=future["ds"].dt.dayofweek)
    fut = fut.join(by_pair, on=["series_id", "dow", "promo"]).join(by_dow, on=["series_id", "dow"])
    return fut["pair"].fillna(fut["day"]).to_numpy()


def run_closures(source_dir: Path) -> dict:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        frame, promo = fixture(source_dir, work)
        end = frame["date"].max().date()
        origin = end - dt.timedelta(days=HORIZON)
        train = frame[frame["date"] <= pd.Timestamp(origin)]
        holdout = frame[frame["date"] > pd.Timestamp(origin)]
        spec = infer_spec(train, work)
        con = duckdb.connect()
        con.execute("SET threads = 2")
        load(con, spec, train)
        first = origin + dt.timedelta(days=1)
        series = train[["store", "item"]].drop_duplicates()
        plan_rows = land_plan(con, spec, promo, series, first, end, work)

        plan = plan_features(spec)
        features = default_model_features(plan.names, spec.frequency, spec.trained_covariates)
        start = con.execute("SELECT min(date) FROM validated_sales").fetchall()[0][0]
        history = con.execute(history_features_sql(plan), [start, origin, start, origin]).df()
        history["ds"] = pd.to_datetime(history["ds"])
        model = Forecaster(ForecasterParams(), features, plan.horizon).fit(history)
        query = future_query(spec, plan, origin, planned=True)
        rows = con.execute(query.sql, query.params).df()
        rows["ds"] = pd.to_datetime(rows["ds"])
        preds = apply_closures(spec, rows, model.predict(rows))
        rows = rows.assign(p50=preds["p50"].to_numpy(), p10=preds["p10"].to_numpy(),
                           p90=preds["p90"].to_numpy(), is_open=preds["is_open"].to_numpy())
        used, _ = usage(rows, stored_plan(con, first, end))

    actual = holdout.assign(series_id=holdout["store"].astype(str) + "|"
                            + holdout["item"].astype(str))[["series_id", "date", "sales"]]
    actual = actual.rename(columns={"date": "ds", "sales": "actual"})
    test = rows.merge(actual, on=["series_id", "ds"], how="inner")  # open days only
    past = history.loc[history["y"].notna(), ["series_id", "ds", "y", "promo"]]
    naive = seasonal_naive(past[["series_id", "ds", "y"]], test[["series_id", "ds"]], 7,
                           pd.Timedelta(days=1), short="nan")["y_pred"].to_numpy()
    median = median_dow_promo(past, test[["series_id", "ds", "promo"]], origin)
    y = test["actual"].to_numpy(dtype=float)
    scored = test["p50"].notna().to_numpy() & ~np.isnan(naive) & ~np.isnan(median)
    closed_in_holdout = int((~rows["is_open"]).sum())
    return {
        "rmspe": metrics.rmspe(y[scored], test["p50"].to_numpy()[scored]),
        "rmspe_median_dow_promo": metrics.rmspe(y[scored], median[scored]),
        "rmspe_seasonal_naive_7": metrics.rmspe(y[scored], naive[scored]),
        "smape": metrics.smape(y[scored], test["p50"].to_numpy()[scored]),
        "coverage_p10_p90": metrics.coverage(y[scored], test["p10"].to_numpy()[scored],
                                             test["p90"].to_numpy()[scored]),
        "plan_rows_used": used,
        "plan_rows": plan_rows,
        "points": int(scored.sum()),
        "closed_forecasts": closed_in_holdout,
        # Open days of the holdout that the inferred closure rules call closed (forecast 0).
        "open_days_forecast_closed": int((~test["is_open"]).sum()),
        "closure_rules": len(spec.rules),
        "series": int(test["series_id"].nunique()),
        "origin": origin, "first": first, "last": end,
        "train_rows": model.train_rows, "train_seconds": model.train_seconds,
        "seconds": time.perf_counter() - started,
    }
