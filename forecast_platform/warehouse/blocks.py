"""Series blocks: contiguous ranges of series ids holding about a given number of rows each.

What an asset computes per series (an expected value, a context feature, an anomaly score)
never needs another series' rows, so it can read and compute a block of series at a time and
hold one block in memory, whatever the number of series. Ranges of the sorted id, not lists
of ids: a range is two comparisons in SQL whatever its size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

# Rows of one block: about a gigabyte of pandas at the widest (the feature table's ~45
# float64 columns), a fraction of that for anomaly scoring's inputs.
DEFAULT_BLOCK_ROWS = 2_000_000


@dataclass(frozen=True)
class SeriesBlock:
    """Series ids ``first <= id < stop``; None is open: the blocks of a listing cover every id,
    so a series another table holds and the listing did not still falls in one block."""

    first: str | None
    stop: str | None
    series: int
    rows: int

    def where(self, column: str = "series_id") -> tuple[str, list[str]]:
        """The SQL condition selecting the block, and its parameters."""
        parts, params = [], []
        if self.first is not None:
            parts.append(f"{column} >= ?")
            params.append(self.first)
        if self.stop is not None:
            parts.append(f"{column} < ?")
            params.append(self.stop)
        return " AND ".join(parts) or "TRUE", params


# The one open block: every series (what a block-wise reader reads when not given a block).
EVERY_SERIES = SeriesBlock(None, None, 0, 0)


def series_blocks(con: duckdb.DuckDBPyConnection, source: str, where: str = "TRUE",
                  params: list | None = None, block_rows: int = DEFAULT_BLOCK_ROWS
                  ) -> list[SeriesBlock]:
    """``source``'s series (rows matching ``where``) cut into blocks of about ``block_rows``
    rows, whole series each (a series longer than ``block_rows`` is a block of its own); one
    open block when there is no row."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be a positive number of rows, got {block_rows}")
    counts = con.execute(
        f"SELECT series_id, count(*) FROM {source} WHERE {where} GROUP BY 1 ORDER BY 1",
        params or []).fetchall()
    blocks: list[SeriesBlock] = []
    start, rows = 0, 0
    for i, (_, n) in enumerate(counts):
        rows += n
        last = i == len(counts) - 1
        if rows >= block_rows or last:
            stop = None if last else counts[i + 1][0]
            first = counts[start][0] if blocks else None
            blocks.append(SeriesBlock(first, stop, i + 1 - start, rows))
            start, rows = i + 1, 0
    return blocks or [EVERY_SERIES]


def date_chunks(con: duckdb.DuckDBPyConnection, source: str, date_column: str,
                start: dt.date, end: dt.date, chunk_rows: int | None = None
                ) -> list[tuple[dt.date, dt.date]]:
    """``start..end`` cut into contiguous ranges of about ``chunk_rows`` rows (default
    ``DEFAULT_BLOCK_ROWS``) of ``source`` each (whole dates: a date is never split), covering
    every date of the range.

    What a date-partitioned asset checks per partition (a duplicate within a day, a row in
    the wrong day's file) never spans two dates, so a long backfill can work a chunk of
    dates at a time and hold one chunk in memory.
    """
    chunk_rows = chunk_rows or DEFAULT_BLOCK_ROWS
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive number of rows, got {chunk_rows}")
    date = '"' + date_column.replace('"', '""') + '"'
    counts = con.execute(
        f"SELECT {date}, count(*) FROM {source} WHERE {date} BETWEEN ? AND ? GROUP BY 1 "
        "ORDER BY 1", [start, end]).fetchall()
    chunks: list[tuple[dt.date, dt.date]] = []
    first, rows = start, 0
    for i, (day, n) in enumerate(counts):
        rows += n
        if rows >= chunk_rows and i < len(counts) - 1:
            chunks.append((first, day))
            first, rows = day + dt.timedelta(days=1), 0
    chunks.append((first, end))
    return chunks
