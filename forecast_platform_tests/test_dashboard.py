"""The planner's dashboard on a real demo warehouse's snapshot.

The module works on a copy of what ``forecast-platform demo`` built (conftest.demo_run, which
test_cli asserts on): the real graph run small (6 stores x 5 items, 2016-01..2017-11: ingest,
train with its snapshot, anomaly scoring, a drift report, then ``dashboard_job``) on the demo's
Dagster instance. Pages are run with Streamlit's ``AppTest`` and asserted on what a planner reads
(a series' forecast values, an anomaly's reason, the champion's version); the what-if page
calls a real ``bentoml serve`` on loopback; one test loads the app started by
``forecast-platform dashboard`` in headless chromium; one renders pages while a backfill holds
the warehouse and publishes a new snapshot.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pandas as pd
import pytest
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest

from forecast_platform.cli.dashboard import APP
from forecast_platform.cli.instance import open_instance
from forecast_platform.dashboard import quality, snapshot, whatif
from forecast_platform.dashboard.series import search
from forecast_platform.datasets.registry import get_spec
from forecast_platform.definitions import build_definitions
from forecast_platform.defs.dashboard import build_dashboard_sensor
from forecast_platform.defs.jobs import build_jobs
from forecast_platform.serving.harness import bentoml_server, free_port, stop_group
from forecast_platform_tests.conftest import make_settings

SPEC = get_spec("synthetic")
END = dt.date(2017, 11, 30)  # the demo's last day (conftest.DEMO_ARGS: from 2016-01-01)
PAGE_NAMES = ("Forecasts", "Anomalies", "What-if", "Model quality", "Data quality", "Drift")
TIMEOUT = 60


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_run):
    """A copy of the demo's data directory (its warehouse built by the real jobs, its published
    snapshot), its Dagster instance, and its train_job and last dashboard_job runs."""
    built, done = demo_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    settings = make_settings(tmp_path_factory.mktemp("dashboard"))
    shutil.copytree(built, settings.data_dir)
    with open_instance(settings) as instance:
        runs = {job: instance.get_runs(dg.RunsFilter(job_name=job))  # newest first
                for job in ("ingest_job", "train_job", "anomaly_job", "monitor_job",
                            "dashboard_job")}
        assert all(r and r[0].status == dg.DagsterRunStatus.SUCCESS for r in runs.values())
        yield (settings, instance, build_definitions(settings), runs["train_job"][0],
               runs["dashboard_job"][0])


@pytest.fixture
def app_env(demo, monkeypatch):
    settings = demo[0]
    monkeypatch.setenv("FORECAST_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FORECAST_DATASET", "synthetic")
    monkeypatch.delenv("FORECAST_API_KEY", raising=False)
    return settings


def query(settings, sql: str, params=None) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).df()


# As `forecast-platform dashboard` runs the app (cli/dashboard.py: no magic, so no ast.parse
# racing another thread's on Python 3.11).
streamlit_config.set_option("runner.magicEnabled", False)


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def frame(at: AppTest, *columns: str, last: bool = False) -> pd.DataFrame:
    """The first (or last) table on the page that has all ``columns``."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert found, [list(d.value.columns) for d in at.dataframe]
    return found[-1] if last else found[0]


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def current_snapshot(settings) -> snapshot.Snapshot:
    snap = snapshot.current(settings.dashboard_dir)
    assert snap is not None
    return snap


# -- the snapshot ------------------------------------------------------------------------------

def test_train_and_dashboard_jobs_publish_complete_snapshots(demo):
    settings, _, _, train, last = demo
    snap = current_snapshot(settings)
    assert snap.run_id == last.run_id  # the newest publish is current
    published = snapshot.complete_snapshots(settings.dashboard_dir)
    assert [p.name for p in published][-1] == snap.path.name and len(published) == 2
    assert train.run_id[:8] in published[0].name  # train_job published one itself
    counts = snap.manifest["tables"]
    for table in ("series", "history", "forecasts", "anomalies", "registry", "backtest",
                  "partitions", "rejects", "checks", "drift", "drift_columns"):
        assert counts.get(table, 0) > 0, table
    assert snap.manifest["champion_version"] == 1 and snap.manifest["series_count"] == 30
    # One series is a pruned read of the sorted file, and equals the warehouse.
    rows = snap.series_rows("history", "2|3")
    sales = query(settings, "SELECT date, sales FROM validated_sales WHERE series_id = '2|3' "
                            "ORDER BY date")
    assert rows["y"].tolist() == sales["sales"].tolist()
    assert not list(settings.dashboard_dir.glob("snapshots/.tmp-*"))


def test_a_failed_publish_leaves_the_current_snapshot_and_no_debris(tmp_path):
    root = tmp_path / "dashboard"
    first = snapshot.publish(root, "run-one", lambda folder: {"tables": {}})

    def broken(folder: Path) -> dict:
        (folder / "history.parquet").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        snapshot.publish(root, "run-two", broken)
    assert snapshot.current(root).path == first.path
    assert not list((root / "snapshots").glob(".tmp-*"))
    # Old snapshots are kept while young (a page may still read them), pruned when old.
    later = [snapshot.publish(root, f"run-{i}", lambda folder: {"tables": {}}) for i in range(4)]
    assert len(snapshot.complete_snapshots(root)) == 5
    removed = snapshot.prune(root, now=time.time() + 2 * snapshot.KEEP_SECONDS)
    assert first.path in removed
    assert snapshot.complete_snapshots(root)[-1] == later[-1].path == \
        snapshot.current(root).path


def test_store_totals_work_for_keys_named_with_spaces(tmp_path):
    """An export's columns are named as people name them ("Store Name"): the snapshot's store
    totals are built for such keys too."""
    import dataclasses

    from forecast_platform.dashboard.extract import write_tables

    spec = dataclasses.replace(SPEC, keys=("Store Name", "SKU"), key_types={
        "Store Name": "str", "SKU": "str"}, date_column="Sales Date", target="Units Sold",
        known={})
    con = duckdb.connect()
    con.execute("""CREATE TABLE validated_sales AS SELECT "Store Name" || '|' || SKU AS series_id,
        * FROM (VALUES ('Store 1', 'A-001', DATE '2017-01-02', 3), ('Store 1', 'A-002',
        DATE '2017-01-02', 4), ('Store 2', 'A-001', DATE '2017-01-02', 5))
        t("Store Name", SKU, "Sales Date", "Units Sold")""")
    info = write_tables(con, spec, tmp_path)
    series = pd.read_parquet(tmp_path / "series.parquet").set_index("series_id")
    assert series.loc["Store Name=Store 1", "label"] == "Store Name Store 1 (total of 2 series)"
    assert info["tables"]["history"] > 0


def test_the_series_search_finds_one_of_many_without_a_giant_list():
    n = 50_000
    index = pd.DataFrame({"series_id": [f"{i // 500}|{i % 500}" for i in range(n)],
                          "kind": "series"})
    index["label"] = [f"store {i // 500} · item {i % 500}" for i in range(n)]
    index["search"] = (index["series_id"] + " " + index["label"]).str.lower()
    found = search(index, "store 42 item 317")
    assert found["series_id"].tolist() == ["42|317"]
    assert len(search(index, "item 3")) == 50  # capped: a short list, never 50,000 options
    assert search(index, "42|317")["series_id"].iloc[0] == "42|317"


# -- the pages ----------------------------------------------------------------------------------

def test_the_navigation_names_six_pages_and_the_snapshot(app_env):
    at = app()
    snap = current_snapshot(app_env)
    assert f"run `{snap.run_id[:8]}`" in texts(at)
    assert at.title[0].value == "Forecasts"


def test_forecasts_shows_the_chosen_series_values_and_its_csv(app_env):
    at = app()
    at.text_input(key="forecasts_query").input("store 2 item 3").run()
    assert at.selectbox(key="forecasts_series").value == "2|3"
    shown = frame(at, "part")
    expected = query(app_env, "SELECT CAST(ds AS DATE) AS ds, p50 FROM forecasts "
                              "WHERE series_id = '2|3' ORDER BY ds")
    future = shown[shown["part"] == "forecast"].reset_index(drop=True)
    assert future["ds"].tolist() == expected["ds"].dt.date.tolist()
    assert future["p50"].round(6).tolist() == expected["p50"].round(6).tolist()
    last = query(app_env, "SELECT sales FROM validated_sales WHERE series_id = '2|3' "
                          "ORDER BY date DESC LIMIT 1")["sales"].iloc[0]
    assert metric(at, f"Last actual ({END})") == f"{last:,.1f}"
    assert metric(at, "Forecaster version") == "v1"
    assert shown["is_anomaly"].any()  # the series' flagged days are marked
    assert at.get("download_button")  # the CSV of what is shown


def test_forecasts_of_a_store_total_sum_its_series(app_env):
    at = app()
    at.text_input(key="forecasts_query").input("store=4").run()
    assert at.selectbox(key="forecasts_series").value == "store=4"
    shown = frame(at, "part")
    total = query(app_env, "SELECT sum(p50) FROM forecasts WHERE store = 4").iloc[0, 0]
    assert shown.loc[shown["part"] == "forecast", "p50"].sum() == pytest.approx(total)


def test_an_unknown_series_gets_a_message_not_a_traceback(app_env):
    at = app()
    at.text_input(key="forecasts_query").input("store 99 item 12345").run()
    assert not at.exception
    assert "No series matches 'store 99 item 12345'" in texts(at)


def test_anomalies_inbox_newest_first_with_reason_and_the_series_around_it(app_env):
    at = app("anomalies")
    inbox = frame(at, "expected_interval")
    flagged = query(app_env, "SELECT CAST(ds AS DATE) AS ds, series_id, reason FROM "
                             "sales_anomalies WHERE is_anomaly ORDER BY ds DESC, score DESC")
    assert len(inbox) == len(flagged) > 0
    assert inbox["ds"].tolist() == sorted(inbox["ds"], reverse=True)
    first = flagged.iloc[0]
    assert f"{first['reason']}" in texts(at)  # the opened anomaly's reason, word for word
    # Filter by type: only that type is left.
    kind = inbox["anomaly_type"].iloc[-1]
    at.multiselect(key="anomalies_types").set_value([kind]).run()
    assert set(frame(at, "expected_interval")["anomaly_type"]) == {kind}


def test_model_quality_shows_the_champion_backtest_and_safety_stock(app_env):
    at = app("model_quality")
    assert metric(at, "Champion") == "v1"
    backtest = frame(at, "method", "points", "coverage")
    assert backtest["method"].iloc[0] == "model" and "seasonal_naive_7" in set(backtest["method"])
    assert "Forecast value added over seasonal_naive_7 (smape)" in [m.label for m in at.metric]
    stock = frame(at, "stock_to_hold")
    assert len(stock) == 30 and (stock["stock_to_hold"] >= stock["lead_time_demand"]).all()
    assert "covered" in texts(at)
    at.select_slider(key="quality_service_level").set_value(0.99).run()
    higher = frame(at, "stock_to_hold")
    assert higher["safety_stock"].sum() > stock["safety_stock"].sum()


def test_safety_stock_and_service_level_arithmetic():
    points = pd.DataFrame({"method": "model", "y": [10.0, 12.0, 8.0, 30.0],
                           "forecast": [10.0] * 4, "p10": [7.0] * 4, "p90": [13.0] * 4})
    held = quality.service_level_on_backtest(points, 0.9)
    assert held["achieved"] == 0.75  # the 30 is above P50 + z sigma
    forecasts = pd.DataFrame({"series_id": ["a"] * 3, "ds": [1, 2, 3], "p50": [10.0] * 3,
                              "p10": [10 - quality.Z90] * 3, "p90": [10 + quality.Z90] * 3})
    stock = quality.safety_stock(forecasts, lead_time=2, z=2.0)
    assert stock["lead_time_demand"].iloc[0] == 20.0
    assert stock["safety_stock"].iloc[0] == pytest.approx(2.0 * 2 ** 0.5)  # sigma 1 per period


def test_data_quality_shows_checks_and_quarantined_rows_with_reasons(app_env):
    at = app("data_quality")
    checks = frame(at, "check", "passed")
    assert {"validated_sales", "sales_rejects"} <= set(checks["asset"])
    assert "completeness" in set(checks["check"])
    rejects = frame(at, "reason", "rules", last=True)
    reasons = set(query(app_env, "SELECT reason FROM sales_rejects")["reason"])
    assert set(rejects["reason"]) == reasons and len(reasons) > 0


def test_drift_shows_the_verdict_and_links_the_report(app_env):
    at = app("drift")
    table = frame(at, "report")
    summary = query(app_env, "SELECT ds, retrain, reason FROM drift_summary")
    assert table["report"].iloc[0] == f"./drift?report={END}"
    assert summary["reason"].iloc[0] in texts(at)
    assert at.get("download_button")  # the report's HTML is on disk and offered


def test_no_snapshot_says_which_command_makes_one(tmp_path, monkeypatch):
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path / "empty"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "forecast-platform demo" in texts(at)
    at.switch_page("views/model_quality.py").run()
    assert not at.exception and "forecast-platform demo" in texts(at)


# -- what-if through the real service ----------------------------------------------------------

def test_whatif_without_a_service_says_how_to_start_it(app_env, monkeypatch):
    monkeypatch.setenv("FORECAST_SERVICE_URL", f"http://127.0.0.1:{free_port()}")
    at = app("whatif")
    assert "not running" in texts(at) and "forecast-platform serve" in texts(at)


def test_whatif_is_computed_by_the_running_service(app_env, demo, monkeypatch, tmp_path):
    settings = demo[0]
    env = {"FORECAST_DATA_DIR": str(settings.data_dir), "DO_NOT_TRACK": "1",
           "BENTOML_DO_NOT_TRACK": "True", "FORECAST_API_KEY": "", "FORECAST_ADMIN_KEY": ""}
    with bentoml_server(env, stderr_path=tmp_path / "bentoml.err") as server:
        monkeypatch.setenv("FORECAST_SERVICE_URL", server.url)
        at = app("whatif")
        at.text_input(key="whatif_query").input("store 1 item 2").run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        table = frame(at, "p50_whatif")
        on = table[table["date"] <= table["date"].iloc[6]]
        # What the service answers with the promotion on, exactly.
        scenario = whatif.scenario_for(on["date"], {"promo": 1.0})
        direct = whatif.forecast(server.url, {"store": 1, "item": 2}, scenario)
        assert direct.ok
        served = [r["p50"] for r in direct.data["forecast"]][:7]
        assert on["p50_whatif"].round(6).tolist() == pytest.approx(served)
        assert (on["p50_whatif"] > on["p50_base"]).all()  # a promotion lifts the forecast
        at.toggle(key="whatif_promo").set_value(False).run()
        off = frame(at, "p50_whatif")
        assert off["p50_whatif"].head(7).sum() < on["p50_whatif"].sum()
        # A 4xx is shown with the service's own message.
        bad = whatif.forecast(server.url, {"store": 1, "item": 2},
                              {"2099-01-01": {"promo": 1.0}})
        assert bad.status == 422 and "is not a forecast date" in bad.message


# -- the real app: a browser, and a backfill beside it -----------------------------------------

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def served_app(demo, tmp_path_factory):
    """``forecast-platform dashboard`` itself, on a free port."""
    settings = demo[0]
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard_cli") / "dashboard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECAST_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "forecast_platform.cli", "dashboard", "--data-dir",
             str(settings.data_dir), "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield url, log
    finally:
        stop_group(proc)


def test_a_real_browser_renders_the_six_pages_without_an_exception(served_app, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed and could not be (.ci/run installs it as root "
                    "with apt-get); the real-browser check did not run")
    url, log = served_app
    flags = [browser, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--window-size=1400,1000",
             "--virtual-time-budget=20000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = ""
    for _ in range(3):  # a cold server's first script run (imports) may outlast one load
        dom = subprocess.run([*flags, "--dump-dom", f"{url}/"], capture_output=True,
                             text=True, timeout=90, check=False).stdout
        if "Find a series" in dom:
            break
    shot = tmp_path / "forecasts.png"
    for _ in range(3):  # a blank page (the app still loading) is a PNG of a few kB
        subprocess.run([*flags, f"--screenshot={shot}", f"{url}/"], capture_output=True,
                       timeout=90, check=False)
        if shot.is_file() and shot.stat().st_size > 10_000:
            break
    assert shot.is_file() and shot.stat().st_size > 10_000
    for name in PAGE_NAMES:
        assert name in dom, name
    assert 'data-testid="stException"' not in dom and "Traceback" not in dom
    assert "Page not found" not in dom
    assert "Find a series" in dom  # the page itself rendered, not only the navigation
    assert "Traceback" not in log.read_text()


BACKFILL_START = END - dt.timedelta(days=27)  # a range run of 28 partitions, one run
BACKFILL = """
import sys
from forecast_platform.settings import load_settings
from forecast_platform_tests.conftest import run_job
settings = load_settings({"FORECAST_DATA_DIR": sys.argv[1]})
assert run_job(settings, sys.argv[2], sys.argv[3]).success
assert run_job(settings, None, None, job="dashboard_job").success
"""


def test_pages_keep_working_while_a_backfill_holds_the_warehouse(app_env, demo, tmp_path):
    settings = demo[0]
    before = current_snapshot(settings).run_id
    log = tmp_path / "backfill.log"
    with open(log, "wb") as out:  # a file, not a pipe: nobody reads it while pages render
        proc = subprocess.Popen([sys.executable, "-c", BACKFILL, str(settings.data_dir),
                                 str(BACKFILL_START), str(END)], stdout=out,
                                stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parents[1])
    rendered = 0
    renders: list[float] = []
    locks: list[float] = []  # when a reader found the warehouse held by the backfill
    probing = threading.Event()

    def probe() -> None:
        """What a reader of the warehouse meets meanwhile, every 0.1 s (a page render takes
        longer than the backfill's shorter writes, so probing only between renders can miss
        every one of them)."""
        while not probing.wait(0.1):
            try:
                duckdb.connect(str(settings.warehouse_path), read_only=True).close()
            except duckdb.IOException as err:
                assert "lock" in str(err).lower()
                locks.append(time.monotonic())

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    seen = set()
    try:
        deadline = time.monotonic() + 180
        while (proc.poll() is None or not rendered) and time.monotonic() < deadline:
            at = app()  # Forecasts: the default page
            at.text_input(key="forecasts_query").input("store 3 item 1").run()
            assert not at.exception and len(frame(at, "part"))
            seen.add(texts(at).split("run `")[1][:8])
            rendered += 1
            renders.append(time.monotonic())
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        probing.set()
        prober.join(timeout=10)
        if proc.poll() is None:
            proc.kill()
    after = current_snapshot(settings).run_id
    assert after != before  # the backfill's snapshot replaced the old one
    assert seen <= {before[:8], after[:8]}  # every page was all old or all new
    # The warehouse was held by the backfill, and pages rendered while it was.
    assert locks and rendered >= 2, (len(locks), rendered)
    assert any(locks[0] <= t <= locks[-1] + 1 for t in renders), (locks[:3], renders[:3])
    at = app()
    assert f"run `{after[:8]}`" in texts(at)


def test_the_sensor_asks_for_a_snapshot_after_a_scoring_run(demo):
    settings, instance, defs, *_ = demo
    sensor = build_dashboard_sensor(build_jobs(SPEC))
    run = next(r for r in instance.get_runs() if r.job_name == "anomaly_job")
    success = next(e for e in instance.all_logs(run.run_id)
                   if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_SUCCESS")
    context = dg.build_run_status_sensor_context(
        sensor_name="dashboard_sensor", dagster_instance=instance, dagster_run=run,
        dagster_event=success.dagster_event)
    request = sensor(context)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"dashboard-after-{run.run_id}"
    assert json.dumps(request.tags)
