"""expected_sales, anomaly_model and sales_anomalies: which series-days behaved strangely, and why.

Expected values are out-of-sample forecasts (see anomalies/expected.py); for days after the last
refit, the champion's forward forecasts (the forecasts table) serve, always made before the day.
"""

import datetime as dt
import json

import dagster as dg
import mlflow
import pandas as pd

from forecast_platform.anomalies.detector import (
    AnomalyDetector,
    anomaly_model_name,
    classify,
    context_features,
    with_day_factors,
)
from forecast_platform.anomalies.expected import (
    EXPECTED,
    context_days,
    expected_values,
    expected_with_actuals,
)
from forecast_platform.datasets.registry import LABELS_FILE
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.forecasting import model_name
from forecast_platform.defs.metadata import OWNERS_FORECASTING, check_result, preview
from forecast_platform.defs.partitions import date_range, partitions_for
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.features.offline import FEATURES
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.forecaster import Forecaster
from forecast_platform.ingestion.checks import Outcome
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.store import connect, registered, replace_range, table_exists
from forecast_platform.warehouse.tables import ANOMALIES, FORECASTS, VALIDATED

MAX_DAILY_RATE = 0.05  # above this share of series flagged on one day: a data problem
# A day whose series ALL sit this far from expectation (day factor outside the band) is a
# closure, an outage or a forecaster miss: absorbed by the day factor, reported by the check.
DAY_FACTOR_BAND = (0.8, 1.25)
OUTPUT_COLUMNS = ["ds", "series_id", "y", "p10", "p50", "p90", "forecast_p50", "day_factor",
                  "score", "is_anomaly", "anomaly_type", "reason", "detector_version"]


class AnomalyConfig(dg.Config):
    # The detector's fitting window, in periods of the data: 182 days for daily data, every
    # scorable week (up to 182) for weekly data, whose 26 weeks of half a year would leave too
    # few rows per series to calibrate a 0.2 % false-alarm threshold on.
    fit_periods: int = 182
    target_false_alarm_rate: float = 0.002
    detector: str = "ecod"


def score_context(frame: pd.DataFrame, spec: DatasetSpec, start: dt.date):
    """``context_features`` of ``frame`` (with the day factors) from ``start`` on, in the spec's
    periods: the one call the detector's fit, the scoring asset and the serving parity share."""
    return context_features(with_day_factors(frame), start=pd.Timestamp(start),
                            step_days=spec.step_days)


def label_scores(scored: pd.DataFrame, labels: pd.DataFrame) -> dict[str, float]:
    """Point precision/recall/F1 and event recall against ground-truth labels on scored rows."""
    truth = labels.assign(ds=pd.to_datetime(labels["ds"]))[["series_id", "ds", "event_id"]]
    rows = scored[["series_id", "ds", "is_anomaly"]].assign(ds=lambda f: pd.to_datetime(f["ds"]))
    rows = rows.merge(truth, on=["series_id", "ds"], how="left")
    actual = rows["event_id"].notna()
    flagged = rows["is_anomaly"].astype(bool)
    tp = int((actual & flagged).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(actual.sum()), 1)
    events = rows[actual].groupby("event_id")["is_anomaly"].any()
    return {
        "precision": round(precision, 4), "recall": round(recall, 4),
        "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
        "event_recall": round(float(events.mean()) if len(events) else 0.0, 4),
        "labelled_points": int(actual.sum()), "flagged_points": int(flagged.sum()),
    }


def synthetic_labels(platform: PlatformResource, spec: DatasetSpec) -> pd.DataFrame | None:
    """The generator's ground truth, when the landed data came from it."""
    path = platform.landing_dir / LABELS_FILE
    if not path.is_file():
        return None
    labels = pd.read_csv(path)
    keys = [labels[k].astype(str) for k in spec.keys]
    series = keys[0].str.cat(keys[1:], sep="|") if len(keys) > 1 else keys[0]
    return labels.assign(series_id=series, ds=labels["date"])


def build_anomaly_assets(spec: DatasetSpec) -> list:
    partitions = partitions_for(spec)
    forecaster_name = model_name(spec)
    detector_name = anomaly_model_name(spec)

    @dg.asset(
        name=EXPECTED,
        deps=[tables.FORECASTER, FEATURES],
        group_name="anomalies",
        kinds={"xgboost", "duckdb"},
        owners=OWNERS_FORECASTING,
        pool="duckdb",
        description=(
            "Out-of-sample P10/P50/P90 for every historical series-day: the champion's recipe "
            "refit at origins one horizon apart, each forecasting the horizon after it. What "
            "residuals are measured against: an in-sample fit would have learned the anomaly."
        ),
    )
    def expected_sales(context: dg.AssetExecutionContext, platform: PlatformResource):
        with connect(platform.warehouse_path) as con:
            champion = registry.champion(con, forecaster_name)
            if champion is None:
                raise ValueError(f"no champion {forecaster_name}: expected values use its recipe")
            frame = con.execute(f"SELECT * FROM {FEATURES} ORDER BY ds").df()
        recipe = Forecaster.from_bytes(champion.model_bytes)

        def make_model() -> Forecaster:
            return Forecaster(recipe.params, recipe.features, recipe.horizon)

        expected, origins = expected_values(frame, make_model, recipe.horizon, spec.step_days)
        expected = expected.assign(forecaster_version=champion.version)
        with connect(platform.warehouse_path) as con, registered(con, "_expected", expected):
            con.execute(f"CREATE OR REPLACE TABLE {EXPECTED} AS SELECT series_id, "
                        "CAST(ds AS DATE) AS ds, CAST(origin AS DATE) AS origin, p10, p50, p90, "
                        "forecaster_version FROM _expected")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(expected),
            "origins": ", ".join(str(o) for o in origins),
            "covered": f"{expected['ds'].min().date()} .. {expected['ds'].max().date()}",
            "forecaster_version": champion.version,
        })

    @dg.asset(
        name=tables.ANOMALY_MODEL,
        deps=[EXPECTED, VALIDATED],
        group_name="anomalies",
        kinds={"pyod", "mlflow", "duckdb"},
        owners=OWNERS_FORECASTING,
        required_resource_keys={"mlflow", "platform"},
        pool="duckdb",
        description=(
            "PyOD detector over context features of out-of-sample residuals (robust per-series "
            "z, same-sign run statistic, zero against a non-zero expectation; expectations "
            "first scaled by the day's factor common to all series), its threshold calibrated "
            "to a target false-alarm rate on the fitting window, robustly to a few per cent of "
            "anomalies in it (bulk-fitted tails). A versioned row of model_registry, tracked in "
            "MLflow."
        ),
        check_specs=[dg.AssetCheckSpec(
            "matches_forecaster", asset=tables.ANOMALY_MODEL, blocking=True,
            description="The detector was built on the current champion forecaster's residuals.",
        )],
    )
    def anomaly_model(context: dg.AssetExecutionContext, config: AnomalyConfig):
        platform: PlatformResource = context.resources.platform
        with connect(platform.warehouse_path) as con:
            champion = registry.champion(con, forecaster_name)
            first, last = con.execute(f"SELECT min(ds), max(ds) FROM {EXPECTED}").fetchone()
            if last is None:
                raise ValueError("expected_sales is empty: nothing to fit a detector on")
            if config.fit_periods < 1:
                raise ValueError(f"fit_periods must be at least 1, got {config.fit_periods}")
            # No earlier than the first expected value: a weekly history is often shorter than
            # fit_periods, and rows before it could only be skipped (no expectation).
            fit_start = max(first, last - dt.timedelta(
                days=(config.fit_periods - 1) * spec.step_days))
            frame = expected_with_actuals(
                con, spec, fit_start - dt.timedelta(days=context_days(spec)), last)
            expected_version = con.execute(
                f"SELECT max(forecaster_version) FROM {EXPECTED}").fetchone()[0]
        features = score_context(frame, spec, fit_start)
        detector = AnomalyDetector(kind=config.detector,
                                   target_false_alarm_rate=config.target_false_alarm_rate)
        detector.fit(features, info={"forecaster_version": int(expected_version),
                                     "fit_window": f"{fit_start} .. {last}"})
        tracker = context.resources.mlflow
        tracker.log_params({"anomaly.detector": config.detector,
                            "anomaly.target_false_alarm_rate": config.target_false_alarm_rate,
                            "anomaly.fit_window": f"{fit_start} .. {last}"})
        mlflow.log_dict(detector.metadata, "anomaly_detector.json")
        run = mlflow.active_run()
        with connect(platform.warehouse_path) as con:
            version = registry.register(
                con, model_name=detector_name, horizon=0, train_start=fit_start, train_end=last,
                features=list(detector.metadata.get("features", [])),
                params={"kind": config.detector,
                        "target_false_alarm_rate": config.target_false_alarm_rate},
                metrics={"threshold": detector.metadata.get("threshold"),
                         "rows": len(features.rows), "skipped": features.skipped},
                model_bytes=detector.to_bytes(), mlflow_run_id=run.info.run_id if run else None,
                dagster_run_id=context.run_id, trigger=context.run.tags.get("trigger", "manual"),
            )
            registry.decide(con, detector_name, version, True,
                            {"reasons": ["a refit detector replaces the previous one"]})
        matches = champion is not None and int(expected_version) == champion.version
        yield dg.MaterializeResult(metadata={
            "model_version": version, "detector": config.detector,
            "threshold": float(detector.metadata.get("threshold", 0.0)),
            "fit_window": f"{fit_start} .. {last}", "fit_rows": len(features.rows),
            "skipped": json.dumps(features.skipped),
            "calibration": json.dumps(detector.metadata.get("calibration", {})),
            "training_flagged_share": float(detector.metadata.get("training_flagged_share", 0)),
            "forecaster_version": int(expected_version),
        })
        yield dg.AssetCheckResult(
            check_name="matches_forecaster", passed=bool(matches),
            description=(f"built on forecaster v{expected_version}, champion is "
                         f"v{champion.version if champion else 'none'}"),
        )

    @dg.asset(
        name=ANOMALIES,
        deps=[tables.ANOMALY_MODEL, EXPECTED, FORECASTS, VALIDATED],
        group_name="anomalies",
        kinds={"pyod", "duckdb"},
        owners=OWNERS_FORECASTING,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        description=(
            "Every scorable series-day: score, anomaly flag, expected value and interval (the "
            "forecast times the day's common factor; forecast_p50 and day_factor alongside), "
            "and for flagged points a type (spike, dip, level_shift, zero_run) and a one-line "
            "reason. Rows that cannot be scored are skipped and counted by reason."
        ),
        check_specs=[
            dg.AssetCheckSpec("anomaly_rate", asset=ANOMALIES, description=(
                f"No day flags more than {MAX_DAILY_RATE:.0%} of its series: a burst across "
                "many series is a data problem, not hundreds of anomalies.")),
            dg.AssetCheckSpec("detector_matches_forecaster", asset=ANOMALIES, description=(
                "The detector in use was built on the current champion forecaster and on the "
                "current context features (else the day's rows are skipped, not scored).")),
        ],
    )
    def sales_anomalies(context: dg.AssetExecutionContext, platform: PlatformResource):
        start, end = date_range(context)
        with connect(platform.warehouse_path) as con:
            record = registry.champion(con, detector_name)
            if record is None:
                raise ValueError(f"no {detector_name} in model_registry: materialize "
                                 "anomaly_model first")
            forecaster = registry.champion(con, forecaster_name)
            frame = expected_with_actuals(con, spec, start - dt.timedelta(days=context_days(spec)),
                                          end)
        detector = AnomalyDetector.from_bytes(record.model_bytes)
        features = score_context(frame, spec, start)
        rows = features.rows
        skipped = {**features.skipped, "detector_mismatch": 0}
        messages = features.messages
        problem = detector.incompatibility(features)
        if problem:
            # Not scored rather than scored wrongly; the range's old rows go too (they came
            # from a detector that no longer matches either).
            skipped["detector_mismatch"] = len(rows)
            messages = [*messages, f"{len(rows)} rows skipped: detector v{record.version} "
                        f"cannot score them: {problem}"]
            context.log.warning(messages[-1])
            rows = rows.iloc[:0]
            result = pd.DataFrame({"score": pd.Series(dtype=float),
                                   "is_anomaly": pd.Series(dtype=bool)})
        else:
            result = detector.score(features)
        scored = pd.concat([rows.reset_index(drop=True), result.reset_index(drop=True)], axis=1)
        # Types and reasons only for flagged rows: classify is per row, and most rows are clean.
        flagged_rows = scored[scored["is_anomaly"].to_numpy(dtype=bool)]
        labels = classify(flagged_rows, spec.step_days)
        scored = scored.assign(anomaly_type=labels["anomaly_type"], reason=labels["reason"],
                               detector_version=record.version)
        out = scored[OUTPUT_COLUMNS].astype({"is_anomaly": bool})
        with connect(platform.warehouse_path) as con, registered(con, "_scored", out):
            if table_exists(con, ANOMALIES):  # tables written before the day factors
                for column in ("forecast_p50", "day_factor"):
                    con.execute(f"ALTER TABLE {ANOMALIES} ADD COLUMN IF NOT EXISTS "
                                f"{column} DOUBLE")
            n = replace_range(con, ANOMALIES, "ds", start, end,
                              "SELECT CAST(ds AS DATE) AS ds, * EXCLUDE (ds) FROM _scored")
        flagged = out[out["is_anomaly"]]
        per_day = out.groupby("ds")["is_anomaly"].mean()
        bursts = per_day[per_day > MAX_DAILY_RATE]
        factors = out.groupby("ds")["day_factor"].first()
        shifted = factors[(factors < DAY_FACTOR_BAND[0]) | (factors > DAY_FACTOR_BAND[1])]
        metadata = {
            "dagster/row_count": n, "flagged": len(flagged),
            "by_type": json.dumps(flagged["anomaly_type"].value_counts().to_dict()),
            "skipped": json.dumps(skipped),
            "common_shift_days": len(shifted),
            "top_anomalies": preview(flagged.nlargest(10, "score")[
                ["ds", "series_id", "y", "p50", "p90", "anomaly_type", "reason"]], rows=10),
        }
        if messages:
            metadata["skipped_why"] = "; ".join(messages)
        truth = synthetic_labels(platform, spec)
        if truth is not None:
            window = truth[(pd.to_datetime(truth["ds"]) >= pd.Timestamp(start))
                           & (pd.to_datetime(truth["ds"]) <= pd.Timestamp(end))]
            metadata.update({f"vs_labels_{k}": v for k, v in label_scores(out, window).items()})
        yield dg.MaterializeResult(metadata=metadata)
        burst_rows = pd.concat([
            bursts.rename("value").reset_index().assign(what="share of series flagged"),
            shifted.rename("value").reset_index().assign(what="day factor (all series)"),
        ]).head(10)
        problems = []
        if len(bursts):
            problems.append(f"{len(bursts)} days flag more than {MAX_DAILY_RATE:.0%} of their "
                            "series")
        if len(shifted):
            problems.append(
                f"{len(shifted)} days have ALL series at a common factor outside "
                f"{DAY_FACTOR_BAND[0]}-{DAY_FACTOR_BAND[1]} x their expectation (closure, "
                f"outage or a forecaster miss; e.g. {shifted.index[0]} at "
                f"{shifted.iloc[0]:.2f}x), absorbed before scoring")
        yield check_result(ANOMALIES, "anomaly_rate", Outcome(
            not problems,
            "no burst of anomalies, no day shifted as a whole" if not problems else
            "; ".join(problems) + ": check the data of those days before trusting the anomalies",
            {"days_over_limit": len(bursts), "max_daily_share": round(float(per_day.max()), 4)
             if len(per_day) else 0.0, "common_shift_days": len(shifted),
             "rows_skipped": int(sum(skipped.values()))},
            burst_rows if problems else None,
        ), dg.AssetCheckSeverity.WARN)
        built_on = detector.metadata.get("forecaster_version")
        current = forecaster.version if forecaster else None
        yield check_result(ANOMALIES, "detector_matches_forecaster", Outcome(
            built_on == current and not problem,
            f"detector v{record.version} built on forecaster v{built_on}; champion v{current}"
            + (f"; {skipped['detector_mismatch']} rows not scored: {problem}" if problem else ""),
            {"rows_not_scored": skipped["detector_mismatch"]},
        ), dg.AssetCheckSeverity.WARN)

    return [expected_sales, anomaly_model, sales_anomalies]
