"""Benchmark: the platform's forecaster on a real holdout, against the baselines.

    python benchmarks/accuracy.py --dataset store_item --data-dir ../shared/data/store_item_demand
    python benchmarks/accuracy.py ... --origin 2016-10-02 --no-append
    python benchmarks/accuracy.py ... --extra-features share_store   # a model-feature variant
    python benchmarks/accuracy.py --closures   # Store Item as a retailer's export, with a plan

Everything runs through the platform's own code, as the assets do, over an in-memory DuckDB:

* ``validated_sales`` is built from the dataset's CSV in the validated shape (typed columns,
  ``series_id`` = keys joined by '|'), ``holiday_calendar`` from ``calendar_frame``;
* training features: ``features_select(plan_features(spec), history_source(spec), ...)`` for
  every date up to the origin (the last day with data), exactly the sales_features SQL;
* holdout features: the same SQL over ``future_source`` (history up to the origin plus the
  future rows with y NULL), as the forecasts asset builds them, so nothing after the origin
  can reach a forecast; the actuals are joined afterwards for scoring;
* the ``Forecaster`` with its default parameters and ``model_features``; the baselines of the
  backtest (``baseline_forecasts``) on the same points.

Default task (Kaggle Store Item Demand): train on every day before 2017-10-03, forecast
2017-10-03..2017-12-31 (90 days x 500 series). It prints the SMAPE of the model and of each
baseline, the P10-P90 coverage and the training time (wall and CPU: on a shared machine the CPU
time is the figure that does not depend on what else runs), appends a section to
docs/benchmarks.md unless ``--no-append``, and prints a last line of JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from results import ROOT, append_section, default_source_dir, machine  # noqa: E402

from forecast_platform.datasets.registry import favorita_select, get_spec, walmart_select
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.features.offline import HOLIDAYS_SOURCE, history_features_sql, write_calendar
from forecast_platform.features.sql import features_select, plan_features
from forecast_platform.forecasting import metrics
from forecast_platform.forecasting.backtest import baseline_forecasts
from forecast_platform.forecasting.forecaster import (
    Forecaster,
    ForecasterParams,
    default_model_features,
)
from forecast_platform.forecasting.future import future_params, future_source
from forecast_platform.ingestion.validation import SQL_TYPES
from forecast_platform.warehouse.store import quote

CSV_NAME = {"store_item": "train.csv.gz"}
# Last training day. Walmart: the last 39 weeks of the training file (2012-02-03..2012-10-26,
# the Kaggle task's horizon) are held out.
DEFAULT_ORIGIN = {"store_item": dt.date(2017, 10, 2), "walmart": dt.date(2012, 1, 27)}
# Datasets whose landing joins several source files: the lander's own SQL gives the rows.
SOURCE_SELECT = {"walmart": walmart_select, "favorita_transactions": favorita_select}


def source_sql(spec: DatasetSpec, data_dir: Path) -> str:
    """The dataset's rows in the landing shape (every spec column)."""
    if spec.name in SOURCE_SELECT:
        return SOURCE_SELECT[spec.name](data_dir, spec)
    path = data_dir / CSV_NAME.get(spec.name, "train.csv.gz")
    if not path.is_file():
        raise FileNotFoundError(f"dataset {spec.name!r}: {path} does not exist")
    return f"SELECT * FROM read_csv('{path}', header = true)"


def create_validated(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, source: str) -> None:
    """``validated_sales`` from a relation in the landing shape: typed columns and
    ``series_id`` (keys joined by '|'), as validation writes them."""
    typed = [f"CAST({quote(spec.date_column)} AS DATE) AS {quote(spec.date_column)}"]
    typed += [f"CAST({quote(k)} AS {SQL_TYPES[spec.key_type(k)]}) AS {quote(k)}"
              for k in spec.keys]
    typed.append(f"CAST({quote(spec.target)} AS DOUBLE) AS {quote(spec.target)}")
    typed += [f"CAST({quote(c)} AS {SQL_TYPES[t]}) AS {quote(c)}"
              for c, t in spec.covariates.items()]
    keys = ", ".join(f"CAST({quote(k)} AS VARCHAR)" for k in spec.keys)
    con.execute(f"CREATE TABLE validated_sales AS SELECT {', '.join(typed)}, "
                f"concat_ws('|', {keys}) AS series_id FROM ({source})")


def load_warehouse(spec: DatasetSpec, data_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with ``validated_sales`` and ``holiday_calendar`` from the source."""
    con = duckdb.connect()
    con.execute("SET threads = 2")
    create_validated(con, spec, source_sql(spec, data_dir))
    first, last = con.execute(
        f"SELECT min({quote(spec.date_column)}), max({quote(spec.date_column)}) "
        "FROM validated_sales").fetchall()[0]
    write_calendar(con, first, last)  # runs a year past the data
    return con


def metric_of(spec: DatasetSpec, y: np.ndarray, pred: np.ndarray, holiday: np.ndarray) -> float:
    """The spec's metric of record (WMAE weighs the data's holiday periods 5)."""
    if spec.metric == "wmae":
        return metrics.wmae(y, pred, holiday)
    return getattr(metrics, spec.metric)(y, pred)


def model_predictions(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, origin: dt.date,
                      first_day: dt.date, horizon: int, lags_from: int, extra: list[str]
                      ) -> tuple[pd.DataFrame, Forecaster, float, list[str]]:
    """Train on every row up to the origin, forecast periods ``lags_from..horizon`` after it.

    The feature plan is the one for ``horizon`` (its lags start ``horizon`` periods back), so
    a model of a horizon bucket only reads data that is known at the origin for every period
    of its bucket.
    """
    plan = plan_features(spec, horizon)
    step = spec.step_days
    started = time.perf_counter()
    train = con.execute(history_features_sql(plan), [first_day, origin, first_day, origin]).df()
    first = origin + dt.timedelta(days=lags_from * step)
    last = origin + dt.timedelta(days=horizon * step)
    history_start = origin - dt.timedelta(days=plan.lookback_days)
    select = features_select(plan, future_source(spec, horizon), HOLIDAYS_SOURCE)
    test = con.execute(select, [*future_params(history_start, origin), first, last]).df()
    seconds = time.perf_counter() - started
    for frame in (train, test):
        frame["ds"] = pd.to_datetime(frame["ds"])
    # The platform's default model features (as the forecaster asset trains), plus any extras.
    features = default_model_features(plan.names, spec.frequency, spec.trained_covariates)
    features += [f for f in extra if f in plan.names and f not in features]
    model = Forecaster(ForecasterParams(), features, horizon).fit(train)
    preds = model.predict(test)
    out = pd.concat([test[["series_id", "ds"]].reset_index(drop=True),
                     preds.reset_index(drop=True)], axis=1)
    if lags_from == 1:
        out.attrs["history"] = train.loc[train["y"].notna(), ["series_id", "ds", "y"]]
    return out, model, seconds, features


def run(spec: DatasetSpec, data_dir: Path, origin: dt.date, extra: list[str] | None = None,
        bucket: int = 0) -> dict:
    """``bucket`` > 0: one model per ``bucket`` periods of the horizon (direct multi-horizon:
    the model for periods 1..b reads lags from b back, the next from 2b back, ...); 0: one
    model for the whole horizon, as the forecaster asset trains."""
    horizon = spec.horizon
    step = spec.step_days
    con = load_warehouse(spec, data_dir)
    date = quote(spec.date_column)
    first_day = con.execute(f"SELECT min({date}) FROM validated_sales").fetchall()[0][0]
    ends = list(range(bucket, horizon, bucket)) + [horizon] if bucket else [horizon]
    parts, models, feature_seconds = [], [], 0.0
    history = None
    for i, end in enumerate(ends):
        lags_from = ends[i - 1] + 1 if i else 1
        part, model, seconds, features = model_predictions(
            con, spec, origin, first_day, end, lags_from, extra or [])
        history = part.attrs.get("history", history)
        parts.append(part)
        models.append(model)
        feature_seconds += seconds
    preds = pd.concat(parts, ignore_index=True)
    first = origin + dt.timedelta(days=step)
    last = origin + dt.timedelta(days=horizon * step)
    flag = f"CAST({quote(spec.holiday_column)} AS INTEGER)" if spec.holiday_column else "0"
    actual = con.execute(
        f"SELECT series_id, {date} AS ds, CAST({quote(spec.target)} AS DOUBLE) AS actual, "
        f"{flag} AS holiday FROM validated_sales WHERE {date} BETWEEN ? AND ?",
        [first, last]).df()
    actual["ds"] = pd.to_datetime(actual["ds"])
    test = preds.merge(actual, on=["series_id", "ds"], how="inner")
    if test.empty:
        raise ValueError(f"no actuals between {first} and {last}: pick an earlier --origin")

    base = baseline_forecasts(history, test[["series_id", "ds"]], spec.season_length, step)
    y = test["actual"].to_numpy()
    scored = test["p50"].notna().to_numpy()
    for values in base.values():
        scored &= ~np.isnan(values)
    y, holiday = y[scored], test["holiday"].to_numpy()[scored]
    p10, p50, p90 = (test[c].to_numpy()[scored] for c in ("p10", "p50", "p90"))
    return {
        "origin": origin, "first": first, "last": last, "features": features,
        "feature_seconds": feature_seconds, "metric": spec.metric, "buckets": ends,
        "score": metric_of(spec, y, p50, holiday),
        "baselines": {name: metric_of(spec, y, v[scored], holiday) for name, v in base.items()},
        "coverage": metrics.coverage(y, p10, p90),
        "bias": metrics.bias(y, p50),
        "mae": metrics.mae(y, p50),
        "band": models[0].band,
        "train_seconds": sum(m.train_seconds for m in models),
        "train_cpu_seconds": sum(m.train_cpu_seconds for m in models),
        "train_rows": models[0].train_rows,
        "anchored": models[0].anchored,
        "correction_rounds": models[0].info.get("correction_rounds"),
        "points": int(scored.sum()),
        "unscored": int((~scored).sum()),
        "series": int(test["series_id"].nunique()),
    }


def report(args, spec: DatasetSpec, r: dict) -> str:
    lines = [
        f"## Accuracy benchmark ({spec.name}), {dt.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"- machine: {machine()}",
        f"- command: `{' '.join(['python', 'benchmarks/accuracy.py', *sys.argv[1:]])}`",
        f"- task: train on every day up to {r['origin']}, forecast {r['first']} .. {r['last']} "
        f"({r['series']} series, {r['points']:,} points scored)",
        f"- model: Forecaster defaults, target y / "
        f"{'recipe_base (the seasonal recipe at the origin)' if r['anchored'] else 'norm'}, "
        f"features {', '.join(r['features'])}; {r['train_rows']:,} training rows"
        + (f"; correction rounds {r['correction_rounds']} (0: the recipe alone)"
           if r["anchored"] else ""),
        "",
        f"- horizon buckets (one direct model each, periods 1..end): {r['buckets']}",
        "",
        f"| method | {r['metric'].upper()} |",
        "|---|---:|",
        f"| model (P50) | {r['score']:.3f} |",
        *(f"| {name} | {value:.3f} |" for name, value in r["baselines"].items()),
        "",
        f"P10-P90 coverage {r['coverage']:.3f} (band z quantiles {r['band'][0]:+.3f} / "
        f"{r['band'][1]:+.3f}), bias {r['bias']:+.3f}, MAE {r['mae']:.3f}. Training "
        f"{r['train_seconds']:.1f} s wall / {r['train_cpu_seconds']:.1f} s CPU; feature SQL "
        f"{r['feature_seconds']:.1f} s.",
        "",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="store_item")
    parser.add_argument("--data-dir", default=default_source_dir("store_item_demand"),
                        help="folder holding the dataset's CSV (train.csv.gz)")
    parser.add_argument("--origin", type=dt.date.fromisoformat,
                        help="last training day (default: store_item 2017-10-02, walmart "
                             "2012-01-27)")
    parser.add_argument("--extra-features", default="",
                        help="comma-separated plan features added to the model's, e.g. series_dev")
    parser.add_argument("--bucket", type=int, default=0,
                        help="one direct model per this many periods of the horizon (0: one "
                             "model for the whole horizon, as the forecaster asset trains)")
    parser.add_argument("--closures", action="store_true",
                        help="Store Item Demand as a retailer's export (closures, promotions) "
                             "set up by init-dataset's inference and forecast with its plan "
                             "(benchmarks/accuracy_closures.py)")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.closures:
        return closures_main(args)

    spec = get_spec(args.dataset)
    origin = args.origin or DEFAULT_ORIGIN.get(spec.name)
    if origin is None:
        parser.error(f"--origin is required for dataset {spec.name!r}")
    extra = [f for f in args.extra_features.split(",") if f]
    r = run(spec, Path(args.data_dir).resolve(), origin, extra, args.bucket)

    print(f"{spec.name}: train up to {r['origin']}, forecast {r['first']} .. {r['last']}, "
          f"{r['points']:,} points ({r['unscored']} unscored), {r['train_rows']:,} training rows")
    label = r["metric"].upper()
    print(f"model (P50)            {label} {r['score']:.3f}")
    for name, value in r["baselines"].items():
        print(f"{name:<22} {label} {value:.3f}")
    print(f"P10-P90 coverage {r['coverage']:.3f}, bias {r['bias']:+.3f}")
    print(f"train {r['train_seconds']:.1f} s wall / {r['train_cpu_seconds']:.1f} s CPU, "
          f"feature SQL {r['feature_seconds']:.1f} s")
    if not args.no_append:
        print(f"appended to {append_section(report(args, spec, r)).relative_to(ROOT)}")
    summary = {
        r["metric"]: round(r["score"], 4),
        **{f"{r['metric']}_{name}": round(value, 4) for name, value in r["baselines"].items()},
        "buckets": r["buckets"],
        **({"correction_rounds": r["correction_rounds"]} if r["anchored"] else {}),
        **({f"ratio_to_seasonal_naive_{spec.season_length}": round(
            r["score"] / r["baselines"][f"seasonal_naive_{spec.season_length}"], 4)}
           if f"seasonal_naive_{spec.season_length}" in r["baselines"] else {}),
        "coverage_p10_p90": round(r["coverage"], 4),
        "train_seconds": round(r["train_seconds"], 2),
        "train_cpu_seconds": round(r["train_cpu_seconds"], 2),
        "rows": r["train_rows"],
        "points": r["points"],
    }
    print(json.dumps(summary))
    return 0


def closures_main(args) -> int:
    from accuracy_closures import HORIZON, run_closures

    r = run_closures(Path(args.data_dir).resolve())
    print(f"store_item_closures: train up to {r['origin']}, forecast {r['first']} .. "
          f"{r['last']} ({HORIZON} days), {r['points']:,} open-day points, {r['series']} "
          f"series; {r['closure_rules']} closure rules inferred; {r['plan_rows_used']:,} "
          f"forecast rows read the plan")
    for name in ("rmspe", "rmspe_median_dow_promo", "rmspe_seasonal_naive_7"):
        print(f"{name:<24} {r[name]:.4f}")
    ratio = r["rmspe"] / r["rmspe_median_dow_promo"]
    print(f"ratio to median_dow_promo {ratio:.3f} (goal <= 0.85); SMAPE {r['smape']:.3f}, "
          f"P10-P90 coverage {r['coverage_p10_p90']:.3f}; {r['open_days_forecast_closed']} "
          f"open days forecast closed; {r['closed_forecasts']} closed forecasts (zero)")
    summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()
               if k not in ("origin", "first", "last")}
    summary["ratio_to_median_dow_promo"] = round(ratio, 4)
    if not args.no_append:
        lines = [
            f"## Accuracy benchmark (Store Item as a retailer's export, with a plan), "
            f"{dt.datetime.now():%Y-%m-%d %H:%M}", "",
            f"- machine: {machine()}",
            f"- command: `{' '.join(['python', 'benchmarks/accuracy.py', *sys.argv[1:]])}`",
            f"- task: spec inferred by init-dataset from the training part; train up to "
            f"{r['origin']}, forecast {r['first']} .. {r['last']} with the promotion plan "
            f"landed through the plan path; scored on {r['points']:,} open-day points of "
            f"{r['series']} series", "",
            "| method | RMSPE |", "|---|---:|",
            f"| model (P50, with the plan) | {r['rmspe']:.4f} |",
            f"| median by weekday and promo, last 52 weeks | "
            f"{r['rmspe_median_dow_promo']:.4f} |",
            f"| seasonal naive 7 | {r['rmspe_seasonal_naive_7']:.4f} |", "",
            f"Ratio to the weekday-promo median {ratio:.3f} (goal <= 0.85). Plan rows used "
            f"{r['plan_rows_used']:,}; closure rules inferred {r['closure_rules']}; open days "
            f"forecast closed {r['open_days_forecast_closed']}; training "
            f"{r['train_seconds']:.1f} s on {r['train_rows']:,} rows.", "",
        ]
        print(f"appended to {append_section(chr(10).join(lines) + chr(10)).relative_to(ROOT)}")
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
