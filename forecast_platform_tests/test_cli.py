"""`forecast-platform demo`: lands data, runs the graph, ends with a summary a person can use."""

from __future__ import annotations

import duckdb

from forecast_platform.cli import main


def test_demo_builds_the_warehouse_and_summarizes(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code = main(["demo", "--data-dir", str(data), "--stores", "6", "--items", "5",
                 "--start", "2016-01-01"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "succeeded" in out
    assert str(data / "warehouse.duckdb") in out
    assert "forecast-platform ui" in out
    assert "Asset checks:" in out and "sales_rejects.target_valid" in out
    assert "Backtest (rolling origins" in out and "seasonal_naive_7" in out
    assert "Report:" in out and "forecaster_v1.html" in out
    assert (data / "dagster_home" / "dagster.yaml").is_file()
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM sales_features").fetchone()[0]
    days = 731  # 2016-01-01 .. 2017-12-31
    assert rows == 30 * days - 6 + 1  # six quarantined, one of them an extra duplicate row
    assert f"sales_features {rows:>12}".replace(" ", "") in out.replace(" ", "")
