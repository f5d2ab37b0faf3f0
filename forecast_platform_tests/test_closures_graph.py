"""The graph on a retailer's calendar: `synthetic_closures` (Sundays, holidays, a
refurbishment, store-wide promotions, a region) ingests with its blocking checks passing and
trains a forecaster whose normaliser is defined on the open days."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pytest

from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.synthetic import SyntheticConfig, closure_truth
from forecast_platform_tests.conftest import check_results, make_settings, metadata, run_job

SPEC = get_spec("synthetic_closures")
START, END = dt.date(2015, 1, 1), dt.date(2017, 11, 30)
STORES, ITEMS = 10, 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("closures"), dataset=SPEC.name)
    SPEC.lander(SPEC, settings.landing_dir(), start=START, end=END, n_stores=STORES,
                n_items=ITEMS, mistakes=False)
    instance = dg.DagsterInstance.ephemeral()
    ingest = run_job(settings, START, END, instance=instance)
    train = run_job(settings, None, None, job="train_job", instance=instance)
    return settings, ingest, train


def test_the_spec_states_the_generators_calendar():
    truth = closure_truth(SyntheticConfig(n_stores=STORES, n_items=ITEMS, start=START, end=END,
                                          closures=True))
    closed = truth.closed[truth.closed["reason"] != "refurbishment"]
    sample = closed[closed["date"].dt.year == 2016]
    for day, store in zip(sample["date"].dt.date, sample["store"], strict=True):
        assert any(r.applies(day) and r.match == {"store": str(store)} for r in SPEC.rules)
    stores_open_sunday = {s for s in range(1, STORES + 1)
                          if not any(r.weekday == 7 and r.match["store"] == str(s)
                                     for r in SPEC.rules)}
    assert stores_open_sunday == {STORES}


def test_ingest_checks_pass_on_sundays_and_holidays(trained):
    _, ingest, _ = trained
    assert ingest.success
    checks = check_results(ingest)
    for name in ("completeness", "volume"):
        check = checks[f"validated_sales.{name}"]
        assert check.passed, check.description


def test_the_forecaster_trains_on_the_open_days(trained):
    settings, _, train = trained
    assert metadata(train, "forecaster")["forecaster_version"] == 1
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        share = con.execute(
            "SELECT avg(CASE WHEN norm > 0 THEN 1.0 ELSE 0.0 END) FROM sales_features "
            "WHERE ds >= DATE '2016-07-01'").fetchone()[0]
        sundays = con.execute(
            "SELECT count(DISTINCT store) FROM sales_features WHERE isodow(ds) = 7").fetchone()[0]
    assert share > 0.9
    assert sundays == 1
    gate = check_results(train)["forecaster.champion_gate"]
    assert gate.passed, gate.description
