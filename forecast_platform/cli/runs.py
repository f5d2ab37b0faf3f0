"""Settings from the command line, landing, and runs of the graph on the persistent instance."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from forecast_platform.cli.instance import ensure_dagster_home, open_instance
from forecast_platform.datasets.registry import get_spec
from forecast_platform.settings import Settings, load_settings
from forecast_platform.warehouse import tables

ANOMALY_HISTORY_DAYS = 28  # a series needs this many scored residuals before its days score


def configure(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command-line flags on top, resolved once and
    passed down (the process environment is never written); the Dagster home is made ready."""
    def absolute(value: str | None) -> str | None:
        return str(Path(value).resolve()) if value else None

    settings = load_settings(overrides={
        "FORECAST_DATA_DIR": absolute(getattr(args, "data_dir", None)),
        "FORECAST_DATASET": getattr(args, "dataset", None),
        "FORECAST_SOURCE_DIR": absolute(getattr(args, "source_dir", None)),
    })
    ensure_dagster_home(settings)
    return settings


def land(settings: Settings, start: dt.date | None, stores: int, items: int,
         end: dt.date | None = None) -> list[Path]:
    spec = get_spec(settings.dataset, settings.datasets_dir)
    if spec.lander is None:
        raise SystemExit(f"dataset {spec.name!r} has no lander: drop files into "
                         f"{settings.landing_dir()} yourself")
    kwargs = {"start": start, "end": end, "n_stores": stores, "n_items": items} \
        if spec.name == "synthetic" else {}
    return spec.lander(spec, settings.landing_dir(), settings.source_dir, **kwargs)


def run_range(settings: Settings, job_name: str, start: dt.date | None = None,
              end: dt.date | None = None, *, partition: dt.date | None = None,
              tags: Mapping[str, str] | None = None):
    """Materialize a job as one run on the persistent instance: over ``start..end`` or one
    ``partition`` for partitioned jobs (e.g. one drift report), with ``tags`` (default
    ``trigger=cli``)."""
    from forecast_platform.definitions import build_definitions
    from forecast_platform.defs.automation import RANGE_END, RANGE_START

    job = build_definitions(settings).resolve_job_def(job_name)
    run_tags = dict(tags or {"trigger": "cli"})
    if start is not None and end is not None:
        run_tags.update({RANGE_START: start.isoformat(), RANGE_END: end.isoformat()})
    with open_instance(settings) as instance:
        return job.execute_in_process(
            instance=instance,
            tags=run_tags,
            partition_key=partition.isoformat() if partition else None,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )


def scoring_range(settings: Settings) -> tuple[dt.date, dt.date] | None:
    """Days that have out-of-sample expected values and enough scored history before them."""
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        first, last = con.execute(f"SELECT min(ds), max(ds) FROM {tables.EXPECTED}").fetchone()
    if first is None:
        return None
    return first + dt.timedelta(days=ANOMALY_HISTORY_DAYS), last
