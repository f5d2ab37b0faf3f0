"""Materialization metadata a person can use: counts, date range, schema and a preview."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd

from forecast_platform.ingestion.checks import Outcome
from forecast_platform.warehouse.store import quote

# Owners, said once: the data platform team owns ingestion, the forecasting team the models.
OWNERS_DATA_PLATFORM = ["team:data-platform"]
OWNERS_FORECASTING = ["team:forecasting"]
SCHEMA = "dagster/column_schema"
TABLE_NAME = "dagster/table_name"
TYPE_NAMES = {"BIGINT": "int64", "INTEGER": "int32", "DOUBLE": "float64", "VARCHAR": "string"}


def column_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    cols = con.execute(f"DESCRIBE {quote(table)}").fetchall()
    return dg.TableSchema(
        columns=[dg.TableColumn(name=c[0], type=TYPE_NAMES.get(c[1], c[1].lower())) for c in cols]
    )


def preview(frame: pd.DataFrame, rows: int = 5) -> dg.MarkdownMetadataValue:
    """A few rows as markdown; a text cell is cut to ``CELL_LIMIT`` characters, because a landed
    value can be megabytes and the event log keeps a copy of every preview."""
    head = frame.head(rows).copy()
    for column in head.select_dtypes(include=["object", "string"]).columns:
        head[column] = head[column].map(
            lambda v: v if not isinstance(v, str) or len(v) <= CELL_LIMIT
            else f"{v[:CELL_LIMIT]}... ({len(v):,} characters)")
    return dg.MetadataValue.md(head.to_markdown(index=False))


CELL_LIMIT = 200


# Runs covering at most this many partitions get the bulky, per-run items (markdown previews,
# top reasons, exact per-partition row counts). See ``detailed``.
DETAIL_MAX_PARTITIONS = 31


def detailed(partitions: int) -> bool:
    """Whether a run's materializations carry the bulky metadata (previews, top reasons, the
    table's date range).

    In a single-run range Dagster copies the one ``MaterializeResult``'s metadata into an
    ASSET_MATERIALIZATION event per partition, serializing and storing it each time: a 5-row
    markdown preview of ~40 feature columns (~4 kB) costs ~0.4 ms per partition event on this
    machine (vs ~0.15 ms for the scalars), i.e. ~0.7 s per asset over 1,826 partitions, for
    1,826 copies of the same five rows. The daily run (one partition) and short catch-up ranges
    keep them; long backfills keep only the scalar figures, and the asset checks (one result
    per run, not per partition) keep their examples.
    """
    return partitions <= DETAIL_MAX_PARTITIONS


def partition_count(start: dt.date, end: dt.date, step_days: int) -> int:
    """How many partitions the inclusive range ``start..end`` covers."""
    return (end - start).days // step_days + 1


def partition_metadata(
    context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, table: str,
    date_column: str, start: dt.date, end: dt.date, rows_written: int, step_days: int,
) -> dict[str, dg.RawMetadataValue]:
    """``table_metadata`` of a partitioned warehouse asset named as its table, for the run's
    range, and each partition of a short range its own ``dagster/row_count``.

    The table name is declared on the asset definition (it is static), not repeated here.
    """
    partitions = partition_count(start, end, step_days)
    _add_partition_row_counts(context, con, table, date_column, start, end, step_days,
                              partitions)
    return table_metadata(con, table, date_column, start, end, rows_written,
                          partitions=partitions, table_name=False)


def _add_partition_row_counts(
    context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, table: str,
    date_column: str, start: dt.date, end: dt.date, step_days: int, n: int,
) -> None:
    """Give each partition of a short multi-partition range its own ``dagster/row_count``.

    Only for ranges ``detailed`` admits: Dagster's ``add_asset_metadata`` re-lists the run's
    partition keys on every call (~2.5 ms for 1,826 daily keys), so a long backfill would pay
    O(N^2) for exact counts; its partitions show ``rows_written_by_run`` instead. Partition keys
    are their first day (``YYYY-MM-DD``), as ``partitions_for`` defines them.
    """
    if n == 1 or not detailed(n):
        return
    rows = con.execute(
        f"SELECT {quote(date_column)}, count(*) FROM {quote(table)} "
        f"WHERE {quote(date_column)} BETWEEN ? AND ? GROUP BY 1", [start, end]).fetchall()
    counts: dict[str, int] = {}
    for day, count in rows:
        first = start + dt.timedelta(days=(day - start).days // step_days * step_days)
        counts[first.isoformat()] = counts.get(first.isoformat(), 0) + int(count)
    for key in context.partition_keys:
        context.add_asset_metadata({"dagster/row_count": counts.get(key, 0)}, asset_key=table,
                                   partition_key=key)


def qualified_name(table: str) -> str:
    """A warehouse table's ``dagster/table_name``."""
    return f"warehouse.main.{table}"


def table_metadata(
    con: duckdb.DuckDBPyConnection, table: str, date_column: str, start: dt.date, end: dt.date,
    rows_written: int, *, schema: bool = False, partitions: int = 1, table_name: bool = True,
) -> dict[str, dg.RawMetadataValue]:
    """The figures every warehouse asset shows: rows written, table size, range, sample.

    ``partitions`` is how many partitions the run covers. With one, ``dagster/row_count`` is that
    partition's rows. With more, Dagster repeats the metadata on every partition's
    materialization, so the run's total is labelled ``rows_written_by_run`` (over
    ``partition_range``) rather than passed off as each partition's row count; short ranges
    get exact per-partition counts from ``partition_metadata``. The 5-row ``preview`` and
    the table's date range are only added when ``detailed(partitions)`` (see there for the
    per-partition cost): a long backfill's partitions carry the scalars alone.

    ``schema`` adds the table's column schema. Off by default: the ingest, validation and
    feature assets declare theirs on the definition, and repeating it in each of 1,826
    partition materializations cost Dagster ~3 s per asset in a backfill. For the same reason
    those assets declare ``dagster/table_name`` (static too) and pass ``table_name=False``.
    """
    date = quote(date_column)
    total, first, last = con.execute(
        f"SELECT count(*), min({date}), max({date}) FROM {quote(table)}"
    ).fetchone()
    metadata: dict[str, dg.RawMetadataValue] = {}
    if partitions == 1:
        metadata["dagster/row_count"] = rows_written
    else:
        metadata["rows_written_by_run"] = rows_written
    if table_name:
        metadata["dagster/table_name"] = qualified_name(table)
    metadata.update({
        "partition_range": f"{start} .. {end}",
        "table_rows_total": int(total),
    })
    if detailed(partitions):
        metadata["table_date_range"] = f"{first} .. {last}"
        sample = con.execute(
            f"SELECT * FROM {quote(table)} WHERE {date} BETWEEN ? AND ? LIMIT 5", [start, end]
        ).df()
        metadata["preview"] = preview(sample)
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
