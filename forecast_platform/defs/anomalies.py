"""expected_sales, anomaly_model and sales_anomalies: which series-days behaved strangely, and why.

Expected values are out-of-sample forecasts (see anomalies/expected.py); for days after the last
refit, the champion's forward forecasts (the forecasts table) serve, always made before the day.
"""

import datetime as dt
import json
from collections.abc import Iterator

import dagster as dg
import mlflow
import pandas as pd

from forecast_platform.anomalies.checks import (
    MAX_DAILY_RATE,
    anomaly_rate,
    detector_matches_forecaster,
)
from forecast_platform.anomalies.context import day_factors_of
from forecast_platform.anomalies.detector import AnomalyDetector, anomaly_model_name
from forecast_platform.anomalies.expected import (
    EXPECTED,
    day_factor_inputs,
    expected_origins,
    expected_with_actuals,
    feature_columns,
)
from forecast_platform.anomalies.fitting import (
    expected_from_recipe,
    fit_detector,
    fit_window_start,
)
from forecast_platform.anomalies.labels import label_scores, labelled_series, labels_between
from forecast_platform.anomalies.scoring import BlockTally, history_start, score_range
from forecast_platform.datasets.registry import LABELS_FILE
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.dask_cluster import DaskCluster
from forecast_platform.defs.metadata import OWNERS_FORECASTING, check_result, preview
from forecast_platform.defs.partitions import date_range, partitions_for
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.forecast import model_name
from forecast_platform.forecasting.forecaster import Forecaster, ForecasterParams
from forecast_platform.forecasting.sample import sample_series
from forecast_platform.forecasting.training import DEFAULT_MAX_TRAIN_ROWS
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.blocks import DEFAULT_BLOCK_ROWS, series_blocks
from forecast_platform.warehouse.staging import staging
from forecast_platform.warehouse.store import quote, replace_range, table_exists
from forecast_platform.warehouse.tables import ANOMALIES, FEATURES, FORECASTS, VALIDATED


class ExpectedConfig(dg.Config):
    # Most feature rows one refit reads (a stated sample of whole series beyond them,
    # forecasting/sample.py), and about how many rows of every series are forecast at once.
    max_train_rows: int = DEFAULT_MAX_TRAIN_ROWS
    block_rows: int = DEFAULT_BLOCK_ROWS


class AnomalyConfig(dg.Config):
    # The detector's fitting window, in periods of the data: 182 days for daily data, every
    # scorable week (up to 182) for weekly data, whose 26 weeks of half a year would leave too
    # few rows per series to calibrate a 0.2 % false-alarm threshold on.
    fit_periods: int = 182
    target_false_alarm_rate: float = 0.002
    detector: str = "ecod"
    # Most rows of the fitting window the detector learns from: beyond them, a stated sample
    # of whole series (forecasting/sample.py); the days' factors still come from every series.
    max_fit_rows: int = 1_000_000


class ScoringConfig(dg.Config):
    # About how many rows (scored days and their history) of whole series are scored at once.
    block_rows: int = DEFAULT_BLOCK_ROWS


def synthetic_labels(platform: PlatformResource, spec: DatasetSpec) -> pd.DataFrame | None:
    """The generator's ground truth, when the landed data came from it."""
    path = platform.landing_dir / LABELS_FILE
    if not path.is_file():
        return None
    return labelled_series(pd.read_csv(path), spec)


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
    def expected_sales(context: dg.AssetExecutionContext, config: ExpectedConfig,
                       platform: PlatformResource, dask_cluster: dg.ResourceParam[DaskCluster]):
        level = quote(ForecasterParams.scale_feature)
        with platform.connect(log=context.log.warning) as con:
            champion = registry.champion(con, forecaster_name)
            if champion is None:
                raise ValueError(f"no champion {forecaster_name}: expected values use its recipe")
            recipe = Forecaster.from_bytes(champion.model_bytes)
            first_usable, last = con.execute(
                f"SELECT min(ds) FILTER (WHERE {level} > 0), max(ds) FROM {FEATURES}"
            ).fetchall()[0]
            if first_usable is None:
                raise ValueError("no feature rows with a usable level (norm): the history is "
                                 "too short for out-of-sample expected values")
            origins = expected_origins(first_usable, last, recipe.horizon, spec.step_days)
            # The fits learn from a stated sample of whole series past max_train_rows; every
            # series is forecast, a block of series at a time.
            sample = sample_series(con, FEATURES, f"y IS NOT NULL AND {level} > 0", [],
                                   config.max_train_rows)
            kept, params = sample.where()
            columns = feature_columns(con, recipe)
            # A daily fit learns from rows with a target and a level only (Forecaster.fit);
            # a weekly one reads its panel from every row.
            usable = "" if columns == "*" else f" AND y IS NOT NULL AND {level} > 0"
            train = con.execute(f"SELECT {columns} FROM {FEATURES} WHERE {kept}{usable} "
                                "ORDER BY ds", params).df()
            recent = last - dt.timedelta(days=recipe.horizon * spec.step_days)
            blocks = series_blocks(con, FEATURES, "ds > ?", [recent], config.block_rows)
        context.log.info(f"expected values from {len(origins)} refits on {sample.describe()}; "
                         f"forecasting every series in {len(blocks)} blocks")

        def targets(first: dt.date, last: dt.date) -> Iterator[pd.DataFrame]:
            for block in blocks:
                within, params = block.where()
                with platform.connect(log=context.log.warning) as con:
                    rows = con.execute(f"SELECT {columns} FROM {FEATURES} WHERE ds BETWEEN "
                                       f"? AND ? AND {within}", [first, last, *params]).df()
                yield rows

        covered: list[pd.Timestamp] = []
        # The refits train where the forecaster trains (local, or the settings' Dask cluster):
        # they are as many fits as the forecaster's backtest.
        with staging(platform.settings.staging_dir, EXPECTED) as stage, \
                dask_cluster.engine(context.log) as engine:
            for part in expected_from_recipe(train, recipe, origins, spec.step_days,
                                             champion.version, targets, engine):
                stage.add(part)
                covered += [part["ds"].min(), part["ds"].max()]
            del train
            with platform.connect(log=context.log.warning) as con:
                con.execute(f"CREATE OR REPLACE TABLE {EXPECTED} AS SELECT series_id, "
                            "CAST(ds AS DATE) AS ds, CAST(origin AS DATE) AS origin, p10, p50, "
                            f"p90, forecaster_version FROM ({stage.select()})")
            rows = stage.rows
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows,
            "origins": ", ".join(str(o) for o in origins),
            "covered": f"{min(covered).date()} .. {max(covered).date()}",
            "forecaster_version": champion.version,
            "training_sample": sample.describe(),
            "training_engine": dask_cluster.description,
            "series_blocks": len(blocks),
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
        with platform.connect(log=context.log.warning) as con:
            champion = registry.champion(con, forecaster_name)
            first, last = con.execute(f"SELECT min(ds), max(ds) FROM {EXPECTED}").fetchone()
            if last is None:
                raise ValueError("expected_sales is empty: nothing to fit a detector on")
            fit_start = fit_window_start(first, last, config.fit_periods, spec.step_days)
            read_from = history_start(spec, fit_start)
            factors = day_factors_of(day_factor_inputs(con, spec, read_from, last))
            sample = sample_series(con, EXPECTED, "ds BETWEEN ? AND ?", [fit_start, last],
                                   config.max_fit_rows)
            frame = expected_with_actuals(con, spec, read_from, last, sample)
            expected_version = con.execute(
                f"SELECT max(forecaster_version) FROM {EXPECTED}").fetchall()[0][0]
        context.log.info(f"fitting the detector on {sample.describe()}")
        detector, features = fit_detector(frame, spec, fit_start, last, config.detector,
                                          config.target_false_alarm_rate, expected_version,
                                          factors, {"fit_sample": sample.describe()})
        tracker = context.resources.mlflow
        tracker.log_params({"anomaly.detector": config.detector,
                            "anomaly.target_false_alarm_rate": config.target_false_alarm_rate,
                            "anomaly.fit_window": f"{fit_start} .. {last}"})
        mlflow.log_dict(detector.metadata, "anomaly_detector.json")
        run = mlflow.active_run()
        with platform.connect(log=context.log.warning) as con:
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
            "detector_version": version, "detector": config.detector,
            "threshold": float(detector.metadata.get("threshold", 0.0)),
            "fit_window": f"{fit_start} .. {last}", "fit_rows": len(features.rows),
            "fit_sample": sample.describe(),
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
    def sales_anomalies(context: dg.AssetExecutionContext, config: ScoringConfig,
                        platform: PlatformResource):
        start, end = date_range(context)
        read_from = history_start(spec, start)
        truth = synthetic_labels(platform, spec)
        window = labels_between(truth, start, end) if truth is not None else None
        with platform.connect(log=context.log.warning) as con:
            record = registry.champion(con, detector_name)
            if record is None:
                raise ValueError(f"no {detector_name} in model_registry: materialize "
                                 "anomaly_model first")
            forecaster = registry.champion(con, forecaster_name)
            # A day's factor is of every series' cross-section; the rows are scored a block of
            # series at a time with those factors, as if all at once (anomalies/scoring.py).
            factors = day_factors_of(day_factor_inputs(con, spec, read_from, end))
            date = quote(spec.date_column)
            blocks = series_blocks(con, VALIDATED, f"{date} BETWEEN ? AND ?", [read_from, end],
                                   config.block_rows)
        detector = AnomalyDetector.from_bytes(record.model_bytes)
        tally = BlockTally(keep=window)
        with staging(platform.settings.staging_dir, ANOMALIES) as stage:
            for block in blocks:
                with platform.connect(log=context.log.warning) as con:
                    frame = expected_with_actuals(con, spec, read_from, end, block)
                part = score_range(frame, spec, start, detector, record.version, factors)
                stage.add(part.rows.astype({"anomaly_type": "string", "reason": "string"}))
                tally.add(part)
            scored = tally.result()
            if scored.problem:
                context.log.warning(scored.messages[-1])
            with platform.connect(log=context.log.warning) as con:
                if table_exists(con, ANOMALIES):  # tables written before the day factors
                    for column in ("forecast_p50", "day_factor"):
                        con.execute(f"ALTER TABLE {ANOMALIES} ADD COLUMN IF NOT EXISTS "
                                    f"{column} DOUBLE")
                n = replace_range(con, ANOMALIES, "ds", start, end,
                                  f"SELECT CAST(ds AS DATE) AS ds, * EXCLUDE (ds) "
                                  f"FROM ({stage.select()})")
        out = scored.rows
        rate = anomaly_rate(scored)
        flagged = out[out["is_anomaly"]]
        metadata = {
            "dagster/row_count": n, "flagged": len(flagged), "series_blocks": len(blocks),
            "by_type": json.dumps(flagged["anomaly_type"].value_counts().to_dict()),
            "skipped": json.dumps(scored.skipped),
            "common_shift_days": rate.figures["common_shift_days"],
            "top_anomalies": preview(flagged.nlargest(10, "score")[
                ["ds", "series_id", "y", "p50", "p90", "anomaly_type", "reason"]], rows=10),
        }
        if scored.messages:
            metadata["skipped_why"] = "; ".join(scored.messages)
        if window is not None:
            metadata.update({f"vs_labels_{k}": v for k, v in label_scores(out, window).items()})
        yield dg.MaterializeResult(metadata=metadata)
        yield check_result(ANOMALIES, "anomaly_rate", rate, dg.AssetCheckSeverity.WARN)
        yield check_result(ANOMALIES, "detector_matches_forecaster", detector_matches_forecaster(
            detector, record.version, forecaster.version if forecaster else None, scored,
        ), dg.AssetCheckSeverity.WARN)

    return [expected_sales, anomaly_model, sales_anomalies]
