"""Real retail calendars: a chain's daily export with rows for open days only (stores closed on
Sundays, on national and regional holidays, one store for a refurbishment) is understood, not
refused. ``init-dataset`` infers the closures as rules beside the spec, the blocking
completeness and volume checks expect no row from a closed store and pass the whole history,
and a partial file on an ordinary day still fails. Declared closures (``--closures``) and an
open flag (``--open``) are checked, naming what contradicts them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from forecast_platform.cli import main
from forecast_platform.datasets.closures import closed_rows, closed_sql, read_closures
from forecast_platform.datasets.custom import MappingError, inspect_csv
from forecast_platform.datasets.landing import landed_files
from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.spec import ClosureRule
from forecast_platform.ingestion import checks
from forecast_platform_tests.conftest import check_results, make_settings, run_job

START, END = dt.date(2019, 1, 1), dt.date(2021, 6, 30)  # 2.5 years
STORES, ITEMS = range(1, 13), (1, 2, 3)
SUNDAY_OPEN = 12  # the one store open on Sundays
NATIONAL = ("01-01", "04-25", "05-01", "08-15", "11-01", "12-25")
REGIONAL = ("03-19", "06-24", "09-11", "10-12")
REGION_STORES = range(1, 8)  # 7 stores keep the regional holidays
REFURBISHED = (5, dt.date(2020, 3, 2), dt.date(2020, 3, 15))  # store 5 closed two weeks
ORDINARY_TUESDAY = dt.date(2021, 6, 15)
# The days the module ingests: the last 16 months, in which every rule of the calendar applies
# (Sundays, each holiday, the refurbishment) and ORDINARY_TUESDAY has the weeks before it; each
# day more would be one more partition for the ingest run to record.
INGESTED = (dt.date(2020, 3, 1), END)
ARGS = ["--name", "chain", "--date", "day", "--keys", "Store,Item", "--target", "Sales"]


def closed(store: int, day: dt.date) -> bool:
    md = day.strftime("%m-%d")
    return (day.isoweekday() == 7 and store != SUNDAY_OPEN) or md in NATIONAL \
        or (md in REGIONAL and store in REGION_STORES) \
        or (store == REFURBISHED[0] and REFURBISHED[1] <= day <= REFURBISHED[2])


def chain_csv(path: Path, open_flag: bool = False) -> Path:
    """12 stores x 3 items, daily; rows for open days only (or every day with an open flag)."""
    rng = np.random.default_rng(7)
    days = pd.date_range(START, END).date
    rows = []
    for day in days:
        for store in STORES:
            shut = closed(store, day)
            if shut and not open_flag:
                continue
            for item in ITEMS:
                sales = 0 if shut else int(rng.poisson(20 + 3 * store + 5 * item
                                                       + 5 * (day.isoweekday() == 6)))
                row = {"day": day.isoformat(), "Store": store, "Item": item, "Sales": sales}
                if open_flag:
                    row["open"] = int(not shut)
                rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def init_dataset(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["init-dataset", *argv]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain")
    csv = chain_csv(tmp / "export.csv")
    settings = make_settings(tmp, dataset="chain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORECAST_DATA_DIR", str(settings.data_dir))
        report = init_dataset(["--csv", str(csv), *ARGS])
        spec = get_spec("chain", settings.datasets_dir)
        spec.lander(spec, settings.landing_dir(), settings.source_dir)
        instance = dg.DagsterInstance.ephemeral()
        ingest = run_job(settings, *INGESTED, "ingest_job", instance)
    return settings, spec, report, ingest, instance


def test_init_dataset_writes_the_closures_beside_the_spec_and_reports_them(chain):
    settings, spec, report, *_ = chain
    data = yaml.safe_load((settings.datasets_dir / "chain.yaml").read_text())
    assert data["closures"] == "chain.closures.csv" and data["closed_dates"] == []
    assert data["max_missing_share"] == 0.05  # no gaps left once the closures are rules
    rules = read_closures(settings.datasets_dir / "chain.closures.csv", ["Store", "Item"])
    assert spec.closure_rules == rules and spec.closures_file == "chain.closures.csv"
    by = {}
    for r in rules:
        by.setdefault(r.note.split(" of ")[0], []).append(r)
    # Sundays per store (11 stores, the coarsest key that explains them, not per item).
    assert sorted(int(r.match["Store"]) for r in by["weekly closing"]) == \
        [s for s in STORES if s != SUNDAY_OPEN]
    assert {r.weekday for r in by["weekly closing"]} == {7}
    assert all(set(r.match) == {"Store"} for r in by["weekly closing"])
    # National holidays: yearly, for every series.
    assert sorted(r.yearly for r in by["national holiday"]) == sorted(NATIONAL)
    assert all(not r.match for r in by["national holiday"])
    # Regional holidays: yearly rules of the 7 stores that keep them.
    regional = {(r.match["Store"], r.yearly) for r in by["regional holiday"]}
    assert regional == {(str(s), md) for s in REGION_STORES for md in REGIONAL}
    # The refurbishment: the days of the two weeks that are not closed anyway (Sundays).
    run = by["closed run"]
    assert {r.match["Store"] for r in run} == {"5"}
    assert len(run) == 12 and run[0].date == "2020-03-02"
    assert "closures: 57 rules in chain.closures.csv" in report
    assert "weekly closing: 11 rules (11 weekday), e.g. Store=1 closed every Sunday" in report
    assert "national holiday: 6 rules (6 yearly)" in report
    assert "the forecaster needs at least 659" in report
    assert "closures left out" in report


def test_the_ingest_passes_sundays_and_holidays(chain):
    settings, spec, _, ingest, _ = chain
    results = check_results(ingest)
    failed = {k: r.metadata["summary"].value for k, r in results.items()
              if not r.passed and r.blocking}
    assert ingest.success and not failed
    for name in ("completeness", "volume"):
        assert results[f"validated_sales.{name}"].passed
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM validated_sales").fetchone()[0]
        # The SQL helper agrees with the calendar: no validated row is on a closed day.
        on_closed = con.execute(
            f"SELECT count(*) FROM validated_sales v WHERE {closed_sql(spec, 'v.day', 'v')}"
        ).fetchone()[0]
        sundays = con.execute(
            "SELECT DISTINCT Store FROM validated_sales WHERE isodow(day) = 7").fetchall()
    expected = sum(len(ITEMS) for d in pd.date_range(*INGESTED).date for s in STORES
                   if not closed(s, d))
    assert rows == expected and on_closed == 0 and sundays == [(SUNDAY_OPEN,)]


def test_a_partial_file_on_an_ordinary_tuesday_fails_completeness(chain):
    """Half the open stores' rows on a day no rule closes: incomplete, as before closures.
    (Runs last: it replaces the day's partition in the module's warehouse.)"""
    settings, spec, _, _, instance = chain
    assert not any(closed(s, ORDINARY_TUESDAY) for s in STORES)
    assert ORDINARY_TUESDAY.isoweekday() == 2
    path = landed_files(settings.landing_dir())[ORDINARY_TUESDAY]
    frame = pd.read_csv(path, dtype=str)
    frame[frame["Store"].astype(int) <= 6].to_csv(path, index=False)
    result = run_job(settings, ORDINARY_TUESDAY, ORDINARY_TUESDAY, "ingest_job", instance)
    completeness = check_results(result)["validated_sales.completeness"]
    assert not result.success and not completeness.passed
    assert str(ORDINARY_TUESDAY) in completeness.metadata["examples"].value
    assert "1 dates miss more than 5%" in completeness.metadata["summary"].value
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        # Were stores 7-12 closed that day by rule (a regional holiday), the same file would
        # pass: the rules, not the row count, say which stores are expected.
        outcome = checks.completeness(con, spec, ORDINARY_TUESDAY, ORDINARY_TUESDAY)
        regional = dataclasses.replace(spec, closure_rules=spec.closure_rules + tuple(
            ClosureRule(date=ORDINARY_TUESDAY.isoformat(), match={"Store": str(s)})
            for s in range(7, 13)))
        assert checks.completeness(con, regional, ORDINARY_TUESDAY, ORDINARY_TUESDAY).passed
        assert checks.volume(con, regional, ORDINARY_TUESDAY, ORDINARY_TUESDAY).passed
    assert not outcome.passed


# -- declared closures and open flags (no graph) -------------------------------------------------


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    return chain_csv(tmp / "export.csv"), chain_csv(tmp / "flagged.csv", open_flag=True)


def test_declared_closures_are_used_and_a_contradiction_names_series_date_and_value(
        export, tmp_path):
    csv, _ = export
    declared = tmp_path / "closures.csv"
    lines = ["date,yearly,weekday,Store,note"]
    lines += [f",,7,{s},Sundays" for s in STORES if s != SUNDAY_OPEN]
    lines += [f",{md},,,national" for md in NATIONAL]
    lines += [f",{md},,{s},regional" for md in REGIONAL for s in REGION_STORES]
    lines += [f"{d.date()},,,5,refurbishment" for d in pd.date_range(*REFURBISHED[1:])]
    declared.write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    report = init_dataset(["--csv", str(csv), "--data-dir", str(data), "--closures",
                           str(declared), *ARGS])
    assert "closures: 59 rules in chain.closures.csv" in report
    assert "59 closure rules declared" in report
    spec = get_spec("chain", data / "datasets")
    assert len(spec.closure_rules) == 59 and spec.max_missing_share == 0.05
    # Store 12 declared closed on Sundays, but it sells on them.
    declared.write_text("\n".join([*lines, ",,7,12,wrong"]) + "\n")
    with pytest.raises(SystemExit) as err:
        init_dataset(["--csv", str(csv), "--data-dir", str(tmp_path / "other"), "--closures",
                      str(declared), *ARGS])
    message = str(err.value)
    assert "declared closed days have sales: Store=12, Item=1 has sales '" in message
    assert "on 2019-01-06 (line " in message and "Store=12 closed every Sunday" in message
    assert not (tmp_path / "other" / "datasets").exists()
    declared.write_text("date,yearly,weekday,Store\n,,8,3\n")
    with pytest.raises(SystemExit, match=r"closures file .*line 2: .*weekday 1-7"):
        init_dataset(["--csv", str(csv), "--data-dir", str(tmp_path / "x"), "--closures",
                      str(declared), *ARGS])


def test_an_open_flag_becomes_exact_rules_and_closed_rows_are_not_landed(export, tmp_path):
    _, flagged = export
    data = tmp_path / "data"
    report = init_dataset(["--csv", str(flagged), "--data-dir", str(data), "--open", "open",
                           *ARGS])
    assert "open flag 'open': closed rows (0) are closure rules" in report
    spec = get_spec("chain", data / "datasets")
    rules = spec.closure_rules
    assert sorted(int(r.match["Store"]) for r in rules if r.weekday) == \
        [s for s in STORES if s != SUNDAY_OPEN]
    assert {r.yearly for r in rules if r.yearly and not r.match} == set(NATIONAL)
    assert {(r.match["Store"], r.yearly) for r in rules if r.yearly and r.match} == \
        {(str(s), md) for s in REGION_STORES for md in REGIONAL}
    assert {r.match["Store"] for r in rules if r.date} == {"5"}
    files = spec.lander(spec, tmp_path / "landing")
    landed = pd.concat(pd.read_csv(f) for f in files)
    assert len(landed) == (pd.read_csv(flagged)["open"] == 1).sum()
    assert "open" not in landed.columns


def test_an_export_writing_0_on_closed_days_gets_the_rules_of_one_leaving_them_out(
        export, tmp_path):
    """Every day written, 0 when closed: the same closure rules as the open-days export (the
    Sundays, the holidays, the refurbishment of a whole store), and the closed zeros are not
    landed. One series' run of zero days stays a zero run, not a closure."""
    csv, flagged = export
    frame = pd.read_csv(flagged, dtype=str).drop(columns=["open"])
    ordinary = pd.to_datetime(frame["day"]).between("2020-10-05", "2020-10-16")
    frame.loc[ordinary & frame["Store"].eq("3") & frame["Item"].eq("2"), "Sales"] = "0"
    zeros = tmp_path / "zeros.csv"
    frame.to_csv(zeros, index=False)
    written = inspect_csv(zeros, "chain", "day", ["Store", "Item"], "Sales")
    left_out = inspect_csv(csv, "chain", "day", ["Store", "Item"], "Sales")
    assert sorted(map(repr, written.rules)) == sorted(map(repr, left_out.rules))
    spec = dataclasses.replace(get_spec("synthetic"), name="chain", date_column="day",
                               keys=("Store", "Item"), key_types={"Store": "int", "Item": "int"},
                               target="Sales", known={}, closed_dates=(),
                               closure_rules=tuple(written.rules))
    shut = closed_rows(spec, frame, pd.to_datetime(frame["day"]))
    assert int(shut.sum()) == len(frame) - len(pd.read_csv(csv))


def test_declared_closure_dates_may_be_written_as_the_data_writes_dates(export, tmp_path):
    csv, _ = export
    frame = pd.read_csv(csv, dtype=str)
    frame["day"] = pd.to_datetime(frame["day"]).dt.strftime("%d.%m.%Y")
    german = tmp_path / "german.csv"
    frame.to_csv(german, index=False)
    first, last = REFURBISHED[1:]
    days = pd.date_range(first, last)
    declared = tmp_path / "closures.csv"
    declared.write_text(
        "date,yearly,weekday,Store,note\n"
        + "".join(f",,7,{s},Sundays\n" for s in STORES if s != SUNDAY_OPEN)
        + "".join(f",{md},,,national\n" for md in NATIONAL)
        + "".join(f",{md},,{s},regional\n" for s in REGION_STORES for md in REGIONAL)
        + "".join(f"{d:%d.%m.%Y},,,{REFURBISHED[0]},refurbishment\n" for d in days))
    p = inspect_csv(german, "chain", "day", ["Store", "Item"], "Sales", closures=declared)
    assert sorted(r.date for r in p.rules if r.date) == [f"{d:%Y-%m-%d}" for d in days]


def test_rows_of_0_on_declared_closed_days_are_not_landed(export, tmp_path):
    """An export that writes every day, 0 when the store is closed: with the closures declared,
    a closed day's 0 is no sale and is not landed; a sale on a closed day is landed, for the
    ingest checks to name."""
    _, flagged = export
    frame = pd.read_csv(flagged, dtype=str).drop(columns=["open"])
    csv = tmp_path / "every_day.csv"
    frame.to_csv(csv, index=False)
    declared = tmp_path / "closures.csv"
    declared.write_text("date;yearly;weekday;Store;note\n" + "".join(
        f";;7;{s};closed on Sundays\n" for s in STORES if s != SUNDAY_OPEN))
    data = tmp_path / "data"
    init_dataset(["--csv", str(csv), "--data-dir", str(data), "--closures", str(declared),
                  *ARGS])
    spec = get_spec("chain", data / "datasets")
    sunday = pd.to_datetime(frame["day"]).dt.dayofweek == 6
    sold_on_a_closed_sunday = frame.index[sunday & frame["Store"].eq("1")][0]
    frame.loc[sold_on_a_closed_sunday, "Sales"] = "5"
    frame.to_csv(csv, index=False)
    landed = pd.concat(pd.read_csv(f, dtype=str) for f in spec.lander(spec, tmp_path / "land"))
    on_sunday = landed[pd.to_datetime(landed["day"]).dt.dayofweek == 6]
    assert set(on_sunday["Store"]) == {"1", str(SUNDAY_OPEN)}
    assert on_sunday[on_sunday["Store"] == "1"]["Sales"].tolist() == ["5"]
    closed_sundays = sunday & frame["Store"].ne(str(SUNDAY_OPEN))
    assert len(landed) == len(frame) - int(closed_sundays.sum()) + 1


def test_an_open_flag_that_is_not_0_or_1_names_the_value_and_the_row(export, tmp_path):
    _, flagged = export
    frame = pd.read_csv(flagged, dtype=str)
    frame.loc[40, "open"] = "yes"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(SystemExit, match=r"open column 'open' must hold 0 \(closed\) or 1 "
                                         r"\(open\), got 'yes' on line 42"):
        init_dataset(["--csv", str(bad), "--data-dir", str(tmp_path / "d"), "--open", "open",
                      *ARGS])
    frame.loc[40, "open"] = "0"  # a closed row with sales
    frame.to_csv(bad, index=False)
    with pytest.raises(SystemExit, match=r"open column 'open': Store=\d+, Item=\d+ is closed "
                                         r"\(0\) on 2019-01-\d\d but has Sales='\d+' \(line 42\)"):
        init_dataset(["--csv", str(bad), "--data-dir", str(tmp_path / "d"), "--open", "open",
                      *ARGS])


def test_a_short_history_fails_early_with_the_figure(export, tmp_path):
    csv, _ = export
    frame = pd.read_csv(csv, dtype=str)
    short = tmp_path / "short.csv"
    frame[frame["day"] >= "2020-06-01"].to_csv(short, index=False)
    with pytest.raises(MappingError, match=r"history is too short: 2020-06-01 .. 2021-06-30 is "
                                           r"395 days, .* needs at least 659 days \(547 days "
                                           r"before the first training row for the "
                                           r"normaliser .* \+ "
                                           r"112 days for the backtest"):
        inspect_csv(short, "chain", "day", ["Store", "Item"], "Sales")
    # Two years, as many retailers' exports hold, are enough: the features that read further
    # back are missing values until the history holds them.
    two_years = tmp_path / "two_years.csv"
    frame[frame["day"] >= "2019-07-01"].to_csv(two_years, index=False)
    proposal = inspect_csv(two_years, "chain", "day", ["Store", "Item"], "Sales")
    assert "history 731 days; the forecaster needs at least 659" in proposal.text()


def test_data_without_series_structure_is_refused_saying_what_was_found(tmp_path):
    rng = np.random.default_rng(1)
    days = pd.date_range(START, END)
    rows = [{"day": d.date().isoformat(), "k": k, "y": 1}
            for d in days for k in rng.choice(400, size=4, replace=False)]
    csv = tmp_path / "log.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    with pytest.raises(MappingError, match=r"the keys \['k'\] do not describe series that report "
                                           r"most periods: \d+% of the series-periods .* with "
                                           r"\d+ closure rules found"):
        inspect_csv(csv, "log", "day", ["k"], "y")


def test_a_rule_has_one_day_pattern_and_matches_keys_of_the_spec():
    assert ClosureRule(weekday=7, match={"Store": 3}).describe() == "Store=3 closed every Sunday"
    assert ClosureRule(yearly="12-25").describe() == "every series closed every 12-25"
    for bad in ({}, {"weekday": 8}, {"date": "2020-1-2"}, {"yearly": "12-25", "weekday": 1}):
        with pytest.raises(ValueError, match="closure rule"):
            ClosureRule(**bad)
    spec = dataclasses.replace(get_spec("synthetic"), closed_dates=("12-25", "2016-01-02"))
    assert [r.kind for r in spec.rules] == ["yearly", "date"]  # closed_dates are rules too
    with pytest.raises(ValueError, match=r"matches \['region'\], which are not among the keys"):
        dataclasses.replace(spec, closure_rules=(ClosureRule(weekday=7, match={"region": "A"}),))


def test_a_holiday_that_fell_on_a_closed_sunday_is_still_yearly():
    """Christmas 2016 was a Sunday, when the Sunday-closing stores are shut anyway: their
    Christmas is still a yearly rule, so next year's Christmas is forecast closed."""
    from forecast_platform.datasets.closures import History, infer_closures

    rows = []
    for day in pd.date_range("2015-06-01", "2017-12-31").date:
        for store in range(1, 11):
            shut = (day.isoweekday() == 7 and store != 10) \
                or (day.strftime("%m-%d") in ("12-25", "01-01") and store != 10)
            if not shut:
                rows += [(str(store), str(item), day) for item in (1, 2)]
    frame = pd.DataFrame(rows, columns=["Store", "Item", "day"])
    history = History.build(frame[["Store", "Item"]], pd.to_datetime(frame["day"]), 1)
    rules = infer_closures(history, daily=True).rules
    yearly = {(r.match.get("Store"), r.yearly) for r in rules if r.yearly}
    assert yearly == {(str(s), md) for s in range(1, 10) for md in ("12-25", "01-01")}
    assert not [r for r in rules if r.date]
