"""Partition writes and reads on the DuckDB warehouse.

A partition (or a whole backfill range) is replaced by ``DELETE`` + ``INSERT`` in one
transaction: a re-run never duplicates rows and a killed run never leaves half a partition.
Inserts go ``BY NAME`` so a column order change upstream can never shift values into the
wrong column.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse; only one process may hold it for writing, so hold it briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, frame) -> Iterator[str]:
    """A DataFrame visible to SQL as ``name`` for the block, unregistered even when it fails."""
    con.register(name, frame)
    try:
        yield name
    finally:
        con.unregister(name)


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    return bool(row and row[0])


def quote(identifier: str) -> str:
    """Quote a column or table name taken from a dataset spec (user-controlled text)."""
    return '"' + identifier.replace('"', '""') + '"'


def replace_range(
    con: duckdb.DuckDBPyConnection,
    table: str,
    date_column: str,
    start: dt.date,
    end: dt.date,
    select_sql: str,
    params: list | None = None,
) -> int:
    """Replace rows of ``table`` with ``start <= date_column <= end`` by the rows of ``select_sql``.

    The table is created from the query's schema on first write. Returns the rows inserted.
    Rows of the query outside the range are refused: they would survive the next replace.
    """
    params = params or []
    # Stage and create outside the transaction: DuckDB 2.0.0 answers some aggregates wrongly
    # (count(DISTINCT ...) = 0) on a table created and filled in one transaction. Only the
    # DELETE + INSERT need to be atomic, and they are.
    con.execute(f"CREATE OR REPLACE TEMP TABLE _staged AS {select_sql}", params)
    try:
        outside = con.execute(
            f"SELECT count(*) FROM _staged WHERE {quote(date_column)} NOT BETWEEN ? AND ? "
            f"OR {quote(date_column)} IS NULL",
            [start, end],
        ).fetchone()[0]
        if outside:
            raise ValueError(
                f"{outside} rows for {table} have {date_column} outside {start}..{end} or null; "
                "a partition write may only touch its own partitions"
            )
        if not table_exists(con, table):
            con.execute(f"CREATE TABLE {quote(table)} AS SELECT * FROM _staged LIMIT 0")
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                f"DELETE FROM {quote(table)} WHERE {quote(date_column)} BETWEEN ? AND ?",
                [start, end],
            )
            con.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM _staged")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        inserted = con.execute("SELECT count(*) FROM _staged").fetchone()[0]
    finally:
        con.execute("DROP TABLE IF EXISTS _staged")
    return int(inserted)


def count_by_date(
    con: duckdb.DuckDBPyConnection, table: str, date_column: str, start: dt.date, end: dt.date
) -> dict[dt.date, int]:
    if not table_exists(con, table):
        return {}
    rows = con.execute(
        f"SELECT {quote(date_column)}, count(*) FROM {quote(table)} "
        f"WHERE {quote(date_column)} BETWEEN ? AND ? GROUP BY 1",
        [start, end],
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}
