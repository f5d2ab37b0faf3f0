"""Benchmark: the whole graph on the generator at N series, and at N/10 in the same invocation.

    python benchmarks/scale.py --series 5000            # and 500, side by side
    python benchmarks/scale.py --series 50000 --dask    # training through xgboost.dask
    python benchmarks/scale.py --series 500 --no-append
    python benchmarks/scale.py --series 50000 --keep    # then serving.py --data-dir <data_dir>

Each size runs in its own child process on its own data directory (three years daily,
2015-01-01..2017-11-30, as the demo), through the CLI's own runs on a persistent Dagster
instance: land -> ingest (raw, validated, calendar, features) as one run -> train, gate,
forecast, plan lift, expected values, anomaly model, serving bundle (``train_job``) -> score
anomalies -> drift report and performance (``monitor_job``); then one more day is landed and
ingested alone (``new_day_seconds``, by step ``new_day_step_seconds``: the daily steady
state). Stage seconds are the steps' STEP_START..STEP_SUCCESS from the runs' event logs;
``peak_rss_mb`` is the child's peak resident memory (``ru_maxrss``, every stage runs in that
process; with ``--dask`` the largest of the local cluster's worker processes, sampled every
quarter second, is reported apart as ``peak_rss_mb_workers``), and ``step_peak_rss_mb`` the
highest of its resident memory sampled every quarter second while each step ran.

Accuracy: the forecaster's own backtest (rolling origins, same points): ``smape`` of the model
and ``smape_seasonal_naive_7``. ``growth_ratio`` = total(N) / total(N/10): 10 means linear.
Last line: JSON; also appended to docs/benchmarks.md unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from results import ROOT, append_section, machine

START, END = dt.date(2015, 1, 1), dt.date(2017, 11, 30)


def shape(series: int) -> tuple[int, int]:
    """Stores x items for ``series`` (stores up to 50, as a mid-size chain)."""
    stores = max(1, min(50, series // 100))
    if series % stores:
        raise SystemExit(f"error: --series {series} is not a multiple of {stores} stores")
    return stores, series // stores


class RssSampler:
    """This process's resident memory, and its largest child process's (the Dask workers of
    ``--dask``), every quarter second, on a thread: ``ru_maxrss`` gives the run's peak only
    (and, for children, only those already ended), these samples give each step's
    (``step_peaks``) and the workers' while they run."""

    def __init__(self, every: float = 0.25) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            largest = 0
            for child in me.children(recursive=True):
                try:
                    largest = max(largest, child.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue  # ended between the listing and the reading
            self.samples.append((time.time(), me.memory_info().rss // 2**20, largest // 2**20))
            self._stop.wait(every)

    def peak(self, start: float, end: float) -> int:
        inside = [mb for t, mb, _ in self.samples if start <= t <= end]
        return max(inside, default=0)

    def child_peak(self) -> int:
        return max((mb for _, _, mb in self.samples), default=0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def ingest_new_day(settings, series: int) -> dict:
    """One more generated day after the warehouse's last, landed and ingested as the daily run
    does (``ingest_job``), timed by step."""
    from forecast_platform.cli.instance import open_instance
    from forecast_platform.cli.runs import run_range
    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.defs.jobs import INGEST_JOB
    from forecast_platform.warehouse.store import connect

    with connect(settings.warehouse_path, read_only=True) as con:
        day = con.execute("SELECT max(date) FROM validated_sales").fetchall()[0][0] \
            + dt.timedelta(days=1)
    stores, items = shape(series)
    spec = get_spec("synthetic")
    spec.lander(spec, settings.landing_dir(), None, start=day, end=day, n_stores=stores,
                n_items=items, mistakes=False)
    t = time.perf_counter()
    result = run_range(settings, INGEST_JOB, day, day)
    seconds = round(time.perf_counter() - t, 2)
    if not result.success:
        raise SystemExit(f"error: ingesting {day} failed at {series} series "
                         f"(run {result.run_id})")
    with open_instance(settings) as instance:
        steps = {k: round(e - b, 2) for k, (b, e) in step_spans(instance, result.run_id).items()}
    return {"new_day": str(day), "new_day_seconds": seconds, "new_day_step_seconds": steps}


def step_spans(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's STEP_START..STEP_SUCCESS (or failure) of a run, as wall-clock times."""
    import dagster as dg

    started: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS,
                                  dg.DagsterEventType.STEP_FAILURE):
            spans[entry.step_key] = (started[entry.step_key], entry.timestamp)
    return spans


def child(series: int, data_dir: Path, dask: bool) -> dict:
    """One size, in this process: what the parent reads back as JSON."""
    from forecast_platform.cli.instance import ensure_dagster_home, open_instance
    from forecast_platform.cli.runs import land, run_range, scoring_range
    from forecast_platform.defs.jobs import ANOMALY_JOB, INGEST_JOB, MONITOR_JOB, TRAIN_JOB
    from forecast_platform.defs.metadata import run_metadata
    from forecast_platform.settings import load_settings
    from forecast_platform.warehouse.store import connect

    env = {"FORECAST_DATA_DIR": str(data_dir), "FORECAST_DATASET": "synthetic"}
    if dask:
        env["FORECAST_TRAINING_ENGINE"] = "dask"
    settings = load_settings(env)
    ensure_dagster_home(settings)
    stores, items = shape(series)
    stages: dict[str, float] = {}
    steps: dict[str, float] = {}
    step_rss: dict[str, int] = {}
    sampler = RssSampler()
    t0, wall = time.perf_counter(), time.time()
    land(settings, START, stores, items, END)
    stages["land"] = round(time.perf_counter() - t0, 2)
    step_rss["land"] = sampler.peak(wall, time.time())

    def timed(name: str, job: str, *args, **kwargs):
        t = time.perf_counter()
        result = run_range(settings, job, *args, **kwargs)
        stages[name] = round(time.perf_counter() - t, 2)
        if not result.success:
            raise SystemExit(f"error: {job} failed at {series} series (run {result.run_id})")
        with open_instance(settings) as instance:
            for key, (begin, end) in step_spans(instance, result.run_id).items():
                steps[f"{name}.{key}"] = round(end - begin, 2)
                step_rss[f"{name}.{key}"] = sampler.peak(begin, end)
        return result

    timed("ingest", INGEST_JOB, START, END)
    train = timed("train", TRAIN_JOB)
    scored = scoring_range(settings)
    if scored:
        timed("anomalies", ANOMALY_JOB, *scored)
    timed("monitor", MONITOR_JOB, partition=END)
    total = round(sum(stages.values()), 2)

    # The daily steady state: one more day landed and ingested to features.
    day = ingest_new_day(settings, series)
    new_day, new_day_steps = day["new_day_seconds"], day["new_day_step_seconds"]

    facts = run_metadata(train, "forecaster") or {}
    with connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM validated_sales").fetchall()[0][0]
        smape = con.execute(
            "SELECT metrics FROM model_registry WHERE model_name = 'synthetic_forecaster' "
            "ORDER BY version DESC LIMIT 1").fetchall()[0][0]
    metrics = json.loads(smape) if isinstance(smape, str) else smape
    sampler.stop()
    bundle = sum(p.stat().st_size for p in settings.bentoml_home.rglob("*") if p.is_file())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "series": series, "rows": int(rows), "total_seconds": total,
        "stage_seconds": stages, "step_seconds": steps, "step_peak_rss_mb": step_rss,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        # With --dask: the local cluster's worker processes (the largest one, sampled).
        "peak_rss_mb_workers": sampler.child_peak() if dask else None,
        "smape": round(float(metrics["model"]["smape"]), 4)
        if "model" in metrics else facts.get("backtest_smape"),
        "smape_seasonal_naive_7": round(float(metrics["seasonal_naive_7"]["smape"]), 4)
        if "seasonal_naive_7" in metrics else None,
        "bundle_mb": round(bundle / 2**20, 1),
        "new_day_seconds": new_day, "new_day_step_seconds": new_day_steps,
        "training_engine": "dask" if dask else "local",
    }


def run_size(series: int, dask: bool, scratch: Path | None, keep: bool = False) -> dict:
    """One size in a child process on a fresh data directory; its JSON back. With ``keep``
    the data directory stays (for ``serving.py --data-dir``) and its path is in the JSON."""
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"scale-{series}-", dir=scratch))
    try:
        out = root / "result.json"
        cmd = [sys.executable, __file__, "--child", str(series), "--data-dir",
               str(root / "data"), "--out", str(out)] + (["--dask"] if dask else [])
        env = {**os.environ, "DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "True",
               "MPLBACKEND": "Agg"}
        print(f"{series} series ...", flush=True)
        done = subprocess.run(cmd, env=env, cwd=Path(__file__).parent)
        if done.returncode != 0 or not out.is_file():
            raise SystemExit(f"error: the {series}-series run failed (exit {done.returncode})")
        result = json.loads(out.read_text())
        if keep:
            result["data_dir"] = str(root / "data")
        return result
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--dask", action="store_true", help="train through xgboost.dask")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help="where the data directories go (default: "
                                                     "the system's temporary folder)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the larger size's data directory (its path is printed and "
                             "in the JSON as data_dir): serving.py --data-dir serves its bundle")
    args = parser.parse_args(argv)
    if args.child:
        from forecast_platform.cli.parser import quiet_known_warnings

        quiet_known_warnings()
        args.out.write_text(json.dumps(child(args.child, args.data_dir, args.dask)))
        # As the CLI ends: without the interpreter's module teardown, which makes DuckDB's
        # extension print a "leaked" report of its own module objects (cli/parser.py).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    small = run_size(args.series // 10, args.dask, args.scratch)
    large = run_size(args.series, args.dask, args.scratch, keep=args.keep)
    summary = {k: large[k] for k in ("series", "rows", "total_seconds", "stage_seconds",
                                     "peak_rss_mb", "peak_rss_mb_workers", "step_peak_rss_mb")}
    summary["growth_ratio"] = round(large["total_seconds"] / small["total_seconds"], 2)
    summary.update({k: large[k] for k in ("smape", "smape_seasonal_naive_7", "bundle_mb",
                                          "new_day_seconds", "new_day_step_seconds",
                                          "training_engine")})
    if args.keep:
        summary["data_dir"] = large["data_dir"]
        print(f"kept {large['data_dir']}: python benchmarks/serving.py --data-dir "
              f"{large['data_dir']}")
    summary["small"] = {k: small[k] for k in ("series", "total_seconds", "peak_rss_mb",
                                              "smape", "smape_seasonal_naive_7")}
    for size in (small, large):
        print(f"{size['series']:>7} series {size['rows']:>11,} rows  {size['total_seconds']:8.1f}"
              f" s  peak {size['peak_rss_mb']:>6} MB  SMAPE {size['smape']} (seasonal naive 7 "
              f"{size['smape_seasonal_naive_7']})  bundle {size['bundle_mb']} MB  new day "
              f"{size['new_day_seconds']} s")
        print("   stages: " + ", ".join(f"{k} {v}" for k, v in size["stage_seconds"].items()))
    if not args.no_append:
        slowest = sorted(large["step_seconds"].items(), key=lambda kv: -kv[1])[:8]
        text = "\n".join([
            f"## Scale benchmark ({args.series:,} series vs {args.series // 10:,}), "
            f"{dt.datetime.now():%Y-%m-%d %H:%M}", "",
            f"- machine: {machine()}",
            f"- command: `{' '.join(['python', 'benchmarks/scale.py', *sys.argv[1:]])}`", "",
            "| series | rows | total s | peak RSS MB | SMAPE | SMAPE seasonal naive 7 | "
            "bundle MB | new day s |", "|---:|---:|---:|---:|---:|---:|---:|---:|",
            *(f"| {s['series']:,} | {s['rows']:,} | {s['total_seconds']:.1f} | "
              f"{s['peak_rss_mb']:,} | {s['smape']} | {s['smape_seasonal_naive_7']} | "
              f"{s['bundle_mb']} | {s['new_day_seconds']} |" for s in (small, large)), "",
            f"Growth ratio {summary['growth_ratio']} (10 = linear). Stages at "
            f"{args.series:,}: " + ", ".join(f"{k} {v} s" for k, v in
                                             large["stage_seconds"].items())
            + ". Slowest steps: " + ", ".join(f"{k} {v} s" for k, v in slowest) + ". "
            "Peak RSS by step: " + ", ".join(
                f"{k} {v:,} MB" for k, v in sorted(large["step_peak_rss_mb"].items(),
                                                   key=lambda kv: -kv[1])[:8]) + ".", ""])
        print(f"appended to {append_section(text + chr(10)).relative_to(ROOT)}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
