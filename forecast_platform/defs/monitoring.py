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
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.metadata import OWNERS_FORECASTING, preview
from forecast_platform.defs.partitions import date_range, partitions_for
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.features.sql import plan_features
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.forecast import model_name
from forecast_platform.forecasting.forecaster import Forecaster
from forecast_platform.monitoring.alerts import raise_alert
from forecast_platform.monitoring.drift import (
    DEFAULT_MAX_ROWS,
    DEFAULT_NUM_THRESHOLD,
    monitored_columns,
)
from forecast_platform.monitoring.retrain import PREDICTION, retrain_columns
from forecast_platform.monitoring.spool import drain_spool
from forecast_platform.monitoring.verdicts import (
    assess_drift,
    assess_performance,
    degradation_alert,
    drift_alert,
    drift_records,
    point_metric,
    promised_errors,
)
from forecast_platform.monitoring.windows import drift_windows, forecast_errors, with_predictions
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.store import registered, replace_range, table_exists
from forecast_platform.warehouse.tables import (
    DRIFT_COLUMNS,
    DRIFT_SUMMARY,
    FEATURES,
    FORECASTS,
    PERFORMANCE,
)


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
        with platform.connect(log=context.log.warning) as con:
            champion = _champion(con, spec)
            current, reference, recent = drift_windows(
                con, day, champion, config.window_days, config.reference_years,
                spec.season_length * spec.step_days)
            model = Forecaster.from_bytes(champion.model_bytes)
            current, reference, recent = (with_predictions(con, spec, f, model)
                                          for f in (current, reference, recent))
        summary, decision = assess_drift(
            current, reference, recent, numerical, categorical, watched,
            drift_share=config.drift_share, max_rows=config.max_rows,
            num_threshold=config.num_threshold)
        out_dir = settings.reports_dir / "drift"
        html = summary.save_html(out_dir / f"drift_report_{day}.html")
        summary.save_json(out_dir / f"drift_report_{day}.json")

        head, columns = drift_records(day, champion.version, summary, decision, html)
        with platform.connect(log=context.log.warning) as con:
            with registered(con, "_drift_head", head):
                replace_range(con, DRIFT_SUMMARY, "ds", day, day, "SELECT * FROM _drift_head")
            with registered(con, "_drift_cols", columns):
                replace_range(con, DRIFT_COLUMNS, "ds", day, day, "SELECT * FROM _drift_cols")
            drain_spool(con, settings.alerts_spool_dir)
            if decision.retrain:
                raise_alert(con, drift_alert(spec, day, champion.version, summary, decision, html,
                                             run_id=context.run_id),
                            settings.alert_webhook_url, context.log)
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
            "forecaster_version": champion.version,
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
            "before it, by the forecaster version that made it), rolling over window_days, "
            "against the backtest's error of that version; `degraded` is what performance_sensor "
            "acts on."
        ),
    )
    def forecast_performance(context: dg.AssetExecutionContext, config: PerformanceConfig,
                             platform: PlatformResource):
        first, last = date_range(context)
        metric = point_metric(spec)
        with platform.connect(log=context.log.warning) as con:
            errors = forecast_errors(con, first - dt.timedelta(days=config.window_days - 1),
                                     last)
            # Each version is held to its own backtest (registry rows without the model bytes).
            promised = promised_errors(registry.history(con, name), metric)
            performance = assess_performance(
                errors, promised, name, metric, first, last, factor=config.factor,
                window_days=config.window_days, min_days=config.min_days)
            table = performance.table
            if not table.empty:
                with registered(con, "_perf", table):
                    replace_range(con, PERFORMANCE, "ds", first, last, "SELECT * FROM _perf")
            drain_spool(con, platform.settings.alerts_spool_dir)
            if performance.degraded:
                raise_alert(con, degradation_alert(spec, performance, last,
                                                   window_days=config.window_days,
                                                   factor=config.factor, run_id=context.run_id),
                            platform.settings.alert_webhook_url, context.log)
        if performance.newest.empty:
            return dg.MaterializeResult(metadata={
                "degraded": False, "points": 0, "metric": metric,
                "note": f"no forecast made before {first}..{last} has actuals yet"})
        worst = performance.worst
        return dg.MaterializeResult(metadata={
            "degraded": performance.degraded,
            "metric": metric,
            "forecaster_version": int(worst["forecaster_version"]),
            "points": int(performance.newest["points"].sum()),
            "rolling_error": round(float(worst["rolling_error"]), 4),
            "expected_error": round(float(worst["expected_error"]), 4),
            "ratio": round(float(worst["ratio"]), 3),
            "threshold": round(float(worst["threshold"]), 4),
            "rolling_days": int(worst["rolling_days"]),
            "days": preview(table.tail(14).round(3), rows=14),
        })

    @dg.asset(
        name=tables.ALERTS,
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
        with platform.connect(log=context.log.warning) as con:
            recorded = drain_spool(con, platform.settings.alerts_spool_dir)
            total = con.execute(f"SELECT count(*) FROM {tables.ALERTS}").fetchone()[0] \
                if table_exists(con, tables.ALERTS) else 0
            recent = con.execute(
                f"SELECT created_at, kind, severity, title FROM {tables.ALERTS} "
                "ORDER BY created_at DESC LIMIT 10").df() if total else pd.DataFrame()
        return dg.MaterializeResult(metadata={
            "recorded": len(recorded), "dagster/row_count": int(total),
            "kinds": json.dumps(sorted({a.kind for a in recorded})),
            "recent": preview(recent, rows=10) if total else "no alerts",
        })

    return [drift_report_asset, forecast_performance, alerts]
