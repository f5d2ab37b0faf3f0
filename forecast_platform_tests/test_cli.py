"""`forecast-platform demo`, run as a user runs it (its own process, its own environment):
lands data, runs the graph, ends with a summary a person can use."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import psutil

from forecast_platform.cli.ui import FALLBACK_WORKSPACE, WORKSPACE_YAML
from forecast_platform_tests.conftest import user_env

VENV_BIN = Path(sys.executable).parent
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def test_demo_builds_the_warehouse_and_summarizes(demo_run):
    data, done = demo_run  # `demo --stores 6 --items 5 --start 2016-01-01` (conftest.demo_run)
    env = user_env()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    # A command prints its progress and summary: no warning blocks, no exit-time dump.
    printed = out + done.stderr
    assert "Warning:" not in printed, printed[-3000:]
    assert "leaked" not in printed, printed[-3000:]
    assert "succeeded" in out
    assert str(data / "warehouse.duckdb") in out
    assert "forecast-platform ui" in out
    assert "Asset checks:" in out and "sales_rejects.target_valid" in out
    assert "Backtest (rolling origins" in out and "seasonal_naive_7" in out
    assert "Report:" in out and "forecaster_v1.html" in out
    assert "Anomalies:" in out and "against the generator's labels" in out
    assert "Drift report (2017-11-03 .. 2017-11-30, vs champion v1)" in out
    assert "drift_report_2017-11-30.html" in out
    assert (data / "dagster_home" / "dagster.yaml").is_file()
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM sales_features").fetchone()[0]
        champions = con.execute(
            "SELECT count(*) FROM model_registry WHERE status = 'champion'").fetchone()[0]
    days = 700  # 2016-01-01 .. 2017-11-30 (December is left for simulate-drift)
    assert rows == 30 * days - 6 + 1  # six quarantined, one of them an extra duplicate row
    assert f"sales_features {rows:>12}".replace(" ", "") in out.replace(" ", "")
    assert champions == 2  # the forecaster and the anomaly detector
    assert any((data / "bentoml" / "models").iterdir())
    # demo ends with a dashboard snapshot, so `forecast-platform dashboard` shows all of it
    assert (data / "dashboard" / "CURRENT").is_file() and "forecast-platform dashboard" in out
    assert 'forecast-platform query "SELECT ..."' in out and "duckdb -readonly" not in out

    # The safe way to read: one query, and the file is let go at once.
    query = [sys.executable, "-m", "forecast_platform.cli", "query", "--data-dir", str(data)]
    done = subprocess.run([*query, "SELECT count(*) AS n FROM sales_features"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["n", str(rows)], done.stderr
    done = subprocess.run([*query, "SELECT nope FROM forecasts"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nope" in done.stderr and "Traceback" not in done.stderr


def test_workspace_yaml_matches_the_fallback():
    assert WORKSPACE_YAML.read_text() == FALLBACK_WORKSPACE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _locations(port: int) -> list[dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": LOCATIONS}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["data"]["workspaceOrError"]["locationEntries"]


def test_ui_runs_without_the_venv_on_path_and_stops_whole_on_ctrl_c(tmp_path):
    """`.venv/bin/forecast-platform ui` with a bare PATH serves the UI with the code location
    `forecast_platform`; Ctrl-C (SIGINT to the command) ends dagster dev and every process it
    started (webserver, daemon, code server)."""
    port = _free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DO_NOT_TRACK": "1",
           "FORECAST_DATA_DIR": str(tmp_path / "data")}
    cli = subprocess.Popen([str(VENV_BIN / "forecast-platform"), "ui", "--port", str(port)],
                           env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    groups: set[int] = set()
    try:
        deadline, entries = time.monotonic() + 45, []
        while time.monotonic() < deadline and cli.poll() is None:
            try:
                entries = _locations(port)
                if entries and entries[0]["loadStatus"] == "LOADED":
                    break
            except (OSError, KeyError, TypeError, ValueError):
                pass
            time.sleep(0.5)
        assert cli.poll() is None, cli.stdout.read()
        assert [e["name"] for e in entries] == ["forecast_platform"], entries
        assert entries[0]["loadStatus"] == "LOADED", entries
        started = psutil.Process(cli.pid).children(recursive=True)
        groups = {os.getpgid(p.pid) for p in started}
        assert len(started) >= 3 and cli.pid not in groups  # dagster dev has its own group

        cli.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the command
        cli.wait(timeout=25)
        _, alive = psutil.wait_procs(started, timeout=5)
        assert not alive, [p.cmdline() for p in alive]
        left = [p.pid for p in psutil.process_iter() if _pgid(p.pid) in groups]
        assert not left, left
    finally:
        for group in groups | ({cli.pid} if cli.poll() is None else set()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_a_cli_runs_console_says_a_warning_in_one_line_and_leaves_failures_to_the_summary(
        capfd, tmp_path):
    """The CLI's console logger on a real Dagster job: a warning is one line naming its step;
    a blocking check that refuses (an answer, not a crash) prints no stack trace and no
    "Dependencies ... Not executing" lines; the summary reports the verdict and the step."""
    import dagster as dg

    from forecast_platform.cli.summary import summarize
    from forecast_platform.defs.console import cli_console_logger
    from forecast_platform_tests.conftest import make_settings

    @dg.asset(check_specs=[dg.AssetCheckSpec("champion_gate", asset="model", blocking=True)])
    def model(context):
        context.log.warning("the champion cannot be loaded\nsecond line of detail")
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="champion_gate", passed=False,
                                  description="does not beat seasonal_naive_7 (13.5 vs 11.9)",
                                  metadata={"champion": "none"})

    @dg.asset(deps=[model])
    def forecasts():
        pass

    job = dg.Definitions(assets=[model, forecasts], jobs=[dg.define_asset_job("j")]) \
        .resolve_job_def("j").with_logger_defs({"console": cli_console_logger})
    capfd.readouterr()
    result = job.execute_in_process(raise_on_error=False, run_config={
        "loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    printed = capfd.readouterr().err
    assert not result.success
    assert printed.splitlines() == ["  warning: model: the champion cannot be loaded"], printed

    settings = make_settings(tmp_path)  # an empty warehouse: the summary's tables say "none yet"
    settings.data_dir.mkdir(parents=True)
    duckdb.connect(str(settings.warehouse_path)).close()
    text = summarize(settings, [result], 1.0)
    assert "[ERROR] model.champion_gate: does not beat seasonal_naive_7 (13.5 vs 11.9)" in text
    assert "step model stopped: its blocking check failed (above)" in text
    assert "No champion yet, so no forecasts" in text
    assert "Traceback" not in text and "Stack Trace" not in text
