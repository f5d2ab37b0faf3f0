"""serving_bundle and prediction_log: what the BentoML service serves, and what it served.

Both are thin wiring over ``forecast_platform.serving``: the bundle packs the champion and a
feature snapshot into the BentoML model store (under ``Settings.bentoml_home``, through
``defs.bentoml_store``), and the prediction log asset loads the service's JSON-lines files, one
UTC day per partition, into the warehouse so monitoring sees served traffic without the service
ever opening DuckDB.
"""


import datetime as dt
import json

import dagster as dg

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.bentoml_store import load_manifest, write_bundle
from forecast_platform.defs.metadata import OWNERS_FORECASTING, table_metadata
from forecast_platform.defs.partitions import date_range
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.forecasting.forecast import model_name
from forecast_platform.serving.bundle import pack_bundle
from forecast_platform.serving.log import log_file, log_select
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.store import replace_range
from forecast_platform.warehouse.tables import PREDICTION_LOG

# Served traffic is dated by the wall clock (UTC), not by the dataset's calendar.
PREDICTION_LOG_START = "2025-01-01"
prediction_log_partitions = dg.DailyPartitionsDefinition(
    start_date=PREDICTION_LOG_START, end_offset=1, timezone="UTC")


def build_serving_assets(spec: DatasetSpec) -> list:
    name = model_name(spec)

    @dg.asset(
        name=tables.SERVING_BUNDLE,
        deps=[tables.FORECASTER, tables.ANOMALY_MODEL],
        group_name="serving",
        kinds={"bentoml"},
        owners=OWNERS_FORECASTING,
        pool="duckdb",
        description=(
            "The champion forecaster (and the anomaly detector when one exists) with the feature "
            "snapshot the service needs: recent validated_sales of every series over the feature "
            "lookback, the holiday calendar, the feature plan, versions, backtest metrics, data "
            "window and MLflow run, saved to the BentoML model store. `forecast-platform serve` "
            "serves the newest; a running service picks it up through its reload API."
        ),
    )
    def serving_bundle(context: dg.AssetExecutionContext, platform: PlatformResource):
        settings = platform.settings
        with platform.connect(log=context.log.warning) as con:
            packed = pack_bundle(con, spec, name, {"dagster_run_id": context.run_id},
                                 scratch=settings.staging_dir)
        tag = write_bundle(packed, settings)
        manifest, path = load_manifest(tag, settings.bentoml_home)
        model = manifest["model"]
        return dg.MaterializeResult(metadata={
            "bentoml_tag": tag,
            "forecaster_version": model["version"],
            "path": dg.MetadataValue.path(str(path)),
            "bentoml_home": str(settings.bentoml_home),
            "origin": manifest["windows"]["origin"],
            "forecast_dates": f"{manifest['windows']['future_start']} .. "
                              f"{manifest['windows']['future_end']}",
            "train_window": f"{model['train_start']} .. {model['train_end']}",
            "series": manifest["series"],
            "history_rows": manifest["history_rows"],
            "mlflow_run_id": model["mlflow_run_id"] or "",
            "anomaly_model": json.dumps(manifest["anomaly"]),
        })

    @dg.asset(
        name=PREDICTION_LOG,
        group_name="serving",
        kinds={"duckdb", "json"},
        owners=OWNERS_FORECASTING,
        partitions_def=prediction_log_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        description=(
            "Every value the service served (forecasts, explanations, anomaly scores): one row "
            "per request, series and target date, with request id, time, inputs, outputs and "
            "forecaster version, loaded from the service's JSON-lines files "
            "(<data_dir>/prediction_log/<UTC day>.jsonl). Re-materializing replaces the day."
        ),
    )
    def prediction_log(context: dg.AssetExecutionContext, platform: PlatformResource):
        start, end = date_range(context)
        directory = platform.settings.prediction_log_dir
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        files = [p for p in (log_file(directory, d) for d in days) if p.is_file()]
        with platform.connect(log=context.log.warning) as con:
            rows = replace_range(con, PREDICTION_LOG, "log_date", start, end, log_select(files))
            metadata = table_metadata(con, PREDICTION_LOG, "log_date", start, end, rows,
                                      schema=True)
            requests, by_endpoint = con.execute(
                f"SELECT count(DISTINCT request_id), "
                f"string_agg(DISTINCT endpoint, ', ' ORDER BY endpoint) FROM {PREDICTION_LOG} "
                "WHERE log_date BETWEEN ? AND ?", [start, end]).fetchone()
        return dg.MaterializeResult(metadata={
            **metadata, "files": len(files), "requests": int(requests or 0),
            "endpoints": by_endpoint or "none",
        })

    return [serving_bundle, prediction_log]
