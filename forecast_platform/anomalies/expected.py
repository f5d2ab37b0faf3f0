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
from collections.abc import Callable, Iterable, Iterator

import duckdb
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.forecasting.forecaster import Forecaster
from forecast_platform.forecasting.sample import SeriesSample
from forecast_platform.warehouse.blocks import EVERY_SERIES, SeriesBlock, date_chunks
from forecast_platform.warehouse.store import quote, table_columns, table_exists
from forecast_platform.warehouse.tables import EXPECTED, FEATURES, FORECASTS, VALIDATED

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


def expected_origins(first_usable: dt.date, last_day: dt.date, horizon: int, step_days: int
                     ) -> list[dt.date]:
    """``rolling_origins``, refused clearly when the history holds none."""
    origins = rolling_origins(first_usable, last_day, horizon, step_days)
    if not origins:
        raise ValueError(
            f"too little history: expected values need {min_train_periods(step_days)} periods "
            f"({MIN_TRAIN_DAYS} days) of usable rows before the first origin; usable rows "
            f"start {first_usable} and the data ends {last_day}"
        )
    return origins


def horizon_after(origin: dt.date, horizon: int, step_days: int) -> tuple[dt.date, dt.date]:
    """The first and last date a fit at ``origin`` forecasts (``origin`` itself excluded)."""
    return (origin + dt.timedelta(days=step_days),
            origin + dt.timedelta(days=horizon * step_days))


def expected_values(train: pd.DataFrame, make_model: Callable[[], Forecaster],
                    origins: list[dt.date], horizon: int, step_days: int,
                    targets: Callable[[dt.date, dt.date], Iterable[pd.DataFrame]]
                    ) -> Iterator[pd.DataFrame]:
    """P10/P50/P90 of every target row after the first origin, each from a fit that ended
    before it, as ``origin, ds, series_id, p10, p50, p90`` frames.

    ``train``: the feature rows the fits learn from (``ds, series_id, y, <features>``; a stated
    sample of the series at scale, forecasting/sample.py), refit on its rows up to each origin.
    ``targets(first, last)``: the feature rows of every series to forecast from ``first`` to
    ``last``, in as many frames as suits the caller's memory (warehouse/blocks.py): the
    forecasts are row by row, so a block of series gives the same values as all at once.
    """
    if not pd.api.types.is_datetime64_any_dtype(train["ds"]):  # no copy when it already is
        train = train.assign(ds=pd.to_datetime(train["ds"]))
    for origin in origins:
        first, last = horizon_after(origin, horizon, step_days)
        model: Forecaster | None = None
        for target in targets(first, last):
            if target.empty:
                continue
            if model is None:  # fitted once the origin has rows to forecast
                model = make_model().fit(train[train["ds"] <= pd.Timestamp(origin)])
            preds = model.predict(target)
            out = pd.concat([
                target[["ds", "series_id"]].assign(
                    ds=pd.to_datetime(target["ds"]), origin=pd.Timestamp(origin)
                ).reset_index(drop=True),
                preds.reset_index(drop=True),
            ], axis=1).dropna(subset=["p50"])
            if not out.empty:
                yield out


def feature_columns(con: duckdb.DuckDBPyConnection, recipe: Forecaster) -> str:
    """The select list of the feature columns ``recipe`` reads: its model features as FLOAT
    (the booster reads float32 anyway, so the values it sees are the same) and the rest as
    stored; every column for a weekly model. Half the memory of ``SELECT *`` and less."""
    wanted = recipe.columns
    if wanted is None:
        return "*"
    stored = set(table_columns(con, FEATURES))
    exact = {"ds", "series_id", "y", recipe.params.scale_feature, "series_dev"}
    return ", ".join(quote(c) if c in exact else f"CAST({quote(c)} AS FLOAT) AS {quote(c)}"
                     for c in wanted if c in stored)


def context_days(spec: DatasetSpec) -> int:
    """``CONTEXT_PERIODS`` in days: how far before a scored date ``expected_with_actuals`` reads
    (210 days for daily data, 1,470 for weekly). The serving bundle packs the same window."""
    return CONTEXT_PERIODS * spec.step_days


def expected_with_actuals(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, start: dt.date,
                          end: dt.date, series: SeriesBlock | SeriesSample | None = None
                          ) -> pd.DataFrame:
    """``series_id, ds, y, p10, p50, p90`` for start..end: one forecast per day, the latest
    origin before it, from the rolling refits or the champion's forward forecasts; only the
    ``series`` of a block (warehouse/blocks.py) or a sample (forecasting/sample.py) if given.

    ``forecasts``: the forward forecasts' table (``assets.forecasting.FORECASTS``, Dagster
    wiring this core module does not import). The sales_anomalies asset and the serving
    bundle both read through here, so their expected values cannot drift apart.
    """
    series = series or EVERY_SERIES
    within, params = series.where("series_id")
    within_v, _ = series.where("v.series_id")
    sources = [f"SELECT series_id, ds, origin, p10, p50, p90 FROM {EXPECTED}"]
    if table_exists(con, FORECASTS):
        sources.append(f"SELECT series_id, ds, origin, p10, p50, p90 FROM {FORECASTS}")
    date = quote(spec.date_column)
    return con.execute(f"""
        WITH e AS (
            SELECT * FROM ({" UNION ALL ".join(sources)})
            WHERE ds BETWEEN ? AND ? AND origin < ds AND {within}
            QUALIFY row_number() OVER (PARTITION BY series_id, ds ORDER BY origin DESC) = 1
        )
        SELECT v.series_id, v.{date} AS ds, CAST(v.{quote(spec.target)} AS DOUBLE) AS y,
               e.p10, e.p50, e.p90
        FROM {VALIDATED} v LEFT JOIN e ON e.series_id = v.series_id AND e.ds = v.{date}
        WHERE v.{date} BETWEEN ? AND ? AND {within_v}
        ORDER BY 1, 2
    """, [start, end, *params, start, end, *params]).df()


def day_factor_inputs(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, start: dt.date,
                      end: dt.date) -> Iterator[pd.DataFrame]:
    """``expected_with_actuals``' ``ds, y, p50`` of every series, a chunk of whole days at a
    time (``date_chunks``: one read when the range is small): a day's factor is a statistic of
    that day's cross-section (anomalies/context.py), so it is computed from these slices while
    the rows are scored a block of series at a time."""
    for first, last in date_chunks(con, VALIDATED, spec.date_column, start, end):
        yield expected_with_actuals(con, spec, first, last)[["ds", "y", "p50"]]
