"""forecaster and forecasts: train, backtest, track, gate; then forecast with the champion."""

import datetime as dt
import json
from collections.abc import Callable

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.metadata import OWNERS_FORECASTING, preview
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.features.offline import FEATURES, HOLIDAYS_SOURCE
from forecast_platform.features.sql import features_select, plan_features
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.backtest import (
    CHAMPION,
    MODEL,
    origins_for,
    relative_gain,
    run_backtest,
)
from forecast_platform.forecasting.forecaster import (
    Forecaster,
    ForecasterParams,
    default_model_features,
)
from forecast_platform.forecasting.future import at_origin, future_params, future_source
from forecast_platform.forecasting.gate import evaluate, same_recipe
from forecast_platform.forecasting.report import importance_figure, plt, render
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.store import connect, quote, registered, replace_range
from forecast_platform.warehouse.tables import EXPLANATIONS, FORECASTS, VALIDATED

TOP_CONTRIBUTIONS = 3


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


def top_contributions(contribs: pd.DataFrame, rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` largest contributions (by size) of each forecast, long format, vectorized."""
    values = contribs.drop(columns="bias")
    names = np.asarray(values.columns)
    matrix = values.to_numpy()
    order = np.argsort(-np.nan_to_num(np.abs(matrix), nan=-1.0), axis=1)[:, :k]
    picked = np.take_along_axis(matrix, order, axis=1)
    return pd.DataFrame({
        "ds": np.repeat(rows["ds"].to_numpy(), k),
        "series_id": np.repeat(rows["series_id"].to_numpy(), k),
        "rank": np.tile(np.arange(1, k + 1), len(rows)),
        "feature": names[order].ravel(),
        "contribution": picked.ravel(),
    })


def model_name(spec: DatasetSpec) -> str:
    return f"{spec.name}_forecaster"


def load_training_frame(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, periods: int
                        ) -> tuple[pd.DataFrame, dt.date, dt.date]:
    first, end = con.execute(
        f"SELECT min(ds), max(ds) FROM {FEATURES} WHERE y IS NOT NULL").fetchone()
    if end is None:
        raise ValueError("sales_features is empty: materialize the feature partitions first")
    # The window the run asks for, but never before the data (what the registry and MLflow
    # record as the training window).
    start = max(end - dt.timedelta(days=(periods - 1) * spec.step_days), first)
    frame = con.execute(f"SELECT * FROM {FEATURES} WHERE ds BETWEEN ? AND ? ORDER BY ds",
                        [start, end]).df()
    return frame, start, end


def default_spacing(spec: DatasetSpec) -> int:
    """Periods between backtest origins when the run does not say: 28 days' worth."""
    return max(1, 28 // spec.step_days)


def check_history(frame: pd.DataFrame, spec: DatasetSpec, horizon: int, origins: list[dt.date],
                  start: dt.date) -> None:
    """Refuse early and clearly when the window cannot hold the backtest."""
    first_origin = min(origins)
    needed = first_origin - dt.timedelta(days=horizon * spec.step_days)
    if needed < start or frame.empty:
        have = (frame["ds"].max() - frame["ds"].min()).days // spec.step_days + 1 \
            if not frame.empty else 0
        raise ValueError(
            f"too little history: the backtest's first origin {first_origin} needs training data "
            f"from {needed} on (one horizon of {horizon} periods before it), but sales_features "
            f"holds {have} periods from {start}. Land more history or lower backtest_origins / "
            "origin_spacing."
        )


def load_champion(champion_row: registry.ModelRecord | None, log) -> Forecaster | None:
    """The champion's model, or None when there is none or it predates the current format."""
    if champion_row is None:
        return None
    try:
        return Forecaster.from_bytes(champion_row.model_bytes)
    except ValueError as err:
        log.warning(f"champion v{champion_row.version} cannot be loaded ({err}); "
                    "the gate compares with its recorded backtest only")
        return None


def champion_rival(champion: Forecaster | None, challenger: Forecaster, frame: pd.DataFrame
                   ) -> dict[str, Callable[[], Forecaster]]:
    """The champion's recipe as a backtest rival, when the challenger's recipe differs from it
    and the training frame still has every feature it reads (see forecasting/gate.py).

    A refit, not the stored champion: scored on the same points with the same training rows
    per origin, the two recipes compete on equal terms. A retrain of the same recipe needs no
    rival (it would tie by construction); a champion whose features are no longer computed is
    compared on the points it has not seen instead.
    """
    if champion is None or same_recipe(champion, challenger) \
            or champion.horizon != challenger.horizon \
            or not set(champion.row_features) <= set(frame.columns):
        return {}
    params, features, horizon = champion.params, list(champion.features), champion.horizon
    return {CHAMPION: lambda: Forecaster(params, features, horizon)}


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
        required_resource_keys={"mlflow", "platform"},
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
        with connect(platform.warehouse_path, read_only=False) as con:
            frame, start, end = load_training_frame(con, spec, config.train_periods)
            champion_row = registry.champion(con, name)
        origins = origins_for(end, plan.horizon, spec.step_days, config.backtest_origins,
                              config.origin_spacing or default_spacing(spec))
        check_history(frame, spec, plan.horizon, origins, start)

        def make_model() -> Forecaster:
            return Forecaster(params, features, plan.horizon)

        champion_model = load_champion(champion_row, context.log)
        rivals = champion_rival(champion_model, make_model(), frame)
        if rivals:
            context.log.info(f"the recipe differs from champion v{champion_row.version}'s: "
                             "its recipe is refit at the same backtest origins for the gate")
        backtest = run_backtest(frame, make_model, origins, plan.horizon, spec.step_days,
                                spec.season_length, rivals=rivals)
        model = make_model().fit(frame)
        overall = backtest.overall(MODEL)
        metric = spec.metric

        # -- MLflow: params, data window, metrics per origin, artifacts, model version ---------
        tracker.log_params({
            **{f"model.{k}": v for k, v in params.__dict__.items()},
            "dataset": spec.name, "horizon": plan.horizon, "train_start": str(start),
            "train_end": str(end), "train_rows": model.train_rows,
            "features": ",".join(features),
            "origins": ",".join(str(o) for o in origins),
            # Weekly: the correction's boosting rounds (0: the seasonal recipe alone) and the
            # origin of the recipe the model carries.
            **{f"model.{k}": v for k, v in model.info.items()},
        })
        for _, row in backtest.metrics.iterrows():
            suffix = "" if row["origin"] == "all" else f".origin_{row['origin']}"
            tracker.log_metrics({f"{row['method']}.{m}{suffix}": float(row[m])
                                 for m in ("smape", "mae", "rmse", "wmae", "bias", "r2")
                                 if pd.notna(row[m])})
        tracker.log_metric("model.coverage_p10_p90", float(overall["coverage"]))
        tracker.log_metric("train_seconds", model.train_seconds)
        mlflow.log_text(backtest.metrics.to_csv(index=False), "backtest_metrics.csv")
        figure = importance_figure(model.importance())
        mlflow.log_figure(figure, "feature_importance.png")
        plt.close(figure)
        info = mlflow.xgboost.log_model(model.booster, name=tables.FORECASTER,
                                        registered_model_name=name, model_format="ubj")
        mlflow_version = str(info.registered_model_version)
        run_id = mlflow.active_run().info.run_id
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(name, "challenger", mlflow_version)

        # -- registry + gate --------------------------------------------------------------------
        trigger = context.run.tags.get("trigger", "manual")
        with connect(platform.warehouse_path) as con:
            version = registry.register(
                con, model_name=name, horizon=plan.horizon, train_start=start, train_end=end,
                features=model.features, params=params.__dict__,
                metrics={m: backtest.overall(m) for m in backtest.methods},
                model_bytes=model.to_bytes(), mlflow_run_id=run_id,
                mlflow_model_version=mlflow_version, dagster_run_id=context.run_id,
                trigger=trigger,
            )
            verdict = evaluate(
                backtest, metric, config.gate_margin, features=frame, champion=champion_model,
                champion_version=champion_row.version if champion_row else None,
                champion_train_end=champion_row.train_end if champion_row else None,
                champion_recorded=champion_row.metrics.get(MODEL, {}).get(metric)
                if champion_row else None,
                challenger_train_end=end, challenger_model=model,
            )
            registry.decide(con, name, version, verdict.passed, verdict.as_dict())
        if verdict.passed:
            client.set_registered_model_alias(name, "champion", mlflow_version)
        tracker.set_tags({"gate": "promoted" if verdict.passed else "rejected",
                          "model_version": str(version), "trigger": trigger})
        mlflow.log_dict(verdict.as_dict(), "gate.json")

        # -- report -------------------------------------------------------------------------------
        report_path = platform.settings.reports_dir / f"forecaster_v{version}.html"
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(render(
            title=f"{name} v{version}", result=backtest, metric=metric,
            importance=model.importance(), verdict_text=verdict.summary,
            facts={"dataset": spec.name, "training window": f"{start} .. {end}",
                   "horizon": plan.horizon, "training rows": model.train_rows,
                   "training seconds": round(model.train_seconds, 1), "MLflow run": run_id,
                   "trigger": trigger},
        ))
        mlflow.log_artifact(str(report_path))

        table = backtest.metrics[backtest.metrics["origin"] == "all"].drop(columns="origin")
        yield dg.MaterializeResult(metadata={
            "model_version": version,
            "status": "champion" if verdict.passed else "rejected challenger",
            "mlflow_run_id": run_id,
            "mlflow_model_version": mlflow_version,
            "train_window": f"{start} .. {end}",
            "train_rows": model.train_rows,
            "train_seconds": round(model.train_seconds, 2),
            # Weekly: the recipe's origin, the correction's rounds (0: the recipe alone) and
            # the evidence they were chosen on (rows, errors on the last whole horizon).
            **({k: v for k, v in model.info.items() if k.startswith(("correction_", "anchor_"))}
               if model.anchored else {}),
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
                      "baselines": json.dumps(verdict.baselines), "model_version": version},
        )

    @dg.asset(
        name=FORECASTS,
        deps=[tables.FORECASTER],
        group_name="forecasting",
        kinds={"xgboost", "duckdb"},
        owners=OWNERS_FORECASTING,
        pool="duckdb",
        description=(
            "The champion's P10/P50/P90 for every active series over the horizon after the last "
            "date with data, with the model version; forecast_explanations holds each forecast's "
            "top feature contributions (XGBoost pred_contribs)."
        ),
    )
    def forecasts(context: dg.AssetExecutionContext, platform: PlatformResource):
        with connect(platform.warehouse_path) as con:
            champion_row = registry.champion(con, name)
            if champion_row is None:
                raise ValueError(f"no champion {name} in model_registry: train the forecaster "
                                 "and let it pass the champion gate first")
            origin = con.execute(
                f"SELECT max({quote(spec.date_column)}) FROM {VALIDATED}").fetchone()[0]
            model = at_origin(con, spec, Forecaster.from_bytes(champion_row.model_bytes), origin)
            history_start = origin - dt.timedelta(days=plan.lookback_days)
            first = origin + dt.timedelta(days=spec.step_days)
            last = origin + dt.timedelta(days=plan.horizon * spec.step_days)
            select = features_select(plan, future_source(spec, plan.horizon), HOLIDAYS_SOURCE)
            rows = con.execute(select, [*future_params(history_start, origin), first, last]).df()
            preds = model.predict(rows)
            # A series too new for a level (its key shares need most of a year) cannot be
            # forecast by this model: leave it out, and say which ones, rather than store NaN.
            unforecastable = sorted(rows.loc[preds["p50"].isna(), "series_id"].unique())
            rows, preds = rows[preds["p50"].notna()], preds[preds["p50"].notna()]
            out = rows[["ds", "series_id", *spec.keys]].assign(
                origin=origin, model_version=champion_row.version,
                p10=preds["p10"], p50=preds["p50"], p90=preds["p90"],
                created_at=dt.datetime.now(),
            )
            # Approximate attributions for the bulk table (exact TreeSHAP costs ~80x more);
            # the service's /explain computes exact SHAP for the forecast a person asks about.
            contribs = model.contributions(rows, exact=False)
            explain = top_contributions(contribs, rows, TOP_CONTRIBUTIONS).assign(
                origin=origin, model_version=champion_row.version)
            with registered(con, "_fc", out):
                n = replace_range(con, FORECASTS, "origin", origin, origin, "SELECT * FROM _fc")
            with registered(con, "_ex", explain):
                replace_range(con, EXPLANATIONS, "origin", origin, origin, "SELECT * FROM _ex")
        sample = out.head(5)[["series_id", "ds", "p10", "p50", "p90"]].round(2)
        return dg.MaterializeResult(metadata={
            "dagster/row_count": n, "origin": str(origin), "horizon": f"{first} .. {last}",
            "explanations": "approximate pred_contribs (Saabas), top 3 per forecast",
            "series_without_forecast": len(unforecastable),
            "series_without_forecast_examples": ", ".join(unforecastable[:10]) or "none",
            "model_version": champion_row.version, "series": int(out["series_id"].nunique()),
            "preview": preview(sample),
        })

    return [forecaster, forecasts]
