"""From compared rows to a verdict, the rows that record it and the alert that announces it.

The drift report and the forecast-performance check each end in a decision a sensor acts on
(``retrain``, ``degraded``). Deciding here, apart from the assets, keeps what counts as drift
or degradation testable without a Dagster instance and the same wherever it is computed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.forecasting.backtest import MODEL
from forecast_platform.monitoring.alerts import Alert
from forecast_platform.monitoring.drift import DriftSummary, drift_report, performance_degradation
from forecast_platform.monitoring.retrain import RetrainDecision, decide_retrain
from forecast_platform.warehouse.tables import DRIFT_REPORT, PERFORMANCE

# Metrics performance_degradation computes per point; others (e.g. WMAE) are judged by MAE.
POINT_METRICS = ("smape", "mae", "rmse", "mape")


# ------------------------------------------------------------------------------------ drift

def assess_drift(current: pd.DataFrame, reference: pd.DataFrame, recent: pd.DataFrame,
                 numerical: Sequence[str], categorical: Sequence[str], watched: Sequence[str],
                 *, drift_share: float, max_rows: int, num_threshold: float
                 ) -> tuple[DriftSummary, RetrainDecision]:
    """The report over every monitored column, and the retrain rule over the ``watched`` ones
    (see monitoring/retrain.py for why the two differ)."""
    summary = drift_report(reference, current, [*numerical, *categorical],
                           categorical=categorical, drift_share=drift_share,
                           max_rows=max_rows, num_threshold=num_threshold)
    decision = decide_retrain(summary, recent, current, watched,
                              categorical=[c for c in watched if c in categorical],
                              num_threshold=num_threshold)
    return summary, decision


def drift_records(day: dt.date, forecaster_version: int, summary: DriftSummary,
                  decision: RetrainDecision, html: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(drift_summary row, drift_columns rows) of one report: the verdict and each column's
    test, with the forecaster version the report was made against."""
    head = pd.DataFrame([{
        "ds": day, "forecaster_version": forecaster_version,
        "dataset_drift": summary.dataset_drift,
        "drifted_share": summary.drifted_share, "drifted_count": summary.drifted_count,
        "n_columns": len(summary.columns), "retrain": decision.retrain,
        "retrain_columns": ",".join(decision.unseen), "reason": decision.reason,
        "current_rows": summary.current_rows_total,
        "reference_rows": summary.reference_rows_total, "html_path": str(html),
        "created_at": dt.datetime.now(),
    }])
    columns = summary.columns.assign(
        ds=day, forecaster_version=forecaster_version,
        recent_score=summary.columns["column"].map(decision.recent_scores))
    return head, columns


def drift_alert(spec: DatasetSpec, day: dt.date, forecaster_version: int,
                summary: DriftSummary, decision: RetrainDecision, html: Path,
                run_id: str | None) -> Alert:
    """The warning a retrain-worthy drift raises: which columns, against which champion."""
    return Alert(
        kind="drift", severity="warning",
        title=f"{spec.name}: data drift on {day} against champion "
              f"v{forecaster_version} ({', '.join(decision.unseen)})",
        details={"partition": str(day), "reason": decision.reason,
                 "drifted_share": round(summary.drifted_share, 4),
                 "drifted_columns": summary.drifted_columns,
                 "report": str(html)},
        run_id=run_id, asset_key=DRIFT_REPORT, partition_key=str(day),
    )


# ------------------------------------------------------------------------------ performance

def point_metric(spec: DatasetSpec) -> str:
    """The dataset's metric when it can be computed point by point, else MAE."""
    return spec.metric if spec.metric in POINT_METRICS else "mae"


def promised_errors(history: pd.DataFrame, metric: str) -> dict[int, float | None]:
    """Each forecaster version's backtest ``metric`` (None when it has none), from
    ``registry.history``: each version is held to its own backtest, not the current one's."""
    return {int(v): json.loads(m).get(MODEL, {}).get(metric)
            for v, m in history[["version", "metrics"]].itertuples(index=False)}


@dataclass(frozen=True)
class Performance:
    """One partition's judgement, kept whole so the asset's rows, alert and metadata agree."""

    metric: str
    table: pd.DataFrame  # the forecast_performance rows of first..last
    newest: pd.DataFrame  # the newest day's rows (one per forecaster version)

    @property
    def degraded(self) -> bool:
        return bool(not self.newest.empty and self.newest["degraded"].any())

    @property
    def worst(self) -> pd.Series:
        """The newest day's row with the largest ratio (rolling error / backtest error)."""
        return self.newest.sort_values("ratio").iloc[-1]


def assess_performance(errors: pd.DataFrame, promised: dict[int, float | None], name: str,
                       metric: str, first: dt.date, last: dt.date, *, factor: float,
                       window_days: int, min_days: int) -> Performance:
    """The rolling error of the forecasts in force on ``first..last`` against their versions'
    backtests. ``errors`` starts ``window_days - 1`` before ``first`` so the first day's
    window is whole. Raises when a version has no backtest ``metric`` to be judged by."""
    unjudged = sorted(int(v) for v in errors["forecaster_version"].unique()
                      if promised.get(int(v)) is None)
    if unjudged:
        raise ValueError(f"model {name} versions {unjudged} have no backtest {metric} in "
                         "model_registry to judge their forecasts against")
    table = performance_degradation(
        errors, {v: e for v, e in promised.items() if e is not None}, factor,
        window_days, metric=metric, min_days=min_days)
    if not table.empty:
        table = table[table["ds"].between(pd.Timestamp(first), pd.Timestamp(last))]
        table = table.assign(ds=table["ds"].dt.date, metric=metric)
    newest = table[table["ds"] == table["ds"].max()] if not table.empty else table
    return Performance(metric, table, newest)


def degradation_alert(spec: DatasetSpec, performance: Performance, last: dt.date, *,
                      window_days: int, factor: float, run_id: str | None) -> Alert:
    """The warning a degraded forecast raises: which version, by how much, over which days."""
    worst, metric = performance.worst, performance.metric
    return Alert(
        kind="degradation", severity="warning",
        title=f"{spec.name}: forecast error of v{int(worst['forecaster_version'])} is "
              f"{worst['ratio']:.2f}x its backtest {metric} over {window_days}"
              f" days to {worst['ds']}",
        details={"partition": str(last), "metric": metric,
                 "rolling_error": round(float(worst["rolling_error"]), 3),
                 "expected_error": round(float(worst["expected_error"]), 3),
                 "factor": factor},
        run_id=run_id, asset_key=PERFORMANCE, partition_key=str(last),
    )
