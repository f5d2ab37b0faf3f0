"""Sensors that close the monitoring loop: monitor what lands, retrain on drift or degradation,
alert on failures.

- ``monitor_sensor``: after an ingest run succeeds, request ``monitor_job`` (drift report and
  forecast performance) for the newest partition it ingested: reports follow the data as it
  lands, not every historical day of a backfill.
- ``drift_sensor`` / ``performance_sensor``: read ``drift_report`` / ``forecast_performance``
  materializations from the Dagster instance (never DuckDB: runs hold it) and request a
  ``train_job`` run tagged with the trigger and the evidence when one says ``retrain`` /
  ``degraded``.
- ``alert_sensor``: a failed run, or a run whose blocking check failed, becomes an alert:
  webhook, spool, and a run of the ``alerts`` asset that records it in DuckDB.

Storms are prevented three ways: run keys (one retrain per report and champion version), a
cooldown after any retrain request (``FORECAST_RETRAIN_COOLDOWN_MINUTES``, in the cursor), and
no request while a ``train_job`` run is queued or in progress.
"""


import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from forecast_platform.defs.automation import RANGE_END
from forecast_platform.defs.jobs import ALERTS_JOB, INGEST_JOB, MONITOR_JOB, TRAIN_JOB
from forecast_platform.defs.metadata import metadata_values
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.monitoring.alerts import Alert, post_webhook
from forecast_platform.monitoring.spool import spool_alert
from forecast_platform.warehouse import tables

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
             dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
BATCH = 200  # materializations read per tick
# Seconds between evaluations: each reads a few event-log records, so ticking often is cheap,
# and each of the loop's three hops (monitor, drift, retrain) waits up to one interval.
SENSOR_INTERVAL = 15


@dataclass(frozen=True)
class Trigger:
    """What a retrain sensor watches and how it reads one materialization."""

    name: str  # the trigger tag: drift | performance
    asset: str
    flag: str  # the metadata entry that asks for a retrain
    evidence: Callable[[dict], dict[str, str]]  # metadata -> run tags


def _cursor(raw: str | None) -> dict:
    return json.loads(raw) if raw else {"after": None, "last_request": 0.0}


def train_in_flight(instance: dg.DagsterInstance) -> bool:
    return bool(instance.get_run_records(
        dg.RunsFilter(job_name=TRAIN_JOB, statuses=IN_FLIGHT), limit=1))


def evaluate_trigger(context: dg.SensorEvaluationContext, trigger: Trigger,
                     cooldown_minutes: float) -> dg.SensorResult | dg.SkipReason:
    """The newest day's materialization since the cursor, when flagged, becomes at most one
    retrain request."""
    state = _cursor(context.cursor)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(trigger.asset),
                              after_storage_id=state["after"]),
        limit=BATCH, ascending=True).records
    if not records:
        return dg.SkipReason(f"no new {trigger.asset} materializations")
    state["after"] = max(r.storage_id for r in records)
    # The newest day's report speaks for the data now: an older day that asked for a retrain is
    # superseded by a newer one that does not (e.g. one made against the retrained champion).
    newest = max(records, key=lambda r: (r.partition_key or "", r.storage_id))
    meta = metadata_values(newest.asset_materialization)
    if meta.get(trigger.flag) is not True:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            f"{len(records)} new {trigger.asset} materialization(s); the newest, "
            f"{newest.partition_key}, has {trigger.flag}={meta.get(trigger.flag)}"),
            cursor=json.dumps(state))
    waited = (time.time() - float(state.get("last_request") or 0.0)) / 60.0
    if waited < cooldown_minutes:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            f"{trigger.asset} {newest.partition_key} asks for a retrain, but the last one was "
            f"requested {waited:.0f} min ago (cooldown {cooldown_minutes:g} min)"),
            cursor=json.dumps(state))
    if train_in_flight(context.instance):
        return dg.SensorResult(skip_reason=dg.SkipReason(
            f"{trigger.asset} {newest.partition_key} asks for a retrain, but a {TRAIN_JOB} run "
            "is already queued or running"), cursor=json.dumps(state))
    state["last_request"] = time.time()
    # The forecaster version the report judged: one retrain per report and champion. Without
    # one in the metadata (None), the tag and the run key's version are left out rather than
    # spelling "no model".
    version = meta.get("forecaster_version")
    champion = {"champion_version": str(version)} if version is not None else {}
    tags = {"trigger": trigger.name, "partition": str(newest.partition_key), **champion,
            **trigger.evidence(meta)}
    run_key = f"{trigger.name}:{newest.partition_key}" + (f":v{version}" if champion else "")
    request = dg.RunRequest(run_key=run_key, job_name=TRAIN_JOB, tags=tags)
    context.log.info(f"retrain requested: {tags}")
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(state))


DRIFT = Trigger("drift", tables.DRIFT_REPORT, "retrain", lambda m: {
    "drifted_share": str(m.get("drifted_share")),
    "drifted_columns": str(m.get("retrain_columns"))[:200]})
PERFORMANCE = Trigger("performance", tables.PERFORMANCE, "degraded", lambda m: {
    "error_ratio": str(m.get("ratio")), "rolling_error": str(m.get("rolling_error")),
    "expected_error": str(m.get("expected_error"))})


def _retrain_sensor(trigger: Trigger, description: str) -> dg.SensorDefinition:
    @dg.sensor(name=f"{trigger.name}_sensor", job_name=TRAIN_JOB,
               minimum_interval_seconds=SENSOR_INTERVAL,
               default_status=dg.DefaultSensorStatus.RUNNING, description=description)
    def retrain_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource):
        return evaluate_trigger(context, trigger, platform.settings.retrain_cooldown_minutes)

    return retrain_sensor


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """'asset.check: description' of every failed check evaluation of a run."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    out = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed:
            text = evaluation.description or ""
            out.append(f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
                       + (f": {text}" if text else ""))
    return out


def build_monitoring_sensors(jobs: list) -> list[dg.SensorDefinition]:
    by_name = {job.name: job for job in jobs}
    drift_sensor = _retrain_sensor(
        DRIFT, "Requests a train_job run when a drift_report says retrain (tags: trigger=drift, "
               "partition, drifted share and columns).")
    performance_sensor = _retrain_sensor(
        PERFORMANCE, "Requests a train_job run when forecast_performance says degraded (tags: "
                     "trigger=performance, error ratio).")

    @dg.run_status_sensor(
        name="monitor_sensor", run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[by_name[INGEST_JOB]], request_job=by_name[MONITOR_JOB],
        default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=SENSOR_INTERVAL,
        description="After ingest succeeds, runs monitor_job for the newest ingested partition.")
    def monitor_sensor(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        partition = run.tags.get(RANGE_END) or run.tags.get("dagster/partition")
        if not partition:
            return dg.SkipReason(f"ingest run {run.run_id} has no partition")
        trained = context.instance.fetch_materializations(dg.AssetKey(tables.FORECASTER), limit=1)
        if not trained.records:
            return dg.SkipReason("no forecaster yet: nothing to monitor against")
        return dg.RunRequest(run_key=f"monitor:{run.run_id}", partition_key=partition,
                             tags={"trigger": "landing", "ingest_run": run.run_id})

    @dg.run_failure_sensor(
        name="alert_sensor", request_job=by_name[ALERTS_JOB],
        default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
        description="A failed run or failed blocking check: webhook, spool, and an alerts run.")
    def alert_sensor(context: dg.RunFailureSensorContext, platform: PlatformResource):
        run = context.dagster_run
        if run.job_name == ALERTS_JOB:
            context.log.error(f"{ALERTS_JOB} run {run.run_id} failed; not alerting on it (loop)")
            return None
        checks = failed_checks(context.instance, run.run_id)
        message = context.failure_event.message or ""
        alert = Alert(
            kind="failed_check" if checks else "failed_run",
            severity="warning" if checks else "critical",
            title=(f"{run.job_name}: {len(checks)} blocking check(s) failed" if checks
                   else f"{run.job_name} run failed"),
            details={"failed_checks": checks, "message": message[:500],
                     "trigger": run.tags.get("trigger", "manual"),
                     "partition": run.tags.get("dagster/partition")
                     or run.tags.get(RANGE_END)},
            run_id=run.run_id,
        )
        settings = platform.settings
        delivered = (post_webhook(settings.alert_webhook_url, alert, log=context.log)
                     if settings.alert_webhook_url else None)
        spool_alert(settings.alerts_spool_dir, alert, delivered)
        context.log.warning(alert.summary_line())
        return dg.RunRequest(run_key=f"alert:{run.run_id}", tags={"alert_for": run.run_id})

    return [drift_sensor, performance_sensor, monitor_sensor, alert_sensor]
