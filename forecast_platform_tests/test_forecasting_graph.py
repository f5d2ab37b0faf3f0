"""Train, backtest, gate and forecast for real: DuckDB registry, MLflow store, Dagster runs."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import mlflow
import pandas as pd
import pytest

from forecast_platform.datasets.registry import get_spec
from forecast_platform_tests.conftest import (
    SYNTHETIC_END,
    SYNTHETIC_INGESTED,
    check_results,
    copy_world,
    make_settings,
    materialized,
    metadata,
    range_tags,
    run_job,
)

SPEC = get_spec("synthetic")
END = SYNTHETIC_END
SERIES = 5 * 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_world):
    """5 x 8 series landed 2015-01-01..2017-12-31, ingested to mid-2017 once for the session
    (conftest.synthetic_world) and from there to the end here, as a daily ingest goes on."""
    settings = make_settings(tmp_path_factory.mktemp("forecasting"))
    copy_world(synthetic_world, settings)
    instance = dg.DagsterInstance.ephemeral()
    assert run_job(settings, SYNTHETIC_INGESTED + dt.timedelta(days=1), END,
                   instance=instance).success
    first = run_job(settings, None, None, job="train_job", instance=instance)
    scored = run_job(settings, dt.date(2017, 7, 1), END, job="anomaly_job", instance=instance)
    second = run_job(settings, None, None, job="train_job", instance=instance)
    return settings, first, second, scored


def query(settings, sql: str, params=None):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).df()


def test_first_model_beats_baselines_and_becomes_champion(trained):
    settings, first, *_ = trained
    assert first.success
    gate = check_results(first)["forecaster.champion_gate"]
    assert gate.passed and gate.blocking
    assert "beats seasonal_naive_7" in gate.description
    registry = query(settings, "SELECT version, status, train_end, mlflow_run_id, "
                               "octet_length(model_bytes) AS size FROM model_registry ORDER BY 1")
    assert registry.loc[0, "status"] == "champion" and registry.loc[0, "size"] > 10_000
    meta = metadata(first, "forecaster")
    assert meta["forecaster_version"] == 1
    assert meta["mlflow_run_id"] == registry.loc[0, "mlflow_run_id"]
    assert 0.5 < meta["coverage_p10_p90"] <= 1.0
    with open(meta["report"]) as handle:
        report = handle.read()
    assert "Champion gate" in report and report.count("data:image/png;base64") >= 2


def test_mlflow_run_carries_the_dagster_run_and_the_aliases(trained):
    settings, first, second, _ = trained
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    run = client.get_run(metadata(first, "forecaster")["mlflow_run_id"])
    assert run.data.tags["dagster_run_id"] == first.run_id
    assert "model.smape" in run.data.metrics and "seasonal_naive_7.smape" in run.data.metrics
    assert any(k.startswith("model.smape.origin_") for k in run.data.metrics)
    assert run.data.params["dataset"] == "synthetic"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"backtest_metrics.csv", "gate.json", "forecaster_v1.html",
            "feature_importance.png"} <= artifacts
    name = "synthetic_forecaster"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"


def test_a_challenger_no_better_is_rejected_explained_and_the_champion_kept(trained):
    settings, _, second, _ = trained
    gate = check_results(second)["forecaster.champion_gate"]
    assert not gate.passed
    assert "does not beat champion v1" in gate.description
    assert not second.success
    assert not {"forecasts", "serving_bundle", "anomaly_model"} & materialized(second)
    registry = query(settings, "SELECT model_name, version, status, gate FROM model_registry "
                               "WHERE model_name = 'synthetic_forecaster' ORDER BY version")
    assert list(registry["status"]) == ["champion", "rejected"]
    assert "does not beat champion v1" in registry.loc[1, "gate"]


def test_forecasts_cover_every_series_over_the_horizon_with_intervals(trained):
    settings, *_ = trained
    fc = query(settings, "SELECT * FROM forecasts")
    assert len(fc) == SERIES * SPEC.horizon
    assert str(fc["ds"].min())[:10] == "2018-01-01"
    assert (fc["forecaster_version"] == 1).all()
    assert ((fc["p10"] <= fc["p50"]) & (fc["p50"] <= fc["p90"])).all()
    explain = query(settings, "SELECT series_id, ds, count(*) AS n FROM forecast_explanations "
                              "GROUP BY ALL")
    assert len(explain) == len(fc) and (explain["n"] == 3).all()


def test_forecasts_in_batches_of_rows_give_the_forecasts_of_all_rows_at_once(trained):
    """The forecasts asset predicts and explains a batch of future rows at a time (so its
    memory is a batch's at any number of series): small batches give the same tables."""
    from forecast_platform.definitions import build_definitions

    settings, *_ = trained
    columns = "* EXCLUDE (created_at)"
    before = query(settings, f"SELECT {columns} FROM forecasts ORDER BY ALL")
    explained = query(settings, "SELECT * FROM forecast_explanations ORDER BY ALL")
    defs = build_definitions(settings)
    again = dg.materialize(defs.assets, selection=["forecasts"], resources=defs.resources,
                           run_config={"ops": {"forecasts": {"config": {"batch_rows": 1}}}},
                           raise_on_error=False)
    assert again.success
    assert metadata(again, "forecasts")["batches"] == -(-len(before) // 2048) > 1
    pd.testing.assert_frame_equal(query(settings, f"SELECT {columns} FROM forecasts "
                                                  "ORDER BY ALL"), before, check_exact=True)
    pd.testing.assert_frame_equal(query(settings, "SELECT * FROM forecast_explanations "
                                                  "ORDER BY ALL"), explained, check_exact=True)
    assert query(settings, "SELECT count(DISTINCT created_at) AS n FROM forecasts")["n"][0] == 1


def test_expected_values_are_out_of_sample_and_anomalies_are_explained(trained):
    settings, first, _, scored = trained
    assert {"expected_sales", "anomaly_model", "serving_bundle"} <= materialized(first)
    assert check_results(first)["anomaly_model.matches_forecaster"].passed
    leaks = query(settings, "SELECT count(*) AS n FROM expected_sales WHERE origin >= ds")
    assert leaks["n"][0] == 0
    assert scored.success
    anomalies = query(settings, "SELECT * FROM sales_anomalies")
    assert str(anomalies["ds"].min())[:10] >= "2017-07-01"
    flagged = anomalies[anomalies["is_anomaly"]]
    assert len(flagged) > 0
    assert set(flagged["anomaly_type"]) <= {"spike", "dip", "level_shift", "zero_run"}
    assert flagged["reason"].str.contains("expected").all()
    assert anomalies.loc[~anomalies["is_anomaly"], "anomaly_type"].isna().all()
    meta = metadata(scored, "sales_anomalies")
    assert {"flagged", "by_type", "top_anomalies", "vs_labels_precision"} <= set(meta)
    checks = check_results(scored)
    assert checks["sales_anomalies.detector_matches_forecaster"].passed


def test_a_changed_recipe_meets_the_champions_recipe_refit_at_the_same_origins(trained):
    """A recipe edited in the Launchpad (shallower, fewer trees) is not compared with the stored
    champion, trained later than its backtest fits, but with the champion's recipe refit at the
    same origins on the same rows; it loses and the champion stays."""
    settings, *_ = trained
    config = {"ops": {"forecaster": {"config": {"max_depth": 2, "n_estimators": 30}}}}
    changed = run_job(settings, None, None, job="train_job", run_config=config)
    gate = check_results(changed)["forecaster.champion_gate"]
    assert not gate.passed
    assert gate.metadata["compared_on"].value.startswith(
        "champion v1's recipe refit at the same 3 origins, on the same ")
    assert "does not beat champion v1" in gate.description
    registry = query(settings, "SELECT version, status, params, metrics FROM model_registry "
                               "WHERE model_name = 'synthetic_forecaster' ORDER BY version")
    assert list(registry["status"]) == ["champion", "rejected", "rejected"]
    assert '"max_depth": 2' in registry.loc[2, "params"]
    assert "champion_recipe" in registry.loc[2, "metrics"]


def test_blocks_of_series_give_the_values_of_all_series_at_once(trained):
    """expected_sales and sales_anomalies read and compute a block of series at a time (so
    their memory is a block's at any number of series): small blocks must give exactly what
    one block of every series gives. The anomalies through the asset (a day's factor is of
    every series, handed to each block); the expected values through their core, with the
    champion's recipe refit at the last origin."""
    from forecast_platform.anomalies.expected import expected_origins
    from forecast_platform.anomalies.fitting import expected_from_recipe
    from forecast_platform.definitions import build_definitions
    from forecast_platform.forecasting.forecaster import Forecaster

    settings, *_ = trained
    before = query(settings, "SELECT * FROM sales_anomalies ORDER BY ALL")
    defs = build_definitions(settings)
    rescored = dg.materialize(defs.assets, selection=["sales_anomalies"],
                              resources=defs.resources,
                              run_config={"ops": {"sales_anomalies": {
                                  "config": {"block_rows": 2_000}}}},
                              tags=range_tags(dt.date(2017, 7, 1), END), raise_on_error=False)
    assert rescored.success
    assert metadata(rescored, "sales_anomalies")["series_blocks"] > 4
    again = query(settings, "SELECT * FROM sales_anomalies ORDER BY ALL")
    assert len(again) == len(before) > 0
    pd.testing.assert_frame_equal(again, before, check_exact=False, rtol=1e-12)

    features = query(settings, "SELECT * FROM sales_features")
    blob = query(settings, "SELECT model_bytes FROM model_registry WHERE status = 'champion' "
                           "AND model_name = 'synthetic_forecaster'")["model_bytes"][0]
    recipe = Forecaster.from_bytes(bytes(blob))
    last = features["ds"].max().date()
    origins = expected_origins(dt.date(2016, 6, 1), last, recipe.horizon, SPEC.step_days)[-1:]
    ids = sorted(features["series_id"].unique())

    def whole(first, end):
        yield features[(features["ds"] >= pd.Timestamp(first))
                       & (features["ds"] <= pd.Timestamp(end))]

    def blocks(first, end):
        rows = next(whole(first, end))
        for i in range(0, len(ids), 3):  # 14 blocks of 3 series
            yield rows[rows["series_id"].isin(ids[i:i + 3])]

    one, many = (pd.concat(expected_from_recipe(features, recipe, origins, SPEC.step_days, 1,
                                                targets)).sort_values(["series_id", "ds"])
                 .reset_index(drop=True) for targets in (whole, blocks))
    assert len(one) > 0
    pd.testing.assert_frame_equal(many, one)


def test_a_fit_past_max_train_rows_reads_a_stated_sample_of_whole_series(trained):
    from forecast_platform.forecasting.training import load_training_frame
    from forecast_platform.warehouse.store import connect

    settings, *_ = trained
    with connect(settings.warehouse_path, read_only=True) as con:
        whole, start, end, everything = load_training_frame(con, SPEC, 730)
        part, _, _, sample = load_training_frame(con, SPEC, 730, max_rows=len(whole) // 4)
        again, *_ = load_training_frame(con, SPEC, 730, max_rows=len(whole) // 4)
    assert everything.complete and everything.series == SERIES and len(whole) == everything.rows
    kept = set(part["series_id"])
    assert 0 < len(kept) < SERIES and kept == set(again["series_id"])
    # Whole series: every kept series has all of its rows of the window.
    full = whole[whole["series_id"].isin(kept)]
    assert len(part) == len(full)
    assert abs(len(part) / len(whole) - sample.share) < 0.2
    assert "sample of whole series" in sample.describe()
