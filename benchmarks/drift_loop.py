"""The monitoring loop end to end, driven by the real Dagster daemon: landing -> new model version.

Used by ``benchmarks/monitoring.py`` (``drift_to_model_seconds``); runnable alone:

    python benchmarks/drift_loop.py [--stores 10 --items 50]

Set-up (not timed), in process on a persistent instance in a temporary data directory:
synthetic data (500 series by default) from ``--start`` to the day before ``--drift-from`` is
landed and ingested, the champion is trained (forecaster + forecasts), and the drifted days
``drift_from .. drift_from + window - 2`` are landed and ingested without monitoring, as if the
drift had been going on unnoticed. The landing sensor's cursor is set past those files.

Timed: ``dagster-daemon run`` is started on the code location; the last drifted day's file is
written to the landing directory (t = 0); then nothing but the daemon acts: ``landing_sensor``
requests the ingest run, ``monitor_sensor`` the drift report when it succeeds, ``drift_sensor``
the retrain when the report says so, and the clock stops when the retrain's ``forecaster``
materialization (the new model version, in the registry and in Dagster) is in the event log.
Each stage's time is printed. The retrain run is then terminated (its remaining steps, expected
values and the bundle, are not part of "a new model version") and the daemon stopped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from forecast_platform.warehouse import tables  # noqa: E402

POLL_SECONDS = 1.0
DONE = "new forecaster version materialized"


def _exe(name: str) -> str:
    """A console script of this interpreter's environment (the venv need not be on PATH)."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "FORECAST_DATA_DIR": str(data_dir), "FORECAST_DATASET": "synthetic",
            "DAGSTER_HOME": str(data_dir / "dagster_home"), "DO_NOT_TRACK": "1"}


def setup(data_dir: Path, args: argparse.Namespace) -> tuple[object, dt.date]:
    """Train a champion before the drift and ingest all but the last drifted day."""
    import dagster as dg

    from forecast_platform.cli import run_range
    from forecast_platform.cli.instance import ensure_dagster_home, open_instance
    from forecast_platform.datasets.registry import get_spec, land_synthetic
    from forecast_platform.definitions import build_definitions
    from forecast_platform.defs.jobs import INGEST_JOB
    from forecast_platform.settings import load_settings

    settings = load_settings(_env(data_dir))  # this process's settings; its env is not written
    ensure_dagster_home(settings)
    spec = get_spec("synthetic")
    world = {"n_stores": args.stores, "n_items": args.items, "drift_from": args.drift_from,
             "mistakes": False}
    before = args.drift_from - dt.timedelta(days=1)
    last = args.drift_from + dt.timedelta(days=args.window - 1)
    t = time.perf_counter()
    land_synthetic(spec, settings.landing_dir(), start=args.start, end=before, **world)
    assert run_range(settings, INGEST_JOB, args.start, before).success
    defs = build_definitions(settings)
    with open_instance(settings) as instance:
        trained = dg.materialize(defs.assets, selection=[tables.FORECASTER, "forecasts"],
                                 instance=instance, resources=defs.resources,
                                 tags={"trigger": "benchmark-setup"})
        assert trained.success
    import mlflow

    mlflow.end_run()  # a selection run has no train_job end hook; close its MLflow run here
    quiet_end = last - dt.timedelta(days=1)
    land_synthetic(spec, settings.landing_dir(), start=args.drift_from, end=quiet_end, **world)
    assert run_range(settings, INGEST_JOB, args.drift_from, quiet_end).success
    print(f"set-up: {args.stores * args.items} series {args.start}..{quiet_end}, champion "
          f"trained to {before}, {args.window - 1} drifted days ingested unmonitored "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    return settings, last


def set_landing_cursor(settings, env: dict[str, str]) -> None:
    """The landing sensor starts past the files already ingested (newest mtime, as it stores)."""
    from forecast_platform.datasets.landing import landed_files

    newest = max(p.stat().st_mtime_ns for p in landed_files(settings.landing_dir()).values())
    for command in (["cursor", "landing_sensor", "--set", str(newest)],
                    ["start", "landing_sensor"]):  # setting a cursor records the sensor stopped
        subprocess.run([_exe("dagster"), "sensor", *command, "-m", "forecast_platform.definitions"],
                       env=env, check=True, capture_output=True, cwd=ROOT)


def wait_for(what: str, predicate, timeout: float, t0: float, marks: dict) -> float:
    while True:
        if predicate():
            marks[what] = time.perf_counter() - t0
            print(f"  {marks[what]:6.1f} s  {what}", flush=True)
            return marks[what]
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{what}: not seen within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def loop(settings, last: dt.date, args: argparse.Namespace) -> dict:
    import dagster as dg

    from forecast_platform.cli.instance import open_instance
    from forecast_platform.datasets.registry import get_spec, land_synthetic
    from forecast_platform.defs.metadata import metadata_values

    env = _env(settings.data_dir)
    set_landing_cursor(settings, env)
    daemon = subprocess.Popen(
        [_exe("dagster-daemon"), "run", "-m", "forecast_platform.definitions"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marks: dict[str, float] = {}
    try:
        time.sleep(args.daemon_warmup)  # the daemon loads the code location and ticks once
        with open_instance(settings) as instance:
            def runs(job: str) -> list:
                return instance.get_run_records(dg.RunsFilter(job_name=job))

            def materialized(asset: str, after: float) -> bool:
                records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
                return bool(records) and records[0].timestamp > after

            t0 = time.perf_counter()
            wall0 = time.time()
            land_synthetic(get_spec("synthetic"), settings.landing_dir(), start=last, end=last,
                           n_stores=args.stores, n_items=args.items,
                           drift_from=args.drift_from, mistakes=False)
            print(f"landed {last} (drifted); waiting for the daemon ...", flush=True)
            timeout = args.timeout
            wait_for("ingest run requested by landing_sensor",
                     lambda: any(r.create_timestamp.timestamp() > wall0
                                 for r in runs("ingest_job")), timeout, t0, marks)
            wait_for("sales_features materialized",
                     lambda: materialized("sales_features", wall0), timeout, t0, marks)
            wait_for("monitor run requested by monitor_sensor",
                     lambda: bool(runs("monitor_job")), timeout, t0, marks)
            wait_for("drift_report materialized",
                     lambda: materialized(tables.DRIFT_REPORT, wall0), timeout, t0, marks)
            report = instance.fetch_materializations(dg.AssetKey(tables.DRIFT_REPORT),
                                                     limit=1).records[0]
            meta = metadata_values(report.asset_materialization)
            print(f"  drift report: retrain={meta['retrain']} ({meta['retrain_reason']})")
            wait_for("retrain run requested by drift_sensor",
                     lambda: bool(runs("train_job")), timeout, t0, marks)
            wait_for(DONE,
                     lambda: materialized(tables.FORECASTER, wall0), timeout, t0, marks)
            model = instance.fetch_materializations(dg.AssetKey(tables.FORECASTER),
                                                    limit=1).records[0]
            model_meta = metadata_values(model.asset_materialization)
            train_run = runs("train_job")[0].dagster_run
            tags = {k: v for k, v in train_run.tags.items()
                    if not k.startswith(("dagster", ".dagster"))}
            print(f"  forecaster v{model_meta['forecaster_version']} ({model_meta['status']}), "
                  f"trigger={model_meta['trigger']}, run tags: {tags}")
            instance.run_launcher.terminate(train_run.run_id)
            deadline = time.time() + 120
            while not instance.get_run_by_id(train_run.run_id).is_finished:
                if time.time() > deadline:
                    break
                time.sleep(POLL_SECONDS)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
    return {"marks": marks, "forecaster_version": model_meta["forecaster_version"],
            "status": model_meta["status"], "trigger": model_meta["trigger"],
            "drift_report_window": meta["window"], "retrain_columns": meta["retrain_columns"]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stores", type=int, default=10)
    p.add_argument("--items", type=int, default=50)
    p.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2015, 1, 1))
    p.add_argument("--drift-from", type=dt.date.fromisoformat, default=dt.date(2017, 9, 1))
    p.add_argument("--window", type=int, default=28, help="the drift report's window, days")
    p.add_argument("--daemon-warmup", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=900.0)
    return p


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="drift_loop_", ignore_cleanup_errors=True) as tmp:
        settings, last = setup(Path(tmp) / "data", args)
        return loop(settings, last, args)


if __name__ == "__main__":
    result = run(parser().parse_args())
    print(json.dumps({"drift_to_model_seconds": round(
        result["marks"][DONE], 1), **result["marks"]}))
