"""Settings from the command line, landing, and runs of the graph on the persistent instance."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from forecast_platform.cli.instance import ensure_dagster_home, open_instance
from forecast_platform.datasets.registry import get_spec, is_generated
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


def with_closures(args: argparse.Namespace) -> argparse.Namespace:
    """``--closures`` picks the generator with a retailer's calendar (synthetic_closures),
    whose spec states the closures; any other dataset is refused, naming it."""
    if getattr(args, "closures", False):
        if args.dataset not in (None, "synthetic", "synthetic_closures"):
            raise SystemExit(f"error: --closures applies to the generated data, not to "
                             f"--dataset {args.dataset}; its own data has its calendar")
        args.dataset = "synthetic_closures"
    return args


def land(settings: Settings, start: dt.date | None, stores: int, items: int,
         end: dt.date | None = None) -> list[Path]:
    spec = get_spec(settings.dataset, settings.datasets_dir)
    if spec.lander is None:
        raise SystemExit(f"dataset {spec.name!r} has no lander: drop files into "
                         f"{settings.landing_dir()} yourself")
    kwargs = {"start": start, "end": end, "n_stores": stores, "n_items": items} \
        if is_generated(spec) else {}
    return spec.lander(spec, settings.landing_dir(), settings.source_dir, **kwargs)


def run_range(settings: Settings, job_name: str, start: dt.date | None = None,
              end: dt.date | None = None, *, partition: dt.date | None = None,
              tags: Mapping[str, str] | None = None, heal: bool = True):
    """Materialize a job as one run on the persistent instance: over ``start..end`` or one
    ``partition`` for partitioned jobs (e.g. one drift report), with ``tags`` (default
    ``trigger=cli``) and this process's PID and host.

    An ingest over ``start..end`` first validates again the days outside it that a stopped run
    left unbalanced (``heal_unbalanced``; ``heal=False`` for those runs themselves). Then runs
    whose process died are marked failed and their ``duckdb`` pool slots freed, and
    while another run is in flight the command says every few seconds which one it waits for
    (``cli/recovery.py``). SIGINT / SIGTERM stop it within seconds: the run is marked canceled,
    its slots freed, and the process exits with 128 + the signal number and one line on stderr.
    """
    from dagster._core.errors import DagsterExecutionInterruptedError
    from dagster._core.utils import make_new_run_id

    from forecast_platform.cli.recovery import process_tags, signal_guard, wait_for_warehouse
    from forecast_platform.definitions import build_definitions
    from forecast_platform.defs.automation import RANGE_END, RANGE_START
    from forecast_platform.defs.console import cli_console_logger
    from forecast_platform.defs.jobs import INGEST_JOB

    if heal and job_name == INGEST_JOB and start is not None and end is not None:
        heal_unbalanced(settings, start, end)
    # Dagster's console logger replaced by the CLI's (defs/console.py): one line a warning, and
    # failures left to the command's summary instead of a stack trace.
    job = build_definitions(settings).resolve_job_def(job_name) \
        .with_logger_defs({"console": cli_console_logger})
    run_tags = dict(tags or {"trigger": "cli"})
    if start is not None and end is not None:
        run_tags.update({RANGE_START: start.isoformat(), RANGE_END: end.isoformat()})
    run_tags.update(process_tags())
    run_id = make_new_run_id()
    with signal_guard(settings) as guard, open_instance(settings) as instance:
        guard.job_name, guard.instance = job_name, instance
        try:
            wait_for_warehouse(instance)
            guard.run_id = run_id
            result = job.execute_in_process(
                instance=instance,
                run_id=run_id,
                tags=run_tags,
                partition_key=partition.isoformat() if partition else None,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                raise_on_error=False,
            )
        except (KeyboardInterrupt, DagsterExecutionInterruptedError):
            guard.stop(instance)
        if guard.signum is not None:  # Dagster ended the run itself after the signal
            guard.stop(instance)
        return result


def heal_unbalanced(settings: Settings, start: dt.date, end: dt.date) -> None:
    """Before an ingest of ``start..end``: validate again the days outside it whose raw rows are
    not their validated + rejected rows (a run killed between its steps), one run per range of
    consecutive days, so every ingest through the CLI leaves the whole warehouse balanced.

    The ranges are found once, before any of their runs: a healing run does not heal again
    (each would find the others' ranges still unbalanced and start them, without end)."""
    from forecast_platform.datasets.landing import contiguous_ranges
    from forecast_platform.defs.jobs import INGEST_JOB
    from forecast_platform.ingestion.checks import unbalanced_partitions
    from forecast_platform.warehouse.store import connect, table_exists

    if not settings.warehouse_path.is_file():
        return
    spec = get_spec(settings.dataset, settings.datasets_dir)
    with connect(settings.warehouse_path, read_only=True,
                 wait_seconds=settings.lock_wait_seconds) as con:
        if not table_exists(con, tables.RAW):
            return
        days = [d for d in unbalanced_partitions(con, spec) if not start <= d <= end]
    for first, last in contiguous_ranges(days, spec.step_days):
        print(f"Validating {first}..{last} again: their raw rows are not their validated + "
              "rejected rows (a run stopped between its steps) ...", flush=True)
        run_range(settings, INGEST_JOB, first, last, tags={"trigger": "rows_balance"},
                  heal=False)


def scoring_range(settings: Settings) -> tuple[dt.date, dt.date] | None:
    """Days that have out-of-sample expected values and enough scored history before them."""
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        first, last = con.execute(f"SELECT min(ds), max(ds) FROM {tables.EXPECTED}").fetchone()
    if first is None:
        return None
    return first + dt.timedelta(days=ANOMALY_HISTORY_DAYS), last
