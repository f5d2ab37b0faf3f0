"""Benchmark: the full Store Item Demand backfill as one run, against Dagster's own floor.

    python benchmarks/backfill.py                    # 1,826 partitions; appends docs/benchmarks.md
    python benchmarks/backfill.py --partitions 365   # the last 365 days only (quick)
    python benchmarks/backfill.py --floor-variants   # also compare event-log storage variants

What is measured, each on its own persistent Dagster instance (a temporary DAGSTER_HOME with the
project's dagster.yaml, SQLite storage on disk, as ``forecast-platform demo`` uses):

* landing: Kaggle's ``train.csv.gz`` split into daily landing files (reported apart; not part of
  the backfill).
* backfill_seconds: ``ingest_job`` (raw_sales -> validated_sales + sales_rejects ->
  holiday_calendar -> sales_features, with every asset check) over all N partitions as ONE run
  (partition-range tags, as the CLI and the landing sensor launch it): wall time of the CLI's
  ``run_range`` (building the definitions, opening the instance, ``execute_in_process``), modules
  already imported and the instance's databases already created (a warm-up open, as the floor
  does).
* incremental_seconds: afterwards, on the same instance (which now holds the backfill's events),
  the last day's file is landed again (rewritten, new mtime) -- what upstream does when it
  re-sends a corrected file -- and that one partition is materialized as its own run, exactly
  as the landing sensor would request it. This is the daily steady-state cost: one partition
  read, validated and featurized (with its lookback history) plus one run's bookkeeping. A
  re-landed day costs the same as a new day (each run replaces the partition's rows), and it keeps
  the backfill at the full N partitions so it compares with the floor.
* floor_seconds: the same asset/check structure (raw_sales with 2 checks; a multi_asset with
  2 outputs and 4 checks each, blocking on the first; checks are unpartitioned, as in the graph:
  each covers the run's range; an
  unpartitioned calendar; partitioned features), same partitions, same pool, same dagster.yaml,
  whose bodies do nothing, run with the same run config (console log level) as the real run:
  what Dagster's bookkeeping alone costs for N partitions in one run.
  It runs in a child process on a fresh instance.
* per-step breakdown of the real backfill, from the run's event log: for each step, the time in
  our code (STEP_START to the step's first output event: each body computes everything, then
  yields) and the time Dagster spends afterwards recording one event per partition (to
  STEP_SUCCESS); plus the run-level time before the first step (planned events) and after.
  The floor's steps are timed the same way, beside them.

``--pairs N`` (default 3) runs N (backfill, floor) pairs one after the other, each on a fresh
instance and in its own process, and reports the medians: on a shared machine one floor moved
between 25 and 36 s over a day, so a single pair's ratio moves by about 0.15 with no change
in the code. The detailed tables are those of the pair with the median ratio.

The last line printed is JSON: backfill_seconds, floor_seconds, overhead_ratio (medians over the
pairs; the ratio is the median of the pairs' ratios), incremental_seconds (median), rows,
peak_rss_mb (the largest max RSS of the backfill processes), pairs ([backfill, floor, ratio]
of each pair).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from results import ROOT, append_section, default_source_dir, machine  # noqa: E402

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# The floor runs with the run config forecast_platform.cli.run_range gives the real backfill:
# console logging at WARNING. With Dagster's default (DEBUG) the floor printed a line per event
# (16,485, to a pipe), ~5 s of work the real run does not do, which flattered the ratio.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# Event-log storage variants for --floor-variants: name -> dagster.yaml event_log_storage block.
def _tuned(synchronous: str, connections: str) -> dict:
    return {"module": "forecast_platform.defs.instance_storage",
            "class": "TunedSqliteEventLogStorage",
            "config": {"base_dir": {"env": "DAGSTER_HOME"}, "synchronous": synchronous,
                       "connections": connections}}


VARIANTS = {
    "Dagster ConsolidatedSqliteEventLogStorage (WAL, synchronous=FULL)": {
        "module": "dagster._core.storage.event_log",
        "class": "ConsolidatedSqliteEventLogStorage",
        "config": {"base_dir": {"env": "DAGSTER_HOME"}},
    },
    "tuned: FULL, connection per transaction (engine reused)": _tuned("FULL", "per_transaction"),
    "tuned: NORMAL, connection per transaction": _tuned("NORMAL", "per_transaction"),
    "tuned: FULL, one idle connection kept open": _tuned("FULL", "keep_one_open"),
    "tuned: NORMAL, one idle connection kept open": _tuned("NORMAL", "keep_one_open"),
    "tuned: FULL, pooled connections": _tuned("FULL", "pooled"),
    "tuned: NORMAL, pooled connections": _tuned("NORMAL", "pooled"),
    "tuned: OFF, pooled connections (unsafe, reference)": _tuned("OFF", "pooled"),
}


# ----------------------------------------------------------------------------- helpers


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_dagster_yaml(home: Path, event_log_storage: dict | None) -> None:
    """The project's dagster.yaml, optionally with another event_log_storage block."""
    import yaml

    from forecast_platform.cli.instance import with_home

    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    if event_log_storage is not None:
        config["event_log_storage"] = event_log_storage
    # The home's path in place of {env: DAGSTER_HOME}, as the CLI writes it: the instance is
    # opened from the folder (DagsterInstance.from_config), no environment variable needed.
    config = with_home(config, home)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def run_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    return {RANGE_START: start.isoformat(), RANGE_END: end.isoformat()}


# ----------------------------------------------------------------------------- the floor


def floor_definitions(partitions):
    """ingest_job's structure with bodies that do nothing (see the module docstring)."""
    import dagster as dg

    pool = "duckdb"
    single = dg.BackfillPolicy.single_run()

    @dg.asset(
        name="raw_sales", partitions_def=partitions, backfill_policy=single, pool=pool,
        check_specs=[
            dg.AssetCheckSpec("columns_match_spec", asset="raw_sales"),
            dg.AssetCheckSpec("freshness", asset="raw_sales"),
        ],
    )
    def raw_sales():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(asset_key="raw_sales", check_name="columns_match_spec",
                                  passed=True)
        yield dg.AssetCheckResult(asset_key="raw_sales", check_name="freshness", passed=True)

    validated_checks = ["valid_rows_contract", "completeness", "volume", "quarantine_rate"]
    reject_checks = ["keys_and_dates_present", "target_valid", "unique_date_keys",
                     "covariates_valid"]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec("validated_sales", deps=["raw_sales"], partitions_def=partitions),
            dg.AssetSpec("sales_rejects", deps=["raw_sales"], partitions_def=partitions),
        ],
        check_specs=[
            dg.AssetCheckSpec(n, asset="validated_sales", blocking=True)
            for n in validated_checks
        ] + [
            dg.AssetCheckSpec(n, asset="sales_rejects")
            for n in reject_checks
        ],
        backfill_policy=single, pool=pool,
    )
    def validate_sales():
        yield dg.MaterializeResult(asset_key="validated_sales")
        yield dg.MaterializeResult(asset_key="sales_rejects")
        for name in validated_checks:
            yield dg.AssetCheckResult(asset_key="validated_sales", check_name=name, passed=True)
        for name in reject_checks:
            yield dg.AssetCheckResult(asset_key="sales_rejects", check_name=name, passed=True)

    @dg.asset(name="holiday_calendar", pool=pool)
    def holiday_calendar():
        return dg.MaterializeResult()

    @dg.asset(name="sales_features", deps=["validated_sales", "holiday_calendar"],
              partitions_def=partitions, backfill_policy=single, pool=pool)
    def sales_features():
        return dg.MaterializeResult()

    job = dg.define_asset_job("ingest_job", partitions_def=partitions)
    return dg.Definitions(
        assets=[raw_sales, validate_sales, holiday_calendar, sales_features], jobs=[job]
    )


def floor_child(home: Path, start: dt.date, end: dt.date) -> dict:
    """In a fresh process: the no-op ingest_job over start..end on the instance at home."""
    import dagster as dg

    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.defs.partitions import partitions_for

    defs = floor_definitions(partitions_for(get_spec("store_item")))
    job = defs.resolve_job_def("ingest_job")
    # Warm-up, outside the timing as in run_backfill: storage modules imported, a new instance's
    # databases created. The timed part then opens the instance and runs, as run_range does.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = type(instance.event_log_storage).__name__
    cpu0, t0 = time.process_time(), time.perf_counter()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = job.execute_in_process(instance=instance, tags=run_tags(start, end),
                                        run_config=RUN_CONFIG)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        events = len(instance.all_logs(result.run_id))
        steps, run_level = step_breakdown(instance, result.run_id)
    db_file = home / "event_log.db"
    return {"seconds": seconds, "cpu_seconds": cpu, "success": result.success, "events": events,
            "event_storage": storage, "steps": steps, "run_level": run_level,
            "event_log_mb": db_file.stat().st_size / 2**20 if db_file.exists() else None}


def run_floor(workdir: Path, name: str, event_log_storage: dict | None, start: dt.date,
              end: dt.date) -> dict:
    """The floor in a child process, on a fresh instance with the given event-log storage."""
    home = workdir / f"floor_{name}"
    write_dagster_yaml(home, event_log_storage)
    out = subprocess.run(
        [sys.executable, __file__, "--_floor-child", str(home), start.isoformat(), end.isoformat()],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the real backfill


def step_breakdown(instance, run_id: str) -> tuple[list[dict], dict]:
    """Per step: seconds in our code (start -> first output event) and in Dagster's per-partition
    recording (first output event -> success), from the event log's timestamps."""
    records = instance.all_logs(run_id)
    by_step: dict[str, dict] = defaultdict(dict)
    counts: dict[str, int] = defaultdict(int)
    run_start = records[0].timestamp
    run_end = records[-1].timestamp
    first_step = None
    last_step = None
    for r in records:
        ev = r.dagster_event
        if ev is None:
            continue
        counts[ev.event_type_value] += 1
        key = ev.step_key
        if key is None:
            continue
        s = by_step[key]
        s.setdefault("events", 0)
        s["events"] += 1
        if ev.event_type_value == "STEP_START":
            s["start"] = r.timestamp
            first_step = r.timestamp if first_step is None else min(first_step, r.timestamp)
        elif ev.event_type_value in ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION",
                                     "STEP_OUTPUT") and "first_output" not in s:
            s["first_output"] = r.timestamp
        elif ev.event_type_value == "STEP_SUCCESS":
            s["success"] = r.timestamp
            s["duration_ms"] = ev.event_specific_data.duration_ms
            last_step = r.timestamp if last_step is None else max(last_step, r.timestamp)
    steps = []
    for key, s in by_step.items():
        if "start" not in s or "success" not in s:
            continue
        body = s.get("first_output", s["success"]) - s["start"]
        steps.append({"step": key, "wall_s": s["success"] - s["start"],
                      "duration_ms": s["duration_ms"], "ours_s": body,
                      "dagster_after_s": s["success"] - s.get("first_output", s["success"]),
                      "events": s["events"]})
    steps.sort(key=lambda x: by_step[x["step"]]["start"])
    run_level = {"before_first_step_s": (first_step or run_start) - run_start,
                 "after_last_step_s": run_end - (last_step or run_end),
                 "run_wall_s": run_end - run_start, "events": len(records),
                 "event_counts": dict(sorted(counts.items(), key=lambda kv: -kv[1]))}
    return steps, run_level


def run_backfill_child(workdir: Path, source_dir: Path, n_partitions: int | None) -> dict:
    """``run_backfill`` in a child process on a fresh data directory (like the floor), so no
    pair inherits another's imports, caches or instance."""
    workdir.mkdir(parents=True)
    out = subprocess.run(
        [sys.executable, __file__, "--_backfill-child", str(workdir), str(source_dir),
         str(n_partitions) if n_partitions is not None else "all"],
        check=True, capture_output=True, text=True,
    )
    real = json.loads(out.stdout.strip().splitlines()[-1])
    real["start"], real["end"] = (dt.date.fromisoformat(real[k]) for k in ("start", "end"))
    return real


def run_backfill(workdir: Path, source_dir: Path, n_partitions: int | None) -> dict:
    import duckdb

    from forecast_platform.cli import run_range
    from forecast_platform.cli.instance import ensure_dagster_home, open_instance
    from forecast_platform.datasets.landing import landed_files
    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.defs.jobs import INGEST_JOB
    from forecast_platform.settings import load_settings

    settings = load_settings({
        **os.environ,
        "FORECAST_DATA_DIR": str(workdir / "data"),
        "FORECAST_DATASET": "store_item",
        "FORECAST_SOURCE_DIR": str(source_dir),
        "DAGSTER_HOME": str(workdir / "data" / "dagster_home"),
    })  # this process's settings; its environment is not written
    ensure_dagster_home(settings)
    spec = get_spec(settings.dataset)

    t0 = time.perf_counter()
    spec.lander(spec, settings.landing_dir(), settings.source_dir)
    landing_seconds = time.perf_counter() - t0
    landed = landed_files(settings.landing_dir())
    days = sorted(landed)
    if n_partitions is not None and n_partitions < len(days):
        for day in days[:-n_partitions]:  # a shorter history: as if upstream started later
            landed[day].unlink()
        days = days[-n_partitions:]
    start, end = days[0], days[-1]
    print(f"landed {len(days)} daily files in {landing_seconds:.1f} s ({start} .. {end})",
          flush=True)

    from forecast_platform.definitions import build_definitions

    build_definitions(settings)  # imports (pandera, ...) once, outside the timings
    # Likewise Dagster's storage modules and the new instance's databases (~1 s on first open),
    # which the floor also creates before its timing: both time opening the instance + the run.
    with open_instance(settings):
        pass
    print(f"backfill: ingest_job over {len(days)} partitions as one run ...", flush=True)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = run_range(settings, INGEST_JOB, start, end)
    backfill_seconds = time.perf_counter() - t0
    backfill_cpu = time.process_time() - cpu0
    if not result.success:
        raise SystemExit(f"backfill run {result.run_id} failed")
    with open_instance(settings) as instance:
        steps, run_level = step_breakdown(instance, result.run_id)
    checks = [e.event_specific_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]

    # Upstream re-sends the last day (same rows, new file): one partition, its own run.
    path = landed[end]
    path.write_bytes(path.read_bytes())
    t0 = time.perf_counter()
    inc = run_range(settings, INGEST_JOB, end, end)
    incremental_seconds = time.perf_counter() - t0
    if not inc.success:
        raise SystemExit(f"incremental run {inc.run_id} failed")

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("raw_sales", "validated_sales", "sales_rejects", "sales_features")}
    db_file = settings.dagster_home / "event_log.db"
    return {
        "start": start, "end": end, "partitions": len(days), "landing_seconds": landing_seconds,
        "backfill_seconds": backfill_seconds, "backfill_cpu_seconds": backfill_cpu,
        "incremental_seconds": incremental_seconds, "rows": rows, "steps": steps,
        "run_level": run_level, "checks": len(checks),
        "checks_failed": sum(1 for c in checks if not c.passed),
        "event_log_mb": db_file.stat().st_size / 2**20 if db_file.exists() else None,
    }


# ----------------------------------------------------------------------------- report


def format_report(args, real: dict, floor: dict, variants: dict[str, dict[int, dict]],
                  summary: dict) -> str:
    lines = [
        f"## Backfill benchmark, {dt.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"- machine: {machine()}",
        f"- command: `{' '.join(['python', 'benchmarks/backfill.py', *sys.argv[1:]])}`",
        f"- data: Store Item Demand, {real['partitions']} daily partitions "
        f"({real['start']} .. {real['end']}), {real['rows']['raw_sales']:,} rows",
        f"- Dagster event log: {floor['event_storage']} (project dagster.yaml), SQLite on disk",
        "",
        "| measure | value |",
        "|---|---|",
        f"| landing (split train.csv.gz, not in the backfill) | {real['landing_seconds']:.1f} s |",
        "| (backfill, floor) pairs: backfill s / floor s = ratio | "
        + "; ".join(f"{b:.1f} / {f:.1f} = {r:.2f}" for b, f, r in summary["pairs"]) + " |",
        f"| **overhead ratio backfill / floor, median of the pairs** | "
        f"**{summary['overhead_ratio']:.2f}** |",
        f"| median pair: backfill, one run (wall) | {real['backfill_seconds']:.1f} s "
        f"(CPU {real['backfill_cpu_seconds']:.1f} s) |",
        f"| median pair: floor, same structure, no-op bodies (wall) | {floor['seconds']:.1f} s "
        f"(CPU {floor['cpu_seconds']:.1f} s) |",
        f"| incremental: one re-landed partition, own run | {real['incremental_seconds']:.2f} s |",
        f"| events in the backfill run / in the floor run | {real['run_level']['events']:,} / "
        f"{floor['events']:,} |",
        f"| event_log.db after backfill+incremental / floor | {real['event_log_mb']:.0f} MB / "
        f"{floor['event_log_mb']:.0f} MB |",
        f"| peak RSS (largest backfill process) | {summary['peak_rss_mb']:.0f} MB |",
        "",
        "Rows: " + ", ".join(f"{t} {n:,}" for t, n in real["rows"].items())
        + f"; asset checks {real['checks']} ({real['checks_failed']} failed).",
        "",
        "Where the backfill's time goes (from the run's event timestamps; 'our code' is STEP_START "
        "to the step's first output event, 'Dagster after' is from there to STEP_SUCCESS, i.e. "
        "recording one materialization per partition; 'floor wall s' is the same step in the "
        "floor run, whose bodies do nothing):",
        "",
        "| step | wall s | our code s | Dagster after s | events | floor wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rl, frl = real["run_level"], floor["run_level"]
    floor_steps = {s["step"]: s for s in floor["steps"]}
    lines.append(f"| run start -> first step (planned events etc.) | "
                 f"{rl['before_first_step_s']:.1f} | | {rl['before_first_step_s']:.1f} | | "
                 f"{frl['before_first_step_s']:.1f} |")
    for s in real["steps"]:
        fs = floor_steps.get(s["step"])
        floor_wall = f"{fs['wall_s']:.1f}" if fs else ""
        lines.append(f"| {s['step']} | {s['wall_s']:.1f} | {s['ours_s']:.1f} | "
                     f"{s['dagster_after_s']:.1f} | {s['events']:,} | {floor_wall} |")
    lines.append(f"| last step -> run end | {rl['after_last_step_s']:.1f} | | "
                 f"{rl['after_last_step_s']:.1f} | | {frl['after_last_step_s']:.1f} |")
    ours = sum(s["ours_s"] for s in real["steps"])
    lines += ["", f"Our code: {ours:.1f} s of {rl['run_wall_s']:.1f} s run wall time "
              f"({ours / rl['run_wall_s']:.0%}); the rest is Dagster's bookkeeping. "
              "Events by type: "
              + ", ".join(f"{k} {v:,}" for k, v in rl["event_counts"].items()) + ".", ""]
    if variants:
        sizes = sorted({n for per in variants.values() for n in per})
        lines += ["Floor (no-op bodies) by event-log storage, each on a fresh instance:", "",
                  "| event_log_storage | " + " | ".join(f"{n} partitions s (CPU s)" for n in sizes)
                  + " |", "|---|" + "---:|" * len(sizes)]
        for name, per in variants.items():
            cells = [f"{per[n]['seconds']:.1f} ({per[n]['cpu_seconds']:.1f})" if n in per else ""
                     for n in sizes]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_floor-child":
        home, start, end = argv[1:4]
        print(json.dumps(floor_child(Path(home), dt.date.fromisoformat(start),
                                     dt.date.fromisoformat(end))))
        return 0
    if argv and argv[0] == "--_backfill-child":
        workdir, source, n = argv[1:4]
        real = run_backfill(Path(workdir), Path(source), int(n) if n != "all" else None)
        real["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(real, default=str))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, help="only the last N days (quick run)")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--source-dir", default=default_source_dir("store_item_demand"),
                        help="folder holding train.csv.gz")
    parser.add_argument("--floor-variants", action="store_true",
                        help="also run the floor with each event-log storage variant")
    parser.add_argument("--variant-partitions", default="365",
                        help="comma-separated partition counts for --floor-variants "
                             "(default 365; the run's own count is added)")
    parser.add_argument("--variants", help="comma-separated indexes into VARIANTS (default all)")
    parser.add_argument("--skip-backfill", action="store_true",
                        help="only the floor variants (implies --no-append)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--pairs", type=int, default=3,
                        help="(backfill, floor) pairs to run; the medians are reported")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="fp_backfill_bench_", dir=os.environ.get("TMPDIR")))
    try:
        from forecast_platform.datasets.registry import get_spec

        spec = get_spec("store_item")
        n = args.partitions or ((spec.end - spec.start).days + 1)
        f_end = spec.end

        variants: dict[str, dict[int, dict]] = {}
        if args.floor_variants:
            counts = sorted({int(c) for c in args.variant_partitions.split(",") if c} | {n})
            for count in counts:
                chosen = [int(i) for i in args.variants.split(",")] if args.variants \
                    else range(len(VARIANTS))
                for name, block in [list(VARIANTS.items())[i] for i in chosen]:
                    vs = f_end - dt.timedelta(days=count - 1)
                    tag = f"v{list(VARIANTS).index(name)}_{count}"
                    r = run_floor(workdir, tag, block, vs, f_end)
                    variants.setdefault(name, {})[count] = r
                    print(f"floor {count:>5} partitions  {name:<45} {r['seconds']:7.1f} s wall "
                          f"{r['cpu_seconds']:7.1f} s CPU  {r['events']:,} events", flush=True)
        if args.skip_backfill:
            return 0

        pairs = []
        for i in range(args.pairs):
            real = run_backfill_child(workdir / f"pair{i}", Path(args.source_dir).resolve(), n)
            floor = run_floor(workdir, f"project{i}", None, real["start"], real["end"])
            ratio = real["backfill_seconds"] / floor["seconds"]
            pairs.append((real, floor, ratio))
            print(f"pair {i + 1}/{args.pairs}: backfill {real['backfill_seconds']:.1f} s, floor "
                  f"({floor['event_storage']}) {floor['seconds']:.1f} s, ratio {ratio:.2f}, "
                  f"incremental {real['incremental_seconds']:.2f} s", flush=True)
        real, floor, _ = sorted(pairs, key=lambda p: p[2])[len(pairs) // 2]
        summary = {
            "backfill_seconds": round(statistics.median(p[0]["backfill_seconds"] for p in pairs),
                                      2),
            "floor_seconds": round(statistics.median(p[1]["seconds"] for p in pairs), 2),
            "overhead_ratio": round(statistics.median(p[2] for p in pairs), 2),
            "incremental_seconds": round(
                statistics.median(p[0]["incremental_seconds"] for p in pairs), 2),
            "rows": int(real["rows"]["raw_sales"]),
            "peak_rss_mb": round(max(p[0]["peak_rss_mb"] for p in pairs), 1),
            "pairs": [[round(p[0]["backfill_seconds"], 2), round(p[1]["seconds"], 2),
                       round(p[2], 2)] for p in pairs],
        }
        report = format_report(args, real, floor, variants, summary)
        print()
        print(report)
        if not args.no_append:
            print(f"appended to {append_section(report)}")
        print(json.dumps(summary))
        return 0
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
