"""Benchmark: what training on a sample of whole series costs in accuracy, on the same points.

    python benchmarks/training_sample.py --series 5000 --share 0.1
    python benchmarks/training_sample.py --series 5000 --share 0.1 --no-append

Past ``max_train_rows`` a fit reads a stated sample of whole series (forecasting/sample.py).
This measures the price: the generator's N series (three years daily, as benchmarks/scale.py)
are landed and ingested through the platform's own ingest job, then the forecaster is fitted
twice at one origin (the last horizon held out), on every series and on the sample that
``load_training_frame`` takes at ``share`` of the rows, and both forecast the held-out horizon
of EVERY series, scored against the actuals with the seasonal naive on the same points.

Last line JSON: ``series, share, rows_full, rows_sample, smape_full, smape_sample,
smape_seasonal_naive_7, cost`` (smape_sample / smape_full - 1) and the fits' seconds; appended
to docs/benchmarks.md unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from results import ROOT, append_section, machine
from scale import END, START, shape

from forecast_platform.cli.instance import ensure_dagster_home
from forecast_platform.cli.runs import land, run_range
from forecast_platform.datasets.registry import get_spec
from forecast_platform.defs.jobs import INGEST_JOB
from forecast_platform.features.sql import plan_features
from forecast_platform.forecasting import metrics
from forecast_platform.forecasting.backtest import baseline_forecasts
from forecast_platform.forecasting.forecaster import (
    Forecaster,
    ForecasterParams,
    default_model_features,
)
from forecast_platform.forecasting.training import load_training_frame
from forecast_platform.settings import load_settings
from forecast_platform.warehouse.store import connect


def fit_and_score(train: pd.DataFrame, test: pd.DataFrame, features: list[str],
                  horizon: int) -> tuple[float, float, int]:
    """SMAPE on ``test`` of a model fitted on ``train``, its fit seconds and training rows."""
    model = Forecaster(ForecasterParams(), features, horizon).fit(train)
    preds = model.predict(test)
    smape = metrics.point_metrics(test["y"], preds["p50"].to_numpy())["smape"]
    return float(smape), model.train_seconds, model.train_rows


def run(series: int, share: float, scratch: Path | None) -> dict:
    spec = get_spec("synthetic")
    plan = plan_features(spec)
    features = default_model_features(plan.names, spec.frequency, spec.trained_covariates)
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        settings = load_settings({"FORECAST_DATA_DIR": str(Path(folder) / "data"),
                                  "FORECAST_DATASET": "synthetic"})
        ensure_dagster_home(settings)
        stores, items = shape(series)
        print(f"landing and ingesting {series} series ...", flush=True)
        land(settings, START, stores, items, END)
        if not run_range(settings, INGEST_JOB, START, END).success:
            raise SystemExit("error: the ingest run failed")
        with connect(settings.warehouse_path, read_only=True) as con:
            full, _, end, every = load_training_frame(con, spec, 730)
            part, _, _, sample = load_training_frame(con, spec, 730,
                                                     max_rows=int(every.rows * share))
    origin = pd.Timestamp(end - dt.timedelta(days=plan.horizon))
    ds = pd.to_datetime(full["ds"])
    test = full[(ds > origin) & full["y"].notna()]
    history = full.loc[ds <= origin, ["series_id", "ds", "y"]].dropna() \
        .assign(ds=lambda f: pd.to_datetime(f["ds"]))
    naive = baseline_forecasts(history, test[["series_id", "ds"]].assign(
        ds=lambda f: pd.to_datetime(f["ds"])), spec.season_length, spec.step_days)
    keep = pd.notna(naive["seasonal_naive_7"])
    test = test[keep]
    naive_smape = metrics.point_metrics(test["y"], naive["seasonal_naive_7"][keep])["smape"]
    print("fitting on every series and on the sample ...", flush=True)
    smape_full, seconds_full, rows_full = fit_and_score(full[ds <= origin], test, features,
                                                        plan.horizon)
    part_ds = pd.to_datetime(part["ds"])
    smape_sample, seconds_sample, rows_sample = fit_and_score(part[part_ds <= origin], test,
                                                              features, plan.horizon)
    return {
        "series": series, "share": round(sample.share, 4), "test_points": len(test),
        "rows_full": rows_full, "rows_sample": rows_sample,
        "smape_full": round(smape_full, 4), "smape_sample": round(smape_sample, 4),
        "smape_seasonal_naive_7": round(float(naive_smape), 4),
        "cost": round(smape_sample / smape_full - 1, 4),
        "fit_seconds_full": round(seconds_full, 1), "fit_seconds_sample": round(seconds_sample, 1),
        "origin": str(origin.date()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--share", type=float, default=0.1,
                        help="the sample's share of the training rows")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--scratch", type=Path, help="where the data directory goes")
    args = parser.parse_args(argv)
    from forecast_platform.cli.parser import quiet_known_warnings

    quiet_known_warnings()
    started = time.perf_counter()
    r = run(args.series, args.share, args.scratch)
    print(f"{r['series']} series, origin {r['origin']}, {r['test_points']:,} held-out points "
          f"of every series: SMAPE {r['smape_full']} fitted on every series "
          f"({r['rows_full']:,} rows, {r['fit_seconds_full']} s), {r['smape_sample']} on a "
          f"{r['share']:.1%} sample ({r['rows_sample']:,} rows, {r['fit_seconds_sample']} s): "
          f"cost {r['cost']:+.2%}; seasonal naive 7 {r['smape_seasonal_naive_7']}")
    if not args.no_append:
        text = "\n".join([
            f"## Training on a sample of whole series ({args.series:,} series, "
            f"{args.share:.0%} of the rows), {dt.datetime.now():%Y-%m-%d %H:%M}", "",
            f"- machine: {machine()}",
            f"- command: `{' '.join(['python', 'benchmarks/training_sample.py', *sys.argv[1:]])}`",
            "",
            "| fitted on | training rows | fit s | SMAPE on every series' held-out horizon |",
            "|---|---:|---:|---:|",
            f"| every series | {r['rows_full']:,} | {r['fit_seconds_full']} | {r['smape_full']} |",
            f"| {r['share']:.1%} sample of whole series | {r['rows_sample']:,} | "
            f"{r['fit_seconds_sample']} | {r['smape_sample']} |",
            f"| seasonal naive 7 (no fit) | | | {r['smape_seasonal_naive_7']} |", "",
            f"Cost of the sample: {r['cost']:+.2%} SMAPE on {r['test_points']:,} points "
            f"(origin {r['origin']}); the run took {time.perf_counter() - started:.0f} s.", ""])
        print(f"appended to {append_section(text + chr(10)).relative_to(ROOT)}")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
