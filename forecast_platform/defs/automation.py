"""Automation: landed files start ingestion by themselves, each file exactly once; a landed plan
refreshes the forecasts; schedules keep forecasts, the serving bundle and anomaly scores current
between retrains.

The cursor is the newest file modification time already considered, so a file re-landed with
corrected content (a newer mtime) is ingested again, and an unchanged file never is. A file
newer than the cursor is still skipped when its partition of ``raw_sales`` was materialized by a
run that started after the file was written (e.g. `forecast-platform demo` ingested it before
the daemon ever ticked): the sensor reads that from the Dagster instance's event log, never from
DuckDB. New files for consecutive dates become one range run (a single-run backfill), not one
run per day.
"""


from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from forecast_platform.datasets.landing import contiguous_ranges, landed_files, stray_files
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.jobs import ANOMALY_JOB, INGEST_JOB, REFRESH_JOB
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.warehouse import tables

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Partitions per event-log query (an SQL IN list; well under SQLite's variable limit).
LOOKUP_BATCH = 500


def ingested_since(instance: dg.DagsterInstance, partitions: list[str]) -> dict[str, float]:
    """Partition -> when its newest ``raw_sales`` materialization's run started (epoch seconds;
    the event's time when the run has no start time): the landed file it read is at least that
    old. Partitions never materialized are absent.

    Batched: one query for the newest event id per partition, one fetch of just those events
    and one of their runs (a backfill is one run), per ``LOOKUP_BATCH`` partitions.
    """
    storage = instance.event_log_storage
    key = dg.AssetKey(tables.RAW)
    since: dict[str, float] = {}
    for i in range(0, len(partitions), LOOKUP_BATCH):
        batch = set(partitions[i:i + LOOKUP_BATCH])
        ids = list(storage.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=batch).values())
        if not ids:
            continue
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=ids), limit=len(ids)).records
        runs = {r.dagster_run.run_id: r.start_time for r in instance.get_run_records(
            dg.RunsFilter(run_ids=list({r.run_id for r in records})))}
        for record in records:
            started = runs.get(record.run_id)
            since[record.partition_key] = started if started is not None else record.timestamp
    return since


def _range_request(spec: DatasetSpec, first: dt.date, last: dt.date, key: str,
                   trigger: str) -> dg.RunRequest:
    if first == last:
        return dg.RunRequest(run_key=key, partition_key=first.isoformat(),
                             tags={"trigger": trigger})
    return dg.RunRequest(run_key=key, tags={
        RANGE_START: first.isoformat(), RANGE_END: last.isoformat(), "trigger": trigger})


def unbalanced_ranges(evaluation: dg.AssetCheckEvaluation | None) -> list[tuple[dt.date, dt.date]]:
    """The day ranges a failed ``rows_balance`` evaluation asks to validate again."""
    if evaluation is None or evaluation.passed:
        return []
    raw = evaluation.metadata.get("unbalanced_ranges")
    text = getattr(raw, "value", raw)
    return [(dt.date.fromisoformat(a), dt.date.fromisoformat(b))
            for a, b in json.loads(text or "[]")]


def build_landing_sensors(spec: DatasetSpec) -> list[dg.SensorDefinition]:
    @dg.sensor(
        name="landing_sensor",
        job_name=INGEST_JOB,
        minimum_interval_seconds=15,  # a directory listing: cheap to tick often
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Turns newly landed files into partition runs of ingest_job.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource):
        high_water = int(context.cursor) if context.cursor else 0
        fresh: dict[dt.date, int] = {}
        for day, path in landed_files(platform.landing_dir).items():
            mtime = path.stat().st_mtime_ns
            if mtime > high_water:
                fresh[day] = mtime
        in_range = [d for d in fresh if spec.start <= d <= spec.end]
        skipped = [f"sales_{d.isoformat()}.csv (outside the partitions {spec.start}.."
                   f"{spec.end})" for d in sorted(set(fresh) - set(in_range))]
        if fresh:  # a stray name alone does not move the cursor: say it with new files only
            skipped += [f"{name} ({reason})" for name, reason in stray_files(platform.landing_dir)
                        if (platform.landing_dir / name).stat().st_mtime_ns > high_water]
        if skipped:
            context.log.warning(
                f"{len(skipped)} landing files are skipped, never ingested: "
                + "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more (the "
                                            "landing_file_names check lists them)"
                                            if len(skipped) > 5 else ""))
        if not fresh:
            return dg.SkipReason("no new landing files")
        newest = max(fresh.values())
        # Files a run (the CLI's, or one requested before) has already read unchanged.
        since = ingested_since(context.instance, [d.isoformat() for d in in_range])
        done = {d for d in in_range
                if d.isoformat() in since and fresh[d] / 1e9 < since[d.isoformat()]}
        in_range = [d for d in in_range if d not in done]
        if not in_range:
            return dg.SensorResult(cursor=str(newest), skip_reason=dg.SkipReason(
                f"{len(done)} new landing files were already ingested unchanged"))
        requests = [_range_request(spec, first, last, f"{spec.name}:{first}..{last}:{newest}",
                                   "landing")
                    for first, last in contiguous_ranges(in_range, spec.step_days)]
        return dg.SensorResult(run_requests=requests, cursor=str(newest))

    @dg.sensor(
        name="rows_balance_sensor",
        job_name=INGEST_JOB,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Validates again the partitions the rows_balance check found with raw rows "
                    "that are not their validated + rejected rows (a run killed between its "
                    "steps), so the invariant heals without a person.",
    )
    def rows_balance_sensor(context: dg.SensorEvaluationContext):
        check = dg.AssetCheckKey(dg.AssetKey(tables.VALIDATED), "rows_balance")
        latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [check]).get(check)
        if latest is None or latest.event is None:
            return dg.SkipReason("rows_balance has not been evaluated yet")
        if context.cursor and int(context.cursor) >= latest.id:
            return dg.SkipReason("no new rows_balance evaluation")
        ranges = unbalanced_ranges(latest.event.dagster_event.event_specific_data
                                   if latest.event.dagster_event else None)
        if not ranges:
            return dg.SensorResult(cursor=str(latest.id), skip_reason=dg.SkipReason(
                "every partition's raw rows are its validated + rejected rows"))
        context.log.warning(f"re-validating {len(ranges)} unbalanced range(s): {ranges[:5]}")
        return dg.SensorResult(cursor=str(latest.id), run_requests=[
            _range_request(spec, first, last, f"rebalance:{latest.id}:{first}..{last}",
                           "rows_balance") for first, last in ranges])

    @dg.sensor(
        name="plan_sensor",
        job_name=REFRESH_JOB,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A newly landed plan (a covariate_plan materialization) re-materializes "
                    "the forecasts, the plan lift and the serving bundle, so forecasts and the "
                    "service use it; skipped when the forecasts are already newer than it.",
    )
    def plan_sensor(context: dg.SensorEvaluationContext):
        plan = _latest(context.instance, tables.COVARIATE_PLAN)
        if plan is None:
            return dg.SkipReason("no plan has been landed")
        if context.cursor and int(context.cursor) >= plan.storage_id:
            return dg.SkipReason("no new plan")
        if _latest(context.instance, tables.FORECASTER) is None:
            return dg.SensorResult(cursor=str(plan.storage_id), skip_reason=dg.SkipReason(
                "no forecaster trained yet: its first forecasts will read the plan"))
        forecasts = _latest(context.instance, tables.FORECASTS)
        if forecasts is not None and forecasts.timestamp >= plan.timestamp:
            return dg.SensorResult(cursor=str(plan.storage_id), skip_reason=dg.SkipReason(
                "the forecasts were made after the newest plan landed"))
        return dg.SensorResult(cursor=str(plan.storage_id), run_requests=[dg.RunRequest(
            run_key=f"plan:{plan.storage_id}", tags={"trigger": "plan"})])

    return [landing_sensor, rows_balance_sensor, plan_sensor]


def _latest(instance: dg.DagsterInstance, asset: str) -> dg.EventLogRecord | None:
    """The newest materialization of ``asset`` (any partition), or None."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return records[0] if records else None


def build_schedules(jobs: list[dg.UnresolvedAssetJobDefinition]) -> list[dg.ScheduleDefinition]:
    anomaly_job = next(job for job in jobs if job.name == ANOMALY_JOB)
    return [
        dg.build_schedule_from_partitioned_job(
            anomaly_job, name="daily_anomalies", hour_of_day=7,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Every morning: score yesterday's sales for anomalies.",
        ),
        dg.ScheduleDefinition(
            name="daily_refresh",
            job_name=REFRESH_JOB,
            cron_schedule="0 6 * * *",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Every morning: the champion's forecasts from the newest data, and a "
                        "serving bundle with the newest history snapshot.",
        )
    ]
