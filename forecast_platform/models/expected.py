"""Out-of-sample expected values for every historical day: what anomaly detection compares with.

A residual is only honest when the forecast did not see the day: an in-sample fit has learned
the anomaly. So the champion's recipe is refit at origins one horizon apart, and each fit
forecasts the horizon after its origin; every day is then covered by exactly one forecast made
before it. The origins are fixed by the data's first usable day, not by the run, so re-running
gives the same values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd

from forecast_platform.models.forecaster import Forecaster

MIN_TRAIN_PERIODS = 91  # a refit needs at least this many periods of usable training rows


def rolling_origins(first_usable: dt.date, last_day: dt.date, horizon: int, step_days: int
                    ) -> list[dt.date]:
    """Origins from ``first_usable + MIN_TRAIN_PERIODS``, one horizon apart, up to the last day."""
    first = first_usable + dt.timedelta(days=MIN_TRAIN_PERIODS * step_days)
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
            f"too little history: expected values need {MIN_TRAIN_PERIODS} periods of usable "
            f"rows before the first origin; usable rows start {usable['ds'].min().date()} and "
            f"the data ends {frame['ds'].max().date()}"
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
