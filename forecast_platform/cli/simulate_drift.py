"""``forecast-platform simulate-drift``: drifted days after the demo, and the monitoring loop
they start, one step after the other."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time

from forecast_platform.cli.instance import open_instance
from forecast_platform.cli.runs import configure, run_range
from forecast_platform.datasets.landing import landed_files
from forecast_platform.datasets.registry import get_spec
from forecast_platform.defs.metadata import run_metadata
from forecast_platform.settings import Settings
from forecast_platform.warehouse import tables


def _landed_shape(settings: Settings, day: dt.date) -> tuple[int, int]:
    """Stores and items of the synthetic data already landed, read from one landed file."""
    import pandas as pd

    frame = pd.read_csv(landed_files(settings.landing_dir())[day])
    return int(frame["store"].nunique()), int(frame["item"].nunique())


def cmd_simulate_drift(args: argparse.Namespace) -> int:
    """Land drifted days after the demo's data and walk the monitoring loop, step by step.

    The steps are the ones the daemon takes on its own under ``forecast-platform ui``: ingest
    the landed range, materialize the drift report and forecast performance for its last day,
    evaluate the real ``drift_sensor`` against this Dagster instance, and execute the retrain it
    requests. Here they run one after the other so their output can be read in order.
    """
    import dagster as dg
    import duckdb

    from forecast_platform.datasets.registry import land_synthetic
    from forecast_platform.definitions import build_definitions
    from forecast_platform.defs.jobs import INGEST_JOB, MONITOR_JOB, TRAIN_JOB
    from forecast_platform.forecasting import registry
    from forecast_platform.forecasting.forecast import model_name

    settings = configure(args)
    spec = get_spec(settings.dataset, settings.datasets_dir)
    if spec.name != "synthetic":
        raise SystemExit("simulate-drift uses the synthetic generator's drift switch: run it "
                         "with --dataset synthetic (the default)")
    landed = landed_files(settings.landing_dir())
    if not landed:
        raise SystemExit(f"nothing landed in {settings.landing_dir()}: run "
                         "`forecast-platform demo` first, it trains the champion to drift from")
    last = max(landed)
    first, end = last + dt.timedelta(days=1), last + dt.timedelta(days=args.days)
    if end > spec.end:
        raise SystemExit(f"the synthetic calendar ends on {spec.end}; {args.days} days after "
                         f"{last} go past it: run the demo with an earlier --start or fewer --days")
    stores, items = _landed_shape(settings, last)
    print(f"1. Landing {args.days} drifted days {first}..{end} ({stores} stores x {items} items; "
          f"level x1.6, weekday-heavy, promotions 4 % -> 12 %) into {settings.landing_dir()}")
    land_synthetic(spec, settings.landing_dir(), start=first, end=end, n_stores=stores,
                   n_items=items, drift_from=first, mistakes=False)
    started = time.perf_counter()
    ingest = run_range(settings, INGEST_JOB, first, end)
    print(f"2. Ingested them: run {ingest.run_id[:8]} {'ok' if ingest.success else 'FAILED'}")
    if not ingest.success:
        return 1
    monitor = run_range(settings, MONITOR_JOB, partition=end, tags={"trigger": "landing"})
    drift = run_metadata(monitor, tables.DRIFT_REPORT)
    perf = run_metadata(monitor, tables.PERFORMANCE) or {}
    if not monitor.success:
        print("3. monitor_job FAILED; see the Dagster UI for the step's error")
        return 1
    print(f"3. Drift report for {end} against champion v{drift['forecaster_version']}: "
          f"{drift['drifted_count']}/{drift['n_columns']} columns drifted "
          f"({drift['drifted_columns']}); retrain: {drift['retrain']} - "
          f"{drift['retrain_reason']}\n   report: {drift['report']}")
    if perf.get("points"):
        print(f"   Forecast performance: {perf['metric']} over the last days "
              f"{perf['rolling_error']} vs {perf['expected_error']} in the backtest "
              f"({perf['ratio']}x); degraded: {perf['degraded']}")
    defs = build_definitions(settings)
    with open_instance(settings) as instance:
        result = defs.resolve_sensor_def("drift_sensor")(dg.build_sensor_context(
            instance=instance, definitions=defs,
            resources={"platform": defs.resources["platform"]}))
    requests = list(getattr(result, "run_requests", None) or [])
    if not requests:
        reason = getattr(getattr(result, "skip_reason", None), "skip_message", result)
        print(f"4. drift_sensor requested nothing: {reason}")
        return 0
    tags = requests[0].tags
    print(f"4. drift_sensor requested {TRAIN_JOB} with tags {dict(tags)}")
    retrain = run_range(settings, TRAIN_JOB, tags=tags)
    model = run_metadata(retrain, tables.FORECASTER) or {}
    seconds = time.perf_counter() - started
    print(f"5. Retrain run {retrain.run_id[:8]}: forecaster "
          f"v{model.get('forecaster_version')} is the {model.get('status')} "
          f"({seconds:.0f} s after landing)")
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        versions = registry.history(con, model_name(spec))
    for version, status, trigger, train_end, gate in versions[
            ["version", "status", "trigger", "train_end", "gate"]].itertuples(index=False):
        reasons = "; ".join(json.loads(gate).get("reasons", [])) if gate else ""
        print(f"   v{version:<3} {status:<10} trigger={trigger or '-':<8} "
              f"trained to {train_end:%Y-%m-%d}  {reasons}")
    if model.get("status") == "champion":
        again = run_range(settings, MONITOR_JOB, partition=end)
        drift = run_metadata(again, tables.DRIFT_REPORT) or {}
        print(f"6. The same day's drift report against the new champion "
              f"v{drift.get('forecaster_version')}: retrain {drift.get('retrain')} "
              f"({drift.get('retrain_reason')})")
    return 0
