"""Every forecaster version's backtest, point by point, as rows of ``backtest_predictions``.

The registry keeps a backtest's overall metrics; a planner asks finer questions of it: how the
error grows with the horizon, which store is forecast worst, whether the P10-P90 band covers
what it claims, and how much safety stock the quantiles imply at a service level. Those need
the points, so the forecaster asset keeps them beside its registry row. Long form (one row per
point and method) because the methods differ between datasets (weekly data has no weekday
baselines; a changed recipe adds the champion's recipe as a rival). No Dagster here.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from forecast_platform.forecasting.backtest import MODEL, PREDICTION_COLUMNS
from forecast_platform.warehouse.store import registered
from forecast_platform.warehouse.tables import BACKTEST

DDL = f"""
CREATE TABLE IF NOT EXISTS {BACKTEST} (
    forecaster_version INTEGER NOT NULL,
    origin DATE NOT NULL,
    ds DATE NOT NULL,
    step INTEGER NOT NULL,
    series_id VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    y DOUBLE,
    forecast DOUBLE,
    p10 DOUBLE,
    p90 DOUBLE
)
"""


def long_form(predictions: pd.DataFrame, step_days: int) -> pd.DataFrame:
    """A backtest's wide predictions (one column per method) as one row per point and method.

    ``step`` is the horizon in periods (1 = the first period after the origin); P10/P90 are the
    model's own and left empty for the baselines, which have no interval.
    """
    frame = predictions.assign(ds=pd.to_datetime(predictions["ds"]),
                               origin=pd.to_datetime(predictions["origin"]))
    step = ((frame["ds"] - frame["origin"]).dt.days // step_days).astype("int32")
    methods = [c for c in frame.columns if c not in PREDICTION_COLUMNS]
    base = pd.DataFrame({"origin": frame["origin"].dt.date, "ds": frame["ds"].dt.date,
                         "step": step, "series_id": frame["series_id"].astype(str),
                         "y": frame["y"].astype(float)})
    parts = [base.assign(method=MODEL, forecast=frame["p50"].astype(float),
                         p10=frame["p10"].astype(float), p90=frame["p90"].astype(float))]
    parts += [base.assign(method=m, forecast=pd.to_numeric(frame[m], errors="coerce"),
                          p10=float("nan"), p90=float("nan")) for m in methods]
    return pd.concat(parts, ignore_index=True)


def save_backtest(con: duckdb.DuckDBPyConnection, version: int, predictions: pd.DataFrame,
                  step_days: int) -> int:
    """Replace version ``version``'s rows with ``predictions``; returns the rows written."""
    rows = long_form(predictions, step_days)
    con.execute(DDL)
    with registered(con, "_backtest_rows", rows):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {BACKTEST} WHERE forecaster_version = ?", [version])
            con.execute(
                f"INSERT INTO {BACKTEST} SELECT ?, origin, ds, step, series_id, method, y, "
                "forecast, p10, p90 FROM _backtest_rows", [version])
            con.execute("COMMIT")
        except duckdb.Error:
            con.execute("ROLLBACK")
            raise
    return len(rows)
