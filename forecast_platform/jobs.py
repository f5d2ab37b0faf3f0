"""Jobs: named selections of the asset graph that sensors, schedules and the CLI launch."""

from __future__ import annotations

import dagster as dg

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.partitions import partitions_for

INGEST_JOB = "ingest_job"
INGEST_ASSETS = ["raw_sales", "validated_sales", "sales_rejects", "holiday_calendar",
                 "sales_features"]


def build_jobs(spec: DatasetSpec) -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(
            INGEST_JOB,
            selection=dg.AssetSelection.assets(*INGEST_ASSETS),
            partitions_def=partitions_for(spec),
            description="Landing files -> raw -> validated (+ quarantine) -> features, for a "
                        "partition or a whole range in one run.",
        )
    ]
