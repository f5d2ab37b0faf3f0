"""Benchmark: the monitoring loop's speed: one drift report, and landing -> new model version.

    python benchmarks/monitoring.py                 # appends a section to docs/benchmarks.md
    python benchmarks/monitoring.py --no-append

What one drift-report partition costs, through the platform's own code:

1. The synthetic generator (default 10 stores x 50 items = 500 series) with its drift switch on
   (``--drift-from``, default 2017-09-01), and the same config without it; the two are identical
   before the switch. Features come from the platform's feature SQL in an in-memory DuckDB
   (``features_select`` over ``validated_sales``, as the sales_features asset builds them).
2. The champion's training rows: ``--train-start`` .. the day before the drift. The reference of
   one report is ``seasonal_reference`` of those rows (the same weeks a year earlier); the
   current data is the ``--days`` (28) days ending on the partition (``--partition``), i.e.
   500 x 28 = 14,000 rows of the ``monitored_columns`` (target, history features, promo).
3. Times ``drift_report`` plus writing the HTML and JSON (what the asset does per partition):
   the Evidently import, the first call in the process and the median of ``--repeat`` warm
   calls, on the drifted and on the clean window. It also runs the report against the whole
   training year (182,500 rows, sampled to ``max_rows``) and compares sampling 10k with 20k rows.

4. Then (unless ``--skip-loop``) the whole loop with the real Dagster daemon
   (``benchmarks/drift_loop.py``): the time from landing a drifted day to the new forecaster
   version the drift sensor's retrain records, stage by stage.

Last line: JSON with ``drift_report_seconds`` (warm, drifted window, HTML and JSON included) and
``drift_to_model_seconds``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import drift_loop  # noqa: E402
from results import append_section, machine  # noqa: E402

from forecast_platform.datasets.registry import get_spec  # noqa: E402
from forecast_platform.datasets.synthetic import SyntheticConfig, generate_sales  # noqa: E402
from forecast_platform.features import offline  # noqa: E402
from forecast_platform.features.sql import plan_features  # noqa: E402
from forecast_platform.monitoring.drift import (  # noqa: E402
    DEFAULT_MAX_ROWS,
    DEFAULT_NUM_THRESHOLD,
    DriftSummary,
    drift_report,
    monitored_columns,
    seasonal_reference,
)

os.environ.setdefault("DO_NOT_TRACK", "1")


def feature_frame(config: SyntheticConfig, first_day: dt.date) -> pd.DataFrame:
    """Feature rows from ``first_day`` on, computed by the platform's feature SQL."""
    spec = get_spec("synthetic")
    plan = plan_features(spec)
    sales, _ = generate_sales(config)
    con = duckdb.connect()
    offline.load_sales(con, spec, sales)
    frame = offline.feature_frame(con, plan, first_day, config.end)
    con.close()
    return frame


def one_partition(reference: pd.DataFrame, current: pd.DataFrame, numerical: list[str],
                  categorical: list[str], out: Path, max_rows: int) -> tuple[float, DriftSummary]:
    """drift_report + HTML + JSON, as the asset does it for one partition."""
    start = time.perf_counter()
    summary = drift_report(reference, current, numerical + categorical, categorical=categorical,
                           max_rows=max_rows)
    summary.save_html(out / "drift.html")
    summary.save_json(out / "drift.json")
    return time.perf_counter() - start, summary


def run(args: argparse.Namespace) -> dict:
    plan = plan_features(get_spec("synthetic"))
    numerical, categorical = monitored_columns(plan)
    base = dict(n_stores=args.stores, n_items=args.items, start=args.data_start,
                end=args.partition, anomaly_share=0.0)
    t = time.perf_counter()
    drifted = feature_frame(SyntheticConfig(**base, drift_from=args.drift_from), args.train_start)
    clean = feature_frame(SyntheticConfig(**base), args.train_start)
    setup_seconds = time.perf_counter() - t

    train_end = pd.Timestamp(args.drift_from) - pd.Timedelta(days=1)
    training = clean[clean["ds"].between(pd.Timestamp(args.train_start), train_end)]
    cur_start = pd.Timestamp(args.partition) - pd.Timedelta(days=args.days - 1)
    cur_end = pd.Timestamp(args.partition)
    windows = {name: f[f["ds"].between(cur_start, cur_end)]
               for name, f in (("drifted", drifted), ("clean", clean))}
    reference = seasonal_reference(training, cur_start, cur_end, years=args.reference_years)

    t = time.perf_counter()
    import evidently.presets  # noqa: F401  (timed on its own: a fresh run process pays it)
    import_seconds = time.perf_counter() - t

    results: dict = {"setup_seconds": setup_seconds, "import_seconds": import_seconds,
                     "columns": len(numerical) + len(categorical), "training_rows": len(training),
                     "reference_rows": len(reference),
                     "current_rows": len(windows["drifted"])}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        first, summary = one_partition(reference, windows["drifted"], numerical, categorical, out,
                                       args.max_rows)
        warm = [one_partition(reference, windows["drifted"], numerical, categorical, out,
                              args.max_rows)[0] for _ in range(args.repeat)]
        results["html_bytes"] = (out / "drift.html").stat().st_size
        results["json_bytes"] = (out / "drift.json").stat().st_size
        clean_seconds, clean_summary = one_partition(reference, windows["clean"], numerical,
                                                     categorical, out, args.max_rows)
        # Against the whole training year (sampled): the bound on rows bounds the time.
        year_seconds, year_summary = one_partition(training, windows["drifted"], numerical,
                                                   categorical, out, args.max_rows)
        big_seconds, big_summary = one_partition(training, windows["drifted"], numerical,
                                                 categorical, out, 2 * args.max_rows)
    diff = (year_summary.columns.set_index("column")["score"]
            - big_summary.columns.set_index("column")["score"]).abs()
    results.update(
        first_seconds=first, warm_seconds=warm, median_seconds=statistics.median(warm),
        drifted=summary, clean=clean_summary, clean_seconds=clean_seconds,
        year=year_summary, year_seconds=year_seconds, big=big_summary, big_seconds=big_seconds,
        sampling_max_score_diff=float(diff.max()),
        sampling_same_flags=bool((year_summary.columns["drifted"].to_numpy()
                                  == big_summary.columns["drifted"].to_numpy()).all()),
    )
    return results


def verdict(s: DriftSummary) -> str:
    target = s.columns.set_index("column").loc["y"]
    return (f"{'DRIFT' if s.dataset_drift else 'no drift'} ({s.drifted_count}/{len(s.columns)} "
            f"columns); target y {target['score']:.2f}{' drifted' if target['drifted'] else ''}")


def report(args: argparse.Namespace, r: dict) -> str:
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    flags = ", ".join(r["drifted"].drifted_columns)
    lines = [
        f"## Monitoring benchmark: drift report, {when}",
        "",
        f"- machine: {machine()}",
        f"- command: `{' '.join(['python', 'benchmarks/monitoring.py', *sys.argv[1:]])}`",
        f"- data: synthetic, {args.stores * args.items} series; drift from {args.drift_from} "
        f"(level x1.6, weekday profile, promotions 4 % -> 12 %); partition {args.partition}, "
        f"current = {args.days} days = {r['current_rows']:,} rows; {r['columns']} monitored "
        f"columns (`monitored_columns`: target, history features, promo); training rows "
        f"{args.train_start} .. {args.drift_from - dt.timedelta(days=1)} ({r['training_rows']:,}); "
        f"reference = `seasonal_reference` ({args.reference_years} year back, "
        f"{r['reference_rows']:,} rows)",
        f"- `drift_report`: max_rows {args.max_rows:,} per side (deterministic sample), normed "
        f"Wasserstein threshold {DEFAULT_NUM_THRESHOLD}, Jensen-Shannon 0.1, drift_share 0.5; "
        f"times include writing the HTML ({r['html_bytes'] / 1e6:.1f} MB) and JSON "
        f"({r['json_bytes'] / 1e3:.1f} kB)",
        "",
        "| measure | seconds | verdict |",
        "|---|---:|---|",
        f"| import evidently (once per process) | {r['import_seconds']:.2f} | |",
        f"| first report in the process, drifted window | {r['first_seconds']:.2f} | "
        f"{verdict(r['drifted'])} |",
        f"| warm report, drifted window (median of {args.repeat}) | {r['median_seconds']:.2f} | "
        f"{verdict(r['drifted'])} |",
        f"| warm report, clean window (control) | {r['clean_seconds']:.2f} | "
        f"{verdict(r['clean'])} |",
        f"| drifted window vs the whole training year, {args.max_rows:,} rows sampled | "
        f"{r['year_seconds']:.2f} | {verdict(r['year'])} |",
        f"| same, {2 * args.max_rows:,} rows sampled | {r['big_seconds']:.2f} | "
        f"{verdict(r['big'])} |",
        "",
        f"Drifted columns (seasonal reference): {flags or 'none'}. Clean window drifted columns: "
        f"{', '.join(r['clean'].drifted_columns) or 'none'}. Sampling {args.max_rows:,} vs "
        f"{2 * args.max_rows:,} rows: largest score difference {r['sampling_max_score_diff']:.3f}"
        f", same per-column flags: {r['sampling_same_flags']}. A fresh run process pays import + "
        f"first report: {r['import_seconds'] + r['first_seconds']:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def loop_section(args, loop: dict) -> str:
    rows = "\n".join(f"| {stage} | {seconds:.1f} |" for stage, seconds in loop["marks"].items())
    return "\n".join([
        "",
        f"### The loop, driven by the real daemon (`dagster-daemon run`, "
        f"{args.stores * args.items} series)",
        "",
        f"Champion trained before the drift; {args.window - 1} drifted days already ingested "
        f"without monitoring; t = 0 when the last drifted day's file lands. The drift report "
        f"({loop['drift_report_window']}) asked to retrain on: {loop['retrain_columns']}. The "
        f"retrain's forecaster came out {loop['status']} (trigger={loop['trigger']}).",
        "",
        "| stage (seconds after landing) | s |",
        "|---|---:|",
        rows,
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--data-start", type=dt.date.fromisoformat, default=dt.date(2014, 6, 1))
    parser.add_argument("--train-start", type=dt.date.fromisoformat, default=dt.date(2016, 9, 1),
                        help="first training day (features are computed from here)")
    parser.add_argument("--drift-from", type=dt.date.fromisoformat, default=dt.date(2017, 9, 1))
    parser.add_argument("--partition", type=dt.date.fromisoformat, default=dt.date(2017, 12, 31))
    parser.add_argument("--days", type=int, default=28, help="current window length")
    parser.add_argument("--reference-years", type=int, default=1)
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--skip-loop", action="store_true",
                        help="only the drift report, not the daemon-driven loop")
    parser.add_argument("--loop-stores", type=int, default=10)
    parser.add_argument("--loop-items", type=int, default=50)
    args = parser.parse_args(argv)
    if args.train_start >= args.drift_from:
        parser.error("--train-start must be before --drift-from")
    r = run(args)
    text = report(args, r)
    loop = None
    if not args.skip_loop:
        loop_args = drift_loop.parser().parse_args(
            ["--stores", str(args.loop_stores), "--items", str(args.loop_items)])
        loop = drift_loop.run(loop_args)
        text += loop_section(loop_args, loop)
    print(text)
    print(r["drifted"].top(8).round(3).to_string())
    if not args.no_append:
        print(f"appended to {append_section(text)}")
    print(json.dumps({
        "drift_report_seconds": round(r["median_seconds"], 2),
        "drift_report_first_seconds": round(r["first_seconds"], 2),
        "evidently_import_seconds": round(r["import_seconds"], 2),
        "drift_report_clean_seconds": round(r["clean_seconds"], 2),
        "dataset_drift_drifted_window": r["drifted"].dataset_drift,
        "dataset_drift_clean_window": r["clean"].dataset_drift,
        "target_drifted_drifted_window": "y" in r["drifted"].drifted_columns,
        "target_drifted_clean_window": "y" in r["clean"].drifted_columns,
        "drifted_share": round(r["drifted"].drifted_share, 3),
        "series": args.stores * args.items,
        "current_rows": r["current_rows"],
        "max_rows": args.max_rows,
        "drift_to_model_seconds": round(loop["marks"][drift_loop.DONE], 1) if loop else None,
        **({"loop_stages": loop["marks"], "loop_model_status": loop["status"]} if loop else {}),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
