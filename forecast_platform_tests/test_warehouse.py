"""Partition writes: re-running replaces, never duplicates; a failed write changes nothing."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import duckdb
import pytest

from forecast_platform.warehouse.migrations import migrate
from forecast_platform.warehouse.store import WarehouseLocked, connect, replace_range

D1, D2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)


def rows(con, day: dt.date, n: int, value: int) -> int:
    sql = f"SELECT ?::DATE AS d, i, {value} AS v FROM range({n}) t(i)"
    return replace_range(con, "t", "d", day, day, sql, [day])


def test_rewrite_replaces_the_partition(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    rows(con, D1, 3, 1)
    rows(con, D2, 4, 1)
    rows(con, D1, 2, 7)  # re-materialize D1 with new content
    got = con.execute("SELECT d, count(*), max(v) FROM t GROUP BY d ORDER BY d").fetchall()
    assert got == [(D1, 2, 7), (D2, 4, 1)]


def test_first_write_answers_aggregates_correctly(tmp_path):
    """Regression: DuckDB 2.0.0 loses rows for count(DISTINCT) on a table created and filled in
    one transaction; the table is created outside it."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    sql = "SELECT DATE '2024-01-01' + INTERVAL (i % 10) DAY AS d, i FROM range(50000) t(i)"
    replace_range(con, "t", "d", D1, dt.date(2024, 1, 10), sql)
    assert con.execute("SELECT count(*), count(DISTINCT d) FROM t").fetchone() == (50000, 10)


def test_rows_outside_the_range_are_refused_and_nothing_changes(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    rows(con, D1, 3, 1)
    with pytest.raises(ValueError, match="outside 2024-01-01..2024-01-01"):
        replace_range(con, "t", "d", D1, D1, "SELECT DATE '2024-01-02' AS d, 1 AS i, 9 AS v")
    assert con.execute("SELECT count(*), max(v) FROM t").fetchone() == (3, 1)


def test_failed_insert_rolls_back_the_delete(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    rows(con, D1, 3, 1)
    # A query whose type does not fit the table fails at INSERT, after the DELETE ran.
    with pytest.raises(duckdb.Error):
        replace_range(con, "t", "d", D1, D1, "SELECT DATE '2024-01-01' AS d, 'x' AS i, 2 AS v")
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_a_refused_first_write_leaves_no_table(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    with pytest.raises(ValueError, match="1 rows for t have d outside"):
        replace_range(con, "t", "d", D1, D1, "SELECT DATE '2024-01-02' AS d, 1 AS i")
    assert con.execute("SELECT count(*) FROM information_schema.tables "
                       "WHERE table_name = 't'").fetchone()[0] == 0


def test_rows_with_a_null_date_are_refused(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    rows(con, D1, 3, 1)
    with pytest.raises(ValueError, match="2 rows for t have d outside"):
        replace_range(con, "t", "d", D1, D1,
                      "SELECT CASE WHEN i < 2 THEN NULL ELSE DATE '2024-01-01' END AS d, i, 5 AS v "
                      "FROM range(4) t(i)")
    assert con.execute("SELECT count(*), max(v) FROM t").fetchone() == (3, 1)


def _hold_warehouse(path, seconds: float) -> subprocess.Popen:
    """Another process (as `duckdb -readonly` would) holding the file read-only for a while."""
    code = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); "
            "print('held', flush=True); time.sleep(float(sys.argv[2])); con.close()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_writer_waits_for_a_reader_then_writes(tmp_path):
    path = tmp_path / "w.duckdb"
    with connect(path) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    reader = _hold_warehouse(path, 2.0)
    heard: list[str] = []
    try:
        with connect(path, wait_seconds=60, on_wait=heard.append) as con:
            con.execute("INSERT INTO t VALUES (2)")
            assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    finally:
        reader.wait(timeout=30)
    assert heard and f"PID {reader.pid}" in heard[0]


def test_a_writer_gives_up_after_its_wait_naming_the_holder(tmp_path):
    path = tmp_path / "w.duckdb"
    with connect(path) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    reader = _hold_warehouse(path, 10.0)
    try:
        with pytest.raises(WarehouseLocked, match=f"PID {reader.pid}.*waited"), \
                connect(path, wait_seconds=0.5):
            pass
    finally:
        reader.kill()
        reader.wait(timeout=30)


def test_an_old_column_name_is_migrated_on_the_next_writable_connect(tmp_path):
    """A data directory written before the rename model_version -> forecaster_version keeps
    working: the next writable connect renames the column, and partition writes by name land."""
    path = tmp_path / "w.duckdb"
    old = duckdb.connect(str(path))
    for table in ("forecasts", "drift_summary"):
        old.execute(f"CREATE TABLE {table} AS SELECT DATE '2024-01-01' AS ds, 1 AS model_version, "
                    "2.5 AS p50")
    old.execute("CREATE TABLE alerts AS SELECT 1 AS model_version")  # not a table of the rename
    old.close()
    with connect(path, read_only=True) as con:  # a reader changes nothing
        assert "model_version" in con.execute("SELECT * FROM forecasts").df().columns
    with connect(path) as con:
        assert list(con.execute("SELECT * FROM drift_summary").df().columns) == [
            "ds", "forecaster_version", "p50"]
        # Forecasts written before closed days were kept: all open.
        assert list(con.execute("SELECT * FROM forecasts").df().columns) == [
            "ds", "forecaster_version", "p50", "is_open"]
        assert list(con.execute("SELECT * FROM alerts").df().columns) == ["model_version"]
        sql = ("SELECT DATE '2024-01-02' AS ds, 3.5 AS p50, 2 AS forecaster_version, "
               "false AS is_open")
        assert replace_range(con, "forecasts", "ds", D2, D2, sql) == 1
        got = con.execute("SELECT ds, forecaster_version, p50, is_open FROM forecasts "
                          "ORDER BY ds")
        assert got.fetchall() == [(D1, 1, 2.5, True), (D2, 2, 3.5, False)]
        assert migrate(con) == []  # idempotent: nothing left to do
