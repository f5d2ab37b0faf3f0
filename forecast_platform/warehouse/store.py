"""Partition writes and reads on the DuckDB warehouse.

A partition (or a whole backfill range) is replaced by ``DELETE`` + ``INSERT`` in one
transaction: a re-run never duplicates rows and a killed run never leaves half a partition.
Inserts go ``BY NAME`` so a column order change upstream can never shift values into the
wrong column.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from forecast_platform.settings import DEFAULT_LOCK_WAIT_SECONDS
from forecast_platform.warehouse.migrations import migrate

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")
logger = logging.getLogger(__name__)


class WarehouseLocked(RuntimeError):
    """Another process held the warehouse for longer than the caller would wait."""


def lock_holder(message: str) -> str:
    """Who holds the file, as DuckDB's lock error names it (program and PID)."""
    match = _LOCK_HOLDER.search(message)
    return f"{match.group(1)} (PID {match.group(2)})" if match else "another process"


def open_warehouse(path: Path, read_only: bool = False,
                   wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
                   on_wait: Callable[[str], None] | None = None,
                   memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Connect, waiting with backoff while another process holds the file.

    DuckDB lets one process hold a file for writing and fails at once otherwise, even against
    a read-only reader; runs already queue on the Dagster pool, so what remains is a reader or
    a run of another instance, which let go in seconds. ``on_wait`` hears who holds the file
    every few seconds (default: this module's logger). ``memory_limit`` (e.g. ``6GB``) caps
    DuckDB's memory in this process: a setting of the open database, not of the connection's
    configuration, so connections with and without it can share the file in one process.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pause, last_said = 0.1, -math.inf
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as err:
            if "lock" not in str(err).lower():
                raise
            holder, waited = lock_holder(str(err)), time.monotonic() - started
            if waited >= wait_seconds:
                raise WarehouseLocked(
                    f"the warehouse {path} is held by {holder}; waited {waited:.0f} s "
                    f"(FORECAST_LOCK_WAIT_SECONDS={wait_seconds:g}). Close that process: a "
                    "reader should read a published snapshot, not the warehouse") from None
            if waited - last_said >= 5.0:
                (on_wait or logger.warning)(
                    f"waiting for the warehouse {path}: held by {holder} ({waited:.0f} s of "
                    f"at most {wait_seconds:g} s)")
                last_said = waited
            time.sleep(min(pause, max(0.0, wait_seconds - waited)))
            pause = min(pause * 2, 2.0)
            continue
        if memory_limit:
            con.execute(f"SET memory_limit = '{memory_limit}'")
        if not read_only:  # an existing data directory catches up with renamed columns
            try:
                migrate(con)
            except BaseException:
                con.close()
                raise
        return con


@contextmanager
def connect(path: Path, read_only: bool = False, wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
            on_wait: Callable[[str], None] | None = None, memory_limit: str | None = None
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (waiting out another process's hold, see ``open_warehouse``); only
    one process may hold it for writing, so hold it briefly."""
    con = open_warehouse(path, read_only, wait_seconds, on_wait, memory_limit)
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
    # fetchall, not fetchone: DuckDB 2.0 keeps a half-read result open, and the connection's
    # next register() then fails with "unfinished result".
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchall()
    return bool(rows and rows[0][0])


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """A table's column names, in their order (none when it does not exist)."""
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall()]


def copy_to_parquet(con: duckdb.DuckDBPyConnection, sql: str, path: Path,
                    params: list | None = None, row_group_rows: int | None = None) -> int:
    """Write a query's result to a zstd Parquet file by DuckDB itself; returns its rows.

    The rows never become a pandas frame: a snapshot of millions of rows costs DuckDB's
    bounded memory (``FORECAST_DUCKDB_MEMORY_LIMIT``), not an object column per string.
    """
    literal = str(path).replace("'", "''")
    groups = f", ROW_GROUP_SIZE {int(row_group_rows)}" if row_group_rows else ""
    return int(con.execute(f"COPY ({sql}) TO '{literal}' (FORMAT parquet, COMPRESSION zstd"
                           f"{groups})", params or []).fetchall()[0][0])


def parquet_frames(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """A Parquet file's rows as pandas frames of about ``rows`` rows each, in file order (one
    empty frame for a file without rows).

    Read by an in-memory DuckDB of its own, so the frames are typed exactly as the query that
    wrote the file (``copy_to_parquet``) would have given them, and the warehouse stays closed
    while the caller works through them.
    """
    vectors = max(1, rows // duckdb.__standard_vector_size__)
    with duckdb.connect(":memory:") as con:
        result = con.execute("SELECT * FROM read_parquet(?)", [str(path)])
        first = True
        while True:
            frame = result.fetch_df_chunk(vectors)
            if frame.empty and not first:  # an empty file still gives its (typed) columns
                return
            yield frame
            if frame.empty:
                return
            first = False


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

    The query's rows go straight into the table (no staging copy: for a five-year backfill that
    copy was a second write of every row). Refusing rows outside the range then works by
    counting: after the DELETE, the table holds no row of the range, so any row the INSERT adds
    outside it (or with a null date) raises the table's count of such rows; the transaction is
    rolled back and nothing changes.
    """
    params = params or []
    date = quote(date_column)
    created = not table_exists(con, table)
    if created:
        # Created outside the transaction: DuckDB 2.0.0 answers some aggregates wrongly
        # (count(DISTINCT ...) = 0) on a table created and filled in one transaction.
        con.execute(f"CREATE TABLE {quote(table)} AS SELECT * FROM ({select_sql}) LIMIT 0", params)
    outside_sql = (f"SELECT count(*) FROM {quote(table)} "
                   f"WHERE {date} NOT BETWEEN ? AND ? OR {date} IS NULL")
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {quote(table)} WHERE {date} BETWEEN ? AND ?", [start, end])
        before = con.execute(outside_sql, [start, end]).fetchone()[0]
        inserted = con.execute(
            f"INSERT INTO {quote(table)} BY NAME SELECT * FROM ({select_sql})", params
        ).fetchone()[0]
        outside = con.execute(outside_sql, [start, end]).fetchone()[0] - before
        if outside:
            raise ValueError(
                f"{outside} rows for {table} have {date_column} outside {start}..{end} or null; "
                "a partition write may only touch its own partitions"
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        if created:  # a refused first write leaves no table behind, as if it never ran
            con.execute(f"DROP TABLE IF EXISTS {quote(table)}")
        raise
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
