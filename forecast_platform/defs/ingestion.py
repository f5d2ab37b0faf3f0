"""The ingestion group: landing files -> raw_sales -> validated_sales + sales_rejects.

raw_sales keeps every landed value as text; a landing file that cannot be read is quarantined as
a file (file_rejects, written by raw_sales) and never holds the run's other files back. One
validation pass then splits each run's raw rows into validated_sales and sales_rejects, so
raw = validated + rejected; the non-blocking ``rows_balance`` check finds the partitions where
it does not hold (a run killed between its steps) anywhere in the warehouse. The checks on
validated_sales protect the models and are blocking; the checks on sales_rejects make the
quarantine visible (warnings: the bad rows are already kept away from the models).
"""

import datetime as dt

import dagster as dg
import pandas as pd

from forecast_platform.datasets.landing import landed_files, stray_files
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.metadata import (
    OWNERS_DATA_PLATFORM,
    SCHEMA,
    TABLE_NAME,
    check_result,
    declared_schema,
    detailed,
    partition_count,
    partition_metadata,
    preview,
    qualified_name,
)
from forecast_platform.defs.partitions import date_range, partitions_for
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.ingestion import checks
from forecast_platform.ingestion.raw import PARTITION_COLUMN, ingest_chunks
from forecast_platform.ingestion.validation import (
    SQL_TYPES,
    column_types,
    validate_range,
    write_rejects,
    write_validated,
)
from forecast_platform.warehouse.blocks import date_chunks
from forecast_platform.warehouse.store import quote
from forecast_platform.warehouse.tables import FILE_REJECTS, RAW, REJECTS, VALIDATED

BLOCKING_CHECKS = {
    "valid_rows_contract": "No null date, key or target; no negative target; unique (date, keys).",
    "completeness": "No date misses over {max_missing:.0%} of the series seen in the previous 28 "
                    "periods and open that day by the dataset's closure rules (its "
                    "max_missing_share), and every date's landing file gave rows "
                    "(file_rejects names the files that did not, and why).",
    "volume": "Rows per date within 0.5x..1.5x of the rows expected from the series open that "
              "day (the trailing 28-period rows per open series; closure rules say which "
              "series are closed).",
    "quarantine_rate": "At most 5 % of a date's raw rows are quarantined.",
}
QUARANTINE_CHECKS = {
    "keys_and_dates_present": ("keys_and_dates", "missing, unparseable or misplaced dates/keys"),
    "target_valid": ("target", "missing, non-numeric, non-finite, negative or implausible "
                               "(over max_target) targets"),
    "unique_date_keys": ("duplicates", "duplicate (date, keys) rows"),
    "covariates_valid": ("covariates", "missing or unparseable covariates"),
}


def raw_schema(spec: DatasetSpec) -> dg.TableSchema:
    return declared_schema([
        (PARTITION_COLUMN, "DATE"), *((c, "VARCHAR") for c in spec.columns),
        ("_source_file", "VARCHAR"), ("_source_line", "BIGINT"), ("_ingested_at", "TIMESTAMP"),
        ("_schema_note", "VARCHAR"),
    ])


def _build_raw_assets(spec: DatasetSpec) -> list:
    partitions = partitions_for(spec)

    @dg.asset(
        name=RAW,
        group_name="ingestion",
        kinds={"duckdb", "csv"},
        owners=OWNERS_DATA_PLATFORM,
        description=(
            "The landed rows of each partition exactly as they came, every value as text, with "
            "source file, line and ingestion time. Re-materializing replaces the partition."
        ),
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        metadata={SCHEMA: raw_schema(spec), TABLE_NAME: qualified_name(RAW)},
        check_specs=[
            dg.AssetCheckSpec("columns_match_spec", asset=RAW,
                              description="Each file has exactly the spec's columns."),
            dg.AssetCheckSpec("freshness", asset=RAW,
                              description="Every landed file has been ingested (no backlog); a "
                                          "file read with no rows counts as ingested."),
            dg.AssetCheckSpec("files_readable", asset=RAW,
                              description=f"Every landing file of the run was read and gave "
                                          f"rows; the others are in {FILE_REJECTS} with the "
                                          "reason (encoding, structure, oversized line, binary, "
                                          "empty)."),
            dg.AssetCheckSpec("landing_file_names", asset=RAW,
                              description="Every sales_*.csv file names a real day within the "
                                          "partitions (others are skipped, never ingested)."),
        ],
    )
    def raw_sales(context: dg.AssetExecutionContext, platform: PlatformResource):
        start, end = date_range(context)
        landed = landed_files(platform.landing_dir)
        files = {day: path for day, path in landed.items() if start <= day <= end}
        partitions = partition_count(start, end, spec.step_days)
        with platform.connect(log=context.log.warning) as con:
            facts = ingest_chunks(con, spec, files, start, end, dt.datetime.now())
            metadata = partition_metadata(context, con, RAW, PARTITION_COLUMN, start, end,
                                          facts["rows"], spec.step_days)
            header_outcome = checks.file_headers(con, start, end)
            files_outcome = checks.quarantined_files(con, start, end)
            fresh = checks.freshness(con, [d for d in landed if spec.start <= d <= spec.end])
        outside = [d for d in landed if not spec.start <= d <= spec.end]
        names = checks.landing_names(stray_files(platform.landing_dir), outside, spec.start,
                                     spec.end)
        missing = partitions - len(files)
        yield dg.MaterializeResult(
            metadata={**metadata, "files": len(files), "partitions_without_file": missing,
                      "files_without_rows": len(facts["file_rejects"])}
        )
        yield check_result(RAW, "columns_match_spec", header_outcome,
                           dg.AssetCheckSeverity.WARN)
        yield check_result(RAW, "freshness", fresh, dg.AssetCheckSeverity.WARN)
        yield check_result(RAW, "files_readable", files_outcome, dg.AssetCheckSeverity.WARN)
        yield check_result(RAW, "landing_file_names", names, dg.AssetCheckSeverity.WARN)

    return [raw_sales]


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


def _build_validate_assets(spec: DatasetSpec) -> list:
    partitions = partitions_for(spec)
    check_specs = [
        dg.AssetCheckSpec(name, asset=VALIDATED, blocking=True,
                          description=text.format(max_missing=spec.max_missing_share))
        for name, text in BLOCKING_CHECKS.items()
    ] + [
        # Not blocking: this run's partitions balance by construction; the check looks at every
        # partition, for the ones an earlier run left (killed between its steps).
        dg.AssetCheckSpec("rows_balance", asset=VALIDATED, blocking=False,
                          description="On every partition raw rows = validated + rejected "
                                      "rows, from the same ingestion; lists the partitions to "
                                      "validate again."),
    ] + [
        dg.AssetCheckSpec(name, asset=REJECTS,
                          description=f"No rows quarantined for {what}.")
        for name, (_, what) in QUARANTINE_CHECKS.items()
    ]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                VALIDATED, deps=[RAW], group_name="ingestion", kinds={"duckdb", "pandera"},
                owners=OWNERS_DATA_PLATFORM, partitions_def=partitions,
                metadata={SCHEMA: validated_schema(spec), TABLE_NAME: qualified_name(VALIDATED)},
                description="Raw rows that pass the dataset's pandera schema, typed, with a "
                            "series_id. The only sales table features and models read.",
            ),
            dg.AssetSpec(
                REJECTS, deps=[RAW], group_name="ingestion", kinds={"duckdb", "pandera"},
                owners=OWNERS_DATA_PLATFORM, partitions_def=partitions,
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
        with platform.connect(log=context.log.warning) as con:
            # A chunk of dates at a time: the typed columns go through pandera in pandas, and
            # a long backfill of many series at once would not fit in memory.
            n_valid = n_rejects = 0
            rejected_parts = []
            for first, last in date_chunks(con, RAW, "partition_date", start, end):
                split = validate_range(con, spec, RAW, first, last)
                n_valid += write_validated(con, spec, split, first, last)
                n_rejects += write_rejects(con, spec, split, first, last)
                rejected_parts.append(split.rejected)
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
            balance = checks.rows_balance(con, spec)
        rejected = pd.concat(rejected_parts, ignore_index=True)
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
        yield check_result(VALIDATED, "rows_balance", balance)
        for name, outcome in quarantine.items():
            yield check_result(REJECTS, name, outcome, dg.AssetCheckSeverity.WARN)

    return [validate_sales]


def build_ingestion_assets(spec: DatasetSpec) -> list:
    return [*_build_raw_assets(spec), *_build_validate_assets(spec)]
