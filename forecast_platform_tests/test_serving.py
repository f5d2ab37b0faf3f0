"""Serving: a real bundle from a real (small) champion, online features equal to the offline
ones, and the HTTP service's behaviour, auth, prediction log and bad-input answers.

One module-scoped setup: synthetic sales of 2 stores x 3 items in a DuckDB file, the real
feature SQL, a small Forecaster registered as champion, the real ``forecasts``,
``expected_sales`` and ``anomaly_model`` assets, the ``serving_bundle`` asset into a temporary
BENTOML_HOME, then the service over ``to_asgi()`` (and once as a real server).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
import dagster as dg
import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest

from forecast_platform.anomalies.detector import anomaly_model_name
from forecast_platform.datasets.registry import get_spec
from forecast_platform.defs.anomalies import build_anomaly_assets
from forecast_platform.defs.bentoml_store import load_stored_bundle, model_store, save_bundle
from forecast_platform.defs.harness import add_anomaly_detector
from forecast_platform.defs.resources import Platform
from forecast_platform.defs.serving import build_serving_assets
from forecast_platform.features.offline import HOLIDAYS_SOURCE
from forecast_platform.features.sql import features_select, plan_features
from forecast_platform.forecasting.forecaster import ForecasterParams
from forecast_platform.forecasting.future import future_params, future_source
from forecast_platform.serving.bundle import load_bundle, pack_bundle
from forecast_platform.serving.harness import (
    SERVICE_FILE,
    bentoml_server,
    build_champion_warehouse,
)
from forecast_platform.serving.log import log_file, log_select
from forecast_platform.serving.online import OnlineModel
from forecast_platform.serving.requests import MAX_ERROR_BYTES, NotAvailable
from forecast_platform.settings import DEFAULT_MAX_BODY_BYTES, Settings, load_settings
from forecast_platform.warehouse.store import connect, registered
from forecast_platform.warehouse.tables import PREDICTION_LOG

SPEC = get_spec("synthetic")
PLAN = plan_features(SPEC)
START, END = dt.date(2013, 1, 1), dt.date(2016, 3, 31)
MODEL = "synthetic_forecaster"
MAX_BATCH = 50
S12 = {"store": 1, "item": 2}
# The detector's threshold is calibrated on ~1,100 rows here: at the default 0.2 % false-alarm
# rate no single day can pass it (see the report). 2 % flags enough to compare types.
ANOMALY_CONFIG = {"target_false_alarm_rate": 0.02}


# -- setup ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """The module's environment: its own data dir and BentoML store, a small batch cap."""
    root = tmp_path_factory.mktemp("serving")
    values = {"FORECAST_DATA_DIR": str(root / "data"), "BENTOML_HOME": str(root / "bentoml"),
              "FORECAST_MAX_BATCH": str(MAX_BATCH), "DO_NOT_TRACK": "1",
              "BENTOML_DO_NOT_TRACK": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        mp.delenv("FORECAST_API_KEY", raising=False)
        mp.delenv("FORECAST_ADMIN_KEY", raising=False)
        mp.delenv("FORECAST_BUNDLE", raising=False)
        # BentoML binds its process-wide model store once, to the BENTOML_HOME of its first
        # use; another test module may have used it already. Point it at this module's store.
        from bentoml._internal.configuration.containers import BentoMLContainer

        store = BentoMLContainer.model_store
        store.set(model_store(Path(values["BENTOML_HOME"])))
        try:
            yield values
        finally:
            store.reset()


@pytest.fixture(scope="module")
def settings(env) -> Settings:
    return load_settings(env)


@pytest.fixture(scope="module")
def warehouse(settings) -> Path:
    """validated_sales, holiday_calendar, a champion forecaster, its forecasts, out-of-sample
    expected values and an anomaly detector in a DuckDB file."""
    build_champion_warehouse(settings.warehouse_path, SPEC, MODEL, n_stores=2, n_items=3,
                             start=START, end=END, seed=3,
                             params=ForecasterParams(n_estimators=20))
    add_anomaly_detector(settings, SPEC, START, END, ANOMALY_CONFIG)
    return settings.warehouse_path


@pytest.fixture(scope="module")
def bundle_tag(settings, warehouse) -> str:
    """The serving_bundle asset, materialized for real; its metadata names the tag."""
    assets = build_serving_assets(SPEC)
    result = dg.materialize([assets[0]],
                            resources={"platform": Platform.from_settings(settings)})
    assert result.success
    meta = result.asset_materializations_for_node("serving_bundle")[0].metadata
    assert meta["forecaster_version"].value == 1
    assert Path(meta["path"].value).is_dir()
    return meta["bentoml_tag"].value


@pytest.fixture(scope="module")
def online(settings, bundle_tag) -> OnlineModel:
    return OnlineModel(load_stored_bundle(bundle_tag, settings.bentoml_home))


@pytest.fixture(scope="module")
def service(env, bundle_tag):
    """bentos/service.py imported as a module (BENTOML_HOME is already the module's)."""
    spec = importlib.util.spec_from_file_location("forecast_service_under_test", SERVICE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def client(service):
    from starlette.testclient import TestClient

    with TestClient(app=service.ForecastService.to_asgi()) as c:
        yield c


def offline_future_rows(warehouse: Path, origin: dt.date) -> pd.DataFrame:
    """The forecasts asset's own query on the warehouse: the offline features of the horizon."""
    first = origin + dt.timedelta(days=1)
    last = origin + dt.timedelta(days=PLAN.horizon)
    select = features_select(PLAN, future_source(SPEC, PLAN.horizon), HOLIDAYS_SOURCE)
    with connect(warehouse, read_only=True) as con:
        rows = con.execute(select, [*future_params(origin - dt.timedelta(days=PLAN.lookback_days),
                                                   origin), first, last]).df()
    rows["ds"] = pd.to_datetime(rows["ds"])
    return rows


# -- bundle and parity ------------------------------------------------------------------------

def test_bundle_packs_the_champion_and_a_bounded_snapshot(settings, bundle_tag, online):
    b = online.bundle
    assert b.tag == bundle_tag and b.forecaster_version == 1 and b.detector_version == 1
    assert b.manifest["model"]["mlflow_run_id"] == "run-123"
    assert b.manifest["model"]["metrics"]["xgboost"]["smape"] == 0.2
    anomaly = b.manifest["anomaly"]
    assert anomaly["present"] is True and anomaly["version"] == 1
    assert (b.path / "anomaly" / "info.json").is_file()
    assert (b.path / "anomaly" / "model.bin").is_file()
    # The context the detector needs: the asset's window before every scorable date.
    assert anomaly["score_dates"] == [str(b.windows.recent_start), str(END + dt.timedelta(days=1))]
    context = b.anomaly_context
    assert context["ds"].min() == pd.Timestamp(b.windows.recent_start) - pd.Timedelta(
        days=anomaly["context_days"])
    assert context["ds"].max() == pd.Timestamp(END)
    assert context["series_id"].nunique() == 6
    assert context[["p10", "p50", "p90"]].notna().all().all()
    assert b.windows.origin == END
    history = pd.read_parquet(b.history_file)
    assert history[SPEC.date_column].min() >= b.windows.history_start
    assert history["series_id"].nunique() == b.manifest["series"] == 6
    assert len(history) == b.manifest["history_rows"]
    assert b.plan.names == PLAN.names
    # The served rows come packed: every series' recent and future dates, the horizon predicted.
    served = pd.read_parquet(b.served_features_file)
    assert served["rn"].tolist() == list(range(len(served)))
    assert len(served) == b.manifest["served_rows"]["rows"] == 6 * 2 * PLAN.horizon
    forecasts = pd.read_parquet(b.served_forecasts_file)
    assert len(forecasts) == b.manifest["served_rows"]["forecast_rows"] == 6 * PLAN.horizon
    assert (pd.to_datetime(served.loc[forecasts["rn"], "ds"]) > pd.Timestamp(END)).all()
    from forecast_platform.serving import snapshot

    assert snapshot.HOLIDAYS_SOURCE is HOLIDAYS_SOURCE  # the service runs the offline SQL
    import bentoml

    stored = bentoml.models.get(bundle_tag, _model_store=model_store(settings.bentoml_home))
    assert stored.info.labels["forecaster_version"] == "1"
    assert stored.info.labels["detector_version"] == "1"
    assert stored.info.metadata["forecaster_version"] == 1
    assert stored.info.metadata["detector_version"] == 1
    assert stored.info.metadata["train_window"] == f"{START} .. {END}"


def test_online_features_equal_the_offline_features(warehouse, online):
    """Same series, same dates: identical values from the bundle's in-memory DuckDB."""
    offline = offline_future_rows(warehouse, END)
    series = [{"store": 1, "item": 2}, {"store": 2, "item": 3}]
    days = [END + dt.timedelta(days=d) for d in (1, 7, 45, 90)]
    got = online.features(series, days)
    want = offline.set_index(["series_id", "ds"]).loc[
        [(f"{s['store']}|{s['item']}", pd.Timestamp(d)) for s in series for d in days]
    ].reset_index()[got.columns]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_exact=True)
    # The recent observed dates are sales_features' rows themselves.
    recent = [END - dt.timedelta(days=d) for d in (0, 30, 60)]
    with connect(warehouse, read_only=True) as con:
        past = con.execute("SELECT * FROM sales_features WHERE series_id = '1|2' "
                           "AND ds IN (?, ?, ?) ORDER BY ds DESC", recent).df()
    past["ds"] = pd.to_datetime(past["ds"])
    got = online.features(series[:1], recent)
    pd.testing.assert_frame_equal(got, past[got.columns], check_exact=True)
    # ... and so do the served forecasts.
    offline_12 = offline[offline["series_id"] == "1|2"].sort_values("ds")
    served = online.forecast([S12])[0]
    np.testing.assert_array_equal(served["p50"],
                                  online.model.predict(offline_12)["p50"].to_numpy())


def test_scenario_overlay_equals_recomputing_the_sql(online):
    assert online.passthrough
    days = [END + dt.timedelta(days=d) for d in (1, 2, 10)]
    scenario = {days[0]: {"promo": 1}, days[2]: {"promo": 1}}
    fast = online.features([S12], days, scenario)
    exact = online.features([S12], days, scenario, exact=True)
    pd.testing.assert_frame_equal(fast, exact, check_dtype=False, check_exact=True)
    assert fast["promo"].tolist() == [1, 0, 1]


# -- HTTP -------------------------------------------------------------------------------------

def test_forecast_and_what_if_promotion(client, online):
    r = client.post("/forecast", json={"series": S12, "horizon": 14})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["forecaster_version"] == 1 and len(body["forecast"]) == 14
    assert "model_version" not in body
    first = body["forecast"][0]
    assert first["date"] == str(END + dt.timedelta(days=1))
    assert first["p10"] <= first["p50"] <= first["p90"]
    assert all(row["is_open"] is True for row in body["forecast"])  # no closure rules here
    day = first["date"]
    promo = client.post("/forecast", json={"series": S12, "horizon": 14,
                                           "scenario": {day: {"promo": 1}}}).json()
    assert promo["forecast"][0]["p50"] > first["p50"]  # the promotion lifts that day only
    assert promo["forecast"][1:] == body["forecast"][1:]
    full = client.post("/forecast", json={"series": {"store": "1", "item": "2"}}).json()
    assert len(full["forecast"]) == PLAN.horizon  # keys as strings work; default horizon


def test_forecast_batch_is_vectorized_and_matches_single_calls(client):
    all_series = [{"store": s, "item": i} for s in (1, 2) for i in (1, 2, 3)]
    r = client.post("/forecast_batch", json={"series": all_series, "horizon": 7})
    assert r.status_code == 200, r.text
    out = r.json()["forecasts"]
    assert [f["series_id"] for f in out] == [f"{s['store']}|{s['item']}" for s in all_series]
    single = client.post("/forecast", json={"series": all_series[4], "horizon": 7}).json()
    assert out[4]["p50"] == [row["p50"] for row in single["forecast"]]


def test_explain_sums_to_the_prediction(client):
    day = str(END + dt.timedelta(days=3))
    r = client.post("/explain", json={"series": S12, "date": day, "top": 2})
    assert r.status_code == 200, r.text
    e = r.json()
    assert len(e["contributions"]) == 2
    total = e["bias"] + sum(c["contribution"] for c in e["contributions"]) + e["rest"]
    assert total == pytest.approx(e["raw_p50"], rel=1e-9)
    assert e["p50"] == pytest.approx(max(e["raw_p50"], 0.0), rel=1e-5)
    forecast = client.post("/forecast", json={"series": S12, "horizon": 3}).json()
    assert e["p50"] == pytest.approx(forecast["forecast"][2]["p50"], rel=1e-9)
    past = client.post("/explain", json={"series": S12, "date": str(END - dt.timedelta(days=5))})
    assert past.status_code == 200 and past.json()["actual"] is not None


def test_model_info(client):
    info = client.post("/model_info").json()
    assert info["forecaster"]["version"] == 1
    assert info["forecaster"]["train_start"] == str(START)
    assert info["forecaster"]["metrics"]["xgboost"]["smape"] == 0.2
    assert info["forecaster"]["mlflow_run_id"] == "run-123"
    assert info["bundle_created_at"] and info["series"] == 6 and info["max_batch"] == MAX_BATCH
    assert info["anomaly"]["present"] is True and info["anomaly"]["available"] is True
    assert info["anomaly"]["params"]["target_false_alarm_rate"] == 0.02


def test_score_anomaly_without_a_detector_is_a_clear_501(online, tmp_path):
    """A bundle without the detector (a dataset without anomaly models) says what to do."""
    bare = tmp_path / "bundle"
    shutil.copytree(online.bundle.path, bare)
    (bare / "anomaly" / "model.bin").unlink()
    without = OnlineModel(load_bundle(bare, tag="forecast_bundle:bare"))
    assert without.info()["anomaly"]["available"] is False
    with pytest.raises(NotAvailable, match="no anomaly detector") as err:
        without.score_anomaly(S12, str(END), 12)
    assert err.value.status == 501 and "Materialize anomaly_model" in err.value.message


def test_a_bundle_without_a_detector_has_no_detector_version(settings, warehouse, tmp_path):
    """No detector champion: the store's labels and metadata carry no ``detector_version``
    (never "none" or -1) and the loaded bundle says None."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    with connect(copy) as con:
        con.execute("DELETE FROM model_registry WHERE model_name = ?", [anomaly_model_name(SPEC)])
        packed = pack_bundle(con, SPEC, MODEL)
    assert packed.labels["forecaster_version"] == "1" and packed.metadata["forecaster_version"] == 1
    assert "detector_version" not in packed.labels and "detector_version" not in packed.metadata
    assert not any("model_version" in k or "anomaly" in k for k in
                   [*packed.labels, *packed.metadata])
    root = tmp_path / "bundle"
    root.mkdir()
    packed.write(root)
    assert not packed.files.exists()  # the scratch folder of the packed files is gone
    bundle = load_bundle(root)
    assert bundle.forecaster_version == 1 and bundle.detector_version is None


def test_score_anomaly_equals_the_sales_anomalies_asset(client, settings, online,
                                                        tmp_path_factory):
    """Same series, date and actual: the endpoint's score, flag, type, reason and interval are
    the ``sales_anomalies`` asset's row, and every score is in the prediction log.

    The asset runs on a copy of the warehouse whose actuals of the scored days are the ones
    sent: a past day (the real actuals, plus a spike and a zero) and the day after the bundle's
    origin (rows landed: near the forecast, a spike, a zero), each day its own partition, as
    the daily schedule scores it. The day after is scored first: a changed past actual is
    context for every later day, and the bundle holds the real ones.
    """
    copy = load_settings({"FORECAST_DATA_DIR": str(tmp_path_factory.mktemp("copy") / "data")})
    copy.warehouse_path.parent.mkdir(parents=True)
    shutil.copy(settings.warehouse_path, copy.warehouse_path)
    past, after = END - dt.timedelta(days=10), END + dt.timedelta(days=1)
    all_series = [{"store": s, "item": i} for s in (1, 2) for i in (1, 2, 3)]
    forecast = {f["series_id"]: f["p50"][0] for f in online.forecast(all_series, 1, batch=True)}
    landed = pd.DataFrame([{"date": after, "store": k["store"], "item": k["item"],
                            "sales": float(round(forecast[f"{k['store']}|{k['item']}"])),
                            "promo": 0, "series_id": f"{k['store']}|{k['item']}"}
                           for k in all_series])
    landed.loc[landed["series_id"] == "1|2", "sales"] = 1000.0
    landed.loc[landed["series_id"] == "2|3", "sales"] = 0.0
    anomalies = build_anomaly_assets(SPEC)[2]

    def score_day(day: dt.date, sql: str, params: list) -> None:
        with connect(copy.warehouse_path) as con, registered(con, "_landed", landed):
            con.execute(sql, params)
        result = dg.materialize([anomalies], partition_key=str(day),
                                resources={"platform": Platform.from_settings(copy)})
        assert result.success

    score_day(after, "INSERT INTO validated_sales BY NAME SELECT * FROM _landed", [])
    score_day(past, "UPDATE validated_sales SET sales = CASE series_id WHEN '2|2' THEN 1000 "
              "ELSE 0 END WHERE series_id IN ('2|2', '1|3') AND date = ?", [past])
    with connect(copy.warehouse_path, read_only=True) as con:
        asset = con.execute("SELECT * FROM sales_anomalies ORDER BY ds, series_id").df()
    assert len(asset) == 12

    request_ids = {}
    for row in asset.itertuples():
        store, item = (int(k) for k in row.series_id.split("|"))
        r = client.post("/score_anomaly", json={"series": {"store": store, "item": item},
                                                "date": str(row.ds.date()), "actual": row.y})
        assert r.status_code == 200, r.text
        got = r.json()
        where = f"{row.series_id} on {row.ds.date()} ({row.y})"
        assert got["score"] == pytest.approx(row.score, rel=1e-12, abs=1e-12), where
        assert got["is_anomaly"] == bool(row.is_anomaly), where
        assert got["anomaly_type"] == (row.anomaly_type if row.is_anomaly else None), where
        if row.is_anomaly:
            assert got["reason"] == row.reason, where
        else:
            assert got["reason"].startswith("not an anomaly"), where
        # What the day was judged against: the expectation times the day's common factor.
        assert [got["p10"], got["expected"], got["p90"], got["day_factor"]] == pytest.approx(
            [row.p10, row.p50, row.p90, row.day_factor], rel=1e-12), where
        assert got["forecast_p50"] == pytest.approx(row.forecast_p50, rel=1e-12), where
        assert got["detector_version"] == row.detector_version == 1
        assert got["forecaster_version"] == 1 and "model_version" not in got
        assert got["expected_source"] == ("out_of_sample" if row.ds.date() <= END
                                          else f"forecast from {END}")
        request_ids[got["request_id"]] = got
    flagged = asset[asset["is_anomaly"]]
    assert 0 < len(flagged) < len(asset)  # both branches compared
    assert {"spike", "zero_run"} <= set(flagged["anomaly_type"])

    today = dt.datetime.now(dt.UTC).date()
    lines = [json.loads(line) for line in
             log_file(settings.prediction_log_dir, today).read_text().splitlines()]
    logged = {x["request_id"]: x for x in lines if x["request_id"] in request_ids}
    assert len(logged) == len(request_ids)
    for request_id, line in logged.items():
        got = request_ids[request_id]
        assert line["endpoint"] == "score_anomaly" and line["series"] == got["series"]
        assert line["outputs"]["score"] == [got["score"]]
        assert line["outputs"]["is_anomaly"] == [got["is_anomaly"]]
        assert line["outputs"]["actual"] == [got["actual"]]
        assert line["outputs"]["p50"] == [got["expected"]]


def test_score_anomaly_is_a_what_if_on_a_past_day(client, online):
    """A recent observed day scored with another actual: a big spike there is flagged as a
    spike against the same expectation; the real actual is not."""
    day = str(END - dt.timedelta(days=3))
    frame = online.anomaly_context.frame
    real = frame.loc[(frame["series_id"] == "1|2") & (frame["ds"] == pd.Timestamp(day)),
                     "y"].item()
    normal = client.post("/score_anomaly", json={"series": S12, "date": day, "actual": real})
    spike = client.post("/score_anomaly", json={"series": S12, "date": day, "actual": 2000})
    assert normal.status_code == spike.status_code == 200
    assert spike.json()["expected"] == normal.json()["expected"]
    assert spike.json()["score"] > normal.json()["score"]
    assert spike.json()["is_anomaly"] and spike.json()["anomaly_type"] == "spike"
    assert "2000" in spike.json()["reason"]


def configure(monkeypatch, service, env: dict[str, str], **variables: str) -> None:
    """The service as if started with ``variables`` set too: it reads its settings once, at
    import, so they replace its ``SETTINGS`` (resolved from the variables, as at start)."""
    monkeypatch.setattr(service, "SETTINGS", load_settings({**env, **variables}))


def test_api_key_is_enforced_when_configured(client, service, env, monkeypatch):
    configure(monkeypatch, service, env, FORECAST_API_KEY="s3cret")
    body = {"series": S12, "horizon": 1}
    missing = client.post("/forecast", json=body)
    assert missing.status_code == 401 and "x-api-key" in missing.json()["error"]
    wrong = client.post("/forecast", json=body, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403 and "not valid" in wrong.json()["error"]
    assert client.post("/forecast", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
    bearer = client.post("/forecast", json=body, headers={"Authorization": "Bearer s3cret"})
    assert bearer.status_code == 200
    assert client.get("/livez").status_code == 200  # health stays open
    assert client.get("/readyz").status_code == 200


def test_reload_needs_the_admin_key_and_swaps_the_bundle(client, service, env, settings, online,
                                                         monkeypatch):
    assert client.post("/reload").status_code == 403  # no admin key configured: disabled
    configure(monkeypatch, service, env, FORECAST_ADMIN_KEY="adm1n")
    missing = client.post("/reload")
    assert missing.status_code == 401 and "x-admin-key" in missing.json()["error"]
    assert client.post("/reload", headers={"X-Admin-Key": "wrong"}).status_code == 403
    same = client.post("/reload", headers={"X-Admin-Key": "adm1n"})
    assert same.status_code == 200 and same.json()["reloaded"] is False
    before = client.post("/forecast", json={"series": S12, "horizon": 5}).json()
    with connect(settings.warehouse_path) as con:  # a newer bundle lands in the store
        new_tag = save_bundle(con, SPEC, MODEL, settings)
    r = client.post("/reload", headers={"X-Admin-Key": "adm1n"})
    assert r.status_code == 200 and r.json()["reloaded"] is True
    assert r.json()["bundle"] == new_tag and r.json()["previous_bundle"] == online.bundle.tag
    after = client.post("/forecast", json={"series": S12, "horizon": 5}).json()
    assert after["bundle"] == new_tag and after["forecast"] == before["forecast"]


def test_prediction_log_lines_and_the_prediction_log_asset(client, settings):
    r = client.post("/forecast", json={"series": S12, "horizon": 4,
                                       "scenario": {str(END + dt.timedelta(days=2)): {"promo": 1}}})
    request_id = r.json()["request_id"]
    today = dt.datetime.now(dt.UTC).date()
    path = log_file(settings.prediction_log_dir, today)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    mine = [line for line in lines if line["request_id"] == request_id]
    assert len(mine) == 1
    line = mine[0]
    assert line["endpoint"] == "forecast" and line["forecaster_version"] == 1
    assert line["series"] == S12 and line["inputs"]["horizon"] == 4
    assert line["outputs"]["p50"] == [row["p50"] for row in r.json()["forecast"]]
    assert {x["endpoint"] for x in lines} >= {"forecast", "forecast_batch", "explain"}

    log_asset = build_serving_assets(SPEC)[1]
    result = dg.materialize([log_asset], partition_key=today.isoformat(),
                            resources={"platform": Platform.from_settings(settings)})
    assert result.success
    # A warehouse from before the rename: its table says model_version; the next write
    # migrates the column (warehouse/migrations.py) and goes on.
    with duckdb.connect(str(settings.warehouse_path)) as raw:
        raw.execute(f"ALTER TABLE {PREDICTION_LOG} RENAME forecaster_version TO model_version")
    for _ in range(2):  # re-materializing replaces the day: no duplicates
        dg.materialize([log_asset], partition_key=today.isoformat(),
                       resources={"platform": Platform.from_settings(settings)})
    with connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(f"SELECT ds, p50, forecaster_version FROM {PREDICTION_LOG} "
                           "WHERE request_id = ? ORDER BY ds", [request_id]).fetchall()
        total = con.execute(f"SELECT count(*) FROM {PREDICTION_LOG}").fetchone()[0]
        columns = {c[0] for c in con.execute(f"DESCRIBE {PREDICTION_LOG}").fetchall()}
    assert "forecaster_version" in columns and "model_version" not in columns
    assert [r_[1] for r_ in rows] == line["outputs"]["p50"]
    assert {r_[2] for r_ in rows} == {1}
    assert rows[0][0] == END + dt.timedelta(days=1)
    assert total == sum(len(x["outputs"]["ds"]) for x in lines)


def test_prediction_log_reads_lines_written_before_the_rename(tmp_path):
    """An older service wrote ``model_version``: its lines load as ``forecaster_version``."""
    old = {"logged_at": "2025-01-02T10:00:00.000000Z", "request_id": "a", "endpoint": "forecast",
           "bundle": "forecast_bundle:x", "model_version": 3, "series_id": "1|2",
           "series": S12, "inputs": {}, "outputs": {"ds": ["2016-04-01"], "p10": [1.0],
                                                     "p50": [2.0], "p90": [3.0]}}
    new = {**{k: v for k, v in old.items() if k != "model_version"}, "request_id": "b",
           "forecaster_version": 4}
    path = tmp_path / "2025-01-02.jsonl"
    path.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT request_id, forecaster_version FROM ({log_select([path])}) "
                           "ORDER BY 1").fetchall()
        columns = [c[0] for c in con.execute(f"DESCRIBE {log_select([])}").fetchall()]
    assert rows == [("a", 3), ("b", 4)]
    assert "forecaster_version" in columns and "model_version" not in columns


# -- bad input: 4xx naming the field, never a 500 ---------------------------------------------

FUTURE = str(END + dt.timedelta(days=1))
BAD_INPUTS = [
    # (endpoint, json body or raw bytes, status, text the message must hold)
    ("forecast", b"", 400, "series"),
    ("forecast", b"{not json", 400, "body"),
    ("forecast", [1, 2], 400, "body"),
    ("forecast", {"horizon": 3}, 400, "series"),
    ("forecast", {"series": "1|2"}, 400, "series"),
    ("forecast", {"series": {"store": 1.5, "item": 2}}, 400, "series.store"),
    ("forecast", {"series": {"store": True, "item": 2}}, 400, "series.store"),
    ("forecast", {"series": {"store": 1}}, 422, "series.item"),
    ("forecast", {"series": {"store": 1, "item": 2, "color": "red"}}, 422, "series.color"),
    ("forecast", {"series": {"store": "one", "item": 2}}, 422, "series.store"),
    ("forecast", {"series": {"store": 9, "item": 2}}, 404, "series"),
    ("forecast", {"series": S12, "horizon": 91}, 422, "horizon"),
    ("forecast", {"series": S12, "horizon": 0}, 400, "horizon"),
    ("forecast", {"series": S12, "horizon": "3"}, 400, "horizon"),
    ("forecast", {"series": S12, "scenario": {"2016-02-30": {"promo": 1}}}, 400, "scenario"),
    ("forecast", {"series": S12, "scenario": {"2015-01-01": {"promo": 1}}}, 422,
     "scenario.2015-01-01"),
    ("forecast", {"series": S12, "horizon": 3,
                  "scenario": {str(END + dt.timedelta(days=5)): {"promo": 1}}}, 422, "scenario"),
    ("forecast", {"series": S12, "scenario": {FUTURE: {"price": 1}}}, 422, "price"),
    ("forecast", {"series": S12, "scenario": {FUTURE: {"promo": "yes"}}}, 400, "promo"),
    ("forecast", {"series": S12, "scenario": {FUTURE: {}}}, 422, "scenario"),
    ("forecast_batch", {"series": []}, 422, "series"),
    ("forecast_batch", {"series": S12}, 400, "series"),
    ("forecast_batch", {"series": [S12, {"store": 7, "item": 7}]}, 404, "series[1]"),
    ("forecast_batch", {"series": [S12] * (MAX_BATCH + 1)}, 413, "series"),
    ("explain", {"series": S12}, 400, "date"),
    ("explain", {"series": S12, "date": "2016-02-30"}, 400, "date"),
    ("explain", {"series": S12, "date": "tomorrow"}, 400, "date"),
    ("explain", {"series": S12, "date": "2010-01-01"}, 422, "date"),
    ("explain", {"series": S12, "date": FUTURE, "top": 0}, 400, "top"),
    ("score_anomaly", {"series": S12, "date": str(END)}, 400, "actual"),
    ("score_anomaly", {"date": str(END), "actual": 3}, 400, "series"),
    ("score_anomaly", {"series": S12, "actual": 3}, 400, "date"),
    ("score_anomaly", {"series": S12, "date": str(END), "actual": "many"}, 400, "actual"),
    ("score_anomaly", {"series": S12, "date": str(END), "actual": "12"}, 400, "actual"),
    ("score_anomaly", {"series": S12, "date": str(END), "actual": True}, 400, "actual"),
    ("score_anomaly", {"series": S12, "date": str(END), "actual": None}, 400, "actual"),
    ("score_anomaly", {"series": S12, "date": str(END), "actual": -5}, 422, "actual"),
    # Over the dataset's plausible maximum (synthetic: 100,000), as ingestion would quarantine.
    ("score_anomaly", {"series": S12, "date": str(END), "actual": 1e308}, 422, "actual"),
    ("score_anomaly", {"series": S12, "date": str(END), "actual": 100001}, 422, "actual"),
    ("score_anomaly", f'{{"series": {{"store": 1, "item": 2}}, "date": "{END}", '
                      '"actual": NaN}'.encode(), 422, "actual"),
    ("score_anomaly", {"series": {"store": 9, "item": 9}, "date": str(END), "actual": 1}, 404,
     "series"),
    ("score_anomaly", {"series": S12, "date": "2016-02-30", "actual": 1}, 400, "date"),
    ("score_anomaly", {"series": S12, "date": str(END + dt.timedelta(days=2)), "actual": 1},
     422, "date"),
    ("score_anomaly", {"series": S12, "date": str(END - dt.timedelta(days=120)), "actual": 1},
     422, "date"),
]


@pytest.mark.parametrize(("endpoint", "body", "status", "field"), BAD_INPUTS,
                         ids=[f"{e}-{i}" for i, (e, *_) in enumerate(BAD_INPUTS)])
def test_bad_input_is_a_4xx_naming_the_field(client, endpoint, body, status, field):
    if isinstance(body, bytes):
        r = client.post(f"/{endpoint}", content=body,
                        headers={"Content-Type": "application/json"})
    else:
        r = client.post(f"/{endpoint}", json=body)
    assert r.status_code == status, r.text
    payload = r.json()
    assert isinstance(payload, dict) and payload["error"], payload
    assert field in payload["error"] or field in str(payload.get("field")), payload


# -- limits: request bodies and error answers ----------------------------------------------

def padded(body: dict, size: int) -> bytes:
    """``body`` as JSON, padded with spaces (the same JSON) to exactly ``size`` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def post_raw(client, endpoint: str, content: bytes):
    return client.post(f"/{endpoint}", content=content,
                       headers={"Content-Type": "application/json"})


def test_request_bodies_over_the_limit_are_a_413_naming_it(client, service, env, monkeypatch):
    limit = DEFAULT_MAX_BODY_BYTES
    body = {"series": S12, "horizon": 2}
    # Just under and at the limit, valid content is served (an unknown field is ignored).
    for size in (limit - 1, limit):
        ok = post_raw(client, "forecast", padded({**body, "note": "x" * 100}, size))
        assert ok.status_code == 200 and len(ok.json()["forecast"]) == 2, ok.text[:300]
    started = time.monotonic()
    for size in (limit + 1, 2_000_000):
        r = post_raw(client, "forecast", padded(body, size))
        assert r.status_code == 413, r.text
        answer = r.json()
        assert f"{size:,} bytes" in answer["error"] and "1,000,000 bytes" in answer["error"]
        assert "FORECAST_MAX_BODY_BYTES" in answer["error"] and answer["field"] == "body"
        assert answer["limit_bytes"] == limit and answer["setting"] == "FORECAST_MAX_BODY_BYTES"
    assert time.monotonic() - started < 2
    # The limit is the setting's.
    configure(monkeypatch, service, env, FORECAST_MAX_BODY_BYTES="2048")
    assert post_raw(client, "forecast", padded(body, 2048)).status_code == 200
    small = post_raw(client, "forecast", padded(body, 3000))
    assert small.status_code == 413 and "limit of 2,048 bytes" in small.json()["error"]


def test_a_chunked_body_is_cut_at_the_limit_without_reading_further(service):
    """No Content-Length: bytes are counted as they arrive; the first chunk past the limit
    ends it with a 413, and nothing after it is read. Under the limit, the app gets the
    body whole."""
    chunk = b" " * 65_536
    reads: list[int] = []
    sent: list[dict] = []

    async def endless() -> dict:
        reads.append(1)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/forecast",
             "headers": [(b"transfer-encoding", b"chunked")]}
    assert anyio.run(service.read_body, scope, endless, send, 1_000_000) is None
    assert len(reads) == 1_000_000 // len(chunk) + 1
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    answer = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert "limit of 1,000,000 bytes" in answer["error"]

    parts = [b'{"series": ', b'{"store": 1, "item": 2}', b"}"]

    async def three() -> dict:
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts)}

    async def replayed() -> dict:
        receive = await service.read_body(scope, three, send, 1_000_000)
        return await receive()

    assert anyio.run(replayed) == {"type": "http.request", "more_body": False,
                                   "body": b'{"series": {"store": 1, "item": 2}}'}


HUGE = 900_000
LARGE_BAD_INPUTS = [
    # (endpoint, body of 0.8 to 1 MB, status, the field the answer must name)
    ("forecast", {"series": S12, "scenario": {"k" * HUGE: {"promo": 1}}}, 400, "scenario"),
    ("forecast", {"series": S12, "scenario": {f"day{i}": {"promo": 1} for i in range(35_000)}},
     400, "scenario"),
    ("forecast", {"series": S12, "scenario": {FUTURE: {f"c{i}": "x" for i in range(60_000)}}},
     400, "scenario"),
    ("forecast", {"series": S12, "scenario": {FUTURE: {"c" * HUGE: 1}}}, 422, "scenario"),
    ("forecast", {"series": S12, "scenario": {FUTURE: {"promo": "x" * HUGE}}}, 400, "scenario"),
    ("forecast", {"series": S12, "scenario": "x" * HUGE}, 400, "scenario"),
    ("forecast", {"series": {"store": "s" * HUGE, "item": 2}}, 422, "series.store"),
    ("forecast", {"series": {"store": 1, "item": 2, "z" * HUGE: 1}}, 422, "series"),
    ("forecast", {"series": {**S12, **{f"k{i}": 1.5 for i in range(60_000)}}}, 400, "series"),
    ("forecast_batch", {"series": [S12, {"store": 1, "item": 2, "z" * HUGE: 1}]}, 422,
     "series[1]"),
    ("explain", {"series": S12, "date": "d" * HUGE}, 400, "date"),
    ("score_anomaly", {"series": S12, "date": str(END), "actual": "9" * HUGE}, 400, "actual"),
]


@pytest.mark.parametrize(("endpoint", "body", "status", "field"), LARGE_BAD_INPUTS,
                         ids=[f"{e}-{i}" for i, (e, *_) in enumerate(LARGE_BAD_INPUTS)])
def test_a_huge_bad_value_gets_a_small_answer_naming_the_field(client, endpoint, body, status,
                                                               field):
    content = json.dumps(body).encode()
    assert 800_000 < len(content) <= DEFAULT_MAX_BODY_BYTES
    started = time.monotonic()
    r = post_raw(client, endpoint, content)
    assert r.status_code == status, r.text[:1000]
    assert len(r.content) <= MAX_ERROR_BYTES, len(r.content)
    answer = r.json()
    assert answer["field"].startswith(field) and field in answer["error"], answer
    assert time.monotonic() - started < 3


# -- the real server ------------------------------------------------------------------------------

def test_real_bentoml_server_on_loopback(env, bundle_tag):
    with bentoml_server({**env, "FORECAST_API_KEY": "k3y"}) as server:
        base = server.url
        ok = httpx.post(f"{base}/forecast", json={"series": S12, "horizon": 2},
                        headers={"X-API-Key": "k3y"}, timeout=10)
        assert ok.status_code == 200 and len(ok.json()["forecast"]) == 2
        assert ok.json()["bundle"].split(":")[0] == bundle_tag.split(":")[0]
        assert httpx.post(f"{base}/forecast", json={"series": S12}, timeout=10).status_code == 401
        bad = httpx.post(f"{base}/forecast", json={"series": S12, "horizon": 500},
                         headers={"X-API-Key": "k3y"}, timeout=10)
        assert bad.status_code == 422 and bad.json()["field"] == "horizon"
        day_after = str(END + dt.timedelta(days=1))
        scored = httpx.post(f"{base}/score_anomaly", headers={"X-API-Key": "k3y"}, timeout=10,
                            json={"series": S12, "date": day_after, "actual": 0})
        assert scored.status_code == 200, scored.text
        assert scored.json()["expected_source"] == f"forecast from {END}"
        for body, status, field in (
                ({"series": S12, "date": day_after, "actual": -1}, 422, "actual"),
                ({"series": S12, "date": day_after, "actual": "x"}, 400, "actual"),
                ({"series": S12, "date": day_after}, 400, "actual"),
                ({"series": S12, "date": str(END + dt.timedelta(days=9)), "actual": 1}, 422,
                 "date"),
                ({"series": {"store": 1, "item": 8}, "date": day_after, "actual": 1}, 404,
                 "series")):
            r = httpx.post(f"{base}/score_anomaly", json=body, headers={"X-API-Key": "k3y"},
                           timeout=10)
            assert r.status_code == status and field in r.json()["field"], (body, r.text)
        # The body limit and bounded errors behind uvicorn's own request parsing.
        headers = {"X-API-Key": "k3y", "Content-Type": "application/json"}
        started = time.monotonic()
        big = httpx.post(f"{base}/forecast", content=padded({"series": S12}, 2_000_000),
                         headers=headers, timeout=10)
        assert big.status_code == 413, big.text
        assert "limit of 1,000,000 bytes" in big.json()["error"]
        assert big.json()["setting"] == "FORECAST_MAX_BODY_BYTES"
        assert time.monotonic() - started < 2

        def chunks():  # no Content-Length: sent chunked
            yield json.dumps({"series": S12}).encode()
            for _ in range(40):
                yield b" " * 65_536
        streamed = httpx.post(f"{base}/forecast", content=chunks(), headers=headers, timeout=10)
        assert streamed.status_code == 413, streamed.text
        assert "limit of 1,000,000 bytes" in streamed.json()["error"]
        huge = {"series": S12, "scenario": {f"day{i}": {"promo": 1} for i in range(35_000)}}
        bad = httpx.post(f"{base}/forecast", json=huge, headers=headers, timeout=10)
        assert bad.status_code == 400 and len(bad.content) <= MAX_ERROR_BYTES
        assert bad.json()["field"].startswith("scenario")
        full = httpx.post(f"{base}/forecast", headers=headers, timeout=10,
                          content=padded({"series": S12, "horizon": 2}, DEFAULT_MAX_BODY_BYTES))
        assert full.status_code == 200 and len(full.json()["forecast"]) == 2
        assert httpx.get(f"{base}/livez", timeout=5).status_code == 200
        metrics = httpx.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text


def test_bentoml_build_packs_the_platform_code_and_serves(env, bundle_tag, tmp_path):
    """`bentoml build -f bentos/bentofile.yaml .` from the repository root makes a bento that
    carries the service and the platform's code, needs no Dagster, and serves the bundle."""
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    repo = SERVICE_FILE.parents[1]
    build = subprocess.run(
        [str(bentoml_cli), "build", "-f", "bentos/bentofile.yaml", ".", "--output", "tag"],
        cwd=repo, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr[-3000:]
    tag = build.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("forecast_service:")
    bento = Path(env["BENTOML_HOME"]) / "bentos" / tag.replace(":", "/")
    src = bento / "src"
    assert (src / "bentos" / "service.py").is_file()
    assert (src / "forecast_platform" / "serving" / "online.py").is_file()
    assert not list(src.rglob("__pycache__"))
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "xgboost" in requirements and "dagster" not in requirements
    assert f"tag: {bundle_tag.split(':')[0]}:" in (bento / "bento.yaml").read_text()

    # Served from the store by its tag, outside the repository; bytecode on, so the cache
    # files show which copy of forecast_platform the server imported: the packed one.
    with bentoml_server({**env, "PYTHONDONTWRITEBYTECODE": ""}, target=tag,
                        cwd=tmp_path) as server:
        r = httpx.post(f"{server.url}/forecast", json={"series": S12, "horizon": 3}, timeout=10)
        assert r.status_code == 200 and len(r.json()["forecast"]) == 3, r.text
    assert list((src / "forecast_platform" / "serving" / "__pycache__").glob("online.*.pyc"))
