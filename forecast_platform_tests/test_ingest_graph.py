"""The ingest graph materialized for real: landing files -> DuckDB, checks in the run."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pytest

from forecast_platform.datasets.landing import landed_files
from forecast_platform.datasets.registry import get_spec, land_synthetic
from forecast_platform.definitions import build_definitions
from forecast_platform_tests.conftest import (
    STORE_ITEM_DIR,
    check_results,
    make_settings,
    materialized,
    run_job,
)

SPEC = get_spec("synthetic")
START, END = dt.date(2017, 11, 1), dt.date(2017, 12, 31)
DAYS = (END - START).days + 1


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    """200 series over two months, with the demo's handful of upstream mistakes."""
    settings = make_settings(tmp_path_factory.mktemp("graph"))
    land_synthetic(SPEC, settings.landing_dir(), start=START, n_stores=20, n_items=10)
    return settings


@pytest.fixture(scope="module")
def first_run(landed):
    return run_job(landed, START, END)


def query(settings, sql: str):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_run_materializes_every_partition_of_every_asset(first_run):
    assert first_run.success
    events = [e for e in first_run.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    per_asset: dict[str, set[str]] = {}
    for e in events:
        m = e.event_specific_data.materialization
        per_asset.setdefault(m.asset_key.to_user_string(), set()).add(m.partition)
    for asset in ("raw_sales", "validated_sales", "sales_rejects", "sales_features"):
        assert len(per_asset[asset]) == DAYS, asset
    assert "holiday_calendar" in per_asset


def test_nothing_is_lost_and_bad_rows_are_quarantined_with_reasons(landed, first_run):
    raw = query(landed, "SELECT count(*) FROM raw_sales")[0][0]
    valid = query(landed, "SELECT count(*) FROM validated_sales")[0][0]
    rejects = query(landed, "SELECT reason FROM sales_rejects ORDER BY reason")
    assert raw == 200 * DAYS + 1  # one duplicated row was added upstream
    assert raw == valid + len(rejects)
    reasons = " | ".join(r[0] for r in rejects)
    for words in ("negative", "'12a' is not a number", "'store' is empty", "duplicate",
                  "'2017-02-30' is not a date"):
        assert words in reasons


def test_models_never_see_quarantined_rows(landed, first_run):
    bad = query(landed, "SELECT count(*) FROM sales_features WHERE y < 0 OR y IS NULL")[0][0]
    assert bad == 0
    assert query(landed, "SELECT count(*) FROM sales_features")[0][0] == \
        query(landed, "SELECT count(*) FROM validated_sales")[0][0]


def test_checks_warn_on_quarantine_and_pass_the_blocking_ones(first_run):
    checks = check_results(first_run)
    for name in ("completeness", "volume", "quarantine_rate", "valid_rows_contract"):
        assert checks[f"validated_sales.{name}"].passed, name
        assert checks[f"validated_sales.{name}"].blocking
    target = checks["sales_rejects.target_valid"]
    assert not target.passed and target.severity == dg.AssetCheckSeverity.WARN
    assert target.metadata["quarantined"].value == 3
    assert not checks["sales_rejects.unique_date_keys"].passed
    assert checks["raw_sales.columns_match_spec"].passed
    assert checks["raw_sales.freshness"].passed


def test_declared_column_schemas_match_the_tables_and_stay_out_of_each_partition(
        landed, first_run):
    """Schemas are declared on the assets (static), so they must equal the real tables; the
    per-partition materializations then do not repeat them."""
    from forecast_platform.definitions import build_definitions
    from forecast_platform.defs.metadata import column_schema

    specs = {s.key.to_user_string(): s for s in build_definitions(landed).resolve_all_asset_specs()}
    with duckdb.connect(str(landed.warehouse_path), read_only=True) as con:
        for table in ("raw_sales", "validated_sales", "sales_rejects"):
            declared = specs[table].metadata["dagster/column_schema"]
            assert declared == column_schema(con, table), table
        names = [c[0] for c in con.execute("DESCRIBE sales_features").fetchall()]
    declared = specs["sales_features"].metadata["dagster/column_schema"]
    assert [c.name for c in declared.columns] == names
    for table in ("raw_sales", "validated_sales", "sales_rejects", "sales_features"):
        assert specs[table].metadata["dagster/table_name"] == f"warehouse.main.{table}"
    for event in first_run.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
            assert "dagster/column_schema" not in metadata
            assert "dagster/table_name" not in metadata


def partition_metadata(result, asset: str) -> dict[str, dict]:
    """Each partition's materialization metadata (plain values) in a run, by partition key."""
    from forecast_platform.defs.metadata import metadata_values

    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            m = event.event_specific_data.materialization
            if m.asset_key.to_user_string() == asset:
                out[m.partition] = metadata_values(m)
    return out


WAREHOUSE_ASSETS = {"raw_sales": "partition_date", "validated_sales": "date",
                    "sales_rejects": "partition_date", "sales_features": "ds"}


def test_a_long_range_carries_lean_honest_metadata_on_every_partition(landed, first_run):
    """Over DETAIL_MAX_PARTITIONS partitions, every partition keeps the scalar figures, with the
    run's row total labelled as such (not as the partition's row count) and no preview."""
    from forecast_platform.defs.metadata import DETAIL_MAX_PARTITIONS

    assert DAYS > DETAIL_MAX_PARTITIONS
    for asset, date_column in WAREHOUSE_ASSETS.items():
        per_partition = partition_metadata(first_run, asset)
        assert len(per_partition) == DAYS, asset
        written = query(landed, f"SELECT count(*) FROM {asset} "
                                f"WHERE {date_column} BETWEEN '{START}' AND '{END}'")[0][0]
        for meta in per_partition.values():
            assert meta["rows_written_by_run"] == written, asset
            assert meta["partition_range"] == f"{START} .. {END}"
            assert meta["table_rows_total"] >= written
            assert not {"dagster/row_count", "preview", "top_reasons", "table_date_range"} \
                & set(meta), asset
    rejects = next(iter(partition_metadata(first_run, "sales_rejects").values()))
    assert rejects["rejected_target"] == 3 and rejects["rejected_duplicates"] == 1
    assert next(iter(partition_metadata(first_run, "validated_sales").values()))["series"] == 200


@pytest.mark.parametrize("days", [1, 3])
def test_short_ranges_show_previews_and_each_partitions_own_row_count(landed, first_run, days):
    """The daily run (one partition) and short catch-up ranges keep the bulky items and give each
    partition its exact dagster/row_count."""
    start = END - dt.timedelta(days=days - 1)
    result = run_job(landed, start, END)
    assert result.success
    for asset, date_column in WAREHOUSE_ASSETS.items():
        per_partition = partition_metadata(result, asset)
        assert len(per_partition) == days, asset
        counts = dict(query(landed, f"SELECT strftime({date_column}, '%Y-%m-%d'), count(*) "
                                    f"FROM {asset} WHERE {date_column} BETWEEN '{start}' AND "
                                    f"'{END}' GROUP BY 1"))
        for key, meta in per_partition.items():
            assert meta["dagster/row_count"] == counts.get(key, 0), (asset, key)
            assert meta["partition_range"] == f"{start} .. {END}"
            assert "preview" in meta and "table_date_range" in meta, asset
    assert "top_reasons" in next(iter(partition_metadata(result, "sales_rejects").values()))
    assert "_source_file" in next(iter(partition_metadata(result, "raw_sales").values()))["preview"]


def test_rematerializing_replaces_rather_than_duplicates(landed, first_run):
    before = query(landed, "SELECT count(*) FROM raw_sales")[0][0], \
        query(landed, "SELECT count(*) FROM sales_features")[0][0]
    again = run_job(landed, END - dt.timedelta(days=9), END)
    assert again.success
    after = query(landed, "SELECT count(*) FROM raw_sales")[0][0], \
        query(landed, "SELECT count(*) FROM sales_features")[0][0]
    assert before == after


def test_an_empty_day_is_blocked_before_the_models(tmp_path):
    settings = make_settings(tmp_path)
    land_synthetic(SPEC, settings.landing_dir(), start=START, n_stores=4, n_items=5,
                   mistakes=False)
    bad_day = dt.date(2017, 12, 20)
    landed_files(settings.landing_dir())[bad_day].write_text(",".join(SPEC.columns) + "\n")
    result = run_job(settings, START, END)
    assert not result.success
    checks = check_results(result)
    assert not checks["validated_sales.completeness"].passed
    assert "2017-12-20" in checks["validated_sales.completeness"].metadata["examples"].value
    assert not checks["validated_sales.volume"].passed
    assert "sales_features" not in materialized(result)


@pytest.mark.skipif(not (STORE_ITEM_DIR / "train.csv.gz").is_file(),
                    reason="the real Store Item Demand data is not beside the project")
def test_real_store_item_data_lands_and_validates_clean(tmp_path):
    """Kaggle's file, split into daily landing files, ingests with nothing quarantined."""
    settings = make_settings(tmp_path, dataset="store_item", source=STORE_ITEM_DIR)
    spec = get_spec("store_item")
    files = spec.lander(spec, settings.landing_dir(), settings.source_dir)
    assert len(files) == 1826
    start, end = dt.date(2017, 11, 1), dt.date(2017, 12, 31)
    result = run_job(settings, start, end)
    assert result.success
    days = (end - start).days + 1
    counts = query(settings, "SELECT count(*), count(DISTINCT series_id), sum(sales) "
                             "FROM validated_sales")[0]
    assert counts[0] == 500 * days and counts[1] == 500
    assert query(settings, "SELECT count(*) FROM sales_rejects")[0][0] == 0
    checks = check_results(result)
    assert all(c.passed for c in checks.values() if c.blocking)
    # Only two months of the five landed years were ingested: freshness says so.
    fresh = checks["raw_sales.freshness"]
    assert not fresh.passed and fresh.metadata["backlog_partitions"].value == 1826 - days


def test_an_excel_bom_file_ingests_and_stray_names_are_reported_not_ingested(tmp_path):
    """Excel's byte-order mark is decoded, not taken for part of the first column's name; a
    file named for a day that does not exist, or for one far past the partitions, never
    crashes the listing nor widens a run: the landing_file_names check names both."""
    settings = make_settings(tmp_path)
    land_synthetic(SPEC, settings.landing_dir(), start=dt.date(2017, 12, 18), n_stores=4,
                   n_items=5, mistakes=False)
    files = landed_files(settings.landing_dir())
    bom_day = dt.date(2017, 12, 20)
    files[bom_day].write_bytes(b"\xef\xbb\xbf" + files[bom_day].read_bytes())
    header = ",".join(SPEC.columns) + "\n"
    (settings.landing_dir() / "sales_2017-02-30.csv").write_text(header)
    (settings.landing_dir() / "sales_2099-01-01.csv").write_text(header)
    assert set(landed_files(settings.landing_dir())) == {*files, dt.date(2099, 1, 1)}

    result = run_job(settings, dt.date(2017, 12, 18), END)
    assert result.success
    rows = query(settings, "SELECT count(*) FROM validated_sales WHERE date = '2017-12-20'")
    assert rows == [(20,)]
    assert query(settings, "SELECT count(*) FROM sales_rejects") == [(0,)]
    names = check_results(result)["raw_sales.landing_file_names"]
    assert not names.passed
    assert names.metadata["stray_files"].value == 1
    assert names.metadata["files_outside_partitions"].value == 1
    examples = names.metadata["examples"].value
    assert "sales_2017-02-30.csv" in examples and "sales_2099-01-01.csv" in examples
    assert check_results(result)["raw_sales.freshness"].passed


# --- Faults: one bad file never holds good files back -------------------------------------------

FAULT_START = dt.date(2017, 12, 1)
FAULT_END = dt.date(2017, 12, 14)
HEADER = ",".join(SPEC.columns)  # date,store,item,sales,promo


def _good_rows(day: dt.date) -> list[str]:
    return [f"{day},{store},{item},{store + item},0" for store in range(1, 5)
            for item in range(1, 6)]


def _balanced(settings) -> None:
    """raw = valid + rejected on every partition, by the core function and by hand."""
    from forecast_platform.ingestion.checks import unbalanced_partitions

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert unbalanced_partitions(con, SPEC) == []
    by_hand = query(settings, """
        SELECT r.d, r.n, coalesce(v.n, 0) + coalesce(j.n, 0)
        FROM (SELECT partition_date d, count(*) n FROM raw_sales GROUP BY 1) r
        LEFT JOIN (SELECT date d, count(*) n FROM validated_sales GROUP BY 1) v USING (d)
        LEFT JOIN (SELECT partition_date d, count(*) n FROM sales_rejects GROUP BY 1) j USING (d)
        WHERE r.n <> coalesce(v.n, 0) + coalesce(j.n, 0)""")
    assert by_hand == []


def _land_faults(settings) -> dict[str, dt.date]:
    """14 days of 20 series; four of them replaced by files nothing can read as the spec says."""
    land_synthetic(SPEC, settings.landing_dir(), start=FAULT_START, end=FAULT_END, n_stores=4,
                   n_items=5, mistakes=False)
    files = landed_files(settings.landing_dir())
    bad = {"binary": dt.date(2017, 12, 3), "cp1252": dt.date(2017, 12, 6),
           "fields": dt.date(2017, 12, 9), "long": dt.date(2017, 12, 12)}
    # A binary file (a gzip of the real thing, as a wrong export step would drop it).
    import gzip

    files[bad["binary"]].write_bytes(gzip.compress(files[bad["binary"]].read_bytes()))
    # Windows-1252: the 21st row names a store 'Café' (é = 0xe9, not UTF-8).
    day = bad["cp1252"]
    files[day].write_bytes(
        "\n".join([HEADER, *_good_rows(day), f"{day},Café,1,3,0"]).encode("cp1252") + b"\n")
    # A row with one field too many on line 11 (the header is line 1).
    day = bad["fields"]
    rows = _good_rows(day)
    rows[9] += ",7"
    files[day].write_text("\n".join([HEADER, *rows]) + "\n")
    # A 2.5 MB line: a runaway value in the sales column.
    day = bad["long"]
    rows = _good_rows(day)
    rows[2] = f"{day},1,3,{'9' * 2_500_000},0"
    files[day].write_text("\n".join([HEADER, *rows]) + "\n")
    return bad


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("faults"))
    bad = _land_faults(settings)
    return settings, bad, run_job(settings, FAULT_START, FAULT_END)


def test_bad_files_are_quarantined_as_files_and_the_good_days_ingest(faults):
    settings, bad, result = faults
    good_days = (FAULT_END - FAULT_START).days + 1 - len(bad)
    assert good_days == 10
    by_day = dict(query(settings, "SELECT partition_date, count(*) FROM raw_sales GROUP BY 1"))
    assert set(by_day) == {FAULT_START + dt.timedelta(days=i) for i in range(14)} - \
        set(bad.values())
    assert all(n == 20 for n in by_day.values())
    assert query(settings, "SELECT count(*) FROM validated_sales") == [(20 * good_days,)]
    _balanced(settings)

    rejects = {row[0]: row[1:] for row in query(
        settings, "SELECT partition_date, file, reason, bytes FROM file_rejects")}
    assert set(rejects) == set(bad.values())  # one row per bad file, none for the good ones
    for day, (file, reason, size) in rejects.items():
        assert file.endswith(f"sales_{day}.csv") and size > 0
        assert len(reason) <= 500, reason
    reason = {kind: rejects[day][1] for kind, day in bad.items()}
    assert reason["binary"].startswith("binary")
    assert "not UTF-8: byte 0xe9 at offset" in reason["cp1252"]
    assert "`encoding: cp1252`" in reason["cp1252"]
    assert reason["fields"] == "structure: line 11 has 6 fields where the header has 5"
    assert "line 4 is 2,500,0" in reason["long"] and "limit of 2,097,152 bytes" in \
        reason["long"]


def test_the_partitions_of_bad_files_fail_completeness_naming_file_and_reason(faults):
    settings, bad, result = faults
    checks = check_results(result)
    completeness = checks["validated_sales.completeness"]
    assert not completeness.passed and completeness.blocking
    assert completeness.metadata["files_without_rows"].value == 4
    summary = completeness.metadata["summary"].value
    for day in bad.values():
        assert f"sales_{day}.csv" in summary
    assert "line 11 has 6 fields" in summary and "not UTF-8" in summary
    assert "sales_features" not in materialized(result)  # blocked before the models
    files = checks["raw_sales.files_readable"]
    assert not files.passed and files.metadata["files_unreadable"].value == 4
    # Read and quarantined is ingested: no backlog.
    assert checks["raw_sales.freshness"].passed
    assert checks["validated_sales.rows_balance"].passed


def test_no_event_of_the_run_copies_the_oversized_line(faults):
    _, _, result = faults
    for event in result.all_events:
        assert "9" * 1000 not in str(event), event.event_type_value


def test_a_declared_cp1252_file_is_read_with_its_text(tmp_path):
    """With ``encoding: cp1252`` in the (YAML) spec the Windows-1252 file ingests: its text is
    decoded right ('Café' reaches the quarantine spelt so), the rows keep the original file as
    their source, and a UTF-8 file beside it still reads as UTF-8."""
    import yaml

    settings = make_settings(tmp_path, dataset="shop1252")
    spec = {"name": "shop1252", "csv": str(tmp_path / "unused.csv"), "frequency": "D",
            "date_column": "date", "keys": ["store", "item"],
            "key_types": {"store": "int", "item": "int"}, "target": "sales",
            "known": {"promo": "int"}, "start": "2013-01-01", "end": "2017-12-31",
            "horizon": 28, "max_target": 1000, "encoding": "cp1252"}
    settings.datasets_dir.mkdir(parents=True)
    (settings.datasets_dir / "shop1252.yaml").write_text(yaml.safe_dump(spec))
    landing = settings.landing_dir()
    landing.mkdir(parents=True)
    first = dt.date(2017, 12, 5)
    days = [first + dt.timedelta(days=i) for i in range(3)]
    for day in days[:2]:
        (landing / f"sales_{day}.csv").write_text(
            "\n".join([HEADER, *_good_rows(day), f"{day},Zoë,2,1,0"]) + "\n")  # UTF-8
    (landing / f"sales_{days[2]}.csv").write_bytes(
        "\n".join([HEADER, *_good_rows(days[2]), f"{days[2]},Café,1,3,0"]).encode("cp1252")
        + b"\n")
    result = run_job(settings, days[0], days[-1])
    assert query(settings, "SELECT count(*) FROM file_rejects") == [(0,)]
    assert query(settings, "SELECT count(*) FROM validated_sales") == [(60,)]
    rejects = query(settings, "SELECT store, _source_file, reason FROM sales_rejects "
                              "ORDER BY partition_date")
    assert [r[0] for r in rejects] == ["Zoë", "Zoë", "Café"]
    assert rejects[2][1] == str(landing / f"sales_{days[2]}.csv")
    assert "'Café' is not an integer" in rejects[2][2]
    assert check_results(result)["raw_sales.freshness"].passed


def test_empty_and_header_only_files_are_ingested_but_incomplete(tmp_path):
    """Both count as ingested (freshness passes, no backlog forever); the partition has no rows,
    so completeness fails and says which file and why."""
    settings = make_settings(tmp_path)
    land_synthetic(SPEC, settings.landing_dir(), start=FAULT_START, end=FAULT_END, n_stores=4,
                   n_items=5, mistakes=False)
    files = landed_files(settings.landing_dir())
    empty, header_only = dt.date(2017, 12, 1), dt.date(2017, 12, 8)
    files[empty].write_bytes(b"")
    files[header_only].write_text(HEADER + "\n")
    result = run_job(settings, FAULT_START, FAULT_END)
    checks = check_results(result)
    assert checks["raw_sales.freshness"].passed
    assert checks["raw_sales.freshness"].metadata["backlog_partitions"].value == 0
    completeness = checks["validated_sales.completeness"]
    assert not completeness.passed
    summary = completeness.metadata["summary"].value
    assert f"sales_{empty}.csv (no rows: the file is empty (0 bytes))" in summary
    assert f"sales_{header_only}.csv (no rows: the file has a header only)" in summary
    # The first day has no history to miss series against: its empty file still fails it.
    assert str(empty) in completeness.metadata["examples"].value
    assert "sales_features" not in materialized(result)
    _balanced(settings)


def test_rows_balance_finds_partitions_validation_did_not_cover(tmp_path):
    """A run killed between ingesting and validating leaves raw rows without their validated
    rows: the rows_balance check of any later run names those partitions, and so does
    ``unbalanced_partitions`` (what the CLI or a sensor asks to validate again)."""
    from forecast_platform.ingestion.checks import unbalanced_partitions

    settings = make_settings(tmp_path)
    land_synthetic(SPEC, settings.landing_dir(), start=FAULT_START, end=FAULT_END, n_stores=4,
                   n_items=5, mistakes=False)
    assert run_job(settings, FAULT_START, FAULT_END).success
    lost = dt.date(2017, 12, 4)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("DELETE FROM validated_sales WHERE date = ?", [lost])
        assert unbalanced_partitions(con, SPEC) == [lost]
        assert unbalanced_partitions(con, SPEC, FAULT_START, dt.date(2017, 12, 3)) == []
    instance = dg.DagsterInstance.ephemeral()
    later = run_job(settings, FAULT_END, FAULT_END, instance=instance)
    balance = check_results(later)["validated_sales.rows_balance"]
    assert not balance.passed and balance.severity == dg.AssetCheckSeverity.ERROR
    assert not balance.blocking  # the run's own partitions are fine: it does not stop them
    assert str(lost) in balance.metadata["summary"].value
    assert balance.metadata["unbalanced_partitions"].value == 1
    # The rows_balance sensor asks for exactly that day, once per evaluation.
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("rows_balance_sensor")
    asked = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert [r.partition_key for r in asked.run_requests] == [lost.isoformat()]
    assert asked.run_requests[0].tags["trigger"] == "rows_balance"
    again_asked = sensor(dg.build_sensor_context(instance=instance, definitions=defs,
                                                 cursor=asked.cursor))
    assert not getattr(again_asked, "run_requests", None)
    # Validating that partition again restores raw = valid + rejected.
    again = run_job(settings, lost, lost)
    assert check_results(again)["validated_sales.rows_balance"].passed
    _balanced(settings)


def test_a_backfill_read_and_validated_in_chunks_stores_what_one_pass_stores(
        landed, first_run, monkeypatch):
    """A long backfill reads its landing files and validates its rows a chunk of days at a
    time, so its memory is a chunk's: tiny chunks must store exactly the rows of one pass."""
    from forecast_platform.ingestion import raw
    from forecast_platform.warehouse import blocks

    tables = {"raw_sales": "* EXCLUDE (_ingested_at)",
              "validated_sales": "* EXCLUDE (_ingested_at)",
              "sales_rejects": "* EXCLUDE (_ingested_at, _rejected_at)"}
    before = {t: query(landed, f"SELECT {cols} FROM {t} ORDER BY ALL")
              for t, cols in tables.items()}
    monkeypatch.setattr(raw, "CHUNK_BYTES", 20_000)  # a few days of these files
    monkeypatch.setattr(blocks, "DEFAULT_BLOCK_ROWS", 1_500)  # about a week of rows
    assert run_job(landed, START, END).success
    for table, cols in tables.items():
        assert query(landed, f"SELECT {cols} FROM {table} ORDER BY ALL") == before[table]
    assert len(before["sales_rejects"]) > 0
