"""Out-of-sample expected values for every historical day: what anomaly detection compares with.

A residual is only honest when the forecast did not see the day: an in-sample fit has learned
the anomaly. So the champion's recipe is refit at origins one horizon apart, and each fit
forecasts the horizon after its origin; every day is then covered by exactly one forecast made
before it. The origins are fixed by the data's first usable day, not by the run, so re-running
gives the same values.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import duckdb
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.forecasting.forecaster import Forecaster
from forecast_platform.warehouse.store import quote, table_exists
from forecast_platform.warehouse.tables import EXPECTED, FORECASTS, VALIDATED

# The history read before a scored period: context_features' reference window (182 periods)
# plus its run context (28), in the data's periods (weeks for weekly data), as its windows are.
CONTEXT_PERIODS = 210

# A refit needs about a quarter of usable training rows, whatever the frequency: a span of
# time (91 days: 91 daily periods, 13 weekly ones), not a count of periods. Counted in periods,
# weekly data would need 91 weeks (1.75 years) of usable rows before its first origin, which a
# weekly history of three years, whose rows become usable after a year of lags, does not have.
MIN_TRAIN_DAYS = 91


def min_train_periods(step_days: int) -> int:
    """Periods of usable rows before the first origin: ``MIN_TRAIN_DAYS`` rounded up to whole
    periods (91 daily, 13 weekly)."""
    if step_days < 1:
        raise ValueError(f"step_days must be a positive number of days, got {step_days}")
    return math.ceil(MIN_TRAIN_DAYS / step_days)


def rolling_origins(first_usable: dt.date, last_day: dt.date, horizon: int, step_days: int
                    ) -> list[dt.date]:
    """Origins from ``first_usable + min_train_periods`` periods, one horizon apart, up to the
    last day."""
    first = first_usable + dt.timedelta(days=min_train_periods(step_days) * step_days)
    span = dt.timedelta(days=horizon * step_days)
    origins = []
    origin = first
    while origin < last_day:
        origins.append(origin)
        origin += span
    return origins


def expected_values(frame: pd.DataFrame, make_model: Callable[[], Forecaster], horizon: int,
                    step_days: int) -> tuple[pd.DataFrame, list[dt.date]]:
    """P10/P50/P90 for every row after the first origin, each from a fit that ended before it.

    ``frame``: feature rows (``ds, series_id, y, <features>``). Returns ``origin, ds, series_id,
    p10, p50, p90`` and the origins used.
    """
    frame = frame.assign(ds=pd.to_datetime(frame["ds"]))
    usable = frame[frame[make_model().params.scale_feature].fillna(0) > 0]
    if usable.empty:
        raise ValueError("no feature rows with a usable level (norm): the history is too short "
                         "for out-of-sample expected values")
    origins = rolling_origins(usable["ds"].min().date(), frame["ds"].max().date(), horizon,
                              step_days)
    if not origins:
        raise ValueError(
            f"too little history: expected values need {min_train_periods(step_days)} periods "
            f"({MIN_TRAIN_DAYS} days) of usable rows before the first origin; usable rows "
            f"start {usable['ds'].min().date()} and the data ends {frame['ds'].max().date()}"
        )
    parts = []
    for origin in origins:
        o = pd.Timestamp(origin)
        end = o + pd.Timedelta(days=horizon * step_days)
        target = frame[(frame["ds"] > o) & (frame["ds"] <= end)]
        if target.empty:
            continue
        model = make_model().fit(frame[frame["ds"] <= o])
        preds = model.predict(target)
        parts.append(pd.concat([
            target[["ds", "series_id"]].assign(origin=o).reset_index(drop=True),
            preds.reset_index(drop=True),
        ], axis=1))
    out = pd.concat(parts, ignore_index=True).dropna(subset=["p50"])
    return out, origins


def context_days(spec: DatasetSpec) -> int:
    """``CONTEXT_PERIODS`` in days: how far before a scored date ``expected_with_actuals`` reads
    (210 days for daily data, 1,470 for weekly). The serving bundle packs the same window."""
    return CONTEXT_PERIODS * spec.step_days


def expected_with_actuals(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, start: dt.date,
                          end: dt.date) -> pd.DataFrame:
    """``series_id, ds, y, p10, p50, p90`` for start..end: one forecast per day, the latest
    origin before it, from the rolling refits or the champion's forward forecasts.

    ``forecasts``: the forward forecasts' table (``assets.forecasting.FORECASTS``, Dagster
    wiring this core module does not import). The sales_anomalies asset and the serving
    bundle both read through here, so their expected values cannot drift apart.
    """
    sources = [f"SELECT series_id, ds, origin, p10, p50, p90 FROM {EXPECTED}"]
    if table_exists(con, FORECASTS):
        sources.append(f"SELECT series_id, ds, origin, p10, p50, p90 FROM {FORECASTS}")
    date = quote(spec.date_column)
    return con.execute(f"""
        WITH e AS (
            SELECT * FROM ({" UNION ALL ".join(sources)})
            WHERE ds BETWEEN ? AND ? AND origin < ds
            QUALIFY row_number() OVER (PARTITION BY series_id, ds ORDER BY origin DESC) = 1
        )
        SELECT v.series_id, v.{date} AS ds, CAST(v.{quote(spec.target)} AS DOUBLE) AS y,
               e.p10, e.p50, e.p90
        FROM {VALIDATED} v LEFT JOIN e ON e.series_id = v.series_id AND e.ds = v.{date}
        WHERE v.{date} BETWEEN ? AND ?
        ORDER BY 1, 2
    """, [start, end, start, end]).df()
