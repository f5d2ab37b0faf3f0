"""Data-quality checks as plain functions over the warehouse, so they are testable without Dagster.

Each returns an ``Outcome``: pass/fail, the figures a person needs to act (counts, the dates and
example rows that fail) and one sentence saying what is wrong. The Dagster layer only turns
outcomes into asset check results.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from forecast_platform.datasets.closures import (
    closed_for_all,
    closed_pairs_sql,
    closed_sql,
    matched_keys,
)
from forecast_platform.datasets.landing import contiguous_ranges
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.ingestion.text import clip_message
from forecast_platform.warehouse.store import quote, table_exists
from forecast_platform.warehouse.tables import FILE_REJECTS, RAW, REJECTS, VALIDATED

EXAMPLES = 5


@dataclass(frozen=True)
class Outcome:
    passed: bool
    summary: str
    figures: dict[str, float | int | str] = field(default_factory=dict)
    examples: pd.DataFrame | None = None


def _examples(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> pd.DataFrame:
    return con.execute(f"SELECT * FROM ({sql}) LIMIT {EXAMPLES}", params).df()


def quarantined(
    con: duckdb.DuckDBPyConnection, category: str, start: dt.date, end: dt.date, what: str
) -> Outcome:
    """Rows of the range quarantined for one category of rule (they never reach the models)."""
    if not table_exists(con, REJECTS):
        return Outcome(True, f"no rows quarantined for {what}", {"quarantined": 0})
    where = "partition_date BETWEEN ? AND ? AND list_contains(string_split(rules, ','), ?)"
    n = con.execute(f"SELECT count(*) FROM {REJECTS} WHERE {where}", [start, end, category])
    count = int(n.fetchone()[0])
    if count == 0:
        return Outcome(True, f"no rows quarantined for {what}", {"quarantined": 0})
    sql = (
        f"SELECT partition_date, _source_file, _source_line, reason FROM {REJECTS} "
        f"WHERE {where} ORDER BY partition_date, _source_file, _source_line"
    )
    examples = _examples(con, sql, [start, end, category])
    return Outcome(
        False,
        f"{count} rows quarantined for {what}; see {REJECTS} for each reason",
        {"quarantined": count},
        examples,
    )


def file_headers(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> Outcome:
    """Landing files whose header differs from the spec (missing or unexpected columns)."""
    rows = con.execute(
        f"SELECT DISTINCT partition_date, _source_file, _schema_note FROM {RAW} "
        "WHERE partition_date BETWEEN ? AND ? AND _schema_note IS NOT NULL ORDER BY 1",
        [start, end],
    ).df()
    if rows.empty:
        return Outcome(True, "every file has the spec's columns", {"files_with_issues": 0})
    return Outcome(
        False, f"{len(rows)} files differ from the spec's columns",
        {"files_with_issues": len(rows)}, rows.head(EXAMPLES),
    )


def _open(spec: DatasetSpec, column: str) -> str:
    """SQL condition: the date in ``column`` is not closed for every series by the spec's
    closure rules (``closed_dates`` and the closures file's rules for all series)."""
    return f"NOT {closed_sql(spec, column)}"


def _closed(spec: DatasetSpec, day: dt.date) -> bool:
    """Whether ``day`` is closed for every series (``_open`` in Python)."""
    return closed_for_all(spec, day)


def valid_rows_contract(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, start: dt.date, end: dt.date
) -> Outcome:
    """What models rely on: no null key/date/target, no negative target, unique (date, keys),
    finite targets within the spec's ``max_target``."""
    date, target = quote(spec.date_column), quote(spec.target)
    keys = ", ".join(quote(k) for k in spec.keys)
    nulls = " OR ".join(f"{quote(c)} IS NULL" for c in [spec.date_column, *spec.keys, spec.target])
    negative = "false" if spec.allow_negative_target else f"{target} < 0"
    bound = "" if spec.max_target is None else f" OR {target} > {float(spec.max_target)!r}"
    row = con.execute(
        f"""SELECT count(*) FILTER ({nulls}), count(*) FILTER ({negative}),
                   count(*) - count(DISTINCT ({date}, {keys})),
                   count(*) FILTER (NOT isfinite({target}){bound})
            FROM {VALIDATED} WHERE {date} BETWEEN ? AND ?""",
        [start, end],
    ).fetchone()
    figures = {
        "null_values": int(row[0]), "negative_target": int(row[1]), "duplicates": int(row[2]),
        "implausible_target": int(row[3]),
    }
    passed = not any(figures.values())
    summary = "validated rows meet the contract" if passed else (
        "validated rows break the contract: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    )
    return Outcome(passed, summary, figures)


def completeness(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, start: dt.date, end: dt.date,
    expect_window: int = 28, max_missing_share: float | None = None,
) -> Outcome:
    """Series seen in the previous ``expect_window`` periods but absent on a date of the range.

    A few missing series-days (a quarantined row) are reported but pass; a date missing more than
    ``max_missing_share`` of its expected series (a partial or empty file) fails. Computed from
    the gaps between a series' consecutive rows, so the cost follows the gaps, not series x dates.
    A series closed on a date by the spec's closure rules (``closed_dates``, and the closures
    file's rules: a store's Sundays, its regional holidays) is not expected that day, so a
    date is compared with the series expected open.
    The tolerance is the spec's (``spec.max_missing_share``) unless given: how many series
    normally skip a period is a property of the data (Walmart's departments come and go week to
    week; a daily feed of stores x items has every row every day).

    A date whose landing file gave no rows (``file_rejects``: unreadable, empty, header only)
    fails too, even without history to compare with, and the outcome names the file and why;
    an empty or header-only file on a closed day does not.
    """
    if max_missing_share is None:
        max_missing_share = spec.max_missing_share  # checked by the spec
    elif not 0 <= max_missing_share < 1:
        raise ValueError(f"dataset {spec.name!r}: max_missing_share must be in [0, 1), got "
                         f"{max_missing_share}")
    date = quote(spec.date_column)
    keys = "".join(f", {quote(k)}" for k in matched_keys(spec))  # what the rules match on
    step = spec.step_days
    sql = f"""
        WITH s AS (
            SELECT series_id{keys}, {date} AS d,
                   lead({date}) OVER (PARTITION BY series_id ORDER BY {date}) AS nxt
            FROM {VALIDATED}
            WHERE {date} BETWEEN ?::DATE - INTERVAL {expect_window * step} DAYS AND ?
        ), gaps AS (
            SELECT series_id{keys}, unnest(generate_series(
                d + INTERVAL {step} DAYS,
                least(coalesce(nxt, ?::DATE + INTERVAL {step} DAYS),
                      d + INTERVAL {(expect_window + 1) * step} DAYS) - INTERVAL {step} DAYS,
                INTERVAL {step} DAYS))::DATE AS missing_date
            FROM s
        ), missing AS (
            SELECT missing_date, count(*) AS missing_series, min(series_id) AS example_series
            FROM gaps WHERE missing_date BETWEEN ? AND ?
              AND NOT {closed_sql(spec, "missing_date", "gaps")}
            GROUP BY 1
        ), present AS (
            SELECT {date} AS missing_date, count(*) AS present_series FROM {VALIDATED}
            WHERE {date} IN (SELECT missing_date FROM missing) GROUP BY 1
        )
        SELECT missing_date AS date, missing_series, coalesce(present_series, 0) AS present,
               round(missing_series / (missing_series + coalesce(present_series, 0)), 4)
                   AS missing_share, example_series
        FROM missing LEFT JOIN present USING (missing_date) ORDER BY 1
    """
    missing = con.execute(sql, [start, end, end, start, end]).df()
    total = int(missing["missing_series"].sum()) if not missing.empty else 0
    bad = missing[missing["missing_share"] > max_missing_share]
    files = file_rejects(con, start, end)
    # A closed day's file may well have no rows; one that could not be read still fails.
    closed = pd.Series([_closed(spec, d) for d in files["partition_date"]], index=files.index,
                       dtype=bool)
    files = files[~(files["reason"].str.startswith("no rows").astype(bool) & closed)]
    figures = {"missing_series_days": total, "dates_over_limit": len(bad),
               "files_without_rows": len(files)}
    if bad.empty and files.empty:
        note = f" ({total} series-days missing, each date under {max_missing_share:.0%})" \
            if total else ""
        return Outcome(True, f"expected series present{note}", figures,
                       missing.head(EXAMPLES) if total else None)
    parts = []
    if not bad.empty:
        parts.append(f"{len(bad)} dates miss more than {max_missing_share:.0%} of the series "
                     f"seen in the previous {expect_window} periods")
    if not files.empty:
        # A partition whose file gave no rows is incomplete even without history to compare.
        parts.append(_files_sentence(files))
    examples = bad.head(EXAMPLES)
    if not files.empty:
        # The files first (they say why), each beside its date's missing series if any.
        named = files.rename(columns={"partition_date": "date"})[["date", "file", "reason"]]
        named["date"] = pd.to_datetime(named["date"])
        dated = bad.assign(date=pd.to_datetime(bad["date"]))
        examples = pd.concat([
            named.head(EXAMPLES).merge(dated, on="date", how="left"),
            dated[~dated["date"].isin(named["date"])].head(EXAMPLES),
        ], ignore_index=True)
        examples["date"] = examples["date"].dt.date
    return Outcome(False, "; ".join(parts), figures, examples)


def file_rejects(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> pd.DataFrame:
    """The landing files of the range that gave no rows: partition_date, file (name), reason."""
    if not table_exists(con, FILE_REJECTS):
        return pd.DataFrame({"partition_date": [], "file": [], "reason": []}, dtype=object)
    rows = con.execute(
        f"SELECT partition_date, file, reason FROM {FILE_REJECTS} "
        "WHERE partition_date BETWEEN ? AND ? ORDER BY partition_date, file", [start, end]).df()
    return pd.DataFrame({
        "partition_date": pd.Series([d.date() for d in pd.to_datetime(rows["partition_date"])],
                                    dtype=object),
        "file": pd.Series([Path(f).name for f in rows["file"]], dtype=object),
        "reason": pd.Series([clip_message(r, 300) for r in rows["reason"]], dtype=object),
    })


def _files_sentence(files: pd.DataFrame, shown: int = 10) -> str:
    listed = "; ".join(f"{f} ({r})" for f, r in
                       zip(files["file"][:shown], files["reason"][:shown], strict=True))
    more = f"; and {len(files) - shown} more in {FILE_REJECTS}" if len(files) > shown else ""
    return f"{len(files)} landing files gave no rows: {listed}{more}"


def quarantined_files(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> Outcome:
    """Landing files of the range quarantined as files (unreadable) or without rows (empty)."""
    files = file_rejects(con, start, end)
    figures = {"files_without_rows": len(files),
               "files_unreadable": int((~files["reason"].str.startswith("no rows")).sum())
               if not files.empty else 0}
    if files.empty:
        return Outcome(True, "every landing file was read, with rows", figures)
    return Outcome(False, _files_sentence(files, shown=EXAMPLES), figures,
                   files.head(EXAMPLES))


def _dates_sentence(dates: pd.Series, limit: int = 10) -> str:
    """The dates a check is about, every one of them up to ``limit`` and a count beyond: a
    failing check must name what it is about, not only its first examples."""
    days = [str(d)[:10] for d in dates]
    more = f" and {len(days) - limit} more" if len(days) > limit else ""
    return ", ".join(days[:limit]) + more


def volume(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, start: dt.date, end: dt.date,
    window: int = 28, low: float = 0.5, high: float = 1.5,
) -> Outcome:
    """Rows per date against what the previous ``window`` periods make of the series open that
    day: the date's rows per open series against the trailing mean of that ratio (the expected
    rows are the trailing rows per open series x the series open that day).

    Open series: those with a row in the window before the range or in the range, less the ones
    the spec's closure rules close that day (a store's Sundays, its regional holidays, its
    refurbishment), so a regional holiday with 40 of 99 stores open expects 40 stores' rows.
    A day closed for every series (``closed_dates``, national holidays) is left out: it has
    (almost) no rows by design, and must neither fail nor drag the trailing mean down. Without
    closure rules for some series, this is the rows against their trailing mean.
    """
    date = quote(spec.date_column)
    step = spec.step_days
    keys = "".join(f", {quote(k)}" for k in matched_keys(spec))  # what the rules match on
    lookback = f"?::DATE - INTERVAL {window * step} DAYS"
    sql = f"""
        WITH spine AS (
            SELECT d FROM (
                SELECT unnest(generate_series({lookback}, ?::DATE, INTERVAL {step} DAYS))::DATE
                    AS d)
            WHERE {_open(spec, "d")}
        ), daily AS (
            SELECT {date} AS d, count(*) AS n FROM {VALIDATED}
            WHERE {date} BETWEEN {lookback} AND ? GROUP BY 1
        ), series AS (
            SELECT DISTINCT series_id{keys} FROM {VALIDATED}
            WHERE {date} BETWEEN {lookback} AND ?
        ), shut AS (
            SELECT d, count(*) AS closed_series
            FROM ({closed_pairs_sql(spec, "spine", "series")}) GROUP BY 1
        ), filled AS (
            SELECT spine.d, coalesce(daily.n, 0) AS n, daily.n IS NOT NULL AS seen,
                   (SELECT count(*) FROM series) - coalesce(shut.closed_series, 0) AS open
            FROM spine LEFT JOIN daily USING (d) LEFT JOIN shut USING (d)
        ), trail AS (
            SELECT d, n, open,
                   avg(n / open) FILTER (seen AND open > 0) OVER (
                       ORDER BY d ROWS BETWEEN {window} PRECEDING AND 1 PRECEDING) AS per_open
            FROM filled
        )
        SELECT d AS date, n AS rows, open AS open_series,
               round(per_open * open, 1) AS expected_rows
        FROM trail
        WHERE d BETWEEN ? AND ? AND per_open IS NOT NULL AND open > 0
          AND (n < {low} * per_open * open OR n > {high} * per_open * open)
        ORDER BY d
    """
    bad = con.execute(sql, [start, end, start, end, start, end, start, end]).df()
    if bad.empty:
        return Outcome(True, f"daily volume within {low:g}x..{high:g}x of the trailing rows per "
                             "open series", {"dates_out_of_bounds": 0})
    return Outcome(
        False,
        f"{len(bad)} dates have a row count outside {low:g}x..{high:g}x of the rows expected "
        f"from the series open that day (the trailing {window}-period rows per open series): "
        f"{_dates_sentence(bad['date'])}",
        {"dates_out_of_bounds": len(bad)},
        bad.head(EXAMPLES),
    )


def quarantine_rate(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, max_share: float = 0.05
) -> Outcome:
    """Dates where too much of the input was quarantined for the rest to be trusted."""
    rejects = (
        f"SELECT partition_date, count(*) AS n FROM {REJECTS} "
        "WHERE partition_date BETWEEN ? AND ? GROUP BY 1"
        if table_exists(con, REJECTS)
        else "SELECT NULL::DATE AS partition_date, 0 AS n WHERE false"
    )
    params = [start, end] if table_exists(con, REJECTS) else []
    sql = f"""
        WITH raw AS (SELECT partition_date, count(*) AS n FROM {RAW}
                     WHERE partition_date BETWEEN ? AND ? GROUP BY 1),
             rej AS ({rejects})
        SELECT raw.partition_date AS date, raw.n AS raw_rows, coalesce(rej.n, 0) AS rejected,
               round(coalesce(rej.n, 0) / raw.n, 4) AS share
        FROM raw LEFT JOIN rej USING (partition_date) ORDER BY 1
    """
    by_date = con.execute(sql, [start, end, *params]).df()
    raw_rows = int(by_date["raw_rows"].sum()) if not by_date.empty else 0
    rejected = int(by_date["rejected"].sum()) if not by_date.empty else 0
    bad = by_date[by_date["share"] > max_share]
    figures = {"raw_rows": raw_rows, "rejected_rows": rejected, "dates_over_limit": len(bad)}
    if bad.empty:
        return Outcome(True, f"quarantined share at most {max_share:.0%} on every date", figures)
    return Outcome(
        False, f"{len(bad)} dates have more than {max_share:.0%} of their rows quarantined",
        figures, bad.head(EXAMPLES),
    )


def freshness(
    con: duckdb.DuckDBPyConnection, landed: list[dt.date]
) -> Outcome:
    """Landed files not yet ingested: the warehouse is behind its upstream. A file that was read
    and gave no rows (empty, header only, quarantined as a file) is ingested."""
    if not landed:
        return Outcome(True, "no landing files yet", {"backlog_partitions": 0})
    # A partition is ingested once its file was read: it has raw rows, or its file is in
    # file_rejects (quarantined, or empty / header-only: read, with no rows).
    sources = [f"SELECT DISTINCT partition_date FROM {RAW}"] if table_exists(con, RAW) else []
    if table_exists(con, FILE_REJECTS):
        sources.append(f"SELECT DISTINCT partition_date FROM {FILE_REJECTS}")
    rows = con.execute(" UNION ".join(sources)).fetchall() if sources else []
    ingested = {r[0] for r in rows}
    backlog = sorted(set(landed) - ingested)
    latest = max(ingested) if ingested else None
    figures = {
        "latest_landed": max(landed).isoformat(),
        "latest_ingested": latest.isoformat() if latest else "none",
        "backlog_partitions": len(backlog),
    }
    if not backlog:
        return Outcome(True, "every landed file is ingested", figures)
    shown = ", ".join(d.isoformat() for d in backlog[:EXAMPLES])
    return Outcome(False, f"{len(backlog)} landed partitions not ingested yet: {shown}", figures)


def landing_names(stray: list[tuple[str, str]], outside: list[dt.date],
                  first: dt.date, last: dt.date) -> Outcome:
    """Files in the landing folder that are never ingested: a name that is no real date, or a
    date outside the dataset's partitions. They never define a run's range, so a typo such as
    ``sales_2099-01-01.csv`` cannot plan decades of partitions; this check makes them visible."""
    figures = {"stray_files": len(stray), "files_outside_partitions": len(outside)}
    if not stray and not outside:
        return Outcome(True, "every landing file names a day of the partitions", figures)
    named = [name for name, _ in stray] + [f"sales_{d.isoformat()}.csv" for d in outside]
    examples = pd.DataFrame({
        "file": named,
        "reason": [reason for _, reason in stray]
        + [f"{d} is outside the partitions {first}..{last}" for d in outside],
    })
    return Outcome(False, f"{len(named)} landing files are not ingested: "
                          f"{', '.join(named[:EXAMPLES])}", figures, examples.head(EXAMPLES))


def _balance_sql(spec: DatasetSpec, con: duckdb.DuckDBPyConnection, bounded: bool) -> str:
    """Per partition: raw rows against validated + rejected rows, and whether the validated and
    rejected rows come from the raw rows' ingestion (``_ingested_at``)."""
    date = quote(spec.date_column)
    where = "WHERE {col} BETWEEN ? AND ?" if bounded else ""
    parts = []
    for alias, table, col in (("r", RAW, "partition_date"), ("v", VALIDATED, date),
                              ("j", REJECTS, "partition_date")):
        if table_exists(con, table):
            parts.append(f"{alias} AS (SELECT {col} AS d, count(*) AS n, max(_ingested_at) AS t "
                         f"FROM {table} {where.format(col=col)} GROUP BY 1)")
        else:
            parts.append(f"{alias} AS (SELECT NULL::DATE AS d, 0 AS n, NULL::TIMESTAMP AS t "
                         "WHERE false)")
    return f"""
        WITH {", ".join(parts)}
        SELECT coalesce(r.d, v.d, j.d) AS date, coalesce(r.n, 0) AS raw_rows,
               coalesce(v.n, 0) AS valid_rows, coalesce(j.n, 0) AS rejected_rows,
               CASE WHEN coalesce(r.n, 0) <> coalesce(v.n, 0) + coalesce(j.n, 0)
                    THEN 'raw rows <> valid + rejected'
                    ELSE 'validated from an older ingestion than raw' END AS problem
        FROM r FULL JOIN v ON v.d = r.d FULL JOIN j ON j.d = coalesce(r.d, v.d)
        WHERE coalesce(r.n, 0) <> coalesce(v.n, 0) + coalesce(j.n, 0)
           OR v.t IS DISTINCT FROM r.t AND v.t IS NOT NULL
           OR j.t IS DISTINCT FROM r.t AND j.t IS NOT NULL
        ORDER BY 1
    """


def _balance(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, start: dt.date | None,
             end: dt.date | None) -> pd.DataFrame:
    bounded = start is not None or end is not None
    sql = _balance_sql(spec, con, bounded)
    lo, hi = start or dt.date.min, end or dt.date.max
    params = [lo, hi] * sql.count("BETWEEN ? AND ?") if bounded else []
    return con.execute(sql, params).df()


def unbalanced_partitions(con: duckdb.DuckDBPyConnection, spec: DatasetSpec,
                          start: dt.date | None = None, end: dt.date | None = None
                          ) -> list[dt.date]:
    """Partitions whose raw rows are not exactly their validated + rejected rows: validation
    did not run (or not to its end) on the raw rows they hold now, e.g. a run killed between
    ingesting and validating. Re-materializing ``validated_sales`` / ``sales_rejects`` for them
    (the ingest job over those partitions) restores the invariant. All partitions by default;
    ``start`` / ``end`` (inclusive) narrow the scan.
    """
    frame = _balance(con, spec, start, end)
    return [_as_date(d) for d in frame["date"]]


def _as_date(value) -> dt.date:
    """A date from DuckDB's frame (a pandas Timestamp or already a date)."""
    return value.date() if hasattr(value, "date") else value


def rows_balance(con: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> Outcome:
    """raw = valid + rejected on every partition of the warehouse (not only the run's range:
    a killed earlier run leaves its partitions unbalanced until they are validated again)."""
    bad = _balance(con, spec, None, None)
    # Consecutive days as one range: the rows_balance sensor validates each in one run.
    ranges = contiguous_ranges([_as_date(d) for d in bad["date"]], spec.step_days)
    figures = {"unbalanced_partitions": len(bad),
               "unbalanced_ranges": json.dumps([[a.isoformat(), b.isoformat()]
                                                for a, b in ranges])}
    if bad.empty:
        return Outcome(True, "every partition's raw rows are its validated + rejected rows",
                       figures)
    dates = [str(d)[:10] for d in bad["date"]]
    return Outcome(
        False,
        f"{len(bad)} partitions are not validated from their raw rows "
        f"({_dates_sentence(bad['date'])}); run the "
        "ingest job over them to validate them again",
        figures, bad.head(EXAMPLES).assign(date=dates[:EXAMPLES]),
    )
