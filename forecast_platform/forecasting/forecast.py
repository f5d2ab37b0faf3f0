"""The champion's forecast over the horizon after an origin, with each forecast's explanation.

What the forecasts asset stores: one row per active series and future period, and the top
feature contributions of each. A day the spec's closure rules close for a series keeps its row,
with ``is_open = false`` and P10 = P50 = P90 = 0 (``forecasting.closed``), and has no
explanation: the closure, not the features, sets it. The asset reads and writes the warehouse;
the rows are built here so the service and the benchmarks can build them the same way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.features.offline import HOLIDAYS_SOURCE
from forecast_platform.features.sql import FeaturePlan, features_select
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.closed import apply_closures
from forecast_platform.forecasting.forecaster import Forecaster
from forecast_platform.forecasting.future import at_origin, future_params, future_source
from forecast_platform.warehouse.store import quote
from forecast_platform.warehouse.tables import VALIDATED

TOP_CONTRIBUTIONS = 3


# Future rows predicted and explained at a time by the forecasts asset: its memory is one
# batch's (plus XGBoost's contributions of it) whatever the number of series.
FORECAST_BATCH_ROWS = 262_144

def model_name(spec: DatasetSpec) -> str:
    """The forecaster's name in the model registry and MLflow: one per dataset, so two datasets
    in one warehouse never promote each other's models."""
    return f"{spec.name}_forecaster"


def top_contributions(contribs: pd.DataFrame, rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` largest contributions (by size) of each forecast, long format, vectorized: a
    person reads the few features that moved a forecast, not every feature's share."""
    values = contribs.drop(columns="bias")
    names = np.asarray(values.columns)
    matrix = values.to_numpy()
    order = np.argsort(-np.nan_to_num(np.abs(matrix), nan=-1.0), axis=1)[:, :k]
    picked = np.take_along_axis(matrix, order, axis=1)
    return pd.DataFrame({
        "ds": np.repeat(rows["ds"].to_numpy(), k),
        "series_id": np.repeat(rows["series_id"].to_numpy(), k),
        "rank": np.tile(np.arange(1, k + 1), len(rows)),
        "feature": names[order].ravel(),
        "contribution": picked.ravel(),
    })


@dataclass(frozen=True)
class FutureQuery:
    """The feature rows of the horizon after ``origin``: the SQL, its parameters and the
    forecast dates ``first..last``."""

    sql: str
    params: list
    origin: dt.date
    first: dt.date
    last: dt.date


def future_query(spec: DatasetSpec, plan: FeaturePlan, origin: dt.date,
                 planned: bool = False) -> FutureQuery:
    """The very feature SQL of training over the future rows, so offline features and the
    forecast's inputs cannot disagree; the history reaches back the plan's lookback only.
    ``planned``: known covariates from ``covariate_plan`` (see ``future_source``)."""
    history_start = origin - dt.timedelta(days=plan.lookback_days)
    first = origin + dt.timedelta(days=spec.step_days)
    last = origin + dt.timedelta(days=plan.horizon * spec.step_days)
    sql = features_select(plan, future_source(spec, plan.horizon, planned=planned),
                          HOLIDAYS_SOURCE)
    return FutureQuery(sql, [*future_params(history_start, origin), first, last], origin, first,
                       last)


@dataclass(frozen=True)
class Champion:
    """The champion ready to forecast from the newest sales date: its registry row, the origin
    and the model moved to it (``at_origin``)."""

    row: registry.ModelRecord
    origin: dt.date
    model: Forecaster


def champion_at_origin(con: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> Champion:
    """What every forecast from the warehouse starts from (the forecasts and plan_lift assets);
    raises ``ValueError`` saying what to do when there is no champion yet."""
    name = model_name(spec)
    row = registry.champion(con, name)
    if row is None:
        raise ValueError(f"no champion {name} in model_registry: train the forecaster and let "
                         "it pass the champion gate first")
    origin = con.execute(
        f"SELECT max({quote(spec.date_column)}) FROM {VALIDATED}").fetchall()[0][0]
    return Champion(row, origin, at_origin(con, spec, Forecaster.from_bytes(row.model_bytes),
                                           origin))


@dataclass(frozen=True)
class Forecast:
    """One origin's forecast, kept with what it left out so the asset can say so."""

    rows: pd.DataFrame  # the forecasts table's rows
    explanations: pd.DataFrame  # the forecast_explanations table's rows
    unforecastable: list[str]  # series left out: too new for a level


def build_forecast(model: Forecaster, rows: pd.DataFrame, spec: DatasetSpec, origin: dt.date,
                   forecaster_version: int, created_at: dt.datetime | None = None) -> Forecast:
    """P10/P50/P90 and top contributions of ``model`` (moved to ``origin``) for the future
    ``rows``, each row stamped with the origin and the forecaster version that made it.

    Row by row: any batch of the rows gives its part of the whole's result (the forecasts
    asset works through them a batch at a time). ``created_at``: one time for every batch."""
    preds = model.predict(rows)
    # A series too new for a level (its key shares need most of a year) cannot be forecast by
    # this model: leave it out, and say which ones, rather than store NaN.
    unforecastable = sorted(rows.loc[preds["p50"].isna(), "series_id"].unique())
    rows, preds = rows[preds["p50"].notna()], preds[preds["p50"].notna()]
    # Closed days: kept, is_open false and every quantile 0 (never a positive forecast).
    preds = apply_closures(spec, rows, preds)
    out = rows[["ds", "series_id", *spec.keys]].assign(
        origin=origin, forecaster_version=forecaster_version,
        p10=preds["p10"].to_numpy(), p50=preds["p50"].to_numpy(), p90=preds["p90"].to_numpy(),
        is_open=preds["is_open"].to_numpy(), created_at=created_at or dt.datetime.now(),
    )
    # Approximate attributions for the bulk table (exact TreeSHAP costs far more, see
    # docs/benchmarks.md); the service's /explain computes exact SHAP for the forecast a
    # person asks about. Closed days have none: their forecast is the closure's 0.
    open_rows = rows[preds["is_open"].to_numpy()]
    contribs = model.contributions(open_rows, exact=False)
    explain = top_contributions(contribs, open_rows, TOP_CONTRIBUTIONS).assign(
        origin=origin, forecaster_version=forecaster_version)
    return Forecast(out, explain, unforecastable)
