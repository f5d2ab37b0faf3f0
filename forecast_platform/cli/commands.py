"""The commands other than simulate-drift and ui: demo, land, serve, init-dataset."""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forecast_platform.cli.plans import generated_plan, store, validate_plans
from forecast_platform.cli.runs import configure, land, run_range, scoring_range, with_closures
from forecast_platform.cli.summary import summarize
from forecast_platform.datasets.landing import landed_files
from forecast_platform.datasets.registry import MISTAKES_MIN_SERIES, get_spec, is_generated

# Three years: the forecaster's yearly features need ~1.5 years before a row trains, and the
# anomaly detector needs half a year of out-of-sample residuals before it scores.
DEMO_START = dt.date(2015, 1, 1)
# The synthetic calendar ends on 2017-12-31; the demo stops a month earlier so that
# `simulate-drift` has days left to land.
DEMO_END = dt.date(2017, 11, 30)


def cmd_demo(args: argparse.Namespace) -> int:
    settings = configure(with_closures(args))
    started = time.perf_counter()
    spec = get_spec(settings.dataset, settings.datasets_dir)
    landed = landed_files(settings.landing_dir())
    if not landed:
        start = dt.date.fromisoformat(args.start) if args.start else DEMO_START
        end = dt.date.fromisoformat(args.end) if args.end else DEMO_END
        print(f"Landing {settings.dataset} data into {settings.landing_dir()} ...", flush=True)
        if is_generated(spec) and args.stores * args.items < MISTAKES_MIN_SERIES:
            print(f"  ({args.stores * args.items} series: too few to plant the upstream mistakes "
                  f"the quarantine demo shows without failing the blocking checks; they need "
                  f"{MISTAKES_MIN_SERIES})", flush=True)
        land(settings, start, args.stores, args.items, end)
        landed = landed_files(settings.landing_dir())
    # A stray file dated outside the partitions (sales_2099-01-01.csv) never defines the range;
    # the landing_file_names check names it.
    landed = {d: p for d, p in landed.items() if spec.start <= d <= spec.end}
    if not landed:
        print(f"error: no landing file in {settings.landing_dir()} is dated within the "
              f"dataset's partitions {spec.start}..{spec.end}", file=sys.stderr)
        return 1
    first, last = min(landed), max(landed)
    print(f"Materializing the asset graph for {first}..{last} ({len(landed)} partitions) "
          "as one run ...", flush=True)
    from forecast_platform.defs.jobs import (
        ANOMALY_JOB,
        DASHBOARD_JOB,
        INGEST_JOB,
        MONITOR_JOB,
        TRAIN_JOB,
    )

    results = [run_range(settings, INGEST_JOB, first, last)]
    if results[0].success:
        generated_plan(settings, spec)
        planned = validate_plans(settings, spec)
        if planned is not None:
            results.append(planned)
    if results[-1].success:
        print("Training, backtesting and gating the forecaster; forecasting with the champion; "
              "fitting the anomaly detector; packing the serving bundle ...", flush=True)
        results.append(run_range(settings, TRAIN_JOB))
    scored = scoring_range(settings) if results[-1].success else None
    if scored:
        print(f"Scoring {scored[0]}..{scored[1]} for anomalies as one run ...", flush=True)
        results.append(run_range(settings, ANOMALY_JOB, *scored))
    trained = [r for r in results if r.dagster_run.job_name == TRAIN_JOB]
    if trained and trained[0].success:
        print(f"Drift report and forecast performance for {last} ...", flush=True)
        results.append(run_range(settings, MONITOR_JOB, partition=last))
    # Last, so `forecast-platform dashboard` shows everything above (even a failed ingest's
    # quarantine); no daemon runs dashboard_sensor for the CLI's runs.
    print("Publishing the dashboard snapshot ...", flush=True)
    results.append(run_range(settings, DASHBOARD_JOB))
    print(summarize(settings, results, time.perf_counter() - started))
    return 0 if all(r.success for r in results) else 1


def cmd_land(args: argparse.Namespace) -> int:
    settings = configure(with_closures(args))
    start = dt.date.fromisoformat(args.start) if args.start else None
    end = dt.date.fromisoformat(args.end) if args.end else None
    written = land(settings, start, args.stores, args.items, end)
    print(f"landed {len(written)} files into {settings.landing_dir()}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the newest serving bundle with `bentoml serve` from bentos/ (BENTOML_HOME set)."""
    from bentoml.exceptions import NotFound

    from forecast_platform.defs.bentoml_store import stored_bundle
    from forecast_platform.settings import child_env

    settings = configure(args)
    tag = f"{settings.bundle_name}:latest"
    try:
        stored_bundle(tag, settings.bentoml_home)
    except NotFound:
        print(f"no {tag} in {settings.bentoml_home}: run `forecast-platform demo` (or "
              "materialize serving_bundle) first")
        return 1
    bentos = Path(__file__).resolve().parents[2] / "bentos"
    env = child_env(settings, {"DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "True"})
    exe = Path(sys.executable).with_name("bentoml")
    cmd = [str(exe) if exe.exists() else "bentoml", "serve", "service:ForecastService",
           "--host", args.host, "--port", str(args.port)]
    print(f"BENTOML_HOME={settings.bentoml_home} {' '.join(cmd)}  (in {bentos})")
    return subprocess.call(cmd, cwd=bentos, env=env)


def cmd_init_dataset(args: argparse.Namespace) -> int:
    """Inspect a CSV, propose a spec and write it as YAML (nothing is written on an error)."""
    from forecast_platform.datasets.custom import MappingError, inspect_csv, write_spec
    from forecast_platform.datasets.registry import BUILTIN
    from forecast_platform.planning.files import (
        PlanFileError,
        partitions_of,
        plan_range,
        read_plan,
    )

    def names(value: str | None) -> list[str]:
        return [c.strip() for c in (value or "").split(",") if c.strip()]

    if args.name in BUILTIN:
        raise SystemExit(f"error: --name {args.name!r} is a built-in dataset; pick another name")
    settings = configure(args)
    try:
        proposal = inspect_csv(Path(args.csv), args.name, args.date, names(args.keys),
                               args.target, args.freq, names(args.known), names(args.observed),
                               args.horizon, names(args.static), args.holiday, args.metric,
                               args.encoding, closures=args.closures,
                               open_column=args.open_column)
        if args.plan:  # checked against the proposed spec before anything is written
            with tempfile.TemporaryDirectory() as scratch:
                write_spec(proposal, Path(scratch))
                draft = get_spec(args.name, Path(scratch))
                partitions_of(read_plan(Path(args.plan), draft), draft, plan_range(draft))
        path = write_spec(proposal, settings.datasets_dir, overwrite=args.force)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err.filename}: no such file") from None
    except (MappingError, PlanFileError) as err:
        raise SystemExit(f"error: {'--plan ' if isinstance(err, PlanFileError) else ''}"
                         f"{err}") from None
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(proposal.text())
    if args.plan:
        store(settings, get_spec(args.name, settings.datasets_dir), Path(args.plan))
        print("  validated into covariate_plan once the sales are ingested (demo does it)")
    print(f"wrote {path}\nnext: forecast-platform demo --dataset {args.name}"
          + (f" --data-dir {settings.data_dir}" if args.data_dir else ""))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """One read-only query; the connection is closed before anything is printed, so a reader
    never holds the platform's writers back for longer than the query takes."""
    import duckdb

    from forecast_platform.warehouse.store import connect

    settings = configure(args)
    if not settings.warehouse_path.is_file():
        print(f"error: no warehouse at {settings.warehouse_path}: run `forecast-platform demo` "
              "first", file=sys.stderr)
        return 1
    try:
        with connect(settings.warehouse_path, read_only=True,
                     wait_seconds=settings.lock_wait_seconds) as con:
            frame = con.execute(args.sql).df()
    except duckdb.Error as err:
        print(f"error: {str(err).splitlines()[0][:500]}", file=sys.stderr)
        return 2
    if args.csv:
        frame.to_csv(args.csv, index=False)
        print(f"wrote {len(frame)} rows to {args.csv}")
    else:
        print(frame.head(args.max_rows).to_string(index=False))
        if len(frame) > args.max_rows:
            print(f"... {len(frame) - args.max_rows} more rows (--max-rows, or --csv FILE)")
    return 0
