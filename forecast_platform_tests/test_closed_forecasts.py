"""Closed days in forecasts: is_open false and P10 = P50 = P90 = 0, offline and served alike."""

from __future__ import annotations

import dataclasses
import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.spec import ClosureRule
from forecast_platform.defs.forecasting import build_forecasting_assets
from forecast_platform.defs.resources import Platform
from forecast_platform.forecasting.closed import apply_closures, closed_mask
from forecast_platform.forecasting.forecaster import ForecasterParams
from forecast_platform.serving.bundle import load_bundle, pack_bundle
from forecast_platform.serving.harness import build_champion_warehouse
from forecast_platform.serving.online import OnlineModel
from forecast_platform.warehouse.store import connect
from forecast_platform_tests.conftest import make_settings

BASE = get_spec("synthetic")
SUNDAY_STORE_1 = ClosureRule(weekday=7, match={"store": "1"}, note="weekly closing")


def test_closure_rules_mark_closed_rows_and_zero_their_quantiles():
    spec = dataclasses.replace(BASE, closure_rules=(
        SUNDAY_STORE_1,
        ClosureRule(yearly="12-25", note="national holiday"),
        ClosureRule(date="2017-12-27", match={"store": "2"}, note="regional holiday"),
    ))
    days = pd.date_range("2017-12-23", "2017-12-28")  # Sat 23 .. Thu 28; Sun 24, Mon 25
    rows = pd.DataFrame([{"ds": d, "series_id": f"{s}|{i}", "store": s, "item": i}
                         for s in (1, 2) for i in (1, 2) for d in days])
    closed = closed_mask(spec, rows)
    got = {(r.store, r.item, r.ds.day) for r, c in zip(rows.itertuples(), closed, strict=True)
           if c}
    expected = {(1, i, 24) for i in (1, 2)} | {(s, i, 25) for s in (1, 2) for i in (1, 2)} \
        | {(2, i, 27) for i in (1, 2)}
    assert got == expected
    preds = pd.DataFrame({"p10": np.full(len(rows), 1.0), "p50": 2.0, "p90": 3.0})
    out = apply_closures(spec, rows, preds)
    assert (out["is_open"].to_numpy() == ~closed).all()
    assert (out.loc[closed, ["p10", "p50", "p90"]] == 0).all().all()
    assert (out.loc[~closed, "p50"] == 2.0).all()
    # Text keys match integer rule values; no rules: everything open.
    assert (closed_mask(spec, rows.astype({"store": str})) == closed).all()
    assert not closed_mask(dataclasses.replace(BASE, closure_rules=()), rows).any()


@pytest.fixture(scope="module")
def closed_on_sundays(tmp_path_factory):
    """A champion warehouse for a synthetic spec whose store 1 closes on Sundays, the real
    forecasts asset materialized on it, and the service loaded from a bundle packed from it."""
    spec = dataclasses.replace(BASE, closure_rules=(SUNDAY_STORE_1,))
    root = tmp_path_factory.mktemp("closed")
    settings = make_settings(root)
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    model = f"{spec.name}_forecaster"
    build_champion_warehouse(settings.warehouse_path, spec, model, n_stores=2, n_items=2,
                             start=dt.date(2014, 1, 1), end=dt.date(2015, 12, 31), seed=5,
                             params=ForecasterParams(n_estimators=10))
    # A forecasts table written before closed days were kept (no is_open), with an earlier
    # origin's row: the asset adds the column, the old row reads as open.
    with connect(settings.warehouse_path) as con:
        con.execute("CREATE TABLE forecasts AS SELECT DATE '2015-12-01' AS ds, '1|1' AS "
                    "series_id, 1 AS store, 1 AS item, DATE '2015-11-30' AS origin, "
                    "0 AS forecaster_version, 1.0::DOUBLE AS p10, 2.0::DOUBLE AS p50, "
                    "3.0::DOUBLE AS p90, "
                    "now()::TIMESTAMP AS created_at")
    forecasts = [a for a in build_forecasting_assets(spec)
                 if a.key.to_user_string() == "forecasts"]
    result = dg.materialize(forecasts,
                            resources={"platform": Platform.from_settings(settings)})
    assert result.success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        old = con.execute("SELECT is_open FROM forecasts WHERE forecaster_version = 0").fetchall()
        table = con.execute("SELECT * FROM forecasts WHERE forecaster_version > 0 "
                            "ORDER BY series_id, ds").df()
    assert old == [(True,)]
    with connect(settings.warehouse_path) as con:
        packed = pack_bundle(con, spec, model)
    folder = root / "bundle"
    folder.mkdir()
    packed.write(folder)
    return spec, table, OnlineModel(load_bundle(folder))


def test_forecasts_of_closed_days_are_zero_and_not_open(closed_on_sundays):
    _, fc, _ = closed_on_sundays
    sunday = pd.to_datetime(fc["ds"]).dt.dayofweek == 6
    store1 = fc["store"].astype(str) == "1"
    closed = sunday & store1
    assert closed.any() and (~closed).any()
    assert (~fc.loc[closed, "is_open"]).all()
    assert (fc.loc[closed, ["p10", "p50", "p90"]] == 0).all().all()
    assert fc.loc[~closed, "is_open"].all()
    assert (fc.loc[~closed, "p50"] > 0).all()


def test_the_service_answers_the_forecasts_assets_closed_days(closed_on_sundays):
    spec, fc, online = closed_on_sundays
    assert online.spec.closure_rules == spec.closure_rules  # the bundle carries the rules
    for series in ({"store": 1, "item": 2}, {"store": 2, "item": 1}):
        served = online.forecast([series])[0]
        offline = fc[fc["series_id"] == served["series_id"]].sort_values("ds")
        assert served["dates"] == [str(d)[:10] for d in offline["ds"]]
        assert served["is_open"] == offline["is_open"].tolist()
        for q in ("p10", "p50", "p90"):
            np.testing.assert_allclose(served[q], offline[q].to_numpy(), rtol=1e-6)
    # A scenario does not open a closed day.
    served = online.forecast([{"store": 1, "item": 2}])[0]
    sunday = served["dates"][served["is_open"].index(False)]
    what_if = online.forecast([{"store": 1, "item": 2}],
                              scenario={sunday: {"promo": 1}})[0]
    day = what_if["dates"].index(sunday)
    assert what_if["is_open"][day] is False
    assert what_if["p50"][day] == what_if["p10"][day] == what_if["p90"][day] == 0


def test_explain_says_a_closed_day_is_closed_not_why_the_model_would_sell(closed_on_sundays):
    _, _, online = closed_on_sundays
    served = online.forecast([{"store": 1, "item": 2}])[0]
    sunday = served["dates"][served["is_open"].index(False)]
    closed = online.explain({"store": 1, "item": 2}, sunday)
    assert closed["is_open"] is False and closed["p50"] == closed["p90"] == 0
    assert closed["contributions"] == [] and "closure rules" in closed["note"]
    monday = served["dates"][served["is_open"].index(False) + 1]
    opened = online.explain({"store": 1, "item": 2}, monday)
    assert opened["is_open"] is True and opened["p50"] > 0 and opened["contributions"]
