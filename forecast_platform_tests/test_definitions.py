"""The code location loads the way `dagster dev` loads it, and says what a user must see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from forecast_platform.cli.instance import FALLBACK_CONFIG, PROJECT_YAML
from forecast_platform.definitions import build_definitions
from forecast_platform_tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
ASSETS = {"raw_sales", "validated_sales", "sales_rejects", "holiday_calendar", "sales_features",
          "forecaster", "forecasts", "serving_bundle", "prediction_log", "expected_sales",
          "anomaly_model", "sales_anomalies", "drift_report", "forecast_performance", "alerts",
          "covariate_plan", "plan_lift", "dashboard_snapshot"}


def test_workspace_yaml_loads_the_code_location(tmp_path):
    env = {**os.environ, "FORECAST_DATA_DIR": str(tmp_path / "data"),
           "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "forecast_platform" in done.stdout + done.stderr


def test_graph_checks_sensors_and_jobs(tmp_path):
    defs = build_definitions(make_settings(tmp_path))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == ASSETS
    lineage = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    assert lineage["validated_sales"] == {"raw_sales"}
    assert lineage["sales_features"] == {"validated_sales", "holiday_calendar"}
    assert lineage["forecaster"] == {"sales_features"}
    assert lineage["forecasts"] == {"forecaster", "covariate_plan"}
    assert lineage["covariate_plan"] == {"validated_sales"}
    assert lineage["plan_lift"] == {"forecasts", "covariate_plan"}
    assert lineage["drift_report"] == {"sales_features", "forecaster"}
    assert lineage["forecast_performance"] == {"sales_features", "forecasts"}
    assert {"forecasts", "sales_anomalies", "drift_report", "sales_rejects"} <= \
        lineage["dashboard_snapshot"]

    checks = {f"{c.asset_key.to_user_string()}.{c.name}" for c in graph.asset_check_keys}
    assert {"validated_sales.completeness", "validated_sales.volume",
            "validated_sales.valid_rows_contract", "sales_rejects.target_valid",
            "raw_sales.freshness", "forecaster.champion_gate"} <= checks
    for sensor in ("landing_sensor", "rows_balance_sensor", "monitor_sensor", "drift_sensor",
                   "performance_sensor", "plan_sensor", "dashboard_sensor",
                   "alert_sensor"):
        assert defs.resolve_sensor_def(sensor).default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_job_def("monitor_job") is not None
    assert defs.resolve_job_def("ingest_job") is not None
    assert defs.resolve_job_def("train_job") is not None
    schedule = defs.resolve_schedule_def("daily_refresh")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "refresh_job"


def test_every_asset_tells_its_story(tmp_path):
    defs = build_definitions(make_settings(tmp_path))
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 40, name
        assert spec.group_name in ("ingestion", "features", "forecasting", "planning",
                                   "anomalies", "serving", "monitoring", "dashboard"), name
        assert spec.owners, name
        assert spec.kinds, name


def test_warehouse_writers_share_the_duckdb_pool(tmp_path):
    defs = build_definitions(make_settings(tmp_path))
    for assets_def in defs.resolve_asset_graph().assets_defs:
        pools = {op.pool for op in assets_def.node_def.iterate_op_defs()}
        assert pools == {"duckdb"}, assets_def.keys


def test_dagster_yaml_limits_the_pool_and_matches_the_fallback():
    config = yaml.safe_load(PROJECT_YAML.read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config == FALLBACK_CONFIG
