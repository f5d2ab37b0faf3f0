"""validated_sales and sales_rejects: one pass splits raw rows; nothing is dropped silently.

Both tables are written in one transaction per run, so raw = validated + rejected always holds.
The checks on validated_sales protect the models and are blocking; the checks on sales_rejects
make the quarantine visible (warnings: the bad rows are already kept away from the models).
"""


import datetime as dt

import dagster as dg
import duckdb

from forecast_platform.assets.ingest import SCHEMA, TABLE_NAME, declared_schema
from forecast_platform.assets.metadata import (
    check_result,
    detailed,
    partition_count,
    partition_metadata,
    preview,
    qualified_name,
)
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.partitions import date_range, partitions_for
from forecast_platform.quality import checks
from forecast_platform.quality.validation import SQL_TYPES, Split, column_types, validate_range
from forecast_platform.resources import PlatformResource
from forecast_platform.warehouse.ingest import RAW_TABLE
from forecast_platform.warehouse.store import connect, quote, replace_range
from forecast_platform.warehouse.tables import REJECTS, VALIDATED

OWNERS = ["team:data-platform"]

BLOCKING_CHECKS = {
    "valid_rows_contract": "No null date, key or target; no negative target; unique (date, keys).",
    "completeness": "No date misses over {max_missing:.0%} of the series seen in the previous 28 "
                    "periods (the dataset's max_missing_share).",
    "volume": "Rows per date within 0.5x..1.5x of the trailing 28-period mean.",
    "quarantine_rate": "At most 5 % of a date's raw rows are quarantined.",
}
QUARANTINE_CHECKS = {
    "keys_and_dates_present": ("keys_and_dates", "missing, unparseable or misplaced dates/keys"),
    "target_valid": ("target", "missing, non-numeric or negative targets"),
    "unique_date_keys": ("duplicates", "duplicate (date, keys) rows"),
    "covariates_valid": ("covariates", "missing or unparseable covariates"),
}


def write_validated(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, split: Split,
                    start: dt.date, end: dt.date) -> int:
    typed = [spec.date_column, *column_types(spec)]
    keys = ", ".join(f"CAST({quote(k)} AS VARCHAR)" for k in spec.keys)
    select = (
        f"SELECT {', '.join(quote(c) for c in typed)}, concat_ws('|', {keys}) AS series_id, "
        f"_source_file, _ingested_at FROM ({split.valid_sql})"
    )
    return replace_range(con, VALIDATED, spec.date_column, start, end, select)


def write_rejects(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, split: Split,
                  start: dt.date, end: dt.date) -> int:
    originals = ", ".join(f"{quote('raw:' + c)} AS {quote(c)}" for c in spec.columns)
    select = (
        f"SELECT partition_date, {originals}, CAST(rules AS VARCHAR) AS rules, "
        "CAST(reason AS VARCHAR) AS reason, _source_file, _source_line, "
        f"_ingested_at, now()::TIMESTAMP AS _rejected_at FROM ({split.rejects_sql})"
    )
    return replace_range(con, REJECTS, "partition_date", start, end, select)


def validated_schema(spec: DatasetSpec) -> dg.TableSchema:
    """validated_sales' columns, as ``write_validated`` creates them."""
    return declared_schema([
        (spec.date_column, "DATE"),
        *((c, SQL_TYPES[t]) for c, t in column_types(spec).items()),
        ("series_id", "VARCHAR"), ("_source_file", "VARCHAR"), ("_ingested_at", "TIMESTAMP"),
    ])


def rejects_schema(spec: DatasetSpec) -> dg.TableSchema:
    """sales_rejects' columns, as ``write_rejects`` creates them: the original text."""
    return declared_schema([
        ("partition_date", "DATE"), *((c, "VARCHAR") for c in spec.columns),
        ("rules", "VARCHAR"), ("reason", "VARCHAR"), ("_source_file", "VARCHAR"),
        ("_source_line", "BIGINT"), ("_ingested_at", "TIMESTAMP"), ("_rejected_at", "TIMESTAMP"),
    ])


def build_validate_assets(spec: DatasetSpec) -> list:
    partitions = partitions_for(spec)
    check_specs = [
        dg.AssetCheckSpec(name, asset=VALIDATED, blocking=True,
                          description=text.format(max_missing=spec.max_missing_share))
        for name, text in BLOCKING_CHECKS.items()
    ] + [
        dg.AssetCheckSpec(name, asset=REJECTS,
                          description=f"No rows quarantined for {what}.")
        for name, (_, what) in QUARANTINE_CHECKS.items()
    ]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                VALIDATED, deps=[RAW_TABLE], group_name="ingestion", kinds={"duckdb", "pandera"},
                owners=OWNERS, partitions_def=partitions,
                metadata={SCHEMA: validated_schema(spec), TABLE_NAME: qualified_name(VALIDATED)},
                description="Raw rows that pass the dataset's pandera schema, typed, with a "
                            "series_id. The only sales table features and models read.",
            ),
            dg.AssetSpec(
                REJECTS, deps=[RAW_TABLE], group_name="ingestion", kinds={"duckdb", "pandera"},
                owners=OWNERS, partitions_def=partitions,
                metadata={SCHEMA: rejects_schema(spec), TABLE_NAME: qualified_name(REJECTS)},
                description="Quarantine: raw rows that failed validation, with their original "
                            "values, the rule families they broke and a readable reason.",
            ),
        ],
        check_specs=check_specs,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
    )
    def validate_sales(context: dg.AssetExecutionContext, platform: PlatformResource):
        start, end = date_range(context)
        partitions = partition_count(start, end, spec.step_days)
        with connect(platform.warehouse_path) as con:
            split = validate_range(con, spec, RAW_TABLE, start, end)
            n_valid = write_validated(con, spec, split, start, end)
            n_rejects = write_rejects(con, spec, split, start, end)
            series = con.execute(
                f"SELECT count(DISTINCT series_id) FROM {VALIDATED} "
                f"WHERE {quote(spec.date_column)} BETWEEN ? AND ?", [start, end]).fetchone()[0]
            validated_meta = partition_metadata(context, con, VALIDATED, spec.date_column, start,
                                                end, n_valid, spec.step_days)
            rejects_meta = partition_metadata(context, con, REJECTS, "partition_date", start, end,
                                              n_rejects, spec.step_days)
            blocking = {
                "valid_rows_contract": checks.valid_rows_contract(con, spec, start, end),
                "completeness": checks.completeness(con, spec, start, end),
                "volume": checks.volume(con, spec, start, end),
                "quarantine_rate": checks.quarantine_rate(con, start, end),
            }
            quarantine = {
                name: checks.quarantined(con, category, start, end, what)
                for name, (category, what) in QUARANTINE_CHECKS.items()
            }
        rejected = split.rejected
        by_rule = rejected["rules"].str.split(",").explode().value_counts().to_dict()
        yield dg.MaterializeResult(
            asset_key=VALIDATED,
            metadata={**validated_meta, "rejected_rows": n_rejects, "series": int(series)},
        )
        rejects_extra: dict[str, dg.RawMetadataValue] = {
            f"rejected_{k}": int(v) for k, v in by_rule.items()
        }
        if detailed(partitions):
            # A long backfill's reasons are in the quarantine checks' examples (one result per
            # run) and in sales_rejects itself, rather than copied onto every partition.
            reasons = rejected["reason"].value_counts().head(10).rename_axis("reason")
            rejects_extra["top_reasons"] = preview(reasons.reset_index(), rows=10)
        yield dg.MaterializeResult(asset_key=REJECTS, metadata={**rejects_meta, **rejects_extra})
        for name, outcome in blocking.items():
            yield check_result(VALIDATED, name, outcome)
        for name, outcome in quarantine.items():
            yield check_result(REJECTS, name, outcome, dg.AssetCheckSeverity.WARN)

    return [validate_sales]
