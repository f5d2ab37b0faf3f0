"""dashboard_snapshot and dashboard_sensor: keep the planner's dashboard fed without it ever
opening the warehouse.

The asset selects what the app shows (``dashboard/extract.py``) and publishes it atomically
(``dashboard/snapshot.py``); it also copies the data-quality check results from the Dagster
instance, where they live. It is in the ``duckdb`` pool: it reads the warehouse, and a reader
in another process would fail a writer.

Refresh: the unpartitioned jobs that change what the app shows (``train_job``,
``refresh_job``) include the asset, after their other assets. Partitioned jobs cannot include
an unpartitioned asset cleanly (a range run would materialize it per partition, or not at
all), so ``dashboard_sensor`` requests ``dashboard_job`` when an ingest, anomaly or monitor run
succeeds. The CLI's ``demo`` (which runs without the daemon) runs ``dashboard_job`` last.
"""


import datetime as dt

import dagster as dg
import pandas as pd

from forecast_platform.dashboard import extract, snapshot
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.automation import RANGE_END, RANGE_START
from forecast_platform.defs.jobs import ANOMALY_JOB, DASHBOARD_JOB, INGEST_JOB, MONITOR_JOB
from forecast_platform.defs.metadata import OWNERS_FORECASTING
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.warehouse import tables

CHECK_EVALUATIONS = 5_000  # newest check results copied into a snapshot
SNAPSHOT_DEPS = [tables.VALIDATED, tables.REJECTS, tables.FORECASTER, tables.FORECASTS,
                 tables.EXPECTED, tables.ANOMALY_MODEL, tables.ANOMALIES, tables.DRIFT_REPORT,
                 tables.PERFORMANCE, tables.SERVING_BUNDLE]


def check_results(instance: dg.DagsterInstance, limit: int = CHECK_EVALUATIONS
                  ) -> pd.DataFrame:
    """The newest data-quality check results with the partitions each covered (a range run's
    results cover every partition of its range), read from the instance's event log."""
    from dagster._core.events import DagsterEventType

    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION),
        limit=limit, ascending=False)
    rows = []
    for record in records:
        entry = record.event_log_entry
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if evaluation is None:
            continue
        summary = evaluation.metadata.get("summary")
        rows.append({
            "asset": evaluation.asset_key.to_user_string(), "check": evaluation.check_name,
            "passed": bool(evaluation.passed), "severity": evaluation.severity.value,
            "description": (summary.value if summary is not None
                            else evaluation.description) or "",
            "run_id": entry.run_id, "partition": getattr(evaluation, "partition", None),
            "evaluated_at": dt.datetime.fromtimestamp(entry.timestamp, dt.UTC)})
    frame = pd.DataFrame(rows)
    if not len(frame):
        return frame
    runs = {r.run_id: r.tags for r in instance.get_runs(
        filters=dg.RunsFilter(run_ids=sorted(set(frame["run_id"]))))}
    tags = frame["run_id"].map(lambda r: runs.get(r, {}))
    frame["partition_start"] = [p or t.get(RANGE_START) or t.get("dagster/partition")
                                for p, t in zip(frame["partition"], tags, strict=True)]
    frame["partition_end"] = [p or t.get(RANGE_END) or t.get("dagster/partition")
                              for p, t in zip(frame["partition"], tags, strict=True)]
    return frame.drop(columns=["partition"])


def build_dashboard_assets(spec: DatasetSpec) -> list:
    @dg.asset(
        name=tables.DASHBOARD_SNAPSHOT,
        deps=SNAPSHOT_DEPS,
        group_name="dashboard",
        kinds={"parquet", "streamlit"},
        owners=OWNERS_FORECASTING,
        pool="duckdb",
        description=(
            "What the planner's dashboard shows (history, forecasts, anomalies, registry, "
            "backtest points, data quality, drift) as Parquet under <data dir>/dashboard, "
            "written to a temporary folder and renamed into place, then made current by an "
            "atomic pointer swap: the app never opens the warehouse and never sees half a "
            "snapshot. `forecast-platform dashboard` serves it."
        ),
    )
    def dashboard_snapshot(context: dg.AssetExecutionContext, platform: PlatformResource):
        checks = check_results(context.instance)
        root = platform.settings.dashboard_dir
        with platform.connect(read_only=True, log=context.log.warning) as con:
            snap = snapshot.publish(root, context.run_id,
                                    lambda folder: extract.write_tables(con, spec, folder,
                                                                        checks))
        counts = snap.manifest["tables"]
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(snap.path)),
            "series": snap.manifest.get("series_count", 0),
            "champion_version": snap.manifest.get("champion_version") or 0,
            "tables": dg.MetadataValue.json(counts),
            "open_with": "forecast-platform dashboard",
        })

    return [dashboard_snapshot]


def build_dashboard_sensor(jobs: list) -> dg.RunStatusSensorDefinition:
    """After a successful ingest, anomaly or monitor run, publish a new snapshot."""
    by_name = {j.name: j for j in jobs}

    @dg.run_status_sensor(
        name="dashboard_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[by_name[n] for n in (INGEST_JOB, ANOMALY_JOB, MONITOR_JOB)],
        request_job=by_name[DASHBOARD_JOB],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Publishes a dashboard snapshot after each successful ingest, anomaly or "
                    "monitor run (train_job and refresh_job publish one themselves).",
    )
    def dashboard_sensor(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        return dg.RunRequest(run_key=f"dashboard-after-{run.run_id}",
                             tags={"trigger": f"after {run.job_name} {run.run_id[:8]}"})

    return dashboard_sensor
