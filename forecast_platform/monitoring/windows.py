"""The rows the monitoring assets compare: drift windows, the champion's P50 on them, and the
forecasts in force next to their actuals.

These read ``sales_features`` and ``forecasts`` through a connection the asset opened, so the
choice of rows (which weeks are comparable, which forecast a planner used) is the same for the
assets, the CLI and the benchmarks.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.forecaster import Forecaster
from forecast_platform.forecasting.future import at_origin
from forecast_platform.forecasting.seasonal import ShortHistory
from forecast_platform.monitoring.retrain import PREDICTION
from forecast_platform.warehouse.store import table_exists
from forecast_platform.warehouse.tables import FEATURES, FORECASTS

ERROR_COLUMNS = ["ds", "series_id", "y", "p50", "forecaster_version", "origin"]


def drift_windows(con: duckdb.DuckDBPyConnection, day: dt.date, champion: registry.ModelRecord,
                  window_days: int, years: int, season_days: int
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(current, seasonal reference, recent training) feature rows with actuals.

    Reference: the champion's training rows in the same weeks of earlier years (weekday
    aligned), so a report does not drift every December. Recent training: the champion's last
    ``window_days`` of training, for the retrain rule (monitoring/retrain.py). Raises when the
    current window or the reference is empty: a report over nothing would say "no drift".
    """
    start = day - dt.timedelta(days=window_days - 1)
    current = con.execute(f"SELECT * FROM {FEATURES} WHERE ds BETWEEN ? AND ? AND y IS NOT NULL",
                          [start, day]).df()
    shifted = " OR ".join("ds BETWEEN ? AND ?" for _ in range(years))
    params: list = [champion.train_start, champion.train_end]
    for k in range(1, years + 1):
        params += [start - dt.timedelta(days=k * season_days),
                   day - dt.timedelta(days=k * season_days)]
    reference = con.execute(
        f"SELECT * FROM {FEATURES} WHERE y IS NOT NULL AND ds BETWEEN ? AND ? AND ({shifted})",
        params).df()
    recent = con.execute(
        f"SELECT * FROM {FEATURES} WHERE y IS NOT NULL AND ds BETWEEN ? AND ?",
        [champion.train_end - dt.timedelta(days=window_days - 1), champion.train_end]).df()
    if current.empty:
        raise ValueError(f"no {FEATURES} rows with actuals in the {window_days} "
                         f"days ending {day}: ingest those partitions first")
    if reference.empty:
        raise ValueError(
            f"the champion v{champion.version} trained on {champion.train_start}.."
            f"{champion.train_end}, which holds none of the same weeks "
            f"{years} year(s) before {day}: nothing to compare with")
    return current, reference, recent


def with_predictions(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, frame: pd.DataFrame,
                     model: Forecaster) -> pd.DataFrame:
    """The rows with the champion's P50 for them (NaN where it cannot predict).

    A weekly model forecasts from an origin (its seasonal recipe): each run of consecutive
    periods (a window; the reference holds one per earlier year) from the period before it,
    with the history up to it; NaN where that history is shorter than the recipe needs.
    """
    if frame.empty:
        return frame.assign(**{PREDICTION: pd.Series(dtype="float64")})
    if not model.anchored:
        return frame.assign(**{PREDICTION: model.predict(frame)["p50"].to_numpy()})
    ds = pd.to_datetime(frame["ds"])
    step = pd.Timedelta(days=spec.step_days)
    days = pd.Series(np.sort(ds.unique()))
    run_of_day = dict(zip(days, (days.diff() > step).cumsum(), strict=True))
    p50 = np.full(len(frame), np.nan)
    for _, rows in frame.groupby(ds.map(run_of_day).to_numpy()):
        origin = (pd.to_datetime(rows["ds"]).min() - step).date()
        try:
            at = at_origin(con, spec, model, origin)
        except ShortHistory:
            continue  # a window too early for the recipe: no P50, as for any unforecastable row
        p50[frame.index.get_indexer(rows.index)] = at.predict(rows)["p50"].to_numpy()
    return frame.assign(**{PREDICTION: p50})


def forecast_errors(con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
                    ) -> pd.DataFrame:
    """Actuals next to the forecast that was in force for each day: the newest origin before it.

    A day forecast from several origins is judged by the latest forecast made before it, the
    one a planner would have used; each row keeps the forecaster version that made it.
    """
    if not table_exists(con, FORECASTS):
        return pd.DataFrame(columns=ERROR_COLUMNS)
    return con.execute(
        f"""
        SELECT f.ds, f.series_id, s.y, f.p50, f.forecaster_version, f.origin
        FROM {FORECASTS} f JOIN {FEATURES} s USING (series_id, ds)
        WHERE f.ds BETWEEN ? AND ? AND f.origin < f.ds AND s.y IS NOT NULL
        QUALIFY f.origin = max(f.origin) OVER (PARTITION BY f.series_id, f.ds)
        """, [first, last]).df()
