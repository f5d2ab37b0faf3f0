"""forecaster and forecasts: train, backtest, track, gate; then forecast with the champion.

Thin wiring around ``forecast_platform.forecasting``: open the warehouse, call the core
(``training``, ``forecast``), log to MLflow, and turn the outcome into metadata and the
champion gate's check result.
"""

import datetime as dt
import json

import dagster as dg
import mlflow

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.dask_cluster import DaskCluster
from forecast_platform.defs.metadata import OWNERS_FORECASTING, preview
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.defs.tracking import register_model_version
from forecast_platform.features.sql import plan_features
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.backtest import relative_gain
from forecast_platform.forecasting.backtest_store import save_backtest
from forecast_platform.forecasting.forecast import (
    FORECAST_BATCH_ROWS,
    build_forecast,
    champion_at_origin,
    future_query,
    model_name,
)
from forecast_platform.forecasting.forecaster import (
    ForecasterParams,
    default_model_features,
    narrow_features,
)
from forecast_platform.forecasting.report import importance_figure, plt
from forecast_platform.forecasting.training import (
    DEFAULT_MAX_TRAIN_ROWS,
    anchored_info,
    judge,
    load_training_frame,
    render_report,
    train,
)
from forecast_platform.planning.store import plan_rows, usage
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.staging import staging
from forecast_platform.warehouse.store import (
    copy_to_parquet,
    parquet_frames,
    replace_range,
    table_exists,
)
from forecast_platform.warehouse.tables import (
    COVARIATE_PLAN,
    EXPLANATIONS,
    FEATURES,
    FORECASTS,
)


class ForecasterConfig(dg.Config):
    """Training settings, editable per run in the Launchpad."""

    train_periods: int = 730
    backtest_origins: int = 3
    # Periods between two backtest origins; None: 28 days' worth (28 daily periods, 4 weeks).
    # Weekly data rarely has the history for origins a season apart: the weekly norm needs
    # more than a year before its first usable row.
    origin_spacing: int | None = None
    gate_margin: float = 0.0
    n_estimators: int = ForecasterParams.n_estimators
    learning_rate: float = ForecasterParams.learning_rate
    max_depth: int = ForecasterParams.max_depth
    # Most feature rows one fit reads: beyond them, a stated sample of whole series
    # (forecasting/sample.py) keeps memory and time bounded at any number of series.
    max_train_rows: int = DEFAULT_MAX_TRAIN_ROWS


class ForecastsConfig(dg.Config):
    """How many future rows are predicted and explained at a time (rounded to DuckDB's
    2,048-row vectors): memory against per-batch overhead; the result is the same."""

    batch_rows: int = FORECAST_BATCH_ROWS


def build_forecasting_assets(spec: DatasetSpec) -> list:
    plan = plan_features(spec)
    name = model_name(spec)
    features = default_model_features(plan.names, spec.frequency, spec.trained_covariates)

    @dg.asset(
        name=tables.FORECASTER,
        deps=[FEATURES],
        group_name="forecasting",
        kinds={"xgboost", "mlflow", "duckdb"},
        owners=OWNERS_FORECASTING,
        required_resource_keys={"mlflow", "platform", "dask_cluster"},
        pool="duckdb",
        description=(
            "One global XGBoost model over every series (P10/P50/P90), backtested from rolling "
            "origins against seasonal-naive, moving-average and weekday-mean baselines on the "
            "same points, tracked in MLflow, stored as a versioned row of model_registry. The "
            "blocking champion_gate promotes it only if it beats every baseline and the champion "
            "(a retrain of the champion's own recipe on newer data needs only the baselines)."
        ),
        check_specs=[dg.AssetCheckSpec(
            "champion_gate", asset=tables.FORECASTER, blocking=True,
            description="The new model beats every baseline and the champion on the same "
                        "backtest: a changed recipe against the champion's recipe refit at the "
                        "same origins; a retrain of the champion's recipe on newer data against "
                        "the baselines.",
        )],
    )
    def forecaster(context: dg.AssetExecutionContext, config: ForecasterConfig):
        platform: PlatformResource = context.resources.platform
        tracker = context.resources.mlflow
        params = ForecasterParams(n_estimators=config.n_estimators,
                                  learning_rate=config.learning_rate, max_depth=config.max_depth)
        with platform.connect(log=context.log.warning) as con:
            frame, start, end, sample = load_training_frame(
                con, spec, config.train_periods, config.max_train_rows,
                as_float32=narrow_features(features, params))
            champion_row = registry.champion(con, name)
        context.log.info(f"training on {sample.describe()}")
        # Local, or xgboost.dask on the settings' cluster (fed Parquet, never the warehouse),
        # open only for the fits: a failed fit raises here, before anything is logged or
        # registered, so no partial model ever becomes a registry row.
        cluster: DaskCluster = context.resources.dask_cluster
        with cluster.engine(context.log) as engine:
            run = train(frame, start, end, spec, plan.horizon, features, params,
                        backtest_origins=config.backtest_origins,
                        origin_spacing=config.origin_spacing, champion_row=champion_row,
                        log=context.log, engine=engine)
        model, backtest, overall, metric = run.model, run.backtest, run.overall, spec.metric

        # -- MLflow: params, data window, metrics per origin, artifacts, model version ---------
        tracker.log_params({**run.tracking_params(spec.name),
                            "training_engine": cluster.description,
                            "train_series_share": round(sample.share, 6)})
        for metrics in run.tracking_metrics():
            tracker.log_metrics(metrics)
        tracker.log_metric("model.coverage_p10_p90", float(overall["coverage"]))
        tracker.log_metric("train_seconds", model.train_seconds)
        mlflow.log_text(backtest.metrics.to_csv(index=False), "backtest_metrics.csv")
        figure = importance_figure(model.importance())
        mlflow.log_figure(figure, "feature_importance.png")
        plt.close(figure)
        info = mlflow.xgboost.log_model(model.booster, name=tables.FORECASTER,
                                        model_format="ubj")
        run_id = mlflow.active_run().info.run_id
        mlflow_version = register_model_version(name, info, run_id)
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(name, "challenger", mlflow_version)

        # -- registry + gate --------------------------------------------------------------------
        trigger = context.run.tags.get("trigger", "manual")
        with platform.connect(log=context.log.warning) as con:
            version = registry.register(
                con, model_name=name, horizon=plan.horizon, train_start=start, train_end=end,
                features=model.features, params=params.__dict__,
                metrics={m: backtest.overall(m) for m in backtest.methods},
                model_bytes=model.to_bytes(), mlflow_run_id=run_id,
                mlflow_model_version=mlflow_version, dagster_run_id=context.run_id,
                trigger=trigger,
            )
            verdict = judge(run, frame, metric, config.gate_margin, champion_row)
            registry.decide(con, name, version, verdict.passed, verdict.as_dict())
            # The points, for the dashboard's accuracy by horizon and key and its safety stock.
            save_backtest(con, version, backtest.predictions, spec.step_days)
        if verdict.passed:
            client.set_registered_model_alias(name, "champion", mlflow_version)
        tracker.set_tags({"gate": "promoted" if verdict.passed else "rejected",
                          "forecaster_version": str(version), "trigger": trigger})
        mlflow.log_dict(verdict.as_dict(), "gate.json")

        # -- report -------------------------------------------------------------------------------
        report_path = platform.settings.reports_dir / f"forecaster_v{version}.html"
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(render_report(run, title=f"{name} v{version}", dataset=spec.name,
                                             metric=metric, verdict=verdict, run_id=run_id,
                                             trigger=trigger))
        mlflow.log_artifact(str(report_path))

        table = run.overall_table()
        yield dg.MaterializeResult(metadata={
            "forecaster_version": version,
            "status": "champion" if verdict.passed else "rejected challenger",
            "mlflow_run_id": run_id,
            "mlflow_model_version": mlflow_version,
            "train_window": f"{start} .. {end}",
            "train_rows": model.train_rows,
            "training_sample": sample.describe(),
            "train_seconds": round(model.train_seconds, 2),
            "training_engine": cluster.description,
            **anchored_info(model),
            "backtest_train_seconds": round(backtest.train_seconds, 2),
            f"backtest_{metric}": round(overall[metric], 4),
            "coverage_p10_p90": round(overall["coverage"], 4),
            "gain_vs_baselines": json.dumps(relative_gain(backtest, metric)),
            "backtest": preview(table.round(4), rows=len(table)),
            "report": dg.MetadataValue.path(str(report_path)),
            "trigger": trigger,
        })
        yield dg.AssetCheckResult(
            check_name="champion_gate", passed=verdict.passed,
            description=verdict.summary,
            metadata={"verdict": verdict.summary, "metric": metric,
                      "challenger": verdict.challenger,
                      "champion": verdict.champion if verdict.champion is not None else "none",
                      "compared_on": verdict.compared_on or "baselines only",
                      "baselines": json.dumps(verdict.baselines),
                      "forecaster_version": version},
        )

    @dg.asset(
        name=FORECASTS,
        deps=[tables.FORECASTER, COVARIATE_PLAN],
        group_name="forecasting",
        kinds={"xgboost", "duckdb"},
        owners=OWNERS_FORECASTING,
        pool="duckdb",
        description=(
            "The champion's P10/P50/P90 for every active series over the horizon after the last "
            "date with data, with the forecaster version, using the covariate plan (planned "
            "promotions) where it has the date and series and 'nothing planned' elsewhere; a "
            "day the dataset's closure rules "
            "close for a series has is_open false and P10 = P50 = P90 = 0. "
            "forecast_explanations holds each open forecast's top feature contributions "
            "(XGBoost pred_contribs)."
        ),
    )
    def forecasts(context: dg.AssetExecutionContext, config: ForecastsConfig,
                  platform: PlatformResource):
        settings = platform.settings
        with staging(settings.staging_dir, "future_rows") as inputs, \
                staging(settings.staging_dir, FORECASTS) as forecast_parts, \
                staging(settings.staging_dir, EXPLANATIONS) as explanation_parts:
            inputs.folder.mkdir(parents=True)
            features_file = inputs.folder / "rows.parquet"
            with platform.connect(log=context.log.warning) as con:
                champion = champion_at_origin(con, spec)
                champion_row, origin, model = champion.row, champion.origin, champion.model
                planned = table_exists(con, COVARIATE_PLAN)
                query = future_query(spec, plan, origin, planned=planned)
                # DuckDB writes the feature rows (4.5 M at 50,000 daily series) without pandas.
                copy_to_parquet(con, query.sql, features_file, query.params)
                planned_rows = plan_rows(con, query.first, query.last)
            # Predicted and explained a batch of rows at a time with the warehouse closed:
            # memory is one batch's, whatever the number of series, and readers get in.
            created_at = dt.datetime.now()
            unforecastable: set[str] = set()
            plan_used, plan_versions, sample = 0, set(), None
            batches = 0
            for rows in parquet_frames(features_file, config.batch_rows):
                batches += 1
                part = build_forecast(model, rows, spec, origin, champion_row.version,
                                      created_at)
                forecast_parts.add(part.rows)
                explanation_parts.add(part.explanations)
                unforecastable.update(part.unforecastable)
                used, versions = usage(part.rows, planned_rows)
                plan_used += used
                plan_versions.update(versions)
                sample = part.rows.head(5) if sample is None else sample
            with platform.connect(log=context.log.warning) as con:
                n = replace_range(con, FORECASTS, "origin", origin, origin,
                                  forecast_parts.select())
                replace_range(con, EXPLANATIONS, "origin", origin, origin,
                              explanation_parts.select())
                closed_rows, series = con.execute(
                    f"SELECT count(*) FILTER (WHERE NOT is_open), count(DISTINCT series_id) "
                    f"FROM {FORECASTS} WHERE origin = ?", [origin]).fetchall()[0]
        unforecastable = sorted(unforecastable)
        sample = sample[["series_id", "ds", "p10", "p50", "p90"]].round(2)
        return dg.MaterializeResult(metadata={
            "dagster/row_count": n, "origin": str(origin),
            "horizon": f"{query.first} .. {query.last}",
            "explanations": "approximate pred_contribs (Saabas), top 3 per forecast",
            "series_without_forecast": len(unforecastable),
            "series_without_forecast_examples": ", ".join(unforecastable[:10]) or "none",
            "forecaster_version": champion_row.version,
            "series": int(series), "batches": batches,
            "closed_forecasts": int(closed_rows),
            # Known covariates of the other rows are "nothing planned" (0).
            "plan_rows_used": plan_used,
            "plan_versions": ", ".join(sorted(plan_versions)) or "none",
            "preview": preview(sample),
        })

    return [forecaster, forecasts]
