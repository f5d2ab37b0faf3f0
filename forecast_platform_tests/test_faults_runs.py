"""Faults of a CLI run's process: killed with ``kill -9`` (OOM kill, reboot) or stopped with
SIGTERM while it holds the warehouse pool. The next command must not wait for the dead run: it
recovers it (marked failed, pool slot freed) and completes, and the warehouse stays whole."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from forecast_platform.settings import Settings, load_settings

DEMO = ["demo", "--stores", "6", "--items", "5", "--start", "2016-01-01"]
# The demo ingests 2016-01-01..2017-11-30 as one run (~30 s here); the next command re-ingests
# its last four weeks, through the CLI's run_range, to keep the test short.
FIRST, LAST = "2017-11-03", "2017-11-30"
INGEST = """
import argparse, datetime as dt, sys
from forecast_platform.cli.runs import configure, run_range
from forecast_platform.defs.jobs import INGEST_JOB
settings = configure(argparse.Namespace(data_dir=sys.argv[1], dataset=None, source_dir=None))
result = run_range(settings, INGEST_JOB, dt.date.fromisoformat(sys.argv[2]),
                   dt.date.fromisoformat(sys.argv[3]))
sys.exit(0 if result.success else 1)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORECAST_", "DAGSTER_", "MLFLOW_", "BENTOML_HOME"))}
    return {**env, "DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "True", "MPLBACKEND": "Agg"}


def _settings(data: Path) -> Settings:
    return load_settings({"FORECAST_DATA_DIR": str(data)})


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    """The demo's landing files, landed once (the demo lands only when nothing is landed)."""
    import datetime as dt

    from forecast_platform.cli.runs import land

    settings = _settings(tmp_path_factory.mktemp("landed") / "data")
    land(settings, dt.date(2016, 1, 1), 6, 5, dt.date(2017, 11, 30))
    return settings.landing_root


def _start_demo(data: Path, log: Path, landing: Path) -> subprocess.Popen:
    from forecast_platform.cli.instance import open_instance

    shutil.copytree(landing, data / "landing")
    with open_instance(_settings(data)):  # the instance's storage exists before we poll it
        pass
    return subprocess.Popen(
        [sys.executable, "-m", "forecast_platform.cli", *DEMO, "--data-dir", str(data)],
        env=_env(), stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def _wait_for_ingest_holding_the_pool(data: Path, proc: subprocess.Popen, log: Path,
                                      timeout: float = 120) -> str:
    """The run id of the demo's ingest run, once it is STARTED and holds a duckdb pool slot."""
    from dagster import DagsterRunStatus, RunsFilter

    from forecast_platform.cli.instance import open_instance

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        with open_instance(_settings(data)) as instance:
            records = instance.get_run_records(RunsFilter(
                job_name="ingest_job", statuses=[DagsterRunStatus.STARTED]))
            holders = {s.run_id for s in
                       instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots}
            for record in records:
                if record.dagster_run.run_id in holders:
                    return record.dagster_run.run_id
        time.sleep(0.3)
    raise AssertionError("the ingest run never held the pool:\n" + log.read_text()[-3000:])


def _run_and_slots(data: Path, run_id: str) -> tuple[str, set[str]]:
    from forecast_platform.cli.instance import open_instance

    with open_instance(_settings(data)) as instance:
        info = instance.event_log_storage.get_concurrency_info("duckdb")
        held = {s.run_id for s in info.claimed_slots} | {p.run_id for p in info.pending_steps}
        return instance.get_run_by_id(run_id).status.value, held


def _ingest(data: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", INGEST, str(data), FIRST, LAST], env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _counts(data: Path) -> tuple[int, ...]:
    """Rows of raw_sales, validated_sales and sales_rejects in the ingested range."""
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return tuple(con.execute(f"SELECT count(*) FROM {table} WHERE {column} BETWEEN DATE "
                                 f"'{FIRST}' AND DATE '{LAST}'").fetchone()[0]
                     for table, column in (("raw_sales", "partition_date"),
                                           ("validated_sales", "date"),
                                           ("sales_rejects", "partition_date")))


def test_a_killed_run_is_recovered_by_the_next_command(tmp_path, landing):
    data, log = tmp_path / "data", tmp_path / "demo.log"
    demo = _start_demo(data, log, landing)
    try:
        dead = _wait_for_ingest_holding_the_pool(data, demo, log)
        demo.send_signal(signal.SIGKILL)
        demo.wait(timeout=10)
    finally:
        if demo.poll() is None:
            demo.kill()
    status, held = _run_and_slots(data, dead)
    assert status == "STARTED" and dead in held  # what the issue saw: a dead run holding the pool

    started = time.monotonic()
    done = _ingest(data)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert f"recovered dead run {dead[:8]} (ingest_job, PID {demo.pid}" in done.stdout, out
    assert "waiting for run" not in done.stdout
    assert time.monotonic() - started < 120
    status, held = _run_and_slots(data, dead)
    assert status == "FAILURE" and not held
    raw, valid, rejects = _counts(data)
    assert raw > 0 and raw == valid + rejects
    # Whatever the killed run left half done outside the re-ingested weeks was validated again.
    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.ingestion.checks import unbalanced_partitions

    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert unbalanced_partitions(con, get_spec("synthetic")) == []


def test_sigterm_stops_a_run_within_seconds_and_the_next_command_does_not_wait(
        tmp_path, landing):
    data, log = tmp_path / "data", tmp_path / "demo.log"
    demo = _start_demo(data, log, landing)
    try:
        run_id = _wait_for_ingest_holding_the_pool(data, demo, log)
        sent = time.monotonic()
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=15)
        took = time.monotonic() - sent
    finally:
        if demo.poll() is None:
            demo.kill()
    printed = log.read_text()
    assert took < 10, printed[-3000:]
    assert code == 128 + signal.SIGTERM, printed[-3000:]
    last = printed.strip().splitlines()[-1]
    assert last.startswith("forecast-platform: stopped by SIGTERM; run " + run_id[:8]), printed
    assert "Traceback" not in printed, printed[-3000:]
    status, held = _run_and_slots(data, run_id)
    # CANCELED, or FAILURE when Dagster's own unwinding ("interrupted") recorded the end first
    assert status in ("CANCELED", "FAILURE") and not held
    assert f"marked {status.lower()}, its warehouse pool slot freed" in last

    # The next command finds nothing to wait for or recover: what it does before its run.
    from forecast_platform.cli.instance import open_instance
    from forecast_platform.cli.recovery import wait_for_warehouse

    def no_wait(seconds: float) -> None:
        raise AssertionError("the next command waits")

    lines: list[str] = []
    with open_instance(_settings(data)) as instance:
        wait_for_warehouse(instance, lines.append, sleep=no_wait)
    assert lines == []


@pytest.fixture
def instance(tmp_path):
    from forecast_platform.cli.instance import open_instance

    with open_instance(_settings(tmp_path / "data")) as inst:
        yield inst


def _fake_cli_run(instance, pid: int, status) -> str:
    """A run as a CLI process with ``pid`` leaves it, holding the duckdb pool's slot."""
    from dagster._core.test_utils import create_run_for_test

    from forecast_platform.cli.recovery import process_tags

    tags = {**process_tags(), "forecast_platform/pid": str(pid)}
    run = create_run_for_test(instance, job_name="ingest_job", status=status, tags=tags)
    storage = instance.event_log_storage
    storage.set_concurrency_slots("duckdb", 1)
    assert storage.claim_concurrency_slot("duckdb", run.run_id, "raw_sales").is_claimed
    return run.run_id


def test_a_waiting_command_names_the_run_and_recovers_it_when_it_dies(instance):
    from dagster import DagsterRunStatus

    from forecast_platform.cli.recovery import wait_for_warehouse

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)  # the holder runs before "its" run is created, as a CLI process does
        run_id = _fake_cli_run(instance, holder.pid, DagsterRunStatus.STARTED)
        lines: list[str] = []
        ticks = []

        def sleep(seconds: float) -> None:  # the holder dies on the third look
            ticks.append(seconds)
            if len(ticks) == 3:
                holder.kill()
                holder.wait()

        wait_for_warehouse(instance, lines.append, sleep=sleep, report_every=0.0)
    finally:
        holder.kill()
    assert lines[0].startswith(f"waiting for run {run_id[:8]} (ingest_job, PID {holder.pid}, "
                               "started ")
    assert lines[0].endswith("to release the warehouse pool ...")
    assert sum(line.startswith("waiting for run") for line in lines) == 3
    assert lines[-1].startswith(f"recovered dead run {run_id[:8]} (ingest_job, PID "
                                f"{holder.pid}"), lines
    run = instance.get_run_by_id(run_id)
    assert run.status == DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
    message = instance.get_records_for_run(run_id).records[-1].event_log_entry.message
    assert "is gone" in message


def test_a_run_that_never_started_is_recovered_and_live_or_foreign_runs_are_kept(instance):
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from forecast_platform.cli.recovery import recover_dead_runs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    never = _fake_cli_run(instance, gone.pid, DagsterRunStatus.NOT_STARTED)
    live = create_run_for_test(instance, job_name="train_job", status=DagsterRunStatus.STARTED,
                               tags={"forecast_platform/pid": str(os.getpid()),
                                     "forecast_platform/host": socket.gethostname()})
    foreign = create_run_for_test(instance, job_name="train_job",
                                  status=DagsterRunStatus.STARTED,
                                  tags={"forecast_platform/pid": "1",
                                        "forecast_platform/host": "another-machine"})
    daemon = create_run_for_test(instance, job_name="train_job", status=DagsterRunStatus.STARTED)
    lines: list[str] = []
    assert recover_dead_runs(instance, lines.append) == [never]
    assert len(lines) == 1 and f"PID {gone.pid}" in lines[0]
    assert instance.get_run_by_id(never).status == DagsterRunStatus.FAILURE
    for run in (live, foreign, daemon):
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
    assert not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots


def test_a_dagster_dev_run_is_recovered_only_once_its_worker_and_code_server_are_gone(instance):
    from dagster import DagsterRunStatus
    from dagster._core.events import EngineEventData
    from dagster._core.test_utils import create_run_for_test

    from forecast_platform.cli.recovery import dead_reason, in_flight_runs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = {"forecast_platform/host": socket.gethostname()}
    dead = create_run_for_test(instance, job_name="train_job", status=DagsterRunStatus.STARTED,
                               tags=host)
    instance.report_engine_event(f"Started process for run (pid: {gone.pid}).", dead,
                                 EngineEventData.in_process(gone.pid))
    alive = create_run_for_test(instance, job_name="train_job",
                                status=DagsterRunStatus.STARTED, tags=host)
    instance.report_engine_event(f"Started process for run (pid: {os.getpid()}).", alive,
                                 EngineEventData.in_process(os.getpid()))
    runs = {run.run_id: run for run in in_flight_runs(instance)}
    assert runs[dead.run_id].pid == gone.pid and not runs[dead.run_id].by_cli
    # A live code server reports a dead worker within a second: give it that chance first.
    assert dead_reason(instance, runs[dead.run_id]) is None
    later = time.time() + 60
    assert "run worker" in dead_reason(instance, runs[dead.run_id], now=later)
    assert dead_reason(instance, runs[alive.run_id], now=later) is None


def test_an_ingest_through_the_cli_validates_again_what_a_stopped_run_left(tmp_path, capsys):
    """A day whose validated rows are missing (a run stopped between raw_sales and
    validated_sales) is validated again by the next CLI ingest, whatever range that covers."""
    import datetime as dt

    from forecast_platform.cli.instance import ensure_dagster_home
    from forecast_platform.cli.runs import land, run_range
    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.ingestion.checks import unbalanced_partitions

    settings = _settings(tmp_path / "data")
    ensure_dagster_home(settings)
    first, last = dt.date(2017, 11, 1), dt.date(2017, 11, 20)
    land(settings, first, 5, 5, last)
    assert run_range(settings, "ingest_job", first, dt.date(2017, 11, 19)).success
    lost = dt.date(2017, 11, 7)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("DELETE FROM validated_sales WHERE date = ?", [lost])
        assert unbalanced_partitions(con, get_spec("synthetic")) == [lost]
    assert run_range(settings, "ingest_job", last, last).success
    assert f"Validating {lost}..{lost} again" in capsys.readouterr().out
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert unbalanced_partitions(con, get_spec("synthetic")) == []


def test_an_ingest_validates_again_every_unbalanced_range_a_stopped_run_left(tmp_path, capsys):
    """Two separate ranges left unbalanced (raw rows never validated) are each validated again,
    once, before the command's own range: a healing run does not start healing in turn."""
    import datetime as dt

    import pandas as pd

    from forecast_platform.cli.runs import run_range
    from forecast_platform.datasets.landing import write_landing_files
    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.defs.jobs import INGEST_JOB
    from forecast_platform.ingestion.checks import unbalanced_partitions

    settings = _settings(tmp_path / "data")
    days = pd.date_range("2017-01-01", "2017-01-10").strftime("%Y-%m-%d")
    write_landing_files(pd.DataFrame({"date": days, "store": 1, "item": 1, "sales": 3,
                                      "promo": 0}), settings.landing_dir(), "date")
    assert run_range(settings, INGEST_JOB, dt.date(2017, 1, 1), dt.date(2017, 1, 8)).success
    with duckdb.connect(str(settings.warehouse_path)) as con:  # what a killed run leaves
        con.execute("DELETE FROM validated_sales WHERE date IN "
                    "('2017-01-02', '2017-01-05', '2017-01-06')")
        assert unbalanced_partitions(con, get_spec("synthetic")) == [
            dt.date(2017, 1, 2), dt.date(2017, 1, 5), dt.date(2017, 1, 6)]
    capsys.readouterr()

    assert run_range(settings, INGEST_JOB, dt.date(2017, 1, 9), dt.date(2017, 1, 10)).success
    printed = capsys.readouterr().out
    assert printed.count("Validating 2017-01-02..2017-01-02 again") == 1, printed
    assert printed.count("Validating 2017-01-05..2017-01-06 again") == 1, printed
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert unbalanced_partitions(con, get_spec("synthetic")) == []
        assert con.execute("SELECT count(*) FROM validated_sales").fetchall()[0] == (10,)
