"""Partitions, defined once from the dataset spec: daily or weekly, aligned to the data's dates."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.planning.files import plan_range


def partitions_for(spec: DatasetSpec) -> dg.TimeWindowPartitionsDefinition:
    """Partitions from the spec's first date to one period past its last.

    The end is fixed rather than "today": historical datasets must not show years of
    empty partitions after their last day.
    """
    end = spec.end + dt.timedelta(days=spec.step_days)
    if spec.frequency == "W":
        return dg.WeeklyPartitionsDefinition(
            start_date=spec.start.isoformat(),
            end_date=end.isoformat(),
            day_offset=(spec.start.isoweekday() % 7),
        )
    return dg.DailyPartitionsDefinition(start_date=spec.start.isoformat(), end_date=end.isoformat())


def plan_partitions_for(spec: DatasetSpec) -> dg.TimeWindowPartitionsDefinition:
    """The plan's partitions: the sales partitions and a season beyond (``plan_range``).

    Future dates must exist as partitions even when the data is current: ``end_offset``
    extends the partitions past today up to the fixed end.
    """
    window = plan_range(spec)
    end = window.last + dt.timedelta(days=spec.step_days)
    periods = (end - window.start).days // spec.step_days + 1
    if spec.frequency == "W":
        return dg.WeeklyPartitionsDefinition(
            start_date=window.start.isoformat(), end_date=end.isoformat(),
            day_offset=(window.start.isoweekday() % 7), end_offset=periods)
    return dg.DailyPartitionsDefinition(start_date=window.start.isoformat(),
                                        end_date=end.isoformat(), end_offset=periods)


def date_range(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
               ) -> tuple[dt.date, dt.date]:
    """The run's partitions as an inclusive date range (one partition or a whole backfill)."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()
