"""Jobs: named selections of the asset graph that sensors, schedules and the CLI launch."""

from __future__ import annotations

import socket

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.partitions import partitions_for, plan_partitions_for
from forecast_platform.defs.serving import prediction_log_partitions
from forecast_platform.warehouse import tables

INGEST_JOB = "ingest_job"
TRAIN_JOB = "train_job"
INGEST_ASSETS = [tables.RAW, tables.VALIDATED, tables.REJECTS, tables.CALENDAR,
                 tables.FEATURES]
# The bundle is refreshed by every retrain; a rejected challenger (blocking gate) skips it.
TRAIN_ASSETS = [tables.FORECASTER, tables.FORECASTS, tables.PLAN_LIFT, tables.EXPECTED,
                tables.ANOMALY_MODEL, tables.SERVING_BUNDLE]
ANOMALY_JOB = "anomaly_job"
SERVING_JOB = "serving_job"
REFRESH_JOB = "refresh_job"
PLAN_JOB = "plan_job"
PREDICTION_LOG_JOB = "prediction_log_job"
MONITOR_JOB = "monitor_job"
ALERTS_JOB = "alerts_job"
# Publishes the dashboard snapshot; train_job and refresh_job publish one as their last step.
DASHBOARD_JOB = "dashboard_job"
# Every run records the machine it runs on (the code location's, where the default run launcher
# starts run workers), so the CLI can tell a dead run of this machine from a live one of another
# (forecast_platform/cli/recovery.py). CLI runs add their PID.
HOST_TAG = "forecast_platform/host"


def build_jobs(spec: DatasetSpec) -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        _job(
            INGEST_JOB,
            selection=dg.AssetSelection.assets(*INGEST_ASSETS),
            partitions_def=partitions_for(spec),
            description="Landing files -> raw -> validated (+ quarantine) -> features, for a "
                        "partition or a whole range in one run.",
        ),
        _job(
            TRAIN_JOB,
            selection=dg.AssetSelection.assets(*TRAIN_ASSETS, tables.DASHBOARD_SNAPSHOT),
            hooks={end_mlflow_on_run_finished},
            description="Train, backtest and gate the forecaster; forecast with the champion; "
                        "pack it for serving.",
        ),
        _job(
            ANOMALY_JOB, selection=dg.AssetSelection.assets(tables.ANOMALIES),
            partitions_def=partitions_for(spec),
            description="Score a day (or a range) of sales for anomalies with the current "
                        "detector.",
        ),
        _job(
            REFRESH_JOB,
            selection=dg.AssetSelection.assets(tables.FORECASTS, tables.PLAN_LIFT,
                                               tables.SERVING_BUNDLE,
                                               tables.DASHBOARD_SNAPSHOT),
            description="Forecasts, plan lift and serving snapshot from the newest data and "
                        "plan, current champion.",
        ),
        _job(
            PLAN_JOB, selection=dg.AssetSelection.assets(tables.COVARIATE_PLAN),
            partitions_def=plan_partitions_for(spec),
            description="Validate the landed plan files of a range of planned dates into "
                        "covariate_plan (+ plan_rejects); the plan sensor then refreshes the "
                        "forecasts.",
        ),
        _job(
            SERVING_JOB, selection=dg.AssetSelection.assets(tables.SERVING_BUNDLE),
            description="Pack the champion and the feature snapshot into the BentoML store.",
        ),
        _job(
            PREDICTION_LOG_JOB, selection=dg.AssetSelection.assets(tables.PREDICTION_LOG),
            partitions_def=prediction_log_partitions,
            description="Load the service's prediction log files into the warehouse.",
        ),
        _job(
            MONITOR_JOB, selection=dg.AssetSelection.assets(tables.DRIFT_REPORT,
                                                            tables.PERFORMANCE),
            partitions_def=partitions_for(spec),
            description="Drift report and forecast performance for a day; the drift and "
                        "performance sensors read their metadata and retrain when asked.",
        ),
        _job(
            DASHBOARD_JOB, selection=dg.AssetSelection.assets(tables.DASHBOARD_SNAPSHOT),
            description="Publish what the planner's dashboard reads as a Parquet snapshot "
                        "(dashboard_sensor runs it after ingest, anomaly and monitor runs).",
        ),
        _job(
            ALERTS_JOB, selection=dg.AssetSelection.assets(tables.ALERTS),
            description="Record alerts spooled by sensors in the warehouse's alerts table.",
        ),
    ]


def _job(name: str, **kwargs) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(name, run_tags={HOST_TAG: socket.gethostname()}, **kwargs)
