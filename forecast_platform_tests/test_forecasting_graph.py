"""Train, backtest, gate and forecast for real: DuckDB registry, MLflow store, Dagster runs."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import mlflow
import pytest

from forecast_platform.datasets.registry import get_spec, land_synthetic
from forecast_platform_tests.conftest import check_results, make_settings, materialized, run_job

SPEC = get_spec("synthetic")
START, END = dt.date(2016, 1, 1), dt.date(2017, 12, 31)
SERIES = 5 * 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("forecasting"))
    land_synthetic(SPEC, settings.landing_dir(), start=START, n_stores=5, n_items=8,
                   mistakes=False)
    instance = dg.DagsterInstance.ephemeral()
    assert run_job(settings, START, END, instance=instance).success
    first = run_job(settings, None, None, job="train_job", instance=instance)
    second = run_job(settings, None, None, job="train_job", instance=instance)
    return settings, first, second


def query(settings, sql: str, params=None):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).df()


def metadata(result, asset: str) -> dict:
    for e in result.all_events:
        if e.event_type_value == "ASSET_MATERIALIZATION":
            m = e.event_specific_data.materialization
            if m.asset_key.to_user_string() == asset:
                return {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def test_first_model_beats_baselines_and_becomes_champion(trained):
    settings, first, _ = trained
    assert first.success
    gate = check_results(first)["forecaster.champion_gate"]
    assert gate.passed and gate.blocking
    assert "beats seasonal_naive_7" in gate.description
    registry = query(settings, "SELECT version, status, train_end, mlflow_run_id, "
                               "octet_length(model_bytes) AS size FROM model_registry ORDER BY 1")
    assert registry.loc[0, "status"] == "champion" and registry.loc[0, "size"] > 10_000
    meta = metadata(first, "forecaster")
    assert meta["model_version"] == 1 and meta["mlflow_run_id"] == registry.loc[0, "mlflow_run_id"]
    assert 0.5 < meta["coverage_p10_p90"] <= 1.0
    with open(meta["report"]) as handle:
        report = handle.read()
    assert "Champion gate" in report and report.count("data:image/png;base64") >= 2


def test_mlflow_run_carries_the_dagster_run_and_the_aliases(trained):
    settings, first, second = trained
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    run = client.get_run(metadata(first, "forecaster")["mlflow_run_id"])
    assert run.data.tags["dagster_run_id"] == first.run_id
    assert "model.smape" in run.data.metrics and "seasonal_naive_7.smape" in run.data.metrics
    assert any(k.startswith("model.smape.origin_") for k in run.data.metrics)
    assert run.data.params["dataset"] == "synthetic"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"backtest_metrics.csv", "gate.json", "forecaster_v1.html"} <= artifacts
    name = "synthetic_forecaster"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"


def test_a_challenger_no_better_is_rejected_explained_and_the_champion_kept(trained):
    settings, _, second = trained
    gate = check_results(second)["forecaster.champion_gate"]
    assert not gate.passed
    assert "does not beat champion v1" in gate.description
    assert not second.success and "forecasts" not in materialized(second)
    registry = query(settings, "SELECT version, status, gate FROM model_registry ORDER BY 1")
    assert list(registry["status"]) == ["champion", "rejected"]
    assert "does not beat champion v1" in registry.loc[1, "gate"]


def test_forecasts_cover_every_series_over_the_horizon_with_intervals(trained):
    settings, *_ = trained
    fc = query(settings, "SELECT * FROM forecasts")
    assert len(fc) == SERIES * SPEC.horizon
    assert fc["ds"].min() == dt.date(2018, 1, 1) or str(fc["ds"].min())[:10] == "2018-01-01"
    assert (fc["model_version"] == 1).all()
    assert ((fc["p10"] <= fc["p50"]) & (fc["p50"] <= fc["p90"])).all()
    explain = query(settings, "SELECT series_id, ds, count(*) AS n FROM forecast_explanations "
                              "GROUP BY ALL")
    assert len(explain) == len(fc) and (explain["n"] == 3).all()
