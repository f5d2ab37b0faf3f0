"""Baseline forecasters in plain pandas: the yardsticks every model must beat.

They are generic over series: ``history`` is a long frame ``series_id, ds, y`` holding only data
up to and including the forecast origin, ``future`` lists the ``series_id, ds`` to forecast.
Each returns ``series_id, ds, y_pred`` in the row order of ``future``. A baseline never looks
past a series' last observed date, so it is leak-free by construction and can be scored on any
holdout. A series with no history is an error, not a silent NaN: a NaN forecast would be dropped
by most metrics and flatter the baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_MAX_IDS_IN_ERROR = 10


def _validate(history: pd.DataFrame, future: pd.DataFrame) -> None:
    """Check the columns and that every future series has history (named in the error)."""
    for name, frame, cols in (
        ("history", history, ("series_id", "ds", "y")),
        ("future", future, ("series_id", "ds")),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} is missing columns {missing}")
    observed = set(history.loc[history["y"].notna(), "series_id"].unique())
    without = sorted(set(future["series_id"].unique()) - observed, key=str)
    if without:
        shown = ", ".join(map(str, without[:_MAX_IDS_IN_ERROR]))
        more = (
            f" (and {len(without) - _MAX_IDS_IN_ERROR} more)"
            if len(without) > _MAX_IDS_IN_ERROR
            else ""
        )
        raise ValueError(f"no history for {len(without)} series: {shown}{more}")


def _observed(history: pd.DataFrame) -> pd.DataFrame:
    """Non-missing history sorted by series and date: the input every baseline works from."""
    hist = history.loc[history["y"].notna(), ["series_id", "ds", "y"]].copy()
    # One datetime resolution everywhere: merge_asof refuses to mix ns and us keys.
    hist["ds"] = hist["ds"].astype("datetime64[ns]")
    return hist.sort_values(["series_id", "ds"], kind="stable")


def _result(future: pd.DataFrame, y_pred: pd.Series | np.ndarray) -> pd.DataFrame:
    out = future[["series_id", "ds"]].copy()
    out["y_pred"] = np.asarray(y_pred, dtype=float)
    return out.reset_index(drop=True)


def seasonal_naive(
    history: pd.DataFrame, future: pd.DataFrame, season: int, step: pd.Timedelta,
    short: str = "raise",
) -> pd.DataFrame:
    """The value one season before each target date, repeating the last observed season.

    For a target ``h`` steps after the series' origin (its last observed date), the source date
    is ``origin - (season - 1 - (h - 1) % season) * step``: exactly one season back while
    ``h <= season`` and the last observed season cyclically beyond that, so no value after the
    origin is ever used. ``season=7`` (weekly) or ``364`` (same weekday last year) for daily
    data, ``52`` for weekly data. A source date missing from the history (a gap) takes the most
    recent observation before it, so a single missing day does not turn into a NaN forecast.

    A series that started less than a season before its origin has no source value:
    ``short="raise"`` (default) refuses, ``short="nan"`` leaves NaN for those points, for a
    backtest that scores every method on the points every baseline can forecast (real data has
    series that start late).
    """
    if short not in ("raise", "nan"):
        raise ValueError(f"short must be 'raise' or 'nan', got {short!r}")
    if season < 1:
        raise ValueError(f"season must be >= 1, got {season}")
    step = pd.Timedelta(step)
    if step <= pd.Timedelta(0):
        raise ValueError(f"step must be positive, got {step}")
    _validate(history, future)
    hist = _observed(history)
    origin = hist.groupby("series_id")["ds"].max()

    fut = future[["series_id", "ds"]].copy()
    fut["ds"] = fut["ds"].astype("datetime64[ns]")
    fut_origin = fut["series_id"].map(origin)
    offset = fut["ds"] - fut_origin
    if (offset <= pd.Timedelta(0)).any():
        raise ValueError("future dates must be after the last history date of their series")
    steps = offset / step
    if not np.allclose(steps, np.round(steps)):
        raise ValueError(f"future dates are not whole steps of {step} after the origin")
    h = np.round(steps).astype("int64")
    back = season - 1 - (h - 1) % season
    source = fut_origin - back * step

    # As-of lookup: the last observation at or before the source date, per series.
    lookup = pd.DataFrame(
        {
            "series_id": fut["series_id"].to_numpy(),
            "ds": source.to_numpy(),
            "_row": np.arange(len(fut)),
        }
    )
    matched = pd.merge_asof(
        lookup.sort_values("ds", kind="stable"),
        hist.sort_values("ds", kind="stable"),
        on="ds",
        by="series_id",
        direction="backward",
    ).sort_values("_row")
    values = matched["y"].to_numpy()
    if np.isnan(values).any() and short == "raise":
        bad = sorted(matched.loc[matched["y"].isna(), "series_id"].unique(), key=str)
        raise ValueError(
            f"history too short for season={season} in series: "
            + ", ".join(map(str, bad[:_MAX_IDS_IN_ERROR]))
        )
    return _result(future, values)


def moving_average(history: pd.DataFrame, future: pd.DataFrame, window: int) -> pd.DataFrame:
    """The mean of the last ``window`` observations per series, flat over the horizon.

    Counts observations, not days: with gaps it still averages ``window`` real values (fewer if
    the series is shorter), which is what a 'last N points' baseline means.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    _validate(history, future)
    level = _observed(history).groupby("series_id")["y"].apply(lambda s: s.tail(window).mean())
    return _result(future, future["series_id"].map(level))


def dow_mean(history: pd.DataFrame, future: pd.DataFrame, weeks: int) -> pd.DataFrame:
    """Per-series mean by day of week over the last ``weeks`` weeks before the origin.

    The window is the ``7 * weeks`` days ending at each series' last observed date, so every
    weekday appears ``weeks`` times when the series is complete. A weekday with no observation
    in the window (gaps, weekly data) falls back to the series' mean over the window.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be >= 1, got {weeks}")
    _validate(history, future)
    hist = _observed(history)
    origin = hist.groupby("series_id")["ds"].transform("max")
    recent = hist[hist["ds"] > origin - pd.Timedelta(days=7 * weeks)].copy()
    recent["dow"] = recent["ds"].dt.dayofweek
    by_dow = recent.groupby(["series_id", "dow"])["y"].mean()
    overall = recent.groupby("series_id")["y"].mean()

    keys = pd.MultiIndex.from_arrays([future["series_id"], future["ds"].dt.dayofweek])
    values = by_dow.reindex(keys).to_numpy()
    fallback = future["series_id"].map(overall).to_numpy()
    return _result(future, np.where(np.isnan(values), fallback, values))
