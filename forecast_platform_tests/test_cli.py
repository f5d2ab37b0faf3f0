"""`forecast-platform demo`, run as a user runs it (its own process, its own environment):
lands data, runs the graph, ends with a summary a person can use."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb


def test_demo_builds_the_warehouse_and_summarizes(tmp_path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORECAST_", "DAGSTER_", "MLFLOW_", "BENTOML_HOME"))}
    done = subprocess.run(
        [sys.executable, "-m", "forecast_platform.cli", "demo", "--data-dir", str(data),
         "--stores", "6", "--items", "5", "--start", "2016-01-01"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
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
