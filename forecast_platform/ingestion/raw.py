"""Landing files -> ``raw_sales``: the rows as they came, every value kept as text.

Raw keeps values as text on purpose: a value that does not parse ('12a', '2017-13-01') must reach
the quarantine with its original spelling, so nothing can be lost before validation. Each row
carries its file, its line number in that file, the ingestion time and a note on the file's
header (missing or unexpected columns), so a rejected row can always be traced back.

One bad file never holds the others back. A file that cannot be read as CSV text (binary, not in
the spec's encoding, a row with more fields than its header, a line over ``MAX_LINE_BYTES``) is
quarantined as a file: a row of ``file_rejects`` names it, its partition and why, and the other
files are ingested. Files are still read a header group at a time (the fast path); only when
DuckDB refuses a group are its files probed in halves to find the bad ones, which are then
diagnosed (byte and offset, line and length, line and field counts). An empty or header-only
file is ingested with no rows and also gets a ``file_rejects`` row ("no rows: ..."), so the
partition counts as ingested while its completeness check can say why it has no rows.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from forecast_platform.datasets.landing import partition_of
from forecast_platform.datasets.spec import ENCODING_NAMES, DatasetSpec, decode
from forecast_platform.ingestion.text import clip_message
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.store import quote, registered, replace_range

PARTITION_COLUMN = "partition_date"
# The longest line read (bytes): DuckDB's default max_line_size, stated here so the reason of a
# file with a longer line can say the limit.
MAX_LINE_BYTES = 2_097_152
SNIFF_BYTES = 8192  # the head of a file looked at for binary content
# Every byte but the control bytes that CSV text never holds (tab, CR and LF are text).
_TEXT_BYTES = bytes(b for b in range(256) if b >= 0x20 or b in (9, 10, 13))
_DUCKDB_LINE = re.compile(r"CSV Error on Line: (\d+)")
_DUCKDB_FIELDS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


class Unreadable(Exception):
    """A landing file that cannot be read as CSV text; ``reason`` says why (bounded)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Landed:
    """A readable landing file: its partition, the file, what DuckDB reads (the file itself or
    its UTF-8 copy) and its header."""

    day: dt.date
    source: Path
    read: Path
    header: tuple[str, ...]


def header_note(header: list[str] | tuple[str, ...], expected: list[str]) -> str:
    """How a file's header differs from the spec's columns ('' when it does not)."""
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    notes = []
    if missing:
        notes.append("missing column(s) " + ", ".join(repr(c) for c in missing))
    if extra:
        notes.append("unexpected column(s) " + ", ".join(repr(c) for c in extra) + " ignored")
    return "; ".join(notes)


def binary_reason(head: bytes) -> str | None:
    """Why the head of a file is not text (a NUL byte, many control bytes), or None."""
    nul = head.find(b"\x00")
    if nul >= 0:
        return f"binary: not CSV text (a NUL byte at offset {nul:,})"
    control = len(head.translate(None, _TEXT_BYTES))  # the control bytes it holds
    if head and control > 0.05 * len(head):
        return (f"binary: not CSV text ({control:,} control bytes in its first {len(head):,} "
                "bytes)")
    return None


def encoding_reason(data: bytes, encoding: str) -> str:
    """Which byte of ``data`` does not decode, where, and what would read it."""
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        data[bom:].decode("utf-8")
        return "encoding: the file does not decode"  # not reached for a file that failed
    except UnicodeDecodeError as err:
        offset = bom + err.start
    if encoding != "utf-8":
        try:
            data.decode(encoding)
        except UnicodeDecodeError as err:
            offset = err.start
    line = data.count(b"\n", 0, offset) + 1
    where = f"byte 0x{data[offset]:02x} at offset {offset:,} (line {line})"
    if encoding != "utf-8":
        name = ENCODING_NAMES[encoding]
        return f"encoding: neither UTF-8 nor {name}: {where} is not defined in {name}"
    return (f"encoding: not UTF-8: {where} does not decode as UTF-8; if the files are "
            "Windows-1252 (Excel on Windows), `encoding: cp1252` in the dataset spec reads them")


def prepare(day: dt.date, path: Path, encoding: str, tmp: Path) -> Landed:
    """Check a landing file is CSV text and read its header; raises ``Unreadable``.

    A UTF-8 spec reads only the file's head here (the fast path: DuckDB reads the rest and
    refuses a bad byte further on). A legacy encoding reads the whole file: valid UTF-8 is read
    as is, anything else is decoded strictly and written as a UTF-8 copy for DuckDB; the rows
    keep the original file as their source.
    """
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    reason = binary_reason(head)
    if reason:
        raise Unreadable(reason)
    read = path
    try:
        if encoding == "utf-8":
            # utf-8-sig: Excel starts a UTF-8 CSV with a byte-order mark, which would otherwise
            # become part of the first column's name (and every row would miss that column).
            with path.open(newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader(handle), [])
        else:
            data = path.read_bytes()
            try:
                text, used = decode(data, encoding)
            except UnicodeDecodeError:
                raise Unreadable(encoding_reason(data, encoding)) from None
            if used != "utf-8" and not data.isascii():
                read = tmp / path.name
                read.write_text(text, encoding="utf-8", newline="")
            header = next(csv.reader(io.StringIO(text, newline="")), [])
    except UnicodeDecodeError:
        raise Unreadable(encoding_reason(path.read_bytes(), encoding)) from None
    except csv.Error as err:
        raise Unreadable(f"structure: the header does not parse ({clip_message(err, 200)})"
                         ) from None
    return Landed(day, path, read, tuple(h.strip() for h in header))


def long_line(data: bytes, limit: int = MAX_LINE_BYTES) -> tuple[int, int] | None:
    """The first line longer than ``limit`` bytes: (its number, its length), or None."""
    start, line = 0, 1
    while True:
        end = data.find(b"\n", start)
        stop = len(data) if end < 0 else end
        if stop - start > limit:
            return line, stop - start
        if end < 0:
            return None
        start, line = end + 1, line + 1


def diagnose(file: Landed, error: str, encoding: str) -> str:
    """Why DuckDB could not read one file, in a bounded sentence (never its whole message,
    which quotes the offending line and suggests reader options nobody here can set)."""
    try:
        data = file.read.read_bytes()
    except OSError as err:
        return f"unreadable: {clip_message(err, 200)}"
    reason = binary_reason(data[:SNIFF_BYTES])
    if reason:
        return reason
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return encoding_reason(file.source.read_bytes(), encoding)
    long = long_line(data)
    if long:
        return (f"oversized line: line {long[0]} is {long[1]:,} bytes long, over the limit of "
                f"{MAX_LINE_BYTES:,} bytes per line")
    line = _DUCKDB_LINE.search(error)
    fields = _DUCKDB_FIELDS.search(error)
    if fields:
        where = f"line {line.group(1)}" if line else "a line"
        return (f"structure: {where} has {fields.group(2)} fields where the header has "
                f"{fields.group(1)}")
    # Another refusal: DuckDB's first sentence, without the quoted line and its suggestions.
    kept = []
    for text in error.splitlines():
        if not text.strip() or text.startswith(("Possible", "*", "Original Line")):
            if kept:
                break
            continue
        kept.append(text.replace("Invalid Input Error: ", "").strip())
    return "unreadable: " + clip_message(" ".join(kept) or error, 300)


def _read_sql(header: tuple[str, ...]) -> str:
    columns = "{" + ", ".join(f"'{_sql_text(c)}': 'VARCHAR'" for c in header) + "}"
    return (
        f"read_csv(?, columns = {columns}, header = true, auto_detect = false, delim = ',', "
        "quote = '\"', escape = '\"', filename = true, null_padding = true, parallel = false, "
        f"max_line_size = {MAX_LINE_BYTES})"
    )


def _groups(files: list[Landed]) -> dict[tuple[str, ...], list[Landed]]:
    groups: dict[tuple[str, ...], list[Landed]] = {}
    for file in files:
        groups.setdefault(file.header, []).append(file)
    return groups


def _write_raw(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, files: list[Landed],
               notes: dict[str, str], start: dt.date, end: dt.date,
               ingested_at: dt.datetime) -> int:
    """Replace raw_sales for the range with the rows of ``files`` (one read per header)."""
    expected = spec.columns
    # One read per distinct header, with the columns given: no per-file sniffing, and a file
    # with another column order or extra columns is read by name, not by position.
    # Line numbers: rows are numbered in read order (files in the given order, each file's rows
    # in order; DuckDB keeps insertion order without ORDER BY), and a row's line is its number
    # minus its file's first. ``row_number() OVER (PARTITION BY filename)`` looked equivalent
    # but numbers rows in the order its (unstable) partition sort leaves them: a few files in
    # every thousand got shuffled line numbers.
    # Every file's partition, source and header note, joined to its rows by the file DuckDB
    # read: one lookup per row instead of a regexp over every row's file path.
    file_info = pd.DataFrame({
        "file": pd.array([str(f.read) for f in files], dtype="string"),
        "source": pd.array([str(f.source) for f in files], dtype="string"),
        PARTITION_COLUMN: pd.to_datetime([f.day for f in files]),
        "note": pd.array([notes.get(str(f.source)) for f in files], dtype="string"),
    })
    selects, params = [], []
    for header, members in _groups(files).items():
        cols = ", ".join(
            f"{quote(c)}" if c in header else f"NULL::VARCHAR AS {quote(c)}" for c in expected
        )
        selects.append(f"SELECT {cols}, filename FROM {_read_sql(header)}")
        params.append([str(f.read) for f in members])
    if not selects:
        selects.append(
            "SELECT " + ", ".join(f"NULL::VARCHAR AS {quote(c)}" for c in expected)
            + ", NULL::VARCHAR AS filename WHERE false"
        )
    union = " UNION ALL ".join(selects)
    select = f"""
        WITH numbered AS (
            SELECT *, row_number() OVER () AS _n FROM ({union})
        ), rows AS (
            SELECT * EXCLUDE (_n), _n - min(_n) OVER (PARTITION BY filename) + 1 AS _line
            FROM numbered
        )
        SELECT
            f.{PARTITION_COLUMN}::DATE AS {PARTITION_COLUMN},
            {", ".join(quote(c) for c in expected)},
            f.source AS _source_file,
            _line + 1 AS _source_line,
            ?::TIMESTAMP AS _ingested_at,
            f.note AS _schema_note
        FROM rows LEFT JOIN _files f ON f.file = rows.filename
    """
    params.append(ingested_at)
    with registered(con, "_files", file_info):
        return replace_range(con, tables.RAW, PARTITION_COLUMN, start, end, select, params)


def isolate(con: duckdb.DuckDBPyConnection, files: list[Landed]) -> dict[Landed, str]:
    """The files DuckDB refuses, each with its error: each header group is read whole, and a
    group that fails is read in halves down to the single files that fail."""
    bad: dict[Landed, str] = {}

    def probe(header: tuple[str, ...], members: list[Landed]) -> None:
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _probe AS SELECT * FROM "
                        f"{_read_sql(header)}", [[str(f.read) for f in members]])
        except duckdb.Error as err:
            if len(members) == 1:
                bad[members[0]] = str(err)
                return
            half = len(members) // 2
            probe(header, members[:half])
            probe(header, members[half:])

    for header, members in _groups(files).items():
        probe(header, members)
    con.execute("DROP TABLE IF EXISTS _probe")
    return bad


def write_file_rejects(con: duckdb.DuckDBPyConnection, rejects: list[tuple[dt.date, Path, str]],
                       start: dt.date, end: dt.date, ingested_at: dt.datetime) -> int:
    """Replace ``file_rejects`` for the range: one row per landing file that gave no rows."""
    frame = pd.DataFrame({
        PARTITION_COLUMN: pd.to_datetime(pd.Series([day for day, _, _ in rejects],
                                                   dtype="object")),
        "file": pd.array([str(path) for _, path, _ in rejects], dtype="string"),
        "reason": pd.array([reason for _, _, reason in rejects], dtype="string"),
        "bytes": pd.array([_size(path) for _, path, _ in rejects], dtype="Int64"),
    })
    select = (f"SELECT {PARTITION_COLUMN}::DATE AS {PARTITION_COLUMN}, file::VARCHAR AS file, "
              "reason::VARCHAR AS reason, bytes::BIGINT AS bytes, "
              "?::TIMESTAMP AS ingested_at FROM _file_rejects")
    with registered(con, "_file_rejects", frame):
        return replace_range(con, tables.FILE_REJECTS, PARTITION_COLUMN, start, end, select,
                             [ingested_at])


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def ingest_files(
    con: duckdb.DuckDBPyConnection,
    spec: DatasetSpec,
    files: dict[dt.date, Path],
    start: dt.date,
    end: dt.date,
    ingested_at: dt.datetime,
) -> dict[str, object]:
    """Replace ``raw_sales`` and ``file_rejects`` for ``start..end`` with the given landing files.

    Returns facts for the materialization: rows, files, the per-file header notes and the
    files that gave no rows (``file_rejects``: file name -> reason).
    """
    expected = spec.columns
    notes: dict[str, str] = {}
    rejects: list[tuple[dt.date, Path, str]] = []
    readable: list[Landed] = []
    with tempfile.TemporaryDirectory(prefix="forecast_ingest_") as tmp:
        for day, path in sorted(files.items()):
            if partition_of(path) != day:
                raise ValueError(f"landing file {path.name} does not belong to partition {day}")
            try:
                if path.stat().st_size == 0:
                    notes[str(path)] = "empty file (no header, no rows)"
                    rejects.append((day, path, "no rows: the file is empty (0 bytes)"))
                    continue
                file = prepare(day, path, spec.encoding, Path(tmp))
            except Unreadable as err:
                rejects.append((day, path, err.reason))
                continue
            except OSError as err:  # removed since it was listed, or not ours to read
                rejects.append((day, path, f"unreadable: {clip_message(err, 200)}"))
                continue
            note = header_note(file.header, expected)
            if note:
                notes[str(path)] = note
            readable.append(file)
        try:
            rows = _write_raw(con, spec, readable, notes, start, end, ingested_at)
        except duckdb.Error as err:
            # The slow path: find the files DuckDB refuses, quarantine them, read the rest.
            bad = isolate(con, readable)
            if not bad:
                raise RuntimeError("reading the landing files failed: "
                                   f"{clip_message(err)}") from None
            for file, error in bad.items():
                rejects.append((file.day, file.source, diagnose(file, error, spec.encoding)))
            readable = [f for f in readable if f not in bad]
            rows = _write_raw(con, spec, readable, notes, start, end, ingested_at)
    # A file with a header and no rows is ingested (nothing to read), and said so.
    counts = dict(con.execute(
        f"SELECT _source_file, count(*) FROM {tables.RAW} "
        f"WHERE {PARTITION_COLUMN} BETWEEN ? AND ? GROUP BY 1", [start, end]).fetchall())
    for file in readable:
        if not counts.get(str(file.source)):
            rejects.append((file.day, file.source, "no rows: the file has a header only"))
    rejects.sort(key=lambda r: (r[0], str(r[1])))
    write_file_rejects(con, rejects, start, end, ingested_at)
    return {"rows": rows, "files": len(files), "file_notes": notes,
            "file_rejects": {path.name: reason for _, path, reason in rejects}}


# Landing bytes read in one statement: DuckDB numbers and joins every row it reads at once, and
# a backfill of many series (50,000 a day for three years is over a gigabyte of CSV) would not
# fit in memory. About 2 M rows of a typical sales file.
CHUNK_BYTES = 64 * 2**20


def file_chunks(files: dict[dt.date, Path], start: dt.date, end: dt.date,
                chunk_bytes: int | None = None) -> list[tuple[dt.date, dt.date]]:
    """``start..end`` cut into contiguous ranges whose files hold about ``chunk_bytes``
    (default ``CHUNK_BYTES``) each (a day's file is never split), covering every date."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    chunks: list[tuple[dt.date, dt.date]] = []
    first, size = start, 0
    days = sorted(d for d in files if start <= d <= end)
    for i, day in enumerate(days):
        size += _size(files[day]) or 0
        if size >= chunk_bytes and i < len(days) - 1:
            chunks.append((first, day))
            first, size = day + dt.timedelta(days=1), 0
    chunks.append((first, end))
    return chunks


def ingest_chunks(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, files: dict[dt.date, Path],
                  start: dt.date, end: dt.date, ingested_at: dt.datetime,
                  chunk_bytes: int | None = None) -> dict[str, object]:
    """``ingest_files`` a chunk of days at a time (``file_chunks``), with the facts of all."""
    facts: dict[str, Any] = {"rows": 0, "files": 0, "file_notes": {}, "file_rejects": {}}
    for first, last in file_chunks(files, start, end, chunk_bytes):
        part = ingest_files(con, spec, {d: p for d, p in files.items() if first <= d <= last},
                            first, last, ingested_at)
        facts["rows"] += part["rows"]
        facts["files"] += part["files"]
        facts["file_notes"].update(part["file_notes"])
        facts["file_rejects"].update(part["file_rejects"])
    return facts
