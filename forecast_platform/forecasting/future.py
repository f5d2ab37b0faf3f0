"""Future rows to forecast: every active series over the horizon after an origin.

Known-in-advance covariates are not in the history for future dates: they come from the plan
(``covariate_plan``, landed by ``forecast-platform plan``) and, where a date and series has no
plan row or a plan leaves a covariate out, default to 0, "nothing planned" (NULL for a text
code). A service request's scenario overrides both. The same function serves the forecasts
asset and the service, so offline and online forecasts are built alike; so does
``at_origin``, which moves a weekly model's seasonal recipe to the origin it forecasts from.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.features.offline import history_source
from forecast_platform.forecasting.forecaster import Forecaster
from forecast_platform.forecasting.seasonal import Recipe
from forecast_platform.warehouse.store import quote
from forecast_platform.warehouse.tables import COVARIATE_PLAN, FEATURES, VALIDATED


def future_source(spec: DatasetSpec, horizon: int, active_days: int = 28,
                  planned: bool = False) -> str:
    """SQL with the history and the future rows; parameters: history start, origin (x3).

    Series count as active when they have a row in the ``active_days`` before the origin.
    With ``planned``, known covariates come from the ``covariate_plan`` table where it has
    the date and series (the table must exist); otherwise every one is "nothing planned".
    """
    keys = ", ".join(quote(k) for k in spec.keys)
    date = quote(spec.date_column)
    # Text codes (spec.categories) have no "nothing planned" value: NULL, an unknown code.
    defaults = {c: "NULL::VARCHAR" if c in spec.categories else "0" for c in spec.known}
    if planned:
        known_future = "".join(f", coalesce(p.{quote(c)}, {d}) AS {quote(c)}"
                               for c, d in defaults.items())
        plan_join = (f"LEFT JOIN {COVARIATE_PLAN} p "
                     "ON p.series_id = a.series_id AND p.ds = f.ds")
    else:
        known_future = "".join(f", {d} AS {quote(c)}" for c, d in defaults.items())
        plan_join = ""
    step = spec.step_days
    return f"""
        {history_source(spec)}
        UNION ALL
        SELECT f.ds, a.series_id, {", ".join(f"a.{quote(k)}" for k in spec.keys)},
               NULL::DOUBLE AS y {known_future}
        FROM (SELECT DISTINCT series_id, {keys} FROM {VALIDATED}
              WHERE {date} BETWEEN ?::DATE - INTERVAL {active_days * step} DAYS AND ?) a
        CROSS JOIN (SELECT unnest(generate_series(?::DATE + INTERVAL {step} DAYS,
                                                  ?::DATE + INTERVAL {horizon * step} DAYS,
                                                  INTERVAL {step} DAYS))::DATE AS ds) f
        {plan_join}
    """


def future_params(history_start: dt.date, origin: dt.date) -> list[dt.date]:
    return [history_start, origin, origin, origin, origin, origin]


def at_origin(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, model: Forecaster,
              origin: dt.date) -> Forecaster:
    """The model ready to forecast the horizon after ``origin``.

    A weekly model carries the seasonal recipe's forecast from the end of its training data;
    weeks landed since then move the origin, so the recipe is recomputed from the rows of
    sales_features up to it (the rows it was trained on: reading them is much cheaper than
    recomputing them with the feature SQL, see docs/benchmarks.md), and the trained correction
    applies unchanged. Other models forecast from any origin as they are. Raises
    ``ShortHistory`` when the history up to ``origin`` is too short for the recipe.
    """
    if not model.anchored:
        return model
    start = origin - dt.timedelta(days=(Recipe().history_periods - 1) * spec.step_days)
    history = con.execute(
        f"SELECT series_id, ds, y, is_holiday FROM {FEATURES} "
        "WHERE ds BETWEEN ? AND ? AND y IS NOT NULL", [start, origin]).df()
    last = history["ds"].max() if len(history) else None
    if last is None or pd.Timestamp(last).date() < origin:
        raise ValueError(f"{FEATURES} ends {last.date() if last is not None else 'empty'}, "
                         f"before the origin {origin} the weekly model forecasts from: "
                         f"materialize its partitions up to {origin}")
    return model.at_origin(history)
