"""Plans from the command line: land a plan file (``plan``), read its lift (``what-if``).

``plan`` stores the file as a new plan version, validates it into ``covariate_plan`` (one run
over the planned dates) and, when a champion exists, refreshes the forecasts, the plan lift and
the serving bundle in a second run, so the command's summary already shows the plan in use.
With the daemon running, the plan sensor would do that refresh; it skips a plan the forecasts
are already newer than, so the two never refresh twice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from forecast_platform.cli.runs import configure, run_range
from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.datasets.synthetic import PLAN_FILE
from forecast_platform.planning.files import (
    PlanFile,
    PlanFileError,
    plan_files,
    plan_range,
    store_plan,
)
from forecast_platform.settings import Settings

REASONS_SHOWN = 5


def store(settings: Settings, spec: DatasetSpec, csv: Path) -> PlanFile:
    """Store a plan file as a new version, or exit with the reason it cannot be a plan."""
    try:
        stored = store_plan(csv, settings.plans_dir(spec.name), spec, plan_range(spec))
    except FileNotFoundError:
        raise SystemExit(f"error: --csv {csv}: no such file") from None
    except PlanFileError as error:
        raise SystemExit(f"error: --csv {csv}: {error}; nothing was landed") from None
    dates = stored.dates()
    print(f"plan {stored.version}: {len(dates)} dates {dates[0]}..{dates[-1]} stored in "
          f"{stored.path.parent}", flush=True)
    return stored


def generated_plan(settings: Settings, spec: DatasetSpec) -> PlanFile | None:
    """The plan a generated dataset's lander wrote beside its files, stored once (so the demo
    of a retailer-like dataset forecasts with its promotions)."""
    path = settings.landing_dir(spec.name) / PLAN_FILE
    if not path.is_file() or plan_files(settings.plans_dir(spec.name)):
        return None
    return store(settings, spec, path)


def validate_plans(settings: Settings, spec: DatasetSpec,
                   first: dt.date | None = None, last: dt.date | None = None):
    """One run of plan_job over ``first..last`` (default: every stored plan's dates); None when
    there is no plan. Prints what was planned and why rows were refused."""
    from forecast_platform.defs.jobs import PLAN_JOB
    from forecast_platform.defs.metadata import run_metadata
    from forecast_platform.warehouse.tables import COVARIATE_PLAN

    if first is None or last is None:
        days = [d for p in plan_files(settings.plans_dir(spec.name)) for d in p.dates()]
        if not days:
            return None
        first, last = min(days), max(days)
    print(f"Validating the plan of {first}..{last} into {COVARIATE_PLAN} ...", flush=True)
    result = run_range(settings, PLAN_JOB, first, last, tags={"trigger": "plan"})
    facts = run_metadata(result, COVARIATE_PLAN)
    if facts:
        print(f"  {facts['rows_read']} plan rows read: {facts['planned']} planned, "
              f"{facts['quarantined']} quarantined", flush=True)
        if facts["quarantined"]:
            print_rejects(settings, first, last)
    return result


def print_rejects(settings: Settings, first: dt.date, last: dt.date) -> None:
    from forecast_platform.warehouse.store import connect
    from forecast_platform.warehouse.tables import PLAN_REJECTS

    with connect(settings.warehouse_path, read_only=True,
                 wait_seconds=settings.lock_wait_seconds) as con:
        rows = con.execute(
            f"SELECT plan_file, source_line, reason FROM {PLAN_REJECTS} "
            "WHERE partition_date BETWEEN ? AND ? ORDER BY plan_file DESC, source_line LIMIT ?",
            [first, last, REASONS_SHOWN]).fetchall()
    for file, line, reason in rows:
        print(f"    {file} line {line}: {reason}")
    print(f"  (every refused row: forecast-platform query \"SELECT * FROM {PLAN_REJECTS}\")")


def has_champion(settings: Settings, spec: DatasetSpec) -> bool:
    from forecast_platform.forecasting import registry
    from forecast_platform.forecasting.forecast import model_name
    from forecast_platform.warehouse.store import connect

    if not settings.warehouse_path.is_file():
        return False
    with connect(settings.warehouse_path, read_only=True,
                 wait_seconds=settings.lock_wait_seconds) as con:
        return registry.champion(con, model_name(spec)) is not None


def cmd_plan(args: argparse.Namespace) -> int:
    from forecast_platform.defs.jobs import REFRESH_JOB
    from forecast_platform.defs.metadata import run_metadata
    from forecast_platform.planning.store import last_sales_date
    from forecast_platform.warehouse.store import connect
    from forecast_platform.warehouse.tables import FORECASTS, PLAN_LIFT

    settings = configure(args)
    spec = get_spec(settings.dataset, settings.datasets_dir)
    stored = store(settings, spec, Path(args.csv))
    newest = None
    if settings.warehouse_path.is_file():
        with connect(settings.warehouse_path, read_only=True,
                     wait_seconds=settings.lock_wait_seconds) as con:
            newest = last_sales_date(con, spec)
    if newest is None:
        print("no sales are ingested yet: the plan is validated after them (`forecast-platform "
              f"demo --dataset {spec.name}` does it)")
        return 0
    dates = stored.dates()
    result = validate_plans(settings, spec, dates[0], dates[-1])
    if not result.success:
        print("error: validating the plan failed; see the run in the Dagster UI "
              f"(run {result.run_id[:8]})", file=sys.stderr)
        return 1
    if args.no_refresh or not has_champion(settings, spec):
        print("forecasts not refreshed" + (" (--no-refresh)" if args.no_refresh else
                                           ": no champion yet; the first train run uses the "
                                           "plan"))
        return 0
    print("Refreshing the forecasts, the plan lift and the serving bundle ...", flush=True)
    refresh = run_range(settings, REFRESH_JOB, tags={"trigger": "plan"})
    forecasts = run_metadata(refresh, FORECASTS) or {}
    lift = run_metadata(refresh, PLAN_LIFT) or {}
    if not refresh.success:
        print(f"error: the refresh run {refresh.run_id[:8]} failed; see the Dagster UI",
              file=sys.stderr)
        return 1
    print(f"  forecasts from {forecasts.get('origin')}: {forecasts.get('plan_rows_used')} rows "
          f"use plan {forecasts.get('plan_versions')}")
    if lift:
        print(f"  plan lift over {lift.get('series_planned')} series: P50 "
              f"{lift.get('p50_with_plan')} with the plan vs {lift.get('p50_without')} without "
              f"({lift.get('lift_pct')} %); per store or item: forecast-platform what-if")
    return 0


def cmd_what_if(args: argparse.Namespace) -> int:
    """Totals per date of the plan's lift for the series that match ``--where`` filters."""
    from forecast_platform.planning.lift import lift_by_date
    from forecast_platform.warehouse.store import connect, quote, table_exists
    from forecast_platform.warehouse.tables import FORECASTS, PLAN_LIFT

    settings = configure(args)
    spec = get_spec(settings.dataset, settings.datasets_dir)
    filters = {}
    for item in args.where or []:
        key, sep, value = item.partition("=")
        if not sep or key not in spec.keys:
            raise SystemExit(f"error: --where {item!r}: expected KEY=VALUE with KEY one of "
                             f"{list(spec.keys)}")
        filters[key] = value
    if not settings.warehouse_path.is_file():
        raise SystemExit(f"error: no warehouse at {settings.warehouse_path}: run "
                         "`forecast-platform demo` first")
    with connect(settings.warehouse_path, read_only=True,
                 wait_seconds=settings.lock_wait_seconds) as con:
        if not table_exists(con, PLAN_LIFT):
            raise SystemExit(f"error: no {PLAN_LIFT} yet: land a plan with `forecast-platform "
                             f"plan --dataset {spec.name} --csv FILE` after a demo")
        where = "".join(f" AND CAST({quote(k)} AS VARCHAR) = ?" for k in filters)
        rows = con.execute(
            f"SELECT * FROM {PLAN_LIFT} WHERE origin = (SELECT max(origin) FROM {FORECASTS})"
            f"{where}", list(filters.values())).df()
    if rows.empty:
        print("no planned series match " + (", ".join(f"{k}={v}" for k, v in filters.items())
                                            or "(no plan in force)"))
        return 1
    table = lift_by_date(rows)
    who = ", ".join(f"{k}={v}" for k, v in filters.items()) or "every planned series"
    print(f"Plan {', '.join(sorted(rows['plan_version'].unique()))} vs "
          f"{rows['switched_off'].iat[0]} off, {who} (forecaster v"
          f"{rows['forecaster_version'].iat[0]}, P50 totals):")
    shown = table.assign(ds=table["ds"].dt.date).round(
        {"p50_plan": 1, "p50_unplanned": 1, "lift": 1})
    print(shown.to_string(index=False, na_rep="-"))
    total = table[["p50_plan", "p50_unplanned", "lift"]].sum()
    pct = 100 * total["lift"] / total["p50_unplanned"] if total["p50_unplanned"] > 0 else 0.0
    print(f"total: {total['p50_plan']:.1f} with the plan vs {total['p50_unplanned']:.1f} "
          f"without ({pct:+.1f} %)")
    return 0
