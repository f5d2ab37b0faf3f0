"""One training run of the forecaster: the window, the backtest, the fit and the gate's verdict.

The forecaster asset owns the warehouse connection, MLflow and Dagster's metadata; what a run
trains on, how it is backtested and what it must beat live here, so the CLI, the benchmarks and
the tests can run the same steps without a Dagster instance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.backtest import (
    CHAMPION,
    MODEL,
    BacktestResult,
    origins_for,
    run_backtest,
)
from forecast_platform.forecasting.engine import LOCAL, FitEngine
from forecast_platform.forecasting.forecaster import Forecaster, ForecasterParams
from forecast_platform.forecasting.gate import GateVerdict, evaluate, same_recipe
from forecast_platform.forecasting.report import render
from forecast_platform.forecasting.sample import SeriesSample, sample_series
from forecast_platform.warehouse.store import quote, table_columns
from forecast_platform.warehouse.tables import FEATURES

# The metrics of a backtest row worth tracking (``points`` and ``coverage`` are tracked apart).
TRACKED_METRICS = ("smape", "mae", "rmse", "wmae", "bias", "r2")
# Rows one fit reads at most (forecasting/sample.py): two years of 5,000 daily series fit whole.
DEFAULT_MAX_TRAIN_ROWS = 4_000_000


class _Logger(Protocol):
    """Both ``logging.Logger`` and Dagster's ``context.log`` fit."""

    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


def load_training_frame(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, periods: int,
                        max_rows: int = DEFAULT_MAX_TRAIN_ROWS, as_float32: Sequence[str] = ()
                        ) -> tuple[pd.DataFrame, dt.date, dt.date, SeriesSample]:
    """The feature rows of the last ``periods`` periods, of at most about ``max_rows`` rows:
    every series when they fit, else a stated sample of whole series (forecasting/sample.py),
    so a fit's memory and time stay bounded whatever the number of series.

    ``as_float32``: columns read as 32-bit floats, half the memory: the model's features,
    which the booster reads as float32 anyway (never the target or the normaliser).
    """
    first, end = con.execute(
        f"SELECT min(ds), max(ds) FROM {FEATURES} WHERE y IS NOT NULL").fetchall()[0]
    if end is None:
        raise ValueError("sales_features is empty: materialize the feature partitions first")
    # The window the run asks for, but never before the data (what the registry and MLflow
    # record as the training window).
    start = max(end - dt.timedelta(days=(periods - 1) * spec.step_days), first)
    sample = sample_series(con, FEATURES, "ds BETWEEN ? AND ?", [start, end], max_rows)
    kept, params = sample.where()
    stored = set(table_columns(con, FEATURES))
    narrow = [c for c in dict.fromkeys(as_float32)
              if c in stored and c not in ("ds", "series_id", "y")]
    replace = (" REPLACE (" + ", ".join(f"CAST({quote(c)} AS FLOAT) AS {quote(c)}"
                                        for c in narrow) + ")") if narrow else ""
    frame = con.execute(f"SELECT *{replace} FROM {FEATURES} WHERE ds BETWEEN ? AND ? "
                        f"AND {kept} ORDER BY ds", [start, end, *params]).df()
    return frame, start, end, sample


def default_spacing(spec: DatasetSpec) -> int:
    """Periods between backtest origins when the run does not say: 28 days' worth, so daily
    and weekly data are backtested over comparable stretches of the calendar."""
    return max(1, 28 // spec.step_days)


def check_history(frame: pd.DataFrame, spec: DatasetSpec, horizon: int, origins: list[dt.date],
                  start: dt.date) -> None:
    """Refuse early and clearly when the window cannot hold the backtest, rather than fail
    inside it with a message about one origin's empty training rows."""
    first_origin = min(origins)
    needed = first_origin - dt.timedelta(days=horizon * spec.step_days)
    if needed < start or frame.empty:
        have = (frame["ds"].max() - frame["ds"].min()).days // spec.step_days + 1 \
            if not frame.empty else 0
        raise ValueError(
            f"too little history: the backtest's first origin {first_origin} needs training data "
            f"from {needed} on (one horizon of {horizon} periods before it), but sales_features "
            f"holds {have} periods from {start}. Land more history or lower backtest_origins / "
            "origin_spacing."
        )


def load_champion(champion_row: registry.ModelRecord | None, log: _Logger) -> Forecaster | None:
    """The champion's model, or None when there is none or it predates the current format: an
    unreadable champion must not block training its successor."""
    if champion_row is None:
        return None
    try:
        return Forecaster.from_bytes(champion_row.model_bytes)
    except ValueError as err:
        log.warning(f"champion v{champion_row.version} cannot be loaded ({err}); "
                    "the gate compares with its recorded backtest only")
        return None


def champion_rival(champion: Forecaster | None, challenger: Forecaster, frame: pd.DataFrame,
                   engine: FitEngine = LOCAL) -> dict[str, Callable[[], Forecaster]]:
    """The champion's recipe as a backtest rival, when the challenger's recipe differs from it
    and the training frame still has every feature it reads (see forecasting/gate.py).

    A refit, not the stored champion: scored on the same points with the same training rows
    per origin, the two recipes compete on equal terms. A retrain of the same recipe needs no
    rival (it would tie by construction); a champion whose features are no longer computed is
    compared on the points it has not seen instead.
    """
    if champion is None or same_recipe(champion, challenger) \
            or champion.horizon != challenger.horizon \
            or not set(champion.row_features) <= set(frame.columns):
        return {}
    params, features, horizon = champion.params, list(champion.features), champion.horizon
    return {CHAMPION: lambda: Forecaster(params, features, horizon, engine=engine)}


def anchored_info(model: Forecaster) -> dict[str, Any]:
    """A weekly model's recipe origin, its correction's rounds (0: the recipe alone) and the
    evidence they were chosen on: what a person needs to trust a correction; empty otherwise."""
    if not model.anchored:
        return {}
    return {k: v for k, v in model.info.items() if k.startswith(("correction_", "anchor_"))}


@dataclass(frozen=True)
class Training:
    """A fitted challenger with the backtest it is judged on, and what it was judged against."""

    model: Forecaster
    backtest: BacktestResult
    params: ForecasterParams
    features: list[str]
    horizon: int
    origins: list[dt.date]
    start: dt.date
    end: dt.date
    champion: Forecaster | None  # the champion's model, when it can be loaded

    @property
    def overall(self) -> dict[str, float]:
        return self.backtest.overall(MODEL)

    def tracking_params(self, dataset: str) -> dict[str, Any]:
        """What reproduces the run: the recipe, the data window and the backtest's origins."""
        return {
            **{f"model.{k}": v for k, v in self.params.__dict__.items()},
            "dataset": dataset, "horizon": self.horizon, "train_start": str(self.start),
            "train_end": str(self.end), "train_rows": self.model.train_rows,
            "features": ",".join(self.features),
            "origins": ",".join(str(o) for o in self.origins),
            # Weekly: the correction's boosting rounds (0: the seasonal recipe alone) and the
            # origin of the recipe the model carries.
            **{f"model.{k}": v for k, v in self.model.info.items()},
        }

    def tracking_metrics(self) -> list[dict[str, float]]:
        """One dict per backtest row (method x origin, 'all' unsuffixed), so a run page shows
        how stable each method is across origins, not only its overall score."""
        out = []
        for _, row in self.backtest.metrics.iterrows():
            suffix = "" if row["origin"] == "all" else f".origin_{row['origin']}"
            out.append({f"{row['method']}.{m}{suffix}": float(row[m])
                        for m in TRACKED_METRICS if pd.notna(row[m])})
        return out

    def overall_table(self) -> pd.DataFrame:
        """Each method's score over every origin: the table people compare."""
        metrics = self.backtest.metrics
        return metrics[metrics["origin"] == "all"].drop(columns="origin")


def train(frame: pd.DataFrame, start: dt.date, end: dt.date, spec: DatasetSpec, horizon: int,
          features: list[str], params: ForecasterParams, *, backtest_origins: int,
          origin_spacing: int | None, champion_row: registry.ModelRecord | None,
          log: _Logger, engine: FitEngine = LOCAL) -> Training:
    """Backtest the recipe from rolling origins (against the champion's recipe when it
    differs), then fit it on the whole window.

    ``engine`` fits every booster of the run, the backtest's per-origin fits and the rival's
    included, so a backtest measures the path that trained the model (forecasting/engine.py).

    ``frame`` is ``load_training_frame``'s window ``start..end``; ``origin_spacing`` None means
    ``default_spacing``.
    """
    origins = origins_for(end, horizon, spec.step_days, backtest_origins,
                          origin_spacing or default_spacing(spec))
    check_history(frame, spec, horizon, origins, start)

    def make_model() -> Forecaster:
        return Forecaster(params, features, horizon, engine=engine)

    champion = load_champion(champion_row, log)
    rivals = champion_rival(champion, make_model(), frame, engine)
    if rivals:
        log.info(f"the recipe differs from champion v{champion_row.version}'s: "
                 "its recipe is refit at the same backtest origins for the gate")
    backtest = run_backtest(frame, make_model, origins, horizon, spec.step_days,
                            spec.season_length, rivals=rivals)
    model = make_model().fit(frame)
    return Training(model=model, backtest=backtest, params=params, features=features,
                    horizon=horizon, origins=origins, start=start, end=end, champion=champion)


def judge(training: Training, frame: pd.DataFrame, metric: str, margin: float,
          champion_row: registry.ModelRecord | None) -> GateVerdict:
    """The champion gate's verdict on ``training`` (see forecasting/gate.py)."""
    return evaluate(
        training.backtest, metric, margin, features=frame, champion=training.champion,
        champion_version=champion_row.version if champion_row else None,
        champion_train_end=champion_row.train_end if champion_row else None,
        champion_recorded=champion_row.metrics.get(MODEL, {}).get(metric)
        if champion_row else None,
        challenger_train_end=training.end, challenger_model=training.model,
    )


def render_report(training: Training, *, title: str, dataset: str, metric: str,
                  verdict: GateVerdict, run_id: str, trigger: str) -> str:
    """The run's HTML report: the backtest, the verdict and the facts to reproduce it."""
    model = training.model
    return render(
        title=title, result=training.backtest, metric=metric,
        importance=model.importance(), verdict_text=verdict.summary,
        facts={"dataset": dataset, "training window": f"{training.start} .. {training.end}",
               "horizon": training.horizon, "training rows": model.train_rows,
               "training seconds": round(model.train_seconds, 1), "MLflow run": run_id,
               "trigger": trigger},
    )
