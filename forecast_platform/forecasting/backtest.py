"""Rolling-origin backtest: the model and the baselines, refit at each origin, scored on the
same points.

At an origin ``o`` the model trains on rows with ``ds <= o`` (their features only read data up
to ``ds - lag0 <= o``) and forecasts ``(o, o + horizon]``; the baselines see the history up to
``o`` only. Nothing after the origin reaches a forecast made at it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast_platform.forecasting import baselines, metrics
from forecast_platform.forecasting.forecaster import Forecaster

MODEL = "model"
# The columns of a backtest prediction that are not a method's forecast.
PREDICTION_COLUMNS = ("ds", "series_id", "y", "is_holiday", "origin", "p10", "p50", "p90")
# The champion's recipe refit at the backtest's origins (a rival, not a baseline): what a
# challenger with a changed recipe must beat on the same points (see forecasting/gate.py).
CHAMPION = "champion_recipe"


@dataclass(frozen=True)
class BacktestResult:
    origins: list[dt.date]
    predictions: pd.DataFrame  # origin, ds, series_id, y, is_holiday, p10, p50, p90, <baselines>
    metrics: pd.DataFrame  # method, origin ('all' for overall), metric columns
    methods: list[str]
    train_seconds: float

    def overall(self, method: str = MODEL) -> dict[str, float]:
        row = self.metrics[(self.metrics["method"] == method) & (self.metrics["origin"] == "all")]
        return row.drop(columns=["method", "origin"]).iloc[0].to_dict()


def origins_for(last_day: dt.date, horizon: int, step_days: int, count: int = 3,
                spacing: int | None = None) -> list[dt.date]:
    """``count`` origins, the last one leaving a full horizon before ``last_day``."""
    spacing = spacing or max(1, horizon // 3)
    last = last_day - dt.timedelta(days=horizon * step_days)
    return sorted(last - dt.timedelta(days=i * spacing * step_days) for i in range(count))


def baseline_forecasts(history: pd.DataFrame, future: pd.DataFrame, season: int,
                       step_days: int) -> dict[str, pd.Series]:
    """The baselines every model must beat, aligned to ``future``'s rows."""
    step = pd.Timedelta(days=step_days)
    out: dict[str, pd.DataFrame] = {}
    weekly = 7 // step_days if step_days < 7 else 0
    if weekly:
        out["seasonal_naive_7"] = baselines.seasonal_naive(history, future, weekly, step)
        out["dow_mean_8w"] = baselines.dow_mean(history, future, weeks=8)
    span = (history["ds"].max() - history["ds"].min()) / step
    if span >= season:
        # Series younger than a season get NaN: those points are left out for every method.
        out[f"seasonal_naive_{season}"] = baselines.seasonal_naive(history, future, season, step,
                                                                   short="nan")
    out["moving_average_28"] = baselines.moving_average(history, future, 28 // step_days or 4)
    keys = future[["series_id", "ds"]]
    return {
        name: keys.merge(frame, on=["series_id", "ds"], how="left")["y_pred"].to_numpy()
        for name, frame in out.items()
    }


def score(predictions: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    rows = []
    groups = [("all", predictions)] + [
        (str(o.date() if hasattr(o, "date") else o), g)
        for o, g in predictions.groupby("origin", sort=True)
    ]
    for origin, group in groups:
        for method in methods:
            col = "p50" if method == MODEL else method
            ok = group[col].notna()
            g = group[ok]
            lo, hi = (g["p10"], g["p90"]) if method == MODEL else (None, None)
            values = metrics.point_metrics(g["y"], g[col], is_holiday=g["is_holiday"], lo=lo,
                                           hi=hi)
            rows.append({"method": method, "origin": origin, "points": int(ok.sum()), **values})
    return pd.DataFrame(rows)


def run_backtest(
    frame: pd.DataFrame,
    make_model: Callable[[], Forecaster],
    origins: list[dt.date],
    horizon: int,
    step_days: int,
    season: int,
    rivals: Mapping[str, Callable[[], Forecaster]] | None = None,
) -> BacktestResult:
    """``frame``: the feature rows (ds, series_id, y, is_holiday, features...) of the whole
    training window.

    ``rivals``: other recipes (e.g. ``CHAMPION``), each refit at every origin on the same rows
    as the model; their P50 becomes a method of that name, scored on the same points.
    """
    frame = frame.assign(ds=pd.to_datetime(frame["ds"]))
    history = frame[["series_id", "ds", "y"]].dropna()
    parts, seconds = [], 0.0
    for origin in origins:
        o = pd.Timestamp(origin)
        end = o + pd.Timedelta(days=horizon * step_days)
        train = frame[frame["ds"] <= o]
        test = frame[(frame["ds"] > o) & (frame["ds"] <= end) & frame["y"].notna()]
        if train.empty or test.empty:
            raise ValueError(
                f"backtest origin {origin}: {len(train)} training rows and {len(test)} test rows; "
                f"the window needs history before the origin and {horizon} periods after it"
            )
        model = make_model().fit(train)
        seconds += model.train_seconds
        preds = model.predict(test)
        for name, make_rival in (rivals or {}).items():
            rival = make_rival().fit(train)
            seconds += rival.train_seconds
            preds[name] = rival.predict(test)["p50"]
        hist = history[history["ds"] <= o]
        unseen = sorted(set(test["series_id"]) - set(hist["series_id"]))
        if unseen:  # series that start after the origin cannot be scored at that origin
            keep = ~test["series_id"].isin(unseen)
            test, preds = test[keep], preds[keep]
        base = baseline_forecasts(hist, test[["series_id", "ds"]], season, step_days)
        part = test[["ds", "series_id", "y", "is_holiday"]].assign(origin=o)
        part = pd.concat([part.reset_index(drop=True), preds.reset_index(drop=True)], axis=1)
        for name, values in base.items():
            part[name] = values
        parts.append(part)
    predictions = pd.concat(parts, ignore_index=True)
    # The baselines (every origin's: a young history has fewer), then the rivals.
    rival_names = list(rivals or {})
    others = [c for c in predictions.columns if c not in (*PREDICTION_COLUMNS, *rival_names)]
    others += rival_names
    # Score every method on exactly the same points: those where every other method has a value.
    complete = predictions[others + ["p50"]].notna().all(axis=1)
    predictions = predictions[complete].reset_index(drop=True)
    methods = [MODEL, *others]
    return BacktestResult(origins, predictions, score(predictions, methods), methods, seconds)


def relative_gain(result: BacktestResult, metric: str) -> dict[str, float]:
    """Model error relative to each baseline's (negative = the model is better)."""
    model = result.overall(MODEL)[metric]
    return {
        m: float(np.round(model / result.overall(m)[metric] - 1, 4))
        for m in result.methods if m != MODEL and result.overall(m)[metric] > 0
    }
