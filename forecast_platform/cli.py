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

# Three years: the forecaster's yearly features need ~1.5 years before a row trains, and the
# anomaly detector needs half a year of out-of-sample residuals before it scores.
DEMO_START = dt.date(2015, 1, 1)
SUMMARY_TABLES = [
    "raw_sales", "validated_sales", "sales_rejects", "holiday_calendar", "sales_features",
    "model_registry", "forecasts", "forecast_explanations", "expected_sales", "sales_anomalies",
]
ANOMALY_HISTORY_DAYS = 28  # a series needs this many scored residuals before its days score


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


def run_range(settings: Settings, job_name: str, start: dt.date | None = None,
              end: dt.date | None = None):
    """Materialize a job (over a date range, for partitioned jobs) as one run on the persistent
    instance."""
    import dagster as dg

    from forecast_platform.definitions import build_definitions
    from forecast_platform.sensors import RANGE_END, RANGE_START

    defs = build_definitions(settings)
    job = defs.resolve_job_def(job_name)
    tags = {"trigger": "cli"}
    if start is not None and end is not None:
        tags.update({RANGE_START: start.isoformat(), RANGE_END: end.isoformat()})
    with dg.DagsterInstance.get() as instance:
        return job.execute_in_process(
            instance=instance,
            tags=tags,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )


def forecaster_summary(result) -> list[str]:
    """The backtest table (model vs baselines), the gate's verdict and the report's path."""
    for e in result.all_events:
        if e.event_type_value != "ASSET_MATERIALIZATION":
            continue
        m = e.event_specific_data.materialization
        if m.asset_key.to_user_string() != "forecaster":
            continue
        meta = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
        return [
            "", f"Forecaster v{meta['model_version']} ({meta['status']}), trained on "
            f"{meta['train_window']} in {meta['train_seconds']} s; MLflow run "
            f"{meta['mlflow_run_id']}",
            "Backtest (rolling origins, same points for every method):",
            *("  " + line for line in str(meta["backtest"]).splitlines()),
            f"Report:       {meta['report']}",
        ]
    return []


def anomaly_summary(result) -> list[str]:
    """Anomalies found, by type, and how they compare with the generator's labels."""
    for e in result.all_events:
        if e.event_type_value != "ASSET_MATERIALIZATION":
            continue
        m = e.event_specific_data.materialization
        if m.asset_key.to_user_string() != "sales_anomalies":
            continue
        meta = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
        lines = ["", f"Anomalies: {meta['flagged']} of {meta['dagster/row_count']} series-days "
                     f"flagged, by type {meta['by_type']}"]
        if "vs_labels_precision" in meta:
            lines.append(
                f"  against the generator's labels: precision {meta['vs_labels_precision']}, "
                f"recall {meta['vs_labels_recall']}, F1 {meta['vs_labels_f1']}, event recall "
                f"{meta['vs_labels_event_recall']}")
        return lines
    return []


def scoring_range(settings: Settings) -> tuple[dt.date, dt.date] | None:
    """Days that have out-of-sample expected values and enough scored history before them."""
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        first, last = con.execute("SELECT min(ds), max(ds) FROM expected_sales").fetchone()
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
                if table_exists(con, table) else "missing"
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
        print(f"Landing {settings.dataset} data into {settings.landing_dir()} ...")
        land(settings, start, args.stores, args.items)
        landed = landed_files(settings.landing_dir())
    first, last = min(landed), max(landed)
    print(f"Materializing the asset graph for {first}..{last} ({len(landed)} partitions) "
          "as one run ...")
    from forecast_platform.jobs import ANOMALY_JOB, INGEST_JOB, TRAIN_JOB

    results = [run_range(settings, INGEST_JOB, first, last)]
    if results[0].success:
        print("Training, backtesting and gating the forecaster; forecasting with the champion; "
              "fitting the anomaly detector; packing the serving bundle ...")
        results.append(run_range(settings, TRAIN_JOB))
    scored = scoring_range(settings) if results[-1].success else None
    if scored:
        print(f"Scoring {scored[0]}..{scored[1]} for anomalies as one run ...")
        results.append(run_range(settings, ANOMALY_JOB, *scored))
    print(summarize(settings, results, time.perf_counter() - started))
    return 0 if all(r.success for r in results) else 1


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
    bentos = Path(__file__).resolve().parents[1] / "bentos"
    env = {**os.environ, "BENTOML_HOME": str(settings.bentoml_home), "DO_NOT_TRACK": "1",
           "BENTOML_DO_NOT_TRACK": "True"}
    exe = Path(sys.executable).with_name("bentoml")
    cmd = [str(exe) if exe.exists() else "bentoml", "serve", "service:ForecastService",
           "--host", args.host, "--port", str(args.port)]
    print(f"BENTOML_HOME={settings.bentoml_home} {' '.join(cmd)}  (in {bentos})")
    return subprocess.call(cmd, cwd=bentos, env=env)


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
        p.add_argument("--stores", type=int, default=10, help="synthetic: number of stores")
        p.add_argument("--items", type=int, default=50, help="synthetic: items per store")
        p.set_defaults(func=func)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
