"""Benchmark: the daily steady state on a large warehouse: one new day to features.

    python benchmarks/scale.py --series 50000 --keep      # leaves a data directory
    python benchmarks/new_day.py --data-dir DIR            # DIR: that data directory
    python benchmarks/new_day.py --data-dir DIR --no-append

Side by side in one run, on the warehouse's last day: the feature query computed over the dense
grid of the whole lookback (what a backfill runs) and at the day's own rows
(``features_select(at_targets=True)``, what a range of up to ``SHORT_RANGE_DAYS`` days runs),
read only, with the largest relative difference between them. Then one more day is landed by
the generator and ingested through the CLI's own run (``ingest_job``: raw, validated, calendar,
features), by step. Last line: JSON; also appended to docs/benchmarks.md unless
``--no-append``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from results import append_section, machine
from scale import ingest_new_day


def feature_query_seconds(settings) -> dict:
    """Both spellings of the last day's features, timed, and how far apart they are."""
    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.features.offline import feature_params, history_features_sql
    from forecast_platform.features.sql import plan_features
    from forecast_platform.warehouse.store import connect

    plan = plan_features(get_spec(settings.dataset, settings.datasets_dir))
    out: dict = {}
    with connect(settings.warehouse_path, read_only=True,
                 memory_limit=settings.duckdb_memory_limit) as con:
        day = con.execute("SELECT max(ds) FROM sales_features").fetchall()[0][0]
        params = feature_params(plan, day, day)
        frames = {}
        for name, at_targets in (("grid", False), ("at_targets", True)):
            t = time.perf_counter()
            frames[name] = con.execute(history_features_sql(plan, at_targets), params).df()
            out[f"{name}_seconds"] = round(time.perf_counter() - t, 2)
    grid, rows = frames["grid"], frames["at_targets"]
    if len(grid) != len(rows) or not (grid["series_id"].to_numpy()
                                      == rows["series_id"].to_numpy()).all():
        raise SystemExit("error: the two spellings gave different rows")
    worst = 0.0
    for name in plan.names:
        a, b = grid[name].to_numpy(float), rows[name].to_numpy(float)
        if not (np.isnan(a) == np.isnan(b)).all():
            raise SystemExit(f"error: {name} is missing in one spelling and not the other")
        both = ~np.isnan(a)
        scale = np.maximum(np.abs(a[both]), 1e-12)
        worst = max(worst, float((np.abs(a[both] - b[both]) / scale).max(initial=0.0)))
    out.update({"day": str(day), "rows": len(grid), "max_rel_diff": worst,
                "ratio": round(out["grid_seconds"] / out["at_targets_seconds"], 1)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="a generated data directory (scale.py --keep leaves one)")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)
    from forecast_platform.cli.parser import quiet_known_warnings
    from forecast_platform.settings import load_settings
    from forecast_platform.warehouse.store import connect

    quiet_known_warnings()
    settings = load_settings({"FORECAST_DATA_DIR": str(args.data_dir.resolve()),
                              "FORECAST_DATASET": "synthetic"})
    if not settings.warehouse_path.is_file():
        raise SystemExit(f"error: no warehouse in {args.data_dir}: expected a data directory "
                         "of a generated run (python benchmarks/scale.py --keep)")
    with connect(settings.warehouse_path, read_only=True) as con:
        series = con.execute("SELECT count(DISTINCT series_id) FROM sales_features "
                             "WHERE ds = (SELECT max(ds) FROM sales_features)").fetchall()[0][0]
    summary = {"series": int(series), **feature_query_seconds(settings)}
    print(f"features of {summary['day']}: grid {summary['grid_seconds']} s, at the day's rows "
          f"{summary['at_targets_seconds']} s (x{summary['ratio']}), largest relative "
          f"difference {summary['max_rel_diff']:.2e}", flush=True)
    from forecast_platform.cli.instance import ensure_dagster_home

    ensure_dagster_home(settings)
    summary.update(ingest_new_day(settings, int(series)))
    print(f"new day {summary['new_day']} ingested in {summary['new_day_seconds']} s: "
          + ", ".join(f"{k} {v} s" for k, v in summary["new_day_step_seconds"].items()))
    if not args.no_append:
        append_section("\n".join([
            f"## New day benchmark ({series:,} series), {dt.datetime.now():%Y-%m-%d %H:%M}", "",
            f"- machine: {machine()}",
            f"- command: `python benchmarks/new_day.py {' '.join(sys.argv[1:])}`", "",
            f"Features of {summary['day']} ({summary['rows']:,} rows): dense grid over the "
            f"lookback {summary['grid_seconds']} s, at the day's own rows "
            f"{summary['at_targets_seconds']} s (ratio {summary['ratio']}); largest relative "
            f"difference {summary['max_rel_diff']:.2e}. One more day landed and ingested "
            f"(ingest_job) in {summary['new_day_seconds']} s: "
            + ", ".join(f"{k} {v} s" for k, v in summary["new_day_step_seconds"].items())
            + ".", "", ""]))
    print(json.dumps(summary))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as the CLI ends: no DuckDB "leaked" report at the interpreter's teardown


if __name__ == "__main__":
    raise SystemExit(main())
