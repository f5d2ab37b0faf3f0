"""Monitoring core: drift on real feature rows (both directions), degradation, alerts, webhooks.

The drift tests build features with the platform's own SQL over the synthetic generator, with and
without its drift switch; the two datasets are identical before ``drift_from``, so the clean
window is the honest control for the drifted one. Webhooks only go to 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.synthetic import SyntheticConfig, generate_sales
from forecast_platform.features.offline import feature_frame, load_sales
from forecast_platform.features.sql import plan_features
from forecast_platform.forecasting import metrics
from forecast_platform.monitoring import (
    Alert,
    drift_report,
    monitored_columns,
    performance_degradation,
    post_webhook,
    raise_alert,
    record_alert,
    seasonal_reference,
)
from forecast_platform.monitoring.verdicts import assess_performance, promised_errors
from forecast_platform.warehouse import tables

SPEC = get_spec("synthetic")
PLAN = plan_features(SPEC)
START, END = dt.date(2015, 6, 1), dt.date(2017, 9, 30)
DRIFT_FROM = dt.date(2017, 5, 1)  # y_mean_28 (lag 91) covers drifted days by early September
TRAINING = ("2016-05-01", "2017-04-30")  # the champion's training rows, before the drift
CURRENT = ("2017-09-03", "2017-09-30")  # 28 days
NUMERICAL, CATEGORICAL = ["y", "y_mean_28"], ["promo"]


def features(drift_from: dt.date | None) -> pd.DataFrame:
    """Feature rows of 40 series, as the sales_features asset computes them."""
    sales, _ = generate_sales(SyntheticConfig(n_stores=4, n_items=10, start=START, end=END,
                                              anomaly_share=0.0, drift_from=drift_from))
    con = duckdb.connect()
    load_sales(con, SPEC, sales)
    return feature_frame(con, PLAN, dt.date(2016, 4, 1), END)


def window(frame: pd.DataFrame, bounds: tuple[str, str]) -> pd.DataFrame:
    return frame[frame["ds"].between(pd.Timestamp(bounds[0]), pd.Timestamp(bounds[1]))]


@pytest.fixture(scope="module")
def reports():
    clean, drifted = features(None), features(DRIFT_FROM)
    training = window(clean, TRAINING)
    # Identical before the drift: the generator's streams are independent of the switch.
    pd.testing.assert_frame_equal(training.reset_index(drop=True),
                                  window(drifted, TRAINING).reset_index(drop=True))
    # The same four weeks a year earlier: a whole year would differ from September by season.
    reference = seasonal_reference(training, *CURRENT)
    assert reference["ds"].min() == pd.Timestamp(CURRENT[0]) - pd.Timedelta(days=364)
    assert len(reference) == 28 * 40
    cols = NUMERICAL + CATEGORICAL
    return {
        "clean": drift_report(reference, window(clean, CURRENT), cols, categorical=CATEGORICAL),
        "drifted": drift_report(reference, window(drifted, CURRENT), cols,
                                categorical=CATEGORICAL),
    }


def test_drift_is_detected_on_the_drifted_window(reports):
    s = reports["drifted"]
    assert s.dataset_drift, s.columns
    rows = s.columns.set_index("column")
    assert rows.loc["y", "drifted"] and rows.loc["y_mean_28", "drifted"], rows
    assert rows.loc["y", "current_mean"] > 1.3 * rows.loc["y", "reference_mean"]
    assert s.drifted_count == int(rows["drifted"].sum()) >= 2
    assert s.drifted_share == pytest.approx(s.drifted_count / 3)
    assert s.top(1)["column"].iloc[0] in {"y", "y_mean_28"}
    assert s.drifted_among(["y", "p50"]) == ["y"]
    # Declared types, not guessed: the promotion flag is tested as a category.
    assert rows.loc["promo", "kind"] == "categorical"
    assert "jensen" in rows.loc["promo", "method"].lower()
    assert "wasserstein" in rows.loc["y", "method"].lower()


def test_no_drift_on_the_clean_window(reports):
    s = reports["clean"]
    assert not s.dataset_drift, s.columns
    assert s.drifted_count == 0 and s.drifted_columns == [], s.columns
    assert (s.columns["score"] < s.columns["threshold"]).all()


def test_drift_scores_move_the_right_way_for_every_column(reports):
    clean = reports["clean"].columns.set_index("column")
    drifted = reports["drifted"].columns.set_index("column")
    for col in NUMERICAL + CATEGORICAL:
        assert drifted.loc[col, "score"] > clean.loc[col, "score"], col
    # Promotions triple after the drift (4 % -> 12 % of series-days).
    assert drifted.loc["promo", "current_mean"] > 1.5 * clean.loc["promo", "current_mean"]


def test_report_files_are_written_and_self_contained(reports, tmp_path: Path):
    s = reports["drifted"]
    html = s.save_html(tmp_path / "reports" / "drift.html")
    text = html.read_text(encoding="utf-8")
    assert html.stat().st_size > 500_000 and "<html" in text.lower()
    # Scripts and styles are inline: nothing to fetch to render the report offline.
    assert not re.search(r"<script[^>]+src=[\"']https?://", text, re.I)
    assert not re.search(r"<link[^>]+href=[\"']https?://", text, re.I)
    small = json.loads(s.save_json(tmp_path / "reports" / "drift.json").read_text())
    assert small["dataset_drift"] is True and len(small["columns"]) == 3
    assert {"column", "method", "score", "threshold", "drifted"} <= set(small["columns"][0])
    assert (tmp_path / "reports" / "drift.json").stat().st_size < 10_000


def test_sampling_is_bounded_and_deterministic():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 30_000), "c": rng.integers(0, 3, 30_000)})
    cur = pd.DataFrame({"x": rng.normal(0, 1, 2_000), "c": rng.integers(0, 3, 2_000)})
    a = drift_report(ref, cur, ["x", "c"], categorical=["c"], max_rows=5_000)
    b = drift_report(ref, cur, ["x", "c"], categorical=["c"], max_rows=5_000)
    assert (a.reference_rows, a.reference_rows_total, a.current_rows) == (5_000, 30_000, 2_000)
    pd.testing.assert_frame_equal(a.columns, b.columns)
    assert not a.dataset_drift


def test_a_column_constant_up_to_float_noise_is_tested_not_raised():
    """series_dev of a one-key dataset (Favorita) is 1 +- 1e-16: too narrow for histogram bins,
    which made Evidently raise and the drift report fail. It is constant, so it does not drift;
    a real move of the same column still does."""
    rng = np.random.default_rng(2)
    noise = pd.DataFrame({"dev": 1 + rng.normal(0, 1e-16, 2_000), "x": rng.normal(0, 1, 2_000)})
    with warnings.catch_warnings():  # a constant column's 0 / 0 correlation prints nothing
        warnings.simplefilter("error", RuntimeWarning)
        s = drift_report(noise, noise.sample(frac=0.5, random_state=1), ["dev", "x"])
    assert not s.columns.set_index("column").loc["dev", "drifted"]
    moved = noise.assign(dev=1.5 + rng.normal(0, 0.05, 2_000))
    s = drift_report(noise, moved, ["dev", "x"])
    assert s.columns.set_index("column").loc["dev", "drifted"]


def test_columns_without_values_are_reported_not_counted():
    ref = pd.DataFrame({"x": np.arange(2_000.0), "empty": np.nan})
    s = drift_report(ref, ref.iloc[:500], ["x", "empty"])
    row = s.columns.set_index("column").loc["empty"]
    assert row["method"] == "no values" and not row["drifted"]
    with pytest.raises(ValueError, match="missing"):
        drift_report(ref, ref, ["nope"])
    # Small samples keep the distance test (Evidently alone would switch to a p-value test).
    small = drift_report(ref.iloc[:300], ref.iloc[300:400], ["x"])
    assert small.columns["method"].iloc[0] == "Wasserstein distance (normed)"
    assert small.columns["threshold"].iloc[0] == 0.2


def test_monitored_columns_leave_out_calendar_and_pooled_levels():
    numerical, categorical = monitored_columns(PLAN, extra_numerical=["p50"])
    assert numerical[0] == "y" and "y_mean_28" in numerical and numerical[-1] == "p50"
    assert categorical == ["promo"]
    assert not {"doy", "month", "year", "dow_sin", "level_all", "yoy"} & set(numerical)


# ------------------------------------------------------------------------------ degradation


def forecast_points(days: int = 60, bad_from: int = 30, version: int | None = None
                    ) -> pd.DataFrame:
    """20 series a day; the forecast is 10 % high, then 50 % high from ``bad_from`` on."""
    ds = np.repeat(pd.date_range("2017-01-01", periods=days), 20)
    day = np.repeat(np.arange(days), 20)
    y = np.full(len(ds), 100.0)
    frame = pd.DataFrame({"ds": ds, "y": y, "p50": np.where(day < bad_from, 110.0, 150.0)})
    return frame if version is None else frame.assign(forecaster_version=version)


def test_degradation_flags_a_sustained_rise_and_not_a_normal_error():
    expected = metrics.smape([100.0], [110.0])  # the backtest's promise: what we serve at first
    out = performance_degradation(forecast_points(), expected, factor=1.5, window=7)
    assert len(out) == 60 and not out["degraded"].iloc[:30].any()
    assert out["degraded"].iloc[36:].all()  # a full window of bad days
    first = out.index[out["degraded"]][0]
    assert 30 <= first <= 36
    # The rolling error is the platform's metric over the window's points, not a mean of means.
    last_week = forecast_points().query("ds > '2017-02-22'")
    assert out["rolling_error"].iloc[-1] == pytest.approx(
        metrics.smape(last_week["y"], last_week["p50"]))
    assert out["threshold"].iloc[0] == pytest.approx(expected * 1.5)


def test_degradation_needs_a_full_window_and_judges_each_forecaster_version():
    expected = metrics.smape([100.0], [110.0])
    # Bad from the first day: nothing is flagged until the window has min_days of points.
    early = performance_degradation(forecast_points(10, bad_from=0), expected, 1.5, window=7)
    assert not early["degraded"].iloc[:6].any() and early["degraded"].iloc[6:].all()
    # Version 1 went bad; version 2 (a retrain) serves well from its first day.
    mixed = pd.concat([forecast_points(40, bad_from=20, version=1),
                       forecast_points(40, bad_from=99, version=2)])
    out = performance_degradation(mixed, expected, 1.5, window=7)
    assert out.loc[out["forecaster_version"] == 1, "degraded"].any()
    assert not out.loc[out["forecaster_version"] == 2, "degraded"].any()
    mae = performance_degradation(forecast_points(), 10.0, 2.0, 7, metric="mae")
    assert mae["degraded"].iloc[-1] and not mae["degraded"].iloc[29]
    assert performance_degradation(forecast_points().iloc[:0], 10.0, 2.0, 7).empty


def test_each_forecaster_version_is_held_to_its_own_backtest():
    expected = metrics.smape([100.0], [110.0])
    both_bad = pd.concat([forecast_points(40, bad_from=20, version=1),
                          forecast_points(40, bad_from=20, version=2)])
    # Version 2 promised an error as large as the bad days': it is not degraded, version 1 is.
    out = performance_degradation(both_bad, {1: expected, 2: 100.0}, 1.5, window=7)
    assert out.loc[out["forecaster_version"] == 1, "degraded"].any()
    assert not out.loc[out["forecaster_version"] == 2, "degraded"].any()
    assert set(out.loc[out["forecaster_version"] == 2, "threshold"]) == {150.0}
    with pytest.raises(ValueError, match=r"no expected_error for forecaster versions \[2\]"):
        performance_degradation(both_bad, {1: expected}, 1.5, window=7)


def test_a_partition_is_judged_on_its_own_days_and_every_version_needs_a_backtest():
    history = pd.DataFrame({"version": [1, 2],
                            "metrics": [json.dumps({"model": {"smape": 9.5}}),
                                        json.dumps({"model": {}})]})
    promised = promised_errors(history, "smape")
    assert promised == {1: 9.5, 2: None}
    # The errors start a window before the partition, so its first day's window is whole.
    first, last = dt.date(2017, 2, 1), dt.date(2017, 2, 9)
    perf = assess_performance(forecast_points(40, bad_from=20, version=1), promised, "m",
                              "smape", first, last, factor=1.5, window_days=7, min_days=7)
    assert set(perf.table["ds"]) == {first + dt.timedelta(days=i) for i in range(9)}
    assert list(perf.newest["ds"]) == [last] and perf.degraded
    assert perf.worst["forecaster_version"] == 1
    with pytest.raises(ValueError, match=r"versions \[2\] have no backtest smape"):
        assess_performance(forecast_points(10, version=2), promised, "m", "smape", first, last,
                           factor=1.5, window_days=7, min_days=7)


# ----------------------------------------------------------------------------------- alerts


def drift_alert(**overrides) -> Alert:
    fields = dict(kind="drift", severity="warning", title="Data drift: 2 of 3 columns",
                  details={"drifted_share": 0.67, "drifted_columns": ["y", "y_mean_28"]},
                  asset_key="drift_report", partition_key="2017-09-30", run_id="abc123")
    return Alert(**{**fields, **overrides})


class _Receiver(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(self.server.status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url_of(server: http.server.ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/hook"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # nothing listens there now


def test_alerts_are_appended_to_the_table():
    con = duckdb.connect()
    record_alert(con, drift_alert())
    record_alert(con, drift_alert(kind="failed_run", severity="critical", title="run failed",
                                  details={"job": "retrain"}), webhook_delivered=False)
    rows = con.execute(f"SELECT kind, severity, title, details, partition_key, webhook_delivered "
                       f"FROM {tables.ALERTS} ORDER BY created_at").fetchall()
    assert [r[0] for r in rows] == ["drift", "failed_run"]
    assert json.loads(rows[0][3])["drifted_columns"] == ["y", "y_mean_28"]
    assert rows[0][4] == "2017-09-30" and rows[0][5] is None and rows[1][5] is False
    with pytest.raises(ValueError, match="kind"):
        drift_alert(kind="meteor")
    with pytest.raises(ValueError, match="timezone"):
        drift_alert(created_at=dt.datetime(2017, 9, 30))


def test_webhook_receives_a_slack_compatible_payload(receiver):
    con = duckdb.connect()
    alert = drift_alert()
    assert raise_alert(con, alert, webhook_url=url_of(receiver)) is True
    (content_type, payload), = receiver.received
    assert content_type == "application/json"
    assert alert.title in payload["text"] and payload["text"].startswith("[WARNING] drift")
    assert payload["blocks"][0] == {"type": "header",
                                    "text": {"type": "plain_text", "text": alert.title}}
    assert {b["type"] for b in payload["blocks"]} == {"header", "section", "context"}
    ours = payload["forecast_platform"]
    assert ours["alert_id"] == alert.alert_id and ours["details"]["drifted_share"] == 0.67
    assert ours["created_at"].endswith("Z")
    assert con.execute(f"SELECT webhook_delivered FROM {tables.ALERTS}").fetchone() == (True,)


def test_a_failing_webhook_never_raises_and_is_quick(receiver, caplog):
    start = time.perf_counter()
    assert post_webhook(closed_port_url(), drift_alert(), timeout=3.0) is False
    assert time.perf_counter() - start < 1.0
    receiver.status = 500
    assert post_webhook(url_of(receiver), drift_alert()) is False
    assert post_webhook("file:///etc/passwd", drift_alert()) is False
    assert post_webhook("not a url", drift_alert()) is False
    con = duckdb.connect()
    assert raise_alert(con, drift_alert(), webhook_url=closed_port_url()) is False
    assert con.execute(f"SELECT webhook_delivered FROM {tables.ALERTS}").fetchone() == (False,)
    assert "alert webhook failed" in caplog.text
