"""Benchmark: the anomaly detector on REAL sales with injected, labelled anomalies.

    python benchmarks/anomalies.py --dataset store_item --data-dir ../shared/data/store_item_demand
    python benchmarks/anomalies.py ... --no-append            # do not write docs/benchmarks.md
    python benchmarks/anomalies.py ... --cache /tmp/anom.pkl  # reuse the backtest between runs

What it does, all through the platform's own code:

1. Loads Store Item Demand into an in-memory DuckDB (``validated_sales``, ``holiday_calendar``,
   as benchmarks/accuracy.py does) and injects anomalies with ``inject_anomalies`` into the
   evaluation window (default 2017-07-01 .. 2017-12-31): exactly 3 % of its points labelled.
2. Builds the real feature SQL over the INJECTED sales and runs ``run_backtest`` with rolling
   origins every ``--step`` days (default 91, the features' lag: 7 origins) from
   ``--history-start`` to the end: each origin's forecaster is trained only on data up to it
   (anomalies included, as in production) and forecasts the next ``--step`` days, so every day
   gets one out-of-sample P10/P50/P90. (The features of day t read data up to t - 91 whatever
   the origin, so a 91-day step changes only how often the model is retrained.)
3. ``with_day_factors`` then ``context_features`` on those forecasts; the detector is fit on
   the window before the evaluation window (``--fit-start`` .. the day before it; clean real
   data, out-of-sample residuals too) and scores the evaluation window. With
   ``--contaminate-fit`` the injector puts the same 3 % share over the fitting AND evaluation
   windows (``--fit-start`` .. ``--eval-end``): the detector then trains on contaminated rows,
   as it does in production.
4. Scores, on the same evaluation points, the variants (detector kinds and feature sets) and
   the baselines: a rolling z-score on raw sales (|z| > 3 against the 28 days before), the same
   PyOD detector on raw sales without the residual features, the issue's reference
   (|y - P50| / sqrt(P50), threshold for 1 % false alarms on the fit window) and a random-score
   detector as a sanity floor.

Point-wise precision / recall / F1 are the headline; AUC-PR is of the raw scores; event recall
counts an event as found when any of its points is flagged; the false-alarm rate is over the
clean evaluation points. Point-adjusted F1 is not reported. Last line: JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import load_warehouse  # noqa: E402
from results import append_section, default_source_dir, machine  # noqa: E402

from forecast_platform.anomalies.classify import classify  # noqa: E402
from forecast_platform.anomalies.context import (  # noqa: E402
    context_features,
    raw_features,
    with_day_factors,
)
from forecast_platform.anomalies.detector import DETECTOR_FEATURES, AnomalyDetector  # noqa: E402
from forecast_platform.anomalies.injection import inject_anomalies  # noqa: E402
from forecast_platform.datasets.registry import get_spec  # noqa: E402
from forecast_platform.features.offline import HOLIDAYS_SOURCE, history_source  # noqa: E402
from forecast_platform.features.sql import features_select, plan_features  # noqa: E402
from forecast_platform.forecasting.backtest import run_backtest  # noqa: E402
from forecast_platform.forecasting.forecaster import (  # noqa: E402
    Forecaster,
    ForecasterParams,
    model_features,
)

ROOT = Path(__file__).resolve().parents[1]
FULL_FEATURES = ("z", "interval_pos", "level_7d", "run_stat", "zero_run", "zero_expected",
                 "dow", "y")


def backtest_forecasts(args, spec) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Inject, build features, roll origins: (forecast rows, labels, sales, timings)."""
    con = load_warehouse(spec, Path(args.data_dir))
    sales = con.execute("SELECT * FROM validated_sales").df()
    if args.series:
        keep = np.sort(sales["series_id"].unique())[: args.series]
        sales = sales[sales["series_id"].isin(keep)]
    # Clean-fit scenario: anomalies only in the evaluation window. Contaminated-fit scenario:
    # the same injector and share over the fitting AND evaluation windows, as in production
    # (and the synthetic demo), where the detector's training window is never known clean.
    inject_from = args.fit_start if args.contaminate_fit else args.eval_start
    injected, labels = inject_anomalies(sales, inject_from, args.eval_end, args.share,
                                        args.seed)
    con.execute("DROP TABLE validated_sales")
    con.register("_sales", injected.assign(date=injected["date"].dt.date))
    con.execute("CREATE TABLE validated_sales AS SELECT * FROM _sales")
    con.unregister("_sales")

    plan = plan_features(spec)
    first, last = con.execute("SELECT min(date), max(date) FROM validated_sales").fetchall()[0]
    started = time.perf_counter()
    select = features_select(plan, history_source(spec), HOLIDAYS_SOURCE)
    frame = con.execute(select, [first, last, first, last]).df()
    feature_seconds = time.perf_counter() - started
    features = model_features(plan.names, spec.frequency, extra=list(spec.known))

    def make() -> Forecaster:
        return Forecaster(ForecasterParams(nthread=2), features, plan.horizon)

    lag0 = -(-plan.horizon // 7) * 7  # features of day t read data up to t - lag0
    if args.step > lag0:
        raise ValueError(f"--step {args.step} > {lag0}: days late in an origin's window would "
                         "have features reading data after the origin")
    origins, o = [], args.history_start - dt.timedelta(days=1)
    while o < last:
        origins.append(o)
        o += dt.timedelta(days=args.step)
    # The last origin's window may run past the data: cut it to what exists.
    started = time.perf_counter()
    parts = []
    for origin in origins:
        horizon = min(args.step, (last - origin).days)
        result = run_backtest(frame, make, [origin], horizon, spec.step_days, spec.season_length)
        parts.append(result.predictions[["series_id", "ds", "y", "p10", "p50", "p90"]])
        print(f"  origin {origin}: {len(parts[-1]):,} forecasts", file=sys.stderr, flush=True)
    forecasts = pd.concat(parts, ignore_index=True)
    timings = {"feature_seconds": feature_seconds,
               "backtest_seconds": time.perf_counter() - started, "origins": len(origins)}
    sales_out = injected.rename(columns={"date": "ds", "sales": "y"})[["series_id", "ds", "y"]]
    return forecasts, labels, sales_out, timings


def rolling_zscore(sales: pd.DataFrame, window: int = 28) -> pd.DataFrame:
    """|z| of each day's sales against the mean and sd of the series' ``window`` days BEFORE."""
    grid = sales.pivot(index="ds", columns="series_id", values="y").sort_index()
    past = grid.shift(1).rolling(window, min_periods=window // 2)
    z = (grid - past.mean()) / past.std().clip(lower=1.0)
    return z.abs().stack().rename("score").reset_index()


def evaluate(name: str, scores: np.ndarray, flags: np.ndarray, truth: np.ndarray,
             events: np.ndarray, types: np.ndarray, seconds: float | None = None) -> dict:
    """Point-wise and event-wise figures of one method on the evaluation points."""
    tp = int((flags & truth).sum())
    fp = int((flags & ~truth).sum())
    fn = int((~flags & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    clean = ~truth
    far = fp / int(clean.sum())
    found = pd.Series(flags[truth]).groupby(events[truth]).any()
    finite = np.nan_to_num(scores, nan=-np.inf, neginf=-1e300)
    finite = np.where(np.isinf(finite), np.nanmin(scores[np.isfinite(scores)]) - 1, finite)
    by_type = {t: float(flags[truth & (types == t)].mean()) for t in
               ("spike", "dip", "level_shift", "zero_run") if (truth & (types == t)).any()}
    return {
        "method": name, "precision": precision, "recall": recall, "f1": f1,
        "auc_pr": float(average_precision_score(truth, finite)),
        "event_recall": float(found.mean()), "false_alarm_rate": far,
        "false_alarms_per_1000": 1000 * fp / len(truth), "flagged": int(flags.sum()),
        "recall_by_type": by_type, "score_seconds": seconds,
    }


def run(args) -> dict:
    spec = get_spec(args.dataset)
    cached = Path(args.cache) if args.cache else None
    if cached and cached.is_file():
        forecasts, labels, sales, timings = pickle.loads(cached.read_bytes())
        print(f"backtest read from {cached}", file=sys.stderr)
    else:
        forecasts, labels, sales, timings = backtest_forecasts(args, spec)
        if cached:
            cached.write_bytes(pickle.dumps((forecasts, labels, sales, timings)))
    forecasts["ds"] = pd.to_datetime(forecasts["ds"])
    eval_start, eval_end = pd.Timestamp(args.eval_start), pd.Timestamp(args.eval_end)
    fit_start = pd.Timestamp(args.fit_start)

    started = time.perf_counter()
    # Day factors from the whole cross-section of each day, as the sales_anomalies asset does.
    forecasts = with_day_factors(forecasts)
    fit_feats = context_features(forecasts[forecasts["ds"] < eval_start], start=fit_start)
    feats = context_features(forecasts[forecasts["ds"] <= eval_end], start=eval_start)
    feature_seconds = time.perf_counter() - started
    rows = feats.rows
    key = labels.assign(ds=pd.to_datetime(labels["date"]))[["series_id", "ds", "event_id",
                                                           "anomaly_type"]]
    # Every evaluation point of the injected sales; methods that skip a point do not flag it.
    points = sales[(pd.to_datetime(sales["ds"]) >= eval_start)
                   & (pd.to_datetime(sales["ds"]) <= eval_end)].copy()
    points["ds"] = pd.to_datetime(points["ds"])
    points = points.merge(key, on=["series_id", "ds"], how="left")
    truth = points["event_id"].notna().to_numpy()
    events = points["event_id"].fillna(-1).to_numpy()
    types = points["anomaly_type"].fillna("").to_numpy()
    where = points[["series_id", "ds"]]

    def align(frame: pd.DataFrame, column: str) -> np.ndarray:
        return where.merge(frame[["series_id", "ds", column]], on=["series_id", "ds"],
                           how="left")[column].to_numpy()

    def score_detector(name: str, det: AnomalyDetector, train, test) -> dict:
        det.fit(train)
        t0 = time.perf_counter()
        out = det.score(test)
        seconds = time.perf_counter() - t0
        frame = test.rows if hasattr(test, "rows") else test
        frame = frame.assign(score=out["score"].to_numpy(), flag=out["is_anomaly"].to_numpy())
        s = align(frame, "score")
        f = align(frame, "flag")
        f = np.where(pd.isna(f), False, f).astype(bool)
        result = evaluate(name, s, f, truth, events, types, seconds)
        result["detector"] = det
        return result

    results = []
    far = args.target_far
    old = {"calibration": "quantile", "tails": "empirical"}  # before contamination-robustness
    variants = [
        ("ecod", DETECTOR_FEATURES, {}), ("copod", DETECTOR_FEATURES, {}),
        ("iforest", DETECTOR_FEATURES, {}), ("ensemble", DETECTOR_FEATURES, {}),
        ("ecod", FULL_FEATURES, {}), ("iforest", FULL_FEATURES, {}),
        ("ecod", ("z",), {}), ("ecod", ("z", "run_stat"), {}),
        ("ecod", ("z", "run_stat", "zero_expected"), {}),  # the default before nb_tail
        ("ecod", DETECTOR_FEATURES, {"calibration": "quantile"}),
        ("ecod", DETECTOR_FEATURES, old),
    ]
    for kind, cols, options in variants:
        det = AnomalyDetector(kind, cols, far, **options)
        name = f"{kind} [{', '.join(cols)}]" + (
            f" ({', '.join(f'{k} {v}' for k, v in options.items())})" if options else "")
        results.append(score_detector(name, det, fit_feats, feats))
        r = results[-1]
        print(f"  {name}: F1 {r['f1']:.3f} AUC-PR {r['auc_pr']:.3f} FAR "
              f"{r['false_alarm_rate']:.4f}", file=sys.stderr, flush=True)
    main = results[0]

    # Baseline: the same detector on raw sales (level + day of week), no forecast.
    raw_sales = sales.assign(ds=pd.to_datetime(sales["ds"]))
    raw_fit = raw_sales[(raw_sales["ds"] >= fit_start) & (raw_sales["ds"] < eval_start)]
    raw_eval = raw_sales[(raw_sales["ds"] >= eval_start) & (raw_sales["ds"] <= eval_end)]
    raw_fit = pd.concat([raw_fit[["series_id", "ds"]], raw_features(raw_fit)], axis=1)
    raw_eval = pd.concat([raw_eval[["series_id", "ds"]], raw_features(raw_eval)], axis=1)
    # PyOD's own ECOD (empirical tails, plain quantile threshold): on raw sales it does better
    # than with this platform's bulk-fitted tails, so the baseline gets it.
    raw = score_detector("raw-sales ecod [y, dow] (PyOD tails, quantile threshold)",
                         AnomalyDetector("ecod", ("y", "dow"), far, calibration="quantile",
                                         tails="empirical"),
                         raw_fit, raw_eval)
    # Baseline: rolling z-score on raw sales.
    t0 = time.perf_counter()
    zs = rolling_zscore(raw_sales)
    zsec = time.perf_counter() - t0
    zscore = align(zs, "score")
    zres = evaluate("rolling z-score, raw sales, |z| > 3 (28 past days)", zscore,
                    np.nan_to_num(zscore) > 3, truth, events, types, zsec)
    # The reference: Pearson residual, threshold for 1 % false alarms on the fit window.
    pearson_fit = np.abs(fit_feats.rows["pearson"].to_numpy())
    thr = np.quantile(pearson_fit, 0.99)
    pear = np.abs(align(rows, "pearson"))
    pres = evaluate("reference |y - P50| / sqrt(P50), 1 % FAR on fit window", pear,
                    np.nan_to_num(pear) > thr, truth, events, types)
    # Sanity floor: random scores, flagging the same share as the main detector.
    rng = np.random.default_rng(args.seed)
    rand = rng.random(len(truth))
    rres = evaluate("random scores (same flagged share as the default)", rand,
                    rand > np.quantile(rand, 1 - main["flagged"] / len(truth)), truth, events,
                    types)
    baselines = [raw, zres, pres, rres]

    flagged = main["detector"].score(feats)["is_anomaly"].to_numpy()
    typed = rows[flagged].merge(key, on=["series_id", "ds"], how="left")
    typed = typed.rename(columns={"anomaly_type": "injected_type"})
    typed = pd.concat([typed, classify(typed)], axis=1)
    labelled = typed[typed["injected_type"].notna()]
    confusion = pd.crosstab(labelled["injected_type"].rename("injected"),
                            labelled["anomaly_type"].rename("classified"))
    type_match = float((labelled["injected_type"] == labelled["anomaly_type"]).mean()) \
        if len(labelled) else 0.0
    examples = typed.sort_values("z", key=np.abs, ascending=False).head(5)["reason"].tolist()

    return {
        "spec": spec, "timings": timings, "feature_seconds": feature_seconds,
        "results": results, "baselines": baselines, "main": main,
        "skipped": feats.skipped, "fit_skipped": fit_feats.skipped,
        "points": len(truth), "anomalous": int(truth.sum()),
        "events": int(pd.Series(events[truth]).nunique()),
        "fit_anomalous": int(labels["date"].lt(eval_start).sum()),
        "series": int(points["series_id"].nunique()), "fit_rows": len(fit_feats.rows),
        "type_match": type_match, "confusion": confusion, "examples": examples,
        "label_types": labels[labels["date"] >= eval_start].groupby("anomaly_type")[
            "event_id"].nunique().to_dict(),
        "label_points": labels.loc[labels["date"] >= eval_start, "anomaly_type"]
        .value_counts().to_dict(),
    }


def scenario(args) -> str:
    return "contaminated fit" if args.contaminate_fit else "clean fit"


def fmt_row(r: dict) -> str:
    return (f"| {r['method']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
            f"{r['auc_pr']:.3f} | {r['event_recall']:.3f} | {r['false_alarm_rate']:.4f} | "
            f"{r['false_alarms_per_1000']:.1f} |")


def report(args, r: dict) -> str:
    m = r["main"]
    t = r["timings"]
    header = ("| method | precision | recall | F1 | AUC-PR | event recall | false-alarm rate | "
              "false alarms / 1,000 series-days |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [
        f"## Anomaly benchmark ({r['spec'].name}, injected, {scenario(args)}), "
        f"{dt.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"- machine: {machine()}",
        f"- command: `{' '.join(['python', 'benchmarks/anomalies.py', *sys.argv[1:]])}`",
        f"- data: real {r['spec'].name}, {r['series']} series; evaluation window "
        f"{args.eval_start} .. {args.eval_end}: {r['points']:,} points, {r['anomalous']:,} "
        f"injected ({r['anomalous'] / r['points']:.2%}) in {r['events']:,} events "
        f"(events by type {r['label_types']}, points by type {r['label_points']}), seed "
        f"{args.seed}",
        f"- expected values: the platform's Forecaster, {t['origins']} rolling origins every "
        f"{args.step} days from {args.history_start}, each trained only on (injected) data up to "
        f"it; backtest {t['backtest_seconds']:.0f} s, feature SQL {t['feature_seconds']:.0f} s",
        f"- detector fit on {args.fit_start} .. the day before the evaluation window "
        f"({r['fit_rows']:,} rows, out-of-sample residuals, {r['fit_anomalous']:,} of them "
        "injected anomalies), day factors from each day's 500 series, target false-alarm rate "
        f"{args.target_far:.2%}; context features {r['feature_seconds']:.1f} s; skipped "
        f"{r['skipped']}",
        "",
        "Detector variants (PyOD ECOD/COPOD formulas with frozen training CDFs and exponential "
        "tails beyond the 5-95 % bulk, IForest random_state 0, ensemble = mean of the three tail "
        "scores; threshold extrapolated from the bulk of the training scores unless marked "
        "'calibration quantile'; 'tails empirical' = PyOD's empirical tails):",
        "",
        header,
        *(fmt_row(x) for x in r["results"]),
        "",
        "Baselines, same points, same run:",
        "",
        header,
        *(fmt_row(x) for x in r["baselines"]),
        "",
        f"Default ({m['method']}): recall by injected type "
        f"{ {k: round(v, 3) for k, v in m['recall_by_type'].items()} }; scoring "
        f"{m['score_seconds']:.2f} s for {r['points']:,} points; flagged labelled points typed "
        f"as injected: {r['type_match']:.1%}.",
        "",
        "Example reasons (largest |z| flagged): " + "; ".join(f"\"{e}\"" for e in r["examples"]),
        "",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="store_item")
    parser.add_argument("--data-dir", default=default_source_dir("store_item_demand"))
    parser.add_argument("--eval-start", type=dt.date.fromisoformat, default=dt.date(2017, 7, 1))
    parser.add_argument("--eval-end", type=dt.date.fromisoformat, default=dt.date(2017, 12, 31))
    parser.add_argument("--fit-start", type=dt.date.fromisoformat, default=dt.date(2017, 1, 1))
    parser.add_argument("--history-start", type=dt.date.fromisoformat,
                        default=dt.date(2016, 7, 1), help="first day with a forecast")
    parser.add_argument("--step", type=int, default=91,
                        help="days between origins (at most the features' lag, 91 for store_item;"
                             " each origin costs ~40 s of training on 2 shared cores)")
    parser.add_argument("--share", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-far", type=float, default=0.002)
    parser.add_argument("--series", type=int, default=0, help="first N series only (0 = all)")
    parser.add_argument("--cache", default="", help="pickle of the backtest to reuse")
    parser.add_argument("--contaminate-fit", action="store_true",
                        help="inject (same share) into the fitting window too, not only the "
                             "evaluation window")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)
    r = run(args)
    text = report(args, r)
    print(text)
    print(r["confusion"].to_string())
    if not args.no_append:
        append_section(text)
    m = r["main"]
    print(json.dumps({
        "scenario": scenario(args),
        "anomaly_share": round(r["anomalous"] / r["points"], 4),
        "f1": round(m["f1"], 4), "auc_pr": round(m["auc_pr"], 4),
        "event_recall": round(m["event_recall"], 4),
        "false_alarm_rate": round(m["false_alarm_rate"], 5),
        "f1_zscore": round(r["baselines"][1]["f1"], 4),
        "f1_raw_pyod": round(r["baselines"][0]["f1"], 4),
        "f1_random": round(r["baselines"][3]["f1"], 4),
        "score_seconds": round(m["score_seconds"], 3),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
