"""Bad input: every kind is quarantined or refused with a message naming column, value and rule,
and no good row is lost (raw = validated + rejected)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from forecast_platform.datasets.registry import get_spec
from forecast_platform.ingestion.raw import ingest_files
from forecast_platform.ingestion.validation import validate_range

SPEC = get_spec("synthetic")
DAY = dt.date(2017, 3, 1)
HEADER = "date,store,item,sales,promo"


def land(tmp_path: Path, text: str, day: dt.date = DAY) -> dict[dt.date, Path]:
    path = tmp_path / f"sales_{day.isoformat()}.csv"
    path.write_text(text)
    return {day: path}


def frames(con):
    split = validate_range(con, SPEC, "raw_sales", DAY, DAY)
    return con.execute(split.valid_sql).df(), con.execute(split.rejects_sql).df()


def split(tmp_path: Path, text: str):
    files = land(tmp_path, text)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ingest_files(con, SPEC, files, DAY, DAY, dt.datetime(2024, 1, 1))
    valid, rejects = frames(con)
    raw = con.execute("SELECT count(*) FROM raw_sales").fetchone()[0]
    assert raw == len(valid) + len(rejects), "a row was lost or counted twice"
    return valid, rejects


GOOD = [f"2017-03-01,1,{i},{10 + i},0" for i in range(1, 6)]


def body(*bad: str) -> str:
    return "\n".join([HEADER, *GOOD, *bad]) + "\n"


@pytest.mark.parametrize(
    ("bad_row", "column", "words"),
    [
        ("2017-03-01,1,9,-4,0", "sales", ["-4", "negative", ">= 0"]),
        ("2017-03-01,1,9,,0", "sales", ["'sales'", "empty"]),
        ("2017-03-01,1,9,abc,0", "sales", ["'abc'", "not a number"]),
        ("2017-03-01,,9,4,0", "store", ["'store'", "empty"]),
        ("2017-03-01,x1,9,4,0", "store", ["'x1'", "not an integer"]),
        ("2017-02-30,1,9,4,0", "date", ["'2017-02-30'", "not a date"]),
        ("2017-03-02,1,9,4,0", "date", ["2017-03-02", "does not belong"]),
        ("2017-03-01,1,9,4,", "promo", ["'promo'", "empty"]),
    ],
)
def test_bad_value_is_quarantined_with_reason(tmp_path, bad_row, column, words):
    valid, rejects = split(tmp_path, body(bad_row))
    assert len(valid) == len(GOOD), "good rows must all pass"
    assert len(rejects) == 1
    reject = rejects.iloc[0]
    assert f"'{column}'" in reject["reason"]
    for word in words:
        assert word in reject["reason"], reject["reason"]
    # The original text is kept next to the reason.
    assert reject["_source_line"] == len(GOOD) + 2


def test_duplicate_keys_keep_the_first_row(tmp_path):
    valid, rejects = split(tmp_path, body("2017-03-01,1,1,99,0"))
    assert len(valid) == len(GOOD)
    assert valid.loc[valid["item"] == 1, "sales"].item() == 11.0  # the earlier row wins
    assert len(rejects) == 1 and "duplicate" in rejects.iloc[0]["reason"]
    assert rejects.iloc[0]["rules"] == "duplicates"


def test_missing_column_is_named_for_every_row(tmp_path):
    text = "date,store,item,promo\n" + "\n".join(
        f"2017-03-01,1,{i},0" for i in range(1, 4)
    )
    valid, rejects = split(tmp_path, text)
    assert valid.empty and len(rejects) == 3
    assert (rejects["reason"] == "column 'sales' is missing from the file").all()


def test_extra_column_and_other_column_order_are_read_by_name(tmp_path):
    text = "sales,item,store,date,extra,promo\n7,3,2,2017-03-01,zzz,1\n"
    files = land(tmp_path, text)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    facts = ingest_files(con, SPEC, files, DAY, DAY, dt.datetime(2024, 1, 1))
    assert "unexpected column(s) 'extra' ignored" in next(iter(facts["file_notes"].values()))
    valid, rejects = frames(con)
    assert rejects.empty
    row = valid.iloc[0]
    assert (row["store"], row["item"], row["sales"], row["promo"]) == (2, 3, 7.0, 1)


def test_empty_day_has_no_rows_and_loses_nothing(tmp_path):
    valid, rejects = split(tmp_path, HEADER + "\n")
    assert valid.empty and rejects.empty


def test_several_problems_in_one_row_are_all_named(tmp_path):
    _, rejects = split(tmp_path, body("2017-03-01,,9,-1,0"))
    reason = rejects.iloc[0]["reason"]
    assert "'store'" in reason and "negative" in reason
    assert set(rejects.iloc[0]["rules"].split(",")) == {"keys_and_dates", "target"}


def test_every_row_keeps_its_own_file_line_across_many_files(tmp_path):
    """Regression: lines were numbered by a window partitioned by file, whose unstable sort
    shuffled a few files' line numbers in every thousand. Many files, several thousand rows each
    across them: each row's _source_line must be its line in its file."""
    first = dt.date(2017, 1, 1)
    days = [first + dt.timedelta(days=i) for i in range(365)]
    files = {}
    for day in days:
        rows = [f"{day},{s},{i},{(s * 31 + i * 7 + day.day) % 50},0"
                for i in range(1, 21) for s in range(1, 16)]
        files.update(land(tmp_path, "\n".join([HEADER, *rows]) + "\n", day))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ingest_files(con, SPEC, files, days[0], days[-1], dt.datetime(2024, 1, 1))
    got = con.execute("SELECT _source_file, _source_line, date, store, item, sales, promo "
                      "FROM raw_sales").fetchall()
    lines = {str(path): path.read_text().splitlines() for path in files.values()}
    assert len(got) == 365 * 300
    for file, line, *values in got:
        assert lines[file][line - 1] == ",".join(values), (file, line)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1e23", ["'1e23'", "max_target=100,000"]),
        ("1e308", ["'1e308'", "max_target=100,000"]),
        ("100001", ["'100001'", "plausibility bound"]),
        ("1e309", ["'1e309'", "not finite"]),  # overflows a double: inf
        ("inf", ["'inf'", "not finite"]),
        ("-inf", ["'-inf'", "not finite"]),
        ("nan", ["'nan'", "not finite"]),
    ],
)
def test_implausible_and_non_finite_targets_are_quarantined(tmp_path, value, words):
    """The synthetic spec's bound is 100,000 units a day: a unit mix-up or an overflow never
    reaches the models; the reason names the value and the bound."""
    assert SPEC.max_target == 100_000
    valid, rejects = split(tmp_path, body(f"2017-03-01,1,9,{value},0"))
    assert len(valid) == len(GOOD) and len(rejects) == 1
    assert rejects.iloc[0]["rules"] == "target"
    for word in words:
        assert word in rejects.iloc[0]["reason"], rejects.iloc[0]["reason"]
    assert valid["sales"].max() < 100


def test_a_target_at_the_bound_passes_and_no_bound_means_finite_only(tmp_path):
    import dataclasses

    valid, rejects = split(tmp_path, body("2017-03-01,1,9,100000,0"))
    assert len(valid) == len(GOOD) + 1 and rejects.empty
    unbounded = dataclasses.replace(SPEC, max_target=None)
    files = land(tmp_path, body("2017-03-01,1,9,1e23,0", "2017-03-01,1,8,inf,0"))
    con = duckdb.connect(str(tmp_path / "u.duckdb"))
    ingest_files(con, unbounded, files, DAY, DAY, dt.datetime(2024, 1, 1))
    split_ = validate_range(con, unbounded, "raw_sales", DAY, DAY)
    assert len(con.execute(split_.rejects_sql).df()) == 1  # only inf
    with pytest.raises(ValueError, match="max_target must be a positive finite number"):
        dataclasses.replace(SPEC, max_target=float("inf"))


def test_a_huge_value_is_quoted_bounded_in_its_reason(tmp_path):
    """A megabyte in one field (within the line limit) is kept in the quarantine as it came,
    but its reason quotes a few hundred characters of it at most."""
    huge = "x" * 1_000_000
    valid, rejects = split(tmp_path, body(f"2017-03-01,1,9,{huge},0", f"{huge},1,9,4,0"))
    assert len(valid) == len(GOOD) and len(rejects) == 2
    for reason in rejects["reason"]:
        assert len(reason) <= 500, len(reason)
        assert "1,000,000 characters" in reason
    assert rejects["raw:sales"].str.len().max() == 1_000_000  # the original is kept


def test_unbalanced_partitions_finds_raw_rows_validation_did_not_see(tmp_path):
    """raw = valid + rejected by count, and from the same ingestion: a partition ingested again
    (a corrected file, same row count) but not validated again is found too."""
    from forecast_platform.ingestion.checks import unbalanced_partitions
    from forecast_platform.ingestion.validation import write_rejects, write_validated

    files = land(tmp_path, body("2017-03-01,1,9,-4,0"))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ingest_files(con, SPEC, files, DAY, DAY, dt.datetime(2024, 1, 1))
    assert unbalanced_partitions(con, SPEC) == [DAY]  # not validated yet
    split_ = validate_range(con, SPEC, "raw_sales", DAY, DAY)
    write_validated(con, SPEC, split_, DAY, DAY)
    write_rejects(con, SPEC, split_, DAY, DAY)
    assert unbalanced_partitions(con, SPEC) == []
    ingest_files(con, SPEC, files, DAY, DAY, dt.datetime(2024, 1, 2))  # same rows, new ingest
    assert unbalanced_partitions(con, SPEC) == [DAY]
    assert unbalanced_partitions(con, SPEC, DAY + dt.timedelta(days=1)) == []


def test_a_bad_file_is_quarantined_and_the_others_are_read(tmp_path):
    """The core of the ingest: one file DuckDB refuses in a group of good ones is found (the
    group is read in halves), named in file_rejects, and the rest are ingested."""
    days = [DAY + dt.timedelta(days=i) for i in range(7)]
    files = {}
    for day in days:
        rows = [f"{day},1,{i},{i},0" for i in range(1, 6)]
        files.update(land(tmp_path, "\n".join([HEADER, *rows]) + "\n", day))
    files[days[4]].write_text(f"{HEADER}\n{days[4]},1,1,1,0\n{days[4]},1,2,2,0,0\n")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    facts = ingest_files(con, SPEC, files, days[0], days[-1], dt.datetime(2024, 1, 1))
    assert facts["rows"] == 6 * 5
    assert facts["file_rejects"] == {
        files[days[4]].name: "structure: line 3 has 6 fields where the header has 5"}
    assert con.execute("SELECT partition_date, file FROM file_rejects").fetchall() == [
        (days[4], str(files[days[4]]))]
