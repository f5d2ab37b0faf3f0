"""What the training assets fit: out-of-sample expected values from the champion's recipe
(``expected_sales``) and the detector on its window of them (``anomaly_model``).

Pure core (no Dagster, no MLflow): the assets read the champion and the warehouse rows, call
these, then store and track the results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator

import pandas as pd

from forecast_platform.anomalies.context import ContextFeatures
from forecast_platform.anomalies.detector import AnomalyDetector
from forecast_platform.anomalies.expected import expected_values
from forecast_platform.anomalies.scoring import score_context
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.forecasting.engine import LOCAL, FitEngine
from forecast_platform.forecasting.forecaster import Forecaster


def expected_from_recipe(train: pd.DataFrame, recipe: Forecaster, origins: list[dt.date],
                         step_days: int, forecaster_version: int,
                         targets: Callable[[dt.date, dt.date], Iterable[pd.DataFrame]],
                         engine: FitEngine = LOCAL) -> Iterator[pd.DataFrame]:
    """``expected_values`` with fresh fits of ``recipe`` (its params, features and horizon) at
    every origin, each row tagged with the forecaster version it came from: the champion's
    own fitted model has seen the days it would be judged on. ``engine`` fits the boosters
    where the forecaster's are fitted (forecasting/engine.py)."""

    def make_model() -> Forecaster:
        return Forecaster(recipe.params, recipe.features, recipe.horizon, engine=engine)

    for part in expected_values(train, make_model, origins, recipe.horizon, step_days, targets):
        yield part.assign(forecaster_version=forecaster_version)


def fit_window_start(first: dt.date, last: dt.date, fit_periods: int, step_days: int
                     ) -> dt.date:
    """The first date of a ``fit_periods``-period window ending at ``last``, and no earlier
    than ``first`` (the first expected value): a weekly history is often shorter than
    ``fit_periods``, and rows before its first expected value could only be skipped."""
    if fit_periods < 1:
        raise ValueError(f"fit_periods must be at least 1, got {fit_periods}")
    return max(first, last - dt.timedelta(days=(fit_periods - 1) * step_days))


def fit_detector(frame: pd.DataFrame, spec: DatasetSpec, fit_start: dt.date, last: dt.date,
                 kind: str, target_false_alarm_rate: float, forecaster_version: int,
                 factors: pd.Series | None = None, info: dict | None = None
                 ) -> tuple[AnomalyDetector, ContextFeatures]:
    """A detector fitted and calibrated on the context features of ``fit_start``..``last``
    (``frame`` holds those periods and the history before them), and those features.
    ``factors``: the days' factors of every series when ``frame`` holds a sample of them.

    The forecaster version goes into the detector's metadata, so the asset checks can tell
    when the detector was built on residuals of a forecaster that is no longer the champion.
    """
    features = score_context(frame, spec, fit_start, factors)
    detector = AnomalyDetector(kind=kind, target_false_alarm_rate=target_false_alarm_rate)
    detector.fit(features, info={"forecaster_version": int(forecaster_version),
                                 "fit_window": f"{fit_start} .. {last}", **(info or {})})
    return detector, features
