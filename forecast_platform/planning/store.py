"""The plan in the warehouse: written a partition range at a time, read by the forecasts.

``covariate_plan`` holds, for each planned date and series, the known covariates of the newest
plan file that plans that date, with the plan's version; ``plan_rejects`` the refused rows.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.planning.validation import REJECT_COLUMNS, PlanSplit
from forecast_platform.warehouse.store import quote, registered, replace_range, table_exists
from forecast_platform.warehouse.tables import COVARIATE_PLAN, PLAN_REJECTS, VALIDATED

SQL_TYPES = {"int": "BIGINT", "float": "DOUBLE", "str": "VARCHAR", "bool": "BOOLEAN"}


def last_sales_date(con: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> dt.date | None:
    if not table_exists(con, VALIDATED):
        return None
    return con.execute(f"SELECT max({quote(spec.date_column)}) FROM {VALIDATED}").fetchall()[0][0]


def known_series(con: duckdb.DuckDBPyConnection) -> set[str]:
    if not table_exists(con, VALIDATED):
        return set()
    return {r[0] for r in con.execute(f"SELECT DISTINCT series_id FROM {VALIDATED}").fetchall()}


def write_plan(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, first: dt.date,
               last: dt.date, split: PlanSplit) -> tuple[int, int]:
    """Replace the plan and its rejects of ``first .. last``; returns (planned, rejected)."""
    typed = ", ".join([
        "CAST(ds AS DATE) AS ds", "CAST(series_id AS VARCHAR) AS series_id",
        *(f"CAST({quote(k)} AS {SQL_TYPES[spec.key_type(k)]}) AS {quote(k)}"
          for k in spec.keys),
        *(f"CAST({quote(c)} AS {SQL_TYPES[t]}) AS {quote(c)}" for c, t in spec.known.items()),
        "CAST(plan_version AS VARCHAR) AS plan_version",
        "CAST(source_line AS BIGINT) AS source_line",
        "now()::TIMESTAMP AS landed_at"])
    with registered(con, "_plan", split.valid):
        planned = replace_range(con, COVARIATE_PLAN, "ds", first, last,
                                f"SELECT {typed} FROM _plan")
    rejected_sql = ", ".join(
        ["CAST(partition_date AS DATE) AS partition_date",
         *(f"CAST({quote(c)} AS {'BIGINT' if c == 'source_line' else 'VARCHAR'}) AS {quote(c)}"
           for c in REJECT_COLUMNS[1:]),
         "now()::TIMESTAMP AS rejected_at"])
    with registered(con, "_rejects", split.rejected):
        rejected = replace_range(con, PLAN_REJECTS, "partition_date", first, last,
                                 f"SELECT {rejected_sql} FROM _rejects")
    return planned, rejected


def plan_rows(con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date) -> pd.DataFrame:
    """The plan of ``first .. last`` (every column), empty when nothing was ever planned."""
    if not table_exists(con, COVARIATE_PLAN):
        return pd.DataFrame(columns=["ds", "series_id", "plan_version"])
    return con.execute(f"SELECT * FROM {COVARIATE_PLAN} WHERE ds BETWEEN ? AND ? "
                       "ORDER BY series_id, ds", [first, last]).df()


def usage(rows: pd.DataFrame, plan: pd.DataFrame) -> tuple[int, list[str]]:
    """How many forecast ``rows`` (ds, series_id) have a plan row, and the plan versions used."""
    if plan.empty or rows.empty:
        return 0, []
    keys = rows[["ds", "series_id"]].assign(ds=lambda f: pd.to_datetime(f["ds"]))
    hit = keys.merge(plan[["ds", "series_id", "plan_version"]].assign(
        ds=lambda f: pd.to_datetime(f["ds"])), on=["ds", "series_id"], how="inner")
    return len(hit), sorted(hit["plan_version"].unique().tolist())
