"""Materialization metadata a person can use: counts, date range, schema and a preview."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd

from forecast_platform.quality.checks import Outcome
from forecast_platform.warehouse.store import quote

TYPE_NAMES = {"BIGINT": "int64", "INTEGER": "int32", "DOUBLE": "float64", "VARCHAR": "string"}


def column_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    cols = con.execute(f"DESCRIBE {quote(table)}").fetchall()
    return dg.TableSchema(
        columns=[dg.TableColumn(name=c[0], type=TYPE_NAMES.get(c[1], c[1].lower())) for c in cols]
    )


def preview(frame: pd.DataFrame, rows: int = 5) -> dg.MarkdownMetadataValue:
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False))


def table_metadata(
    con: duckdb.DuckDBPyConnection, table: str, date_column: str, start: dt.date, end: dt.date,
    rows_written: int, *, schema: bool = False,
) -> dict[str, dg.RawMetadataValue]:
    """The figures every warehouse asset shows: rows written, table size, range, sample.

    ``schema`` adds the table's column schema. Off by default: the ingest, validation and
    feature assets declare theirs on the definition, and repeating it in each of 1,826
    partition materializations cost Dagster ~3 s per asset in a backfill.
    """
    date = quote(date_column)
    total, first, last = con.execute(
        f"SELECT count(*), min({date}), max({date}) FROM {quote(table)}"
    ).fetchone()
    sample = con.execute(
        f"SELECT * FROM {quote(table)} WHERE {date} BETWEEN ? AND ? LIMIT 5", [start, end]
    ).df()
    metadata: dict[str, dg.RawMetadataValue] = {
        "dagster/row_count": rows_written,
        "dagster/table_name": f"warehouse.main.{table}",
        "partition_range": f"{start} .. {end}",
        "table_rows_total": int(total),
        "table_date_range": f"{first} .. {last}",
        "preview": preview(sample),
    }
    if schema:
        metadata["dagster/column_schema"] = column_schema(con, table)
    return metadata


def check_result(asset: str, name: str, outcome: Outcome,
                 severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
                 ) -> dg.AssetCheckResult:
    metadata: dict[str, dg.RawMetadataValue] = {"summary": outcome.summary, **outcome.figures}
    if outcome.examples is not None and not outcome.examples.empty:
        metadata["examples"] = preview(outcome.examples, rows=len(outcome.examples))
    return dg.AssetCheckResult(
        asset_key=asset, check_name=name, passed=outcome.passed, severity=severity,
        metadata=metadata, description=outcome.summary,
    )


def metadata_values(materialization: dg.AssetMaterialization | None) -> dict:
    """A materialization's metadata as plain values ({} for none): what sensors and summaries
    compare and print."""
    if materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def run_metadata(result, asset: str) -> dict | None:
    """The metadata values of ``asset``'s first materialization in a run's result (None when the
    run did not materialize it): what the CLI summaries and the tests read."""
    for event in result.all_events:
        if event.event_type_value != "ASSET_MATERIALIZATION":
            continue
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            return metadata_values(materialization)
    return None
