"""The warehouse side of the feature SQL: its source tables, and features for a date range.

The ``sales_features`` asset, the service's bundle, the benchmarks and the tests all build
features through these few functions, so they cannot drift apart.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.features.calendar import calendar_frame
from forecast_platform.features.sql import SHORT_RANGE_DAYS, FeaturePlan, features_select
from forecast_platform.warehouse.store import quote, registered, replace_range
from forecast_platform.warehouse.tables import CALENDAR, FEATURES, VALIDATED

HOLIDAYS_SOURCE = f"SELECT ds, is_holiday, days_to_holiday FROM {CALENDAR}"


def history_source(spec: DatasetSpec) -> str:
    """validated_sales in the canonical shape the feature SQL reads (two parameters: range)."""
    keys = ", ".join(quote(k) for k in spec.keys)
    known = "".join(f", {quote(c)}" for c in spec.known)
    date = quote(spec.date_column)
    return (
        f"SELECT {date} AS ds, series_id, {keys}, CAST({quote(spec.target)} AS DOUBLE) AS y"
        f"{known} FROM {VALIDATED} WHERE {date} BETWEEN ? AND ?"
    )


def history_features_sql(plan: FeaturePlan, at_targets: bool = False) -> str:
    """Features over the observed history; parameters: history start, end, start, end.
    ``at_targets``: windows at the target rows (see ``features_select``)."""
    return features_select(plan, history_source(plan.spec), HOLIDAYS_SOURCE,
                           at_targets=at_targets)


def short_range(start: dt.date, end: dt.date) -> bool:
    """Whether ``start..end`` is short enough to compute its windows at its target rows."""
    return (end - start).days < SHORT_RANGE_DAYS


def feature_params(plan: FeaturePlan, start: dt.date, end: dt.date) -> list[dt.date]:
    """Parameters for ``history_features_sql``: the range plus exactly the lookback it needs."""
    return [start - dt.timedelta(days=plan.lookback_days), end, start, end]


def feature_frame(con: duckdb.DuckDBPyConnection, plan: FeaturePlan, start: dt.date,
                  end: dt.date) -> pd.DataFrame:
    """Feature rows for ``start..end`` from the connection's validated_sales and calendar."""
    return con.execute(history_features_sql(plan), feature_params(plan, start, end)).df()


def compute_features(con: duckdb.DuckDBPyConnection, plan: FeaturePlan, start: dt.date,
                     end: dt.date) -> int:
    """Replace sales_features for start..end, reading only the lookback the plan needs (a
    short range, the daily steady state, computes only its own rows' windows)."""
    return replace_range(con, FEATURES, "ds", start, end,
                         history_features_sql(plan, at_targets=short_range(start, end)),
                         feature_params(plan, start, end))


def load_sales(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, sales: pd.DataFrame,
               calendar: tuple[dt.date, dt.date] | None = None) -> None:
    """Write a sales frame (the spec's columns) as validated_sales, with the holiday calendar.

    For benchmarks and tests that start from a DataFrame rather than landing files: the tables
    then have the shape the ingest assets give them.
    """
    keys = [sales[k].astype(str) for k in spec.keys]
    frame = sales.assign(
        **{spec.date_column: pd.to_datetime(sales[spec.date_column]).dt.date,
           spec.target: sales[spec.target].astype(float)},
        series_id=keys[0].str.cat(keys[1:], sep="|") if len(keys) > 1 else keys[0],
    )
    with registered(con, "_sales", frame):
        con.execute(f"CREATE OR REPLACE TABLE {VALIDATED} AS SELECT * FROM _sales")
    write_calendar(con, *(calendar or (spec.start, spec.end)))


def write_calendar(con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date) -> pd.DataFrame:
    """(Re)create holiday_calendar from ``calendar_frame(first, last)``; returns the frame."""
    frame = calendar_frame(first, last)
    with registered(con, "_calendar", frame):
        con.execute(f"CREATE OR REPLACE TABLE {CALENDAR} AS SELECT CAST(ds AS DATE) AS ds, "
                    "* EXCLUDE (ds) FROM _calendar")
    return frame
