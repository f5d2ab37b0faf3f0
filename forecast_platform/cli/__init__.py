"""The ``forecast-platform`` command: land data, run the graph, open the UI."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from forecast_platform.cli.instance import ensure_dagster_home
from forecast_platform.datasets.landing import landed_files
from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.spec import METRICS
from forecast_platform.defs.metadata import run_metadata
from forecast_platform.settings import Settings, load_settings
from forecast_platform.warehouse import tables

# Three years: the forecaster's yearly features need ~1.5 years before a row trains, and the
# anomaly detector needs half a year of out-of-sample residuals before it scores.
DEMO_START = dt.date(2015, 1, 1)
# The synthetic calendar ends on 2017-12-31; the demo stops a month earlier so that
# `simulate-drift` has days left to land.
DEMO_END = dt.date(2017, 11, 30)
SUMMARY_TABLES = list(tables.ALL)
ANOMALY_HISTORY_DAYS = 28  # a series needs this many scored residuals before its days score


def _configure(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command-line flags on top, resolved once and
    passed down (the process environment is never written)."""
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
    import dagster as dg

    from forecast_platform.definitions import build_definitions
    from forecast_platform.defs.automation import RANGE_END, RANGE_START

    job = build_definitions(settings).resolve_job_def(job_name)
    run_tags = dict(tags or {"trigger": "cli"})
    if start is not None and end is not None:
        run_tags.update({RANGE_START: start.isoformat(), RANGE_END: end.isoformat()})
    with dg.DagsterInstance.get() as instance:
        return job.execute_in_process(
            instance=instance,
            tags=run_tags,
            partition_key=partition.isoformat() if partition else None,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )


def forecaster_summary(result) -> list[str]:
    """The backtest table (model vs baselines), the gate's verdict and the report's path."""
    meta = run_metadata(result, tables.FORECASTER)
    if meta is None:
        return []
    return [
        "", f"Forecaster v{meta['model_version']} ({meta['status']}), trained on "
        f"{meta['train_window']} in {meta['train_seconds']} s; MLflow run "
        f"{meta['mlflow_run_id']}",
        "Backtest (rolling origins, same points for every method):",
        *("  " + line for line in str(meta["backtest"]).splitlines()),
        f"Report:       {meta['report']}",
    ]


def anomaly_summary(result) -> list[str]:
    """Anomalies found, by type, and how they compare with the generator's labels."""
    meta = run_metadata(result, tables.ANOMALIES)
    if meta is None:
        return []
    lines = ["", f"Anomalies: {meta['flagged']} of {meta['dagster/row_count']} series-periods "
                 f"flagged, by type {meta['by_type']}"]
    if "vs_labels_precision" in meta:
        lines.append(
            f"  against the generator's labels: precision {meta['vs_labels_precision']}, "
            f"recall {meta['vs_labels_recall']}, F1 {meta['vs_labels_f1']}, event recall "
            f"{meta['vs_labels_event_recall']}")
    return lines


def drift_summary(result) -> list[str]:
    """The drift report's verdict for the last day, and where the HTML is."""
    meta = run_metadata(result, tables.DRIFT_REPORT)
    if meta is None:
        return []
    return ["", f"Drift report ({meta['window']}, vs champion v{meta['model_version']}): "
                f"{meta['drifted_count']}/{meta['n_columns']} columns drifted; retrain: "
                f"{meta['retrain']} ({meta['retrain_reason']})",
            f"Drift HTML:   {meta['report']}",
            "              forecast-platform simulate-drift   lands drifted days and "
            "shows the retrain loop"]


def scoring_range(settings: Settings) -> tuple[dt.date, dt.date] | None:
    """Days that have out-of-sample expected values and enough scored history before them."""
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        first, last = con.execute(f"SELECT min(ds), max(ds) FROM {tables.EXPECTED}").fetchone()
    if first is None:
        return None
    return first + dt.timedelta(days=ANOMALY_HISTORY_DAYS), last


def summarize(settings: Settings, results: list, seconds: float) -> str:
    import duckdb

    from forecast_platform.warehouse.store import table_exists

    ok = all(r.success for r in results)
    runs = ", ".join(r.run_id[:8] for r in results)
    lines = [f"\nforecast_platform: {'succeeded' if ok else 'FAILED'} in {seconds:.0f} s "
             f"(runs {runs})", "", "Tables (DuckDB):"]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for table in SUMMARY_TABLES:
            n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] \
                if table_exists(con, table) else "none yet"
            lines.append(f"  {table:<18} {n:>12}")
    events = [e for r in results for e in r.all_events]
    checks = [e.event_specific_data for e in events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = [c for c in checks if not c.passed]
    lines += ["", f"Asset checks: {len(checks) - len(failed)} passed, {len(failed)} failed"]
    for c in failed:
        summary = c.metadata.get("summary")
        text = summary.value if summary is not None else ""
        lines.append(f"  [{c.severity.value}] {c.asset_key.to_user_string()}.{c.check_name}: "
                     f"{text}")
    for e in events:
        if e.event_type_value == "STEP_FAILURE":
            error = e.event_specific_data.error.message.strip().splitlines()[0]
            lines.append(f"  step {e.step_key} failed: {error}")
    for result in results:
        lines += forecaster_summary(result)
        lines += anomaly_summary(result)
        lines += drift_summary(result)
    lines += [
        "",
        f"Warehouse:    {settings.warehouse_path}",
        f"              duckdb -readonly {settings.warehouse_path}  (or Python: duckdb.connect)",
        f"Landing:      {settings.landing_dir()}",
        f"Dagster home: {settings.dagster_home}",
        f"BentoML home: {settings.bentoml_home}",
        "UI:           forecast-platform ui   then open http://127.0.0.1:3000",
        "Serving:      forecast-platform serve --port 3001   then POST /forecast",
    ]
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _configure(args)
    started = time.perf_counter()
    landed = landed_files(settings.landing_dir())
    if not landed:
        start = dt.date.fromisoformat(args.start) if args.start else DEMO_START
        end = dt.date.fromisoformat(args.end) if args.end else DEMO_END
        print(f"Landing {settings.dataset} data into {settings.landing_dir()} ...")
        land(settings, start, args.stores, args.items, end)
        landed = landed_files(settings.landing_dir())
    first, last = min(landed), max(landed)
    print(f"Materializing the asset graph for {first}..{last} ({len(landed)} partitions) "
          "as one run ...")
    from forecast_platform.defs.jobs import ANOMALY_JOB, INGEST_JOB, MONITOR_JOB, TRAIN_JOB

    results = [run_range(settings, INGEST_JOB, first, last)]
    if results[0].success:
        print("Training, backtesting and gating the forecaster; forecasting with the champion; "
              "fitting the anomaly detector; packing the serving bundle ...")
        results.append(run_range(settings, TRAIN_JOB))
    scored = scoring_range(settings) if results[-1].success else None
    if scored:
        print(f"Scoring {scored[0]}..{scored[1]} for anomalies as one run ...")
        results.append(run_range(settings, ANOMALY_JOB, *scored))
    if results[1:] and results[1].success:
        print(f"Drift report and forecast performance for {last} ...")
        results.append(run_range(settings, MONITOR_JOB, partition=last))
    print(summarize(settings, results, time.perf_counter() - started))
    return 0 if all(r.success for r in results) else 1


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
    from forecast_platform.defs.forecasting import model_name
    from forecast_platform.defs.jobs import INGEST_JOB, MONITOR_JOB, TRAIN_JOB
    from forecast_platform.forecasting import registry

    settings = _configure(args)
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
    print(f"3. Drift report for {end} against champion v{drift['model_version']}: "
          f"{drift['drifted_count']}/{drift['n_columns']} columns drifted "
          f"({drift['drifted_columns']}); retrain: {drift['retrain']} - "
          f"{drift['retrain_reason']}\n   report: {drift['report']}")
    if perf.get("points"):
        print(f"   Forecast performance: {perf['metric']} over the last days "
              f"{perf['rolling_error']} vs {perf['expected_error']} in the backtest "
              f"({perf['ratio']}x); degraded: {perf['degraded']}")
    defs = build_definitions(settings)
    with dg.DagsterInstance.get() as instance:
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
    print(f"5. Retrain run {retrain.run_id[:8]}: forecaster v{model.get('model_version')} is the "
          f"{model.get('status')} ({seconds:.0f} s after landing)")
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
              f"v{drift.get('model_version')}: retrain {drift.get('retrain')} "
              f"({drift.get('retrain_reason')})")
    return 0


def cmd_land(args: argparse.Namespace) -> int:
    settings = _configure(args)
    start = dt.date.fromisoformat(args.start) if args.start else None
    end = dt.date.fromisoformat(args.end) if args.end else None
    written = land(settings, start, args.stores, args.items, end)
    print(f"landed {len(written)} files into {settings.landing_dir()}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    settings = _configure(args)
    cmd = ["dagster", "dev", "-m", "forecast_platform.definitions", "-h", args.host,
           "-p", str(args.port)]
    print(f"DAGSTER_HOME={settings.dagster_home} {' '.join(cmd)}")
    return subprocess.call(cmd)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the newest serving bundle with `bentoml serve` from bentos/ (BENTOML_HOME set)."""
    from bentoml.exceptions import NotFound

    from forecast_platform.serving.bundle import bundle_name, model_store

    settings = _configure(args)
    tag = f"{bundle_name()}:latest"
    try:
        model_store(settings.bentoml_home).get(tag)
    except NotFound:
        print(f"no {tag} in {settings.bentoml_home}: run `forecast-platform demo` (or "
              "materialize serving_bundle) first")
        return 1
    bentos = Path(__file__).resolve().parents[2] / "bentos"
    env = {**os.environ, "BENTOML_HOME": str(settings.bentoml_home), "DO_NOT_TRACK": "1",
           "BENTOML_DO_NOT_TRACK": "True"}
    exe = Path(sys.executable).with_name("bentoml")
    cmd = [str(exe) if exe.exists() else "bentoml", "serve", "service:ForecastService",
           "--host", args.host, "--port", str(args.port)]
    print(f"BENTOML_HOME={settings.bentoml_home} {' '.join(cmd)}  (in {bentos})")
    return subprocess.call(cmd, cwd=bentos, env=env)


def cmd_init_dataset(args: argparse.Namespace) -> int:
    """Inspect a CSV, propose a spec and write it as YAML (nothing is written on an error)."""
    from forecast_platform.datasets.custom import MappingError, inspect_csv, write_spec
    from forecast_platform.datasets.registry import BUILTIN

    def names(value: str | None) -> list[str]:
        return [c.strip() for c in (value or "").split(",") if c.strip()]

    if args.name in BUILTIN:
        raise SystemExit(f"error: --name {args.name!r} is a built-in dataset; pick another name")
    settings = _configure(args)
    try:
        proposal = inspect_csv(Path(args.csv), args.name, args.date, names(args.keys),
                               args.target, args.freq, names(args.known), names(args.observed),
                               args.horizon, names(args.static), args.holiday, args.metric)
        path = write_spec(proposal, settings.datasets_dir, overwrite=args.force)
    except (MappingError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(proposal.text())
    print(f"wrote {path}\nnext: forecast-platform demo --dataset {args.name}"
          + (f" --data-dir {settings.data_dir}" if args.data_dir else ""))
    return 0


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
        p.add_argument("--start", help="synthetic: first landed date (default 2015-01-01)")
        p.add_argument("--end", help="synthetic: last landed date (demo default 2017-11-30, "
                                     "leaving December for simulate-drift)")
        p.add_argument("--stores", type=int, default=10, help="synthetic: number of stores")
        p.add_argument("--items", type=int, default=50, help="synthetic: items per store")
        p.set_defaults(func=func)
    p = sub.add_parser("simulate-drift", help="land drifted days after the demo and watch "
                       "drift detection start a retrain")
    common(p)
    p.add_argument("--days", type=int, default=28, help="drifted days to land (default 28)")
    p.set_defaults(func=cmd_simulate_drift)
    p = sub.add_parser("ui", help="start the Dagster UI (dagster dev) on this project")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("serve", help="serve the newest serving bundle over HTTP (bentoml serve)")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("init-dataset", help="map a CSV of your own onto a dataset spec (YAML "
                       "under <data dir>/datasets), so `demo --dataset NAME` runs on it")
    p.add_argument("--data-dir", help="where everything is written (FORECAST_DATA_DIR)")
    p.add_argument("--csv", required=True, help="the CSV file (one row per date and series)")
    p.add_argument("--name", required=True, help="the dataset's name (--dataset NAME later)")
    p.add_argument("--date", required=True, help="the date column")
    p.add_argument("--keys", required=True, help="the series key columns, comma-separated")
    p.add_argument("--target", required=True, help="the column to forecast")
    p.add_argument("--freq", choices=("D", "W"), help="D or W (default: guessed from the dates)")
    p.add_argument("--known", help="covariates known in advance (promotions), comma-separated")
    p.add_argument("--observed", help="covariates only observed (weather), comma-separated")
    p.add_argument("--static", help="attributes constant per series or per key (a store's type "
                                    "and size), comma-separated")
    p.add_argument("--holiday", help="a 0/1 column flagging holiday periods (known in advance; "
                                     "makes WMAE the default metric)")
    p.add_argument("--metric", choices=METRICS,
                   help="the metric of record the gate compares (default smape, wmae with "
                        "--holiday)")
    p.add_argument("--horizon", type=int, help="periods to forecast (default 28 daily, 13 "
                                               "weekly)")
    p.add_argument("--force", action="store_true", help="replace an existing spec of that name")
    p.set_defaults(func=cmd_init_dataset)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
