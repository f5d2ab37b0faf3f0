"""The ``forecast-platform`` command: land data, run the graph, open the UI."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from forecast_platform.datasets.landing import landed_files
from forecast_platform.datasets.registry import get_spec
from forecast_platform.instance import ensure_dagster_home
from forecast_platform.settings import Settings, load_settings

DEMO_START = dt.date(2016, 1, 1)
SUMMARY_TABLES = [
    "raw_sales", "validated_sales", "sales_rejects", "holiday_calendar", "sales_features",
]


def _configure(args: argparse.Namespace) -> Settings:
    """Command-line flags win over the environment; both end up in the environment so that
    the code location Dagster loads sees the same settings."""
    for flag, var in (("data_dir", "FORECAST_DATA_DIR"), ("dataset", "FORECAST_DATASET"),
                      ("source_dir", "FORECAST_SOURCE_DIR")):
        value = getattr(args, flag, None)
        if value:
            os.environ[var] = str(Path(value).resolve()) if flag.endswith("dir") else value
    settings = load_settings()
    os.environ["FORECAST_DATA_DIR"] = str(settings.data_dir)
    ensure_dagster_home(settings)
    return settings


def land(settings: Settings, start: dt.date | None, stores: int, items: int) -> list[Path]:
    spec = get_spec(settings.dataset)
    if spec.lander is None:
        raise SystemExit(f"dataset {spec.name!r} has no lander: drop files into "
                         f"{settings.landing_dir()} yourself")
    kwargs = {"start": start, "n_stores": stores, "n_items": items} if spec.name == "synthetic" \
        else {}
    return spec.lander(spec, settings.landing_dir(), settings.source_dir, **kwargs)


def run_range(settings: Settings, job_name: str, start: dt.date, end: dt.date):
    """Materialize a job over a date range as one run on the persistent instance."""
    import dagster as dg

    from forecast_platform.definitions import build_definitions
    from forecast_platform.sensors import RANGE_END, RANGE_START

    defs = build_definitions(settings)
    job = defs.resolve_job_def(job_name)
    with dg.DagsterInstance.get() as instance:
        return job.execute_in_process(
            instance=instance,
            tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat(), "trigger": "cli"},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )


def summarize(settings: Settings, result, seconds: float) -> str:
    import duckdb

    from forecast_platform.warehouse.store import table_exists

    lines = [f"\nforecast_platform: {'succeeded' if result.success else 'FAILED'} "
             f"in {seconds:.0f} s (run {result.run_id})", "", "Tables (DuckDB):"]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for table in SUMMARY_TABLES:
            n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] \
                if table_exists(con, table) else "missing"
            lines.append(f"  {table:<18} {n:>12}")
    checks = [e.event_specific_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = [c for c in checks if not c.passed]
    lines += ["", f"Asset checks: {len(checks) - len(failed)} passed, {len(failed)} failed"]
    for c in failed:
        summary = c.metadata.get("summary")
        text = summary.value if summary is not None else ""
        lines.append(f"  [{c.severity.value}] {c.asset_key.to_user_string()}.{c.check_name}: "
                     f"{text}")
    step_failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    for e in step_failures:
        lines.append(f"  step {e.step_key} failed: {e.event_specific_data.error.message.strip()}")
    lines += [
        "",
        f"Warehouse:    {settings.warehouse_path}",
        f"              duckdb -readonly {settings.warehouse_path}  (or Python: duckdb.connect)",
        f"Landing:      {settings.landing_dir()}",
        f"Dagster home: {settings.dagster_home}",
        "UI:           forecast-platform ui   then open http://127.0.0.1:3000",
    ]
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _configure(args)
    started = time.perf_counter()
    landed = landed_files(settings.landing_dir())
    if not landed:
        start = dt.date.fromisoformat(args.start) if args.start else DEMO_START
        print(f"Landing {settings.dataset} data into {settings.landing_dir()} ...")
        land(settings, start, args.stores, args.items)
        landed = landed_files(settings.landing_dir())
    first, last = min(landed), max(landed)
    print(f"Materializing the asset graph for {first}..{last} ({len(landed)} partitions) "
          "as one run ...")
    from forecast_platform.jobs import INGEST_JOB

    result = run_range(settings, INGEST_JOB, first, last)
    print(summarize(settings, result, time.perf_counter() - started))
    return 0 if result.success else 1


def cmd_land(args: argparse.Namespace) -> int:
    settings = _configure(args)
    start = dt.date.fromisoformat(args.start) if args.start else None
    written = land(settings, start, args.stores, args.items)
    print(f"landed {len(written)} files into {settings.landing_dir()}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    settings = _configure(args)
    cmd = ["dagster", "dev", "-m", "forecast_platform.definitions", "-h", args.host,
           "-p", str(args.port)]
    print(f"DAGSTER_HOME={settings.dagster_home} {' '.join(cmd)}")
    return subprocess.call(cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forecast-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="where everything is written (FORECAST_DATA_DIR)")
        p.add_argument("--dataset", help="dataset name (FORECAST_DATASET, default synthetic)")
        p.add_argument("--source-dir", help="a real dataset's files (FORECAST_SOURCE_DIR)")

    for name, func, text in (("demo", cmd_demo, "land data if needed and run the whole graph"),
                             ("land", cmd_land, "only write landing files")):
        p = sub.add_parser(name, help=text)
        common(p)
        p.add_argument("--start", help="synthetic: first landed date (default 2016-01-01)")
        p.add_argument("--stores", type=int, default=10, help="synthetic: number of stores")
        p.add_argument("--items", type=int, default=50, help="synthetic: items per store")
        p.set_defaults(func=func)
    p = sub.add_parser("ui", help="start the Dagster UI (dagster dev) on this project")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
