"""The monitoring loop for real: drift reports, degradation, sensors that retrain, alerts.

One small synthetic world (40 series): trained on clean data up to 2017-06-30, then four weeks
of drifted days land (level x1.6, a weekday-heavy profile, more promotions). Everything runs on
a real DuckDB file, a real MLflow store and a real Dagster instance; the sensors are evaluated
against that instance's event log, and the retrain they request is executed in process.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time

import dagster as dg
import duckdb
import pytest

from forecast_platform.datasets.registry import get_spec, land_synthetic
from forecast_platform.definitions import build_definitions
from forecast_platform.defs.monitoring_sensors import DRIFT, PERFORMANCE, evaluate_trigger
from forecast_platform.monitoring.alerts import Alert
from forecast_platform.monitoring.spool import spool_alert
from forecast_platform.settings import load_settings
from forecast_platform_tests.conftest import (
    SYNTHETIC_INGESTED,
    SYNTHETIC_WORLD,
    copy_world,
    metadata,
    range_tags,
)

SPEC = get_spec("synthetic")
TRAIN_END = SYNTHETIC_INGESTED  # clean days from 2015-01-01 on
DRIFT_FROM, DRIFT_END = dt.date(2017, 7, 1), dt.date(2017, 7, 28)
WORLD = {**SYNTHETIC_WORLD, "drift_from": DRIFT_FROM}


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def webhook():
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def settings_for(data_dir, webhook_url: str | None = None, cooldown: float | None = None):
    env = {"FORECAST_DATA_DIR": str(data_dir), "FORECAST_DATASET": "synthetic"}
    if webhook_url:
        env["FORECAST_ALERT_WEBHOOK_URL"] = webhook_url
    if cooldown is not None:
        env["FORECAST_RETRAIN_COOLDOWN_MINUTES"] = str(cooldown)
    return load_settings(env)


def execute(defs, instance, job: str, partition: str | None = None, tags: dict | None = None,
            first=None, last=None):
    all_tags = {**(tags or {}), **(range_tags(first, last) if first else {})}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, tags=all_tags, raise_on_error=False)


def errors(result) -> list[str]:
    return [e.event_specific_data.error.message for e in result.all_events
            if e.event_type_value == "STEP_FAILURE"]


def query(settings, sql: str, params=None):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).df()


def tick(defs, instance, name: str, cursor: str | None = None):
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"platform": defs.resources["platform"]})
    return sensor(context)


@pytest.fixture(scope="module")
def world(tmp_path_factory, webhook, synthetic_world):
    data_dir = tmp_path_factory.mktemp("monitoring") / "data"
    settings = settings_for(data_dir, webhook)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    # The clean days 2015-01-01..TRAIN_END, ingested once per session (conftest.synthetic_world).
    copy_world(synthetic_world, settings, landing=False)
    trained = dg.materialize(
        defs.assets, selection=["forecaster", "forecasts"], instance=instance,
        resources=defs.resources, tags={"trigger": "manual"})
    assert trained.success
    clean = execute(defs, instance, "monitor_job", partition=str(TRAIN_END))
    land_synthetic(SPEC, settings.landing_dir(), start=DRIFT_FROM, end=DRIFT_END, **WORLD)
    assert execute(defs, instance, "ingest_job", first=DRIFT_FROM, last=DRIFT_END).success
    drifted = execute(defs, instance, "monitor_job", partition=str(DRIFT_END))
    return settings, defs, instance, clean, drifted


def test_a_clean_window_does_not_drift_and_asks_for_no_retrain(world):
    settings, _, _, clean, _ = world
    assert clean.success, errors(clean)
    meta = metadata(clean, "drift_report")
    assert meta["retrain"] is False
    assert meta["dataset_drift"] is False
    assert "y" not in meta["drifted_columns"].split(", ")
    perf = metadata(clean, "forecast_performance")
    assert perf["degraded"] is False and perf["points"] == 0  # no forecast made before it


def test_drifted_days_are_reported_stored_and_alerted(world, webhook):
    settings, _, _, _, drifted = world
    assert drifted.success, errors(drifted)
    meta = metadata(drifted, "drift_report")
    assert meta["retrain"] is True
    assert "y" in meta["retrain_columns"]
    assert meta["forecaster_version"] == 1
    html = settings.reports_dir / "drift" / f"drift_report_{DRIFT_END}.html"
    assert html.exists() and html.stat().st_size > 100_000
    summary = query(settings, "SELECT * FROM drift_summary WHERE ds = ?", [DRIFT_END])
    assert len(summary) == 1 and bool(summary["retrain"].iloc[0])
    assert summary["forecaster_version"].iloc[0] == 1
    columns = query(settings, "SELECT * FROM drift_columns WHERE ds = ?", [DRIFT_END])
    y = columns.set_index("column").loc["y"]
    assert bool(y["drifted"]) and y["current_mean"] > 1.3 * y["reference_mean"]
    alerts = query(settings, "SELECT * FROM alerts WHERE kind = 'drift'")
    assert len(alerts) == 1 and bool(alerts["webhook_delivered"].iloc[0])
    posted = [p for p in Receiver.received if p["forecast_platform"]["kind"] == "drift"]
    assert posted and str(DRIFT_END) in posted[0]["text"]


def test_forecasts_for_drifted_days_are_flagged_as_degraded(world):
    settings, _, _, _, drifted = world
    perf = metadata(drifted, "forecast_performance")
    assert perf["degraded"] is True, perf
    assert perf["ratio"] > 1.5 and perf["forecaster_version"] == 1
    rows = query(settings, "SELECT * FROM forecast_performance")
    assert set(rows["ds"].astype(str)) == {str(DRIFT_END)}
    assert bool(rows["degraded"].iloc[0]) and rows["forecaster_version"].iloc[0] == 1


def test_sensor_requests_a_tagged_retrain_which_records_a_new_version(world):
    settings, defs, instance, _, _ = world
    first = tick(defs, instance, "drift_sensor")
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.job_name == "train_job"
    assert request.tags["trigger"] == "drift"
    assert request.tags["partition"] == str(DRIFT_END)
    assert float(request.tags["drifted_share"]) > 0
    # Nothing new since: no second request.
    again = tick(defs, instance, "drift_sensor", cursor=first.cursor)
    assert not getattr(again, "run_requests", None)

    retrain = execute(defs, instance, "train_job", tags=request.tags)
    versions = query(settings, "SELECT version, status, trigger FROM model_registry "
                               "WHERE model_name = 'synthetic_forecaster' ORDER BY version")
    assert list(versions["version"]) == [1, 2]
    assert versions["trigger"].iloc[1] == "drift"
    assert metadata(retrain, "forecaster")["trigger"] == "drift"
    # Same recipe on newer data: the retrain replaces the champion ...
    assert list(versions["status"]) == ["retired", "champion"]
    # ... and the same day, reported against it, no longer asks for a retrain: no storm.
    again = execute(defs, instance, "monitor_job", partition=str(DRIFT_END))
    report = metadata(again, "drift_report")
    assert report["forecaster_version"] == 2 and report["retrain"] is False
    assert "already trained on it" in report["retrain_reason"]
    assert not tick(defs, instance, "drift_sensor", cursor=first.cursor).run_requests


def _report(instance, asset: str, partition: str, **meta) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=asset, partition=partition, metadata=meta))


def test_retrain_sensors_honour_flags_cooldown_and_run_keys():
    with dg.instance_for_test() as instance:
        def context(cursor=None):
            return dg.build_sensor_context(instance=instance, cursor=cursor)

        _report(instance, "drift_report", "2017-07-01", retrain=False, forecaster_version=1,
                drifted_share=0.1)
        clean = evaluate_trigger(context(), DRIFT, cooldown_minutes=60)
        assert not clean.run_requests  # a clean report asks for nothing

        _report(instance, "drift_report", "2017-07-02", retrain=True, forecaster_version=1,
                drifted_share=0.4, retrain_columns="y, p50")
        drifted = evaluate_trigger(context(clean.cursor), DRIFT, cooldown_minutes=60)
        [request] = drifted.run_requests
        assert request.tags["trigger"] == "drift" and request.tags["partition"] == "2017-07-02"
        assert request.run_key == "drift:2017-07-02:v1"

        _report(instance, "drift_report", "2017-07-03", retrain=True, forecaster_version=1,
                drifted_share=0.5)
        cooling = evaluate_trigger(context(drifted.cursor), DRIFT, cooldown_minutes=60)
        assert not cooling.run_requests
        assert "cooldown" in cooling.skip_reason.skip_message

        # After the cooldown the next flagged report asks again.
        state = json.loads(cooling.cursor)
        state["last_request"] = time.time() - 61 * 60
        _report(instance, "drift_report", "2017-07-04", retrain=True, forecaster_version=1,
                drifted_share=0.5)
        later = evaluate_trigger(context(json.dumps(state)), DRIFT, cooldown_minutes=60)
        assert [r.tags["partition"] for r in later.run_requests] == ["2017-07-04"]

        # A newer day that no longer asks supersedes an older one that did.
        _report(instance, "drift_report", "2017-07-06", retrain=False, forecaster_version=2,
                drifted_share=0.5)
        _report(instance, "drift_report", "2017-07-05", retrain=True, forecaster_version=1,
                drifted_share=0.5)
        superseded = evaluate_trigger(context(later.cursor), DRIFT, cooldown_minutes=0)
        assert not superseded.run_requests
        assert "2017-07-06" in superseded.skip_reason.skip_message

        _report(instance, "forecast_performance", "2017-07-04", degraded=True, forecaster_version=1,
                ratio=2.1, rolling_error=30.0, expected_error=14.0)
        perf = evaluate_trigger(context(), PERFORMANCE, cooldown_minutes=60)
        assert perf.run_requests[0].tags["trigger"] == "performance"
        assert perf.run_requests[0].tags["error_ratio"] == "2.1"
        assert perf.run_requests[0].tags["champion_version"] == "1"

        # No version in the metadata: no champion_version tag, no version in the run key.
        _report(instance, "forecast_performance", "2017-07-05", degraded=True, ratio=2.2,
                rolling_error=31.0, expected_error=14.0)
        [unversioned] = evaluate_trigger(context(perf.cursor), PERFORMANCE,
                                         cooldown_minutes=0).run_requests
        assert "champion_version" not in unversioned.tags
        assert unversioned.run_key == "performance:2017-07-05"


def test_a_failed_run_raises_an_alert_and_a_dead_webhook_fails_nothing(world, tmp_path):
    settings, _, instance, _, _ = world
    dead = settings_for(settings.data_dir, "http://127.0.0.1:9/nothing-listens")
    defs = build_definitions(dead)
    # A day with no data: the drift report fails with a clear error.
    failed = execute(defs, instance, "monitor_job", partition="2013-02-01")
    assert not failed.success
    sensor = defs.resolve_sensor_def("alert_sensor")
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_sensor", dagster_instance=instance, dagster_run=failed.dagster_run,
        dagster_event=failed.get_run_failure_event(),
        resources={"platform": defs.resources["platform"]},
    ).for_run_failure()
    request = sensor(context)
    assert request.job_name in (None, "alerts_job")
    recorded = execute(defs, instance, "alerts_job")
    assert recorded.success  # the dead webhook was tried and did not fail anything
    alerts = query(settings, "SELECT * FROM alerts WHERE kind = 'failed_run'")
    assert len(alerts) == 1
    assert alerts["run_id"].iloc[0] == failed.run_id
    assert alerts["webhook_delivered"].iloc[0] is False or not alerts["webhook_delivered"].iloc[0]
    assert "monitor_job" in alerts["title"].iloc[0]
    assert not list((settings.alerts_spool_dir).glob("*.jsonl"))  # the spool was drained


def test_spooled_alerts_are_recorded_once(tmp_path):
    settings = settings_for(tmp_path / "data")
    alert = Alert(kind="failed_run", severity="critical", title="x failed", run_id="r1")
    spool_alert(settings.alerts_spool_dir, alert, None)
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        assert execute(defs, instance, "alerts_job").success
        assert execute(defs, instance, "alerts_job").success
    rows = query(settings, "SELECT alert_id, title FROM alerts")
    assert list(rows["alert_id"]) == [alert.alert_id]
