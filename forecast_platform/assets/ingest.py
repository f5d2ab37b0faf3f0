"""raw_sales: landing files into the warehouse, as they came."""


import datetime as dt

import dagster as dg

from forecast_platform.assets.metadata import (
    TYPE_NAMES,
    check_result,
    partition_count,
    partition_metadata,
    qualified_name,
)
from forecast_platform.datasets.landing import landed_files
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.partitions import date_range, partitions_for
from forecast_platform.quality import checks
from forecast_platform.resources import PlatformResource
from forecast_platform.warehouse.ingest import PARTITION_COLUMN, RAW_TABLE, ingest_files
from forecast_platform.warehouse.store import connect

OWNERS = ["team:data-platform"]
SCHEMA = "dagster/column_schema"
TABLE_NAME = "dagster/table_name"


def declared_schema(columns: list[tuple[str, str]]) -> dg.TableSchema:
    """A table's column schema from its DuckDB types, spelled as ``column_schema`` spells them.

    Warehouse tables have a schema fixed by the spec, so it is declared on the asset once instead
    of being read back into every partition's materialization: a single-run backfill stores and
    serializes the materialization metadata once per partition (1,826 times for five years).
    The ingest graph test holds each declaration to the table's real columns.
    """
    return dg.TableSchema(columns=[
        dg.TableColumn(name=name, type=TYPE_NAMES.get(typ, typ.lower())) for name, typ in columns
    ])


def raw_schema(spec: DatasetSpec) -> dg.TableSchema:
    return declared_schema([
        (PARTITION_COLUMN, "DATE"), *((c, "VARCHAR") for c in spec.columns),
        ("_source_file", "VARCHAR"), ("_source_line", "BIGINT"), ("_ingested_at", "TIMESTAMP"),
        ("_schema_note", "VARCHAR"),
    ])


def build_ingest_assets(spec: DatasetSpec) -> list:
    partitions = partitions_for(spec)

    @dg.asset(
        name=RAW_TABLE,
        group_name="ingestion",
        kinds={"duckdb", "csv"},
        owners=OWNERS,
        description=(
            "The landed rows of each partition exactly as they came, every value as text, with "
            "source file, line and ingestion time. Re-materializing replaces the partition."
        ),
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        metadata={SCHEMA: raw_schema(spec), TABLE_NAME: qualified_name(RAW_TABLE)},
        check_specs=[
            dg.AssetCheckSpec("columns_match_spec", asset=RAW_TABLE,
                              description="Each file has exactly the spec's columns."),
            dg.AssetCheckSpec("freshness", asset=RAW_TABLE,
                              description="Every landed file has been ingested (no backlog)."),
        ],
    )
    def raw_sales(context: dg.AssetExecutionContext, platform: PlatformResource):
        start, end = date_range(context)
        landed = landed_files(platform.landing_dir)
        files = {day: path for day, path in landed.items() if start <= day <= end}
        partitions = partition_count(start, end, spec.step_days)
        with connect(platform.warehouse_path) as con:
            facts = ingest_files(con, spec, files, start, end, dt.datetime.now())
            metadata = partition_metadata(context, con, RAW_TABLE, PARTITION_COLUMN, start, end,
                                          facts["rows"], spec.step_days)
            header_outcome = checks.file_headers(con, start, end)
            fresh = checks.freshness(con, list(landed))
        missing = partitions - len(files)
        yield dg.MaterializeResult(
            metadata={**metadata, "files": len(files), "partitions_without_file": missing}
        )
        yield check_result(RAW_TABLE, "columns_match_spec", header_outcome,
                           dg.AssetCheckSeverity.WARN)
        yield check_result(RAW_TABLE, "freshness", fresh, dg.AssetCheckSeverity.WARN)

    return [raw_sales]
