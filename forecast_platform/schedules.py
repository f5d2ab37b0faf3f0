"""Schedules: keep what depends on the latest data current between retrains.

New days arrive through the landing sensor (raw -> validated -> features). Forecasts and the
serving bundle's history snapshot must follow them even when no model is retrained, so they are
refreshed every morning with the current champion.
"""

from __future__ import annotations

import dagster as dg

from forecast_platform.jobs import ANOMALY_JOB, REFRESH_JOB


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
