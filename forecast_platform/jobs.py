"""Jobs: named selections of the asset graph that sensors, schedules and the CLI launch."""

from __future__ import annotations

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.partitions import partitions_for

INGEST_JOB = "ingest_job"
TRAIN_JOB = "train_job"
INGEST_ASSETS = ["raw_sales", "validated_sales", "sales_rejects", "holiday_calendar",
                 "sales_features"]
TRAIN_ASSETS = ["forecaster", "forecasts"]


def build_jobs(spec: DatasetSpec) -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(
            INGEST_JOB,
            selection=dg.AssetSelection.assets(*INGEST_ASSETS),
            partitions_def=partitions_for(spec),
            description="Landing files -> raw -> validated (+ quarantine) -> features, for a "
                        "partition or a whole range in one run.",
        ),
        dg.define_asset_job(
            TRAIN_JOB,
            selection=dg.AssetSelection.assets(*TRAIN_ASSETS),
            hooks={end_mlflow_on_run_finished},
            description="Train, backtest and gate the forecaster; forecast with the champion.",
        ),
    ]
