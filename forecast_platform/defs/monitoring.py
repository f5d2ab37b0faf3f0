"""Monitoring assets: drift_report, forecast_performance and the alerts table.

Thin wiring around ``forecast_platform.monitoring``: read the window from the warehouse, call
the pure core, write the summary rows and the report files, raise alerts, and put in the
materialization metadata exactly what the sensors in ``defs/monitoring_sensors.py`` act on
(``retrain`` and ``degraded``), so they never need to open DuckDB.
"""


import datetime as dt
import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.forecasting import model_name
from forecast_platform.defs.metadata import OWNERS_FORECASTING, preview
from forecast_platform.defs.partitions import date_range, partitions_for
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.features.offline import FEATURES
from forecast_platform.features.sql import plan_features
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.backtest import MODEL
from forecast_platform.forecasting.forecaster import Forecaster
from forecast_platform.forecasting.future import at_origin
from forecast_platform.forecasting.seasonal import ShortHistory
from forecast_platform.monitoring.alerts import ALERTS_TABLE, Alert, raise_alert
from forecast_platform.monitoring.drift import (
    DEFAULT_MAX_ROWS,
    DEFAULT_NUM_THRESHOLD,
    drift_report,
    monitored_columns,
    performance_degradation,
)
from forecast_platform.monitoring.retrain import PREDICTION, decide_retrain, retrain_columns
from forecast_platform.monitoring.spool import drain_spool
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.store import connect, registered, replace_range, table_exists
from forecast_platform.warehouse.tables import DRIFT_COLUMNS, DRIFT_SUMMARY, FORECASTS, PERFORMANCE

# Metrics performance_degradation computes per point; others (e.g. WMAE) are judged by MAE.
POINT_METRICS = ("smape", "mae", "rmse", "mape")


class DriftConfig(dg.Config):
    """How a drift report compares; editable per run in the Launchpad."""

    window_days: int = 28  # the current window: this many days ending on the partition
    reference_years: int = 1  # the same weeks of this many earlier years of training data
    max_rows: int = DEFAULT_MAX_ROWS  # rows sampled per side
    num_threshold: float = DEFAULT_NUM_THRESHOLD  # normed Wasserstein above which a column drifts
    drift_share: float = 0.5  # share of drifted columns for Evidently's dataset verdict


class PerformanceConfig(dg.Config):
    window_days: int = 14  # rolling window of the error
    min_days: int = 7  # days with actuals the window needs before it can call degradation
    factor: float = 1.5  # degraded when the rolling error exceeds the backtest's by this factor


def _champion(con: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> registry.ModelRecord:
    row = registry.champion(con, model_name(spec))
    if row is None:
        raise ValueError(f"no champion {model_name(spec)} in model_registry: the monitoring "
                         "assets compare against the champion, so train it first (train_job)")
    return row


def _with_predictions(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, frame: pd.DataFrame,
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


def drift_windows(con: duckdb.DuckDBPyConnection, day: dt.date, champion: registry.ModelRecord,
                  window_days: int, years: int, season_days: int
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(current, seasonal reference, recent training) feature rows with actuals.

    Reference: the champion's training rows in the same weeks of earlier years (weekday
    aligned), so a report does not drift every December. Recent training: the champion's last
    ``window_days`` of training, for the retrain rule (monitoring/retrain.py).
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
    return current, reference, recent


def forecast_errors(con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date
                    ) -> pd.DataFrame:
    """Actuals next to the forecast that was in force for each day: the newest origin before it.

    A day forecast from several origins is judged by the latest forecast made before it, the
    one a planner would have used; each row keeps the model version that made it.
    """
    if not table_exists(con, FORECASTS):
        return pd.DataFrame(columns=["ds", "series_id", "y", "p50", "model_version", "origin"])
    return con.execute(
        f"""
        SELECT f.ds, f.series_id, s.y, f.p50, f.model_version, f.origin
        FROM {FORECASTS} f JOIN {FEATURES} s USING (series_id, ds)
        WHERE f.ds BETWEEN ? AND ? AND f.origin < f.ds AND s.y IS NOT NULL
        QUALIFY f.origin = max(f.origin) OVER (PARTITION BY f.series_id, f.ds)
        """, [first, last]).df()


def build_monitoring_assets(spec: DatasetSpec) -> list:
    plan = plan_features(spec)
    partitions = partitions_for(spec)
    name = model_name(spec)
    numerical, categorical = monitored_columns(plan, extra_numerical=[PREDICTION])
    watched = retrain_columns(spec)

    @dg.asset(
        name=tables.DRIFT_REPORT,
        deps=[FEATURES, tables.FORECASTER],
        partitions_def=partitions,
        group_name="monitoring",
        kinds={"evidently", "duckdb"},
        owners=OWNERS_FORECASTING,
        pool="duckdb",
        description=(
            "Evidently DataDriftPreset: the last window_days of features, target and the "
            "champion's P50 up to the partition, against the same weeks of the champion's "
            "training data a year earlier. HTML + JSON under reports/drift, rows in drift_summary "
            "and drift_columns; `retrain` in the metadata is what drift_sensor acts on."
        ),
    )
    def drift_report_asset(context: dg.AssetExecutionContext, config: DriftConfig,
                           platform: PlatformResource):
        keys = context.partition_keys
        if len(keys) != 1:
            raise ValueError(f"drift_report is one report per partition; got {len(keys)} "
                             f"partitions {keys[0]}..{keys[-1]}: launch one run per partition "
                             "(a backfill does)")
        # The partition's own date: a weekly partition's window runs a week past it.
        day, _ = date_range(context)
        settings = platform.settings
        with connect(platform.warehouse_path) as con:
            champion = _champion(con, spec)
            current, reference, recent = drift_windows(
                con, day, champion, config.window_days, config.reference_years,
                spec.season_length * spec.step_days)
            if current.empty:
                raise ValueError(f"no {FEATURES} rows with actuals in the {config.window_days} "
                                 f"days ending {day}: ingest those partitions first")
            if reference.empty:
                raise ValueError(
                    f"the champion v{champion.version} trained on {champion.train_start}.."
                    f"{champion.train_end}, which holds none of the same weeks "
                    f"{config.reference_years} year(s) before {day}: nothing to compare with")
            model = Forecaster.from_bytes(champion.model_bytes)
            current, reference, recent = (_with_predictions(con, spec, f, model)
                                          for f in (current, reference, recent))
        summary = drift_report(reference, current, numerical + categorical,
                               categorical=categorical, drift_share=config.drift_share,
                               max_rows=config.max_rows, num_threshold=config.num_threshold)
        decision = decide_retrain(summary, recent, current, watched,
                                  categorical=[c for c in watched if c in categorical],
                                  num_threshold=config.num_threshold)
        out_dir = settings.reports_dir / "drift"
        html = summary.save_html(out_dir / f"drift_report_{day}.html")
        summary.save_json(out_dir / f"drift_report_{day}.json")

        created = dt.datetime.now()
        head = pd.DataFrame([{
            "ds": day, "model_version": champion.version, "dataset_drift": summary.dataset_drift,
            "drifted_share": summary.drifted_share, "drifted_count": summary.drifted_count,
            "n_columns": len(summary.columns), "retrain": decision.retrain,
            "retrain_columns": ",".join(decision.unseen), "reason": decision.reason,
            "current_rows": summary.current_rows_total,
            "reference_rows": summary.reference_rows_total, "html_path": str(html),
            "created_at": created,
        }])
        columns = summary.columns.assign(
            ds=day, model_version=champion.version,
            recent_score=summary.columns["column"].map(decision.recent_scores))
        with connect(platform.warehouse_path) as con:
            with registered(con, "_drift_head", head):
                replace_range(con, DRIFT_SUMMARY, "ds", day, day, "SELECT * FROM _drift_head")
            with registered(con, "_drift_cols", columns):
                replace_range(con, DRIFT_COLUMNS, "ds", day, day, "SELECT * FROM _drift_cols")
            drain_spool(con, settings.alerts_spool_dir)
            if decision.retrain:
                raise_alert(con, Alert(
                    kind="drift", severity="warning",
                    title=f"{spec.name}: data drift on {day} against champion "
                          f"v{champion.version} ({', '.join(decision.unseen)})",
                    details={"partition": str(day), "reason": decision.reason,
                             "drifted_share": round(summary.drifted_share, 4),
                             "drifted_columns": summary.drifted_columns,
                             "report": str(html)},
                    run_id=context.run_id, asset_key=tables.DRIFT_REPORT, partition_key=str(day),
                ), settings.alert_webhook_url, context.log)
        top = summary.top(10)[["column", "method", "score", "threshold", "drifted",
                               "reference_mean", "current_mean"]]
        return dg.MaterializeResult(metadata={
            "dataset_drift": summary.dataset_drift,
            "drifted_share": round(summary.drifted_share, 4),
            "drifted_count": summary.drifted_count,
            "n_columns": len(summary.columns),
            "drifted_columns": ", ".join(summary.drifted_columns) or "none",
            "retrain": decision.retrain,
            "retrain_columns": ", ".join(decision.unseen) or "none",
            "retrain_reason": decision.reason,
            "model_version": champion.version,
            "window": f"{day - dt.timedelta(days=config.window_days - 1)} .. {day}",
            "current_rows": summary.current_rows_total,
            "reference_rows": summary.reference_rows_total,
            "report_seconds": round(summary.seconds, 2),
            "report": dg.MetadataValue.path(str(html)),
            "top_columns": preview(top.round(3), rows=len(top)),
        })

    @dg.asset(
        name=PERFORMANCE,
        deps=[FEATURES, FORECASTS],
        partitions_def=partitions,
        group_name="monitoring",
        kinds={"duckdb"},
        owners=OWNERS_FORECASTING,
        pool="duckdb",
        description=(
            "Once actuals arrive: the error of the forecasts in force for each day (newest origin "
            "before it, by the model version that made it), rolling over window_days, against the "
            "backtest's error of that version; `degraded` is what performance_sensor acts on."
        ),
    )
    def forecast_performance(context: dg.AssetExecutionContext, config: PerformanceConfig,
                             platform: PlatformResource):
        first, last = date_range(context)
        metric = spec.metric if spec.metric in POINT_METRICS else "mae"
        with connect(platform.warehouse_path) as con:
            errors = forecast_errors(con, first - dt.timedelta(days=config.window_days - 1),
                                     last)
            # Each version is held to its own backtest (registry rows without the model bytes).
            promised = {int(v): json.loads(m).get(MODEL, {}).get(metric) for v, m in
                        registry.history(con, name)[["version", "metrics"]].itertuples(
                            index=False)}
            unjudged = sorted(int(v) for v in errors["model_version"].unique()
                              if promised.get(int(v)) is None)
            if unjudged:
                raise ValueError(f"model {name} versions {unjudged} have no backtest {metric} in "
                                 "model_registry to judge their forecasts against")
            table = performance_degradation(
                errors, {v: e for v, e in promised.items() if e is not None}, config.factor,
                config.window_days, metric=metric, min_days=config.min_days)
            if not table.empty:
                table = table[table["ds"].between(pd.Timestamp(first), pd.Timestamp(last))]
                table = table.assign(ds=table["ds"].dt.date, metric=metric)
                with registered(con, "_perf", table):
                    replace_range(con, PERFORMANCE, "ds", first, last, "SELECT * FROM _perf")
            drain_spool(con, platform.settings.alerts_spool_dir)
            newest = table[table["ds"] == table["ds"].max()] if not table.empty else table
            degraded = bool(not newest.empty and newest["degraded"].any())
            if degraded:
                worst = newest.sort_values("ratio").iloc[-1]
                raise_alert(con, Alert(
                    kind="degradation", severity="warning",
                    title=f"{spec.name}: forecast error of v{int(worst['model_version'])} is "
                          f"{worst['ratio']:.2f}x its backtest {metric} over {config.window_days}"
                          f" days to {worst['ds']}",
                    details={"partition": str(last), "metric": metric,
                             "rolling_error": round(float(worst["rolling_error"]), 3),
                             "expected_error": round(float(worst["expected_error"]), 3),
                             "factor": config.factor},
                    run_id=context.run_id, asset_key=PERFORMANCE, partition_key=str(last),
                ), platform.settings.alert_webhook_url, context.log)
        if newest.empty:
            return dg.MaterializeResult(metadata={
                "degraded": False, "points": 0, "metric": metric,
                "note": f"no forecast made before {first}..{last} has actuals yet"})
        worst = newest.sort_values("ratio").iloc[-1]
        return dg.MaterializeResult(metadata={
            "degraded": degraded,
            "metric": metric,
            "model_version": int(worst["model_version"]),
            "points": int(newest["points"].sum()),
            "rolling_error": round(float(worst["rolling_error"]), 4),
            "expected_error": round(float(worst["expected_error"]), 4),
            "ratio": round(float(worst["ratio"]), 3),
            "threshold": round(float(worst["threshold"]), 4),
            "rolling_days": int(worst["rolling_days"]),
            "days": preview(table.tail(14).round(3), rows=14),
        })

    @dg.asset(
        name=ALERTS_TABLE,
        group_name="monitoring",
        kinds={"duckdb"},
        owners=OWNERS_FORECASTING,
        pool="duckdb",
        description=(
            "Every alert (drift, degradation, failed check, failed run) as a row. Alerts raised "
            "by sensors wait in <data_dir>/alerts/spool.jsonl until this asset records them."
        ),
    )
    def alerts(context: dg.AssetExecutionContext, platform: PlatformResource):
        with connect(platform.warehouse_path) as con:
            recorded = drain_spool(con, platform.settings.alerts_spool_dir)
            total = con.execute(f"SELECT count(*) FROM {ALERTS_TABLE}").fetchone()[0] \
                if table_exists(con, ALERTS_TABLE) else 0
            recent = con.execute(
                f"SELECT created_at, kind, severity, title FROM {ALERTS_TABLE} "
                "ORDER BY created_at DESC LIMIT 10").df() if total else pd.DataFrame()
        return dg.MaterializeResult(metadata={
            "recorded": len(recorded), "dagster/row_count": int(total),
            "kinds": json.dumps(sorted({a.kind for a in recorded})),
            "recent": preview(recent, rows=10) if total else "no alerts",
        })

    return [drift_report_asset, forecast_performance, alerts]
