"""Retailer-shaped data: closed days have no row, promotions are planned with a known lift.

The synthetic generator with ``closures=True`` and the Store Item closure fixture share one
retail calendar (``synthetic.retail_calendar``); both are checked against their own truth and
against the calendar's real dates. The Store Item part needs the real data beside the project.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast_platform.datasets.closures_fixture import (
    PROMO_LIFT,
    promoted_sales,
    store_item_with_closures,
)
from forecast_platform.datasets.landing import landed_files
from forecast_platform.datasets.registry import LABELS_FILE, get_spec, land_synthetic
from forecast_platform.datasets.synthetic import (
    PLAN_DAYS,
    PLAN_FILE,
    SyntheticConfig,
    closure_calendar,
    closure_truth,
    generate_sales,
    promo_plan,
)
from forecast_platform_tests.conftest import STORE_ITEM_DIR

KEYS = ["date", "store", "item"]
CONFIG = SyntheticConfig(n_stores=10, n_items=3, start=dt.date(2015, 6, 1),
                         end=dt.date(2017, 11, 30), closures=True)
ALL_STORES = set(range(1, 11))


@pytest.fixture(scope="module")
def generated() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_sales(CONFIG)


def _stores_on(sales: pd.DataFrame, day: dt.date | pd.Timestamp) -> set[int]:
    return set(sales.loc[sales["date"] == pd.Timestamp(day), "store"])


def _open_weekdays(calendar: pd.DataFrame, scope: str) -> list[pd.Timestamp]:
    """Holidays of a scope on Monday..Saturday that no holiday of the other scope shares."""
    other = set(calendar.loc[calendar["scope"] != scope, "date"])
    days = calendar.loc[calendar["scope"] == scope, "date"]
    return [d for d in days if d.dayofweek != 6 and d not in other]


def test_calendar_has_the_real_dates() -> None:
    calendar = closure_calendar(dt.date(2016, 1, 1), dt.date(2016, 12, 31))
    named = dict(zip(calendar["date"].dt.date, calendar["holiday"], strict=True))
    assert named[dt.date(2016, 3, 25)] == "Good Friday"  # Easter Sunday 2016 is March 27
    assert named[dt.date(2016, 3, 28)] == "Easter Monday"
    assert named[dt.date(2016, 5, 1)] == "Labour Day"
    assert named[dt.date(2016, 5, 5)] == "Ascension Day"
    assert named[dt.date(2016, 5, 16)] == "Whit Monday"
    assert named[dt.date(2016, 5, 26)] == "Corpus Christi"
    assert named[dt.date(2016, 12, 26)] == "St Stephen's Day"
    assert set(calendar["scope"]) == {"national", "regional"}
    assert (calendar["scope"] == "national").sum() == 9
    assert (calendar["scope"] == "regional").sum() == 4


def test_closing_stores_have_no_row_on_sundays(generated) -> None:
    sales, _ = generated
    truth = closure_truth(CONFIG)
    assert truth.roles.sunday_open == (10,)
    sundays = sales.loc[sales["date"].dt.dayofweek == 6]
    assert set(sundays["store"]) == {10}
    n_sundays = (pd.date_range(CONFIG.start, CONFIG.end).dayofweek == 6).sum()
    # The Sunday store sells every Sunday that is not a national holiday (it opens on those too).
    assert sundays["date"].nunique() == n_sundays
    assert len(sundays) == n_sundays * CONFIG.n_items


def test_all_stores_but_one_close_on_national_holidays(generated) -> None:
    sales, _ = generated
    calendar = closure_calendar(CONFIG.start, CONFIG.end)
    national = calendar.loc[calendar["scope"] == "national", "date"]
    assert len(national) >= 15
    for day in national:
        assert _stores_on(sales, day) == {10}, day
    assert dt.date(2016, 3, 28) in set(national.dt.date)  # Easter Monday, from Easter's date


def test_region_a_closes_on_regional_holidays(generated) -> None:
    sales, _ = generated
    truth = closure_truth(CONFIG)
    assert truth.roles.region_a == (1, 2, 3, 4, 5, 6)
    regions = sales.groupby("store")["region"].agg(set)
    assert regions.to_dict() == {s: {"A" if s <= 6 else "B"} for s in ALL_STORES}
    days = _open_weekdays(closure_calendar(CONFIG.start, CONFIG.end), "regional")
    assert len(days) >= 5
    for day in days:
        assert _stores_on(sales, day) == {7, 8, 9, 10}, day


def test_refurbishment_closes_one_store_for_two_weeks(generated) -> None:
    sales, _ = generated
    store, first, last = closure_truth(CONFIG).refurbishment
    assert (last - first).days == 13 and first.weekday() == 0
    inside = sales[(sales["date"] >= pd.Timestamp(first)) & (sales["date"] <= pd.Timestamp(last))]
    assert store not in set(inside["store"])
    assert inside["date"].nunique() == 14  # the others stay open (store 10 every day)


def test_rows_are_exactly_the_open_store_days(generated) -> None:
    sales, labels = generated
    truth = closure_truth(CONFIG)
    grid = pd.MultiIndex.from_product([pd.date_range(CONFIG.start, CONFIG.end), sorted(ALL_STORES)])
    closed = pd.MultiIndex.from_frame(truth.closed[["date", "store"]])
    present = pd.MultiIndex.from_frame(sales[["date", "store"]].drop_duplicates())
    assert present.sort_values().equals(grid.difference(closed).sort_values())
    assert (sales.groupby(["date", "store"]).size() == CONFIG.n_items).all()
    assert set(truth.closed["reason"]) == {"sunday", "national", "regional", "refurbishment"}
    assert list(sales.columns) == ["date", "store", "item", "sales", "promo", "holiday", "region"]
    assert sales.equals(sales.sort_values(KEYS, ignore_index=True))
    # Anomaly labels fall on open days only: every label row has its sales row.
    assert len(labels) > 0
    joined = labels.merge(sales[[*KEYS, "sales"]], on=KEYS, how="left", validate="one_to_one")
    assert joined["sales"].notna().all()
    assert (joined["sales"] == joined["actual"]).all()


def test_promotions_are_store_wide_with_the_known_lift(generated) -> None:
    sales, labels = generated
    assert (sales.groupby(["date", "store"])["promo"].nunique() == 1).all()
    share = sales.groupby(["date", "store"])["promo"].first().mean()
    assert 0.07 < share < 0.18
    truth = closure_truth(CONFIG)
    flagged = sales.loc[sales["promo"] == 1, ["date", "store"]].drop_duplicates()
    assert len(flagged) == len(truth.promo)
    assert set(map(tuple, flagged.to_numpy())) == set(map(tuple, truth.promo.to_numpy()))
    # The lift, against the same series and weekday off promotion (anomalies put back).
    clean = sales.merge(labels[[*KEYS, "expected"]], on=KEYS, how="left")
    clean["sales"] = clean["expected"].fillna(clean["sales"])
    clean["dow"] = clean["date"].dt.dayofweek
    base = clean[clean["promo"] == 0].groupby(["store", "item", "dow"])["sales"].mean()
    promoted = clean[clean["promo"] == 1].join(base.rename("base"), on=["store", "item", "dow"])
    ratio = promoted["sales"].sum() / promoted["base"].sum()
    assert ratio == pytest.approx(CONFIG.closure_promo_lift, abs=0.1), ratio
    # Raw means tell the same story.
    means = sales.groupby("promo")["sales"].mean()
    assert means[1] > 1.15 * means[0]


def test_default_config_keeps_every_day_of_every_series() -> None:
    sales, _ = generate_sales(SyntheticConfig(n_stores=10, n_items=2, start=dt.date(2016, 1, 1),
                                              end=dt.date(2016, 6, 30)))
    n_days = 182
    assert len(sales) == n_days * 20
    assert (sales.groupby(["store", "item"])["date"].nunique() == n_days).all()
    assert "region" not in sales.columns
    assert (sales["date"].dt.dayofweek == 6).sum() == 26 * 20


def test_land_synthetic_with_closures_writes_open_days_and_the_plan(tmp_path: Path) -> None:
    spec = get_spec("synthetic")
    landing = tmp_path / "landing"
    start, end = dt.date(2017, 9, 1), dt.date(2017, 10, 31)
    land_synthetic(spec, landing, start=start, end=end, n_stores=10, n_items=3, closures=True)
    files = landed_files(landing)
    assert min(files) == start and max(files) == end and len(files) == 61
    sunday = pd.read_csv(files[dt.date(2017, 9, 3)])
    assert list(sunday.columns) == ["date", "store", "item", "sales", "promo", "region"]
    assert set(sunday["store"]) == {10}
    assert set(pd.read_csv(files[dt.date(2017, 10, 3)])["store"]) == {10}  # National Day
    assert (landing / LABELS_FILE).is_file()

    plan = pd.read_csv(landing / PLAN_FILE)
    assert list(plan.columns) == ["date", "store", "item", "promo"]
    days = pd.date_range(end + dt.timedelta(days=1), periods=PLAN_DAYS).strftime("%Y-%m-%d")
    assert sorted(plan["date"].unique()) == list(days)
    assert len(plan) == PLAN_DAYS * 30 and not plan.duplicated(KEYS).any()
    assert set(plan["promo"]) == {0, 1}


def test_plan_is_what_the_following_weeks_bring() -> None:
    refurbish = dt.date(2016, 6, 6)
    config = SyntheticConfig(n_stores=10, n_items=2, start=dt.date(2016, 1, 1),
                             end=dt.date(2016, 9, 30), closures=True, refurbish_start=refurbish)
    plan = promo_plan(config)
    later = SyntheticConfig(n_stores=10, n_items=2, start=config.start,
                            end=config.end + dt.timedelta(days=PLAN_DAYS), closures=True,
                            refurbish_start=refurbish)
    sales, _ = generate_sales(later)
    after = sales[sales["date"] > pd.Timestamp(config.end)]
    # Every open series-day of the following weeks has its plan row with the promo it got.
    merged = after.assign(date=after["date"].dt.strftime("%Y-%m-%d")).merge(
        plan, on=KEYS, how="left", suffixes=("", "_plan"), validate="one_to_one")
    assert merged["promo_plan"].notna().all()
    assert (merged["promo"] == merged["promo_plan"]).all()
    assert merged["promo"].sum() > 0
    # The plan says no promotion on a day the store is closed.
    planned_open = plan.merge(after.assign(date=after["date"].dt.strftime("%Y-%m-%d"))[KEYS],
                              on=KEYS, how="left", indicator=True)
    assert (planned_open.loc[planned_open["_merge"] == "left_only", "promo"] == 0).all()


# ---------------------------------------------------------------------- Store Item fixture

TRAIN = STORE_ITEM_DIR / "train.csv.gz"
needs_store_item = pytest.mark.skipif(
    not TRAIN.is_file(),
    reason=f"the real Store Item Demand data is not beside the project ({TRAIN} is absent)",
)


@pytest.fixture(scope="module")
def store_item(tmp_path_factory):
    out = tmp_path_factory.mktemp("closures") / "store_item_closures.csv"
    truth = store_item_with_closures(TRAIN, out)
    source = pd.read_csv(TRAIN, parse_dates=["date"])
    source = source[(source["date"] >= pd.Timestamp(truth.start)) & (source["store"] <= 10)
                    & (source["item"] <= 5)]
    landed = pd.read_csv(out, parse_dates=["date"])
    return truth, source, landed[landed["item"] <= 5], out


@needs_store_item
def test_store_item_fixture_drops_the_closed_days(store_item) -> None:
    truth, source, landed, _ = store_item
    assert truth.start == dt.date(2015, 6, 1) and truth.end == dt.date(2017, 12, 31)
    assert list(landed.columns) == ["date", "store", "item", "sales", "promo", "region"]
    assert set(landed.loc[landed["date"].dt.dayofweek == 6, "store"]) == {10}
    national = truth.holidays.loc[truth.holidays["scope"] == "national", "date"]
    assert len(national) >= 20
    assert set(landed.loc[landed["date"].isin(national), "store"]) == {10}
    for day in _open_weekdays(truth.holidays, "regional"):
        assert _stores_on(landed, day) == {7, 8, 9, 10}, day
    # Exactly the truth's closed store-days are missing, for every item.
    keys = ["date", "store"]
    missing = source.merge(landed[KEYS], on=KEYS, how="left", indicator=True)
    missing = missing.loc[missing["_merge"] == "left_only", keys].drop_duplicates()
    expected = truth.closed[keys]
    assert len(missing) == len(expected) > 1000
    assert set(map(tuple, missing.to_numpy())) == set(map(tuple, expected.to_numpy()))


@needs_store_item
def test_store_item_fixture_applies_the_lift_and_writes_the_plan(store_item) -> None:
    truth, source, landed, out = store_item
    assert truth.lift == PROMO_LIFT
    joined = landed.merge(source, on=KEYS, suffixes=("", "_source"), validate="one_to_one")
    on_promo = joined["promo"] == 1
    assert 0.07 < on_promo.mean() < 0.18
    assert (joined.loc[~on_promo, "sales"] == joined.loc[~on_promo, "sales_source"]).all()
    expected = promoted_sales(joined.loc[on_promo, "sales_source"], truth.lift)
    assert (joined.loc[on_promo, "sales"].to_numpy() == expected).all()
    ratio = joined.loc[on_promo, "sales"].sum() / joined.loc[on_promo, "sales_source"].sum()
    assert ratio == pytest.approx(truth.lift, abs=0.01)
    promo_days = set(map(tuple, joined.loc[on_promo, ["date", "store"]].drop_duplicates()
                         .to_numpy()))
    assert promo_days == set(map(tuple, truth.promo.to_numpy()))

    plan = pd.read_csv(truth.plan_path)
    assert truth.plan_path == out.parent / PLAN_FILE
    assert plan["date"].min() == "2018-01-01" and plan["date"].max() == "2018-02-11"
    assert len(plan) == PLAN_DAYS * 10 * 50 and set(plan["promo"]) == {0, 1}
    assert (plan.groupby(["date", "store"])["promo"].nunique() == 1).all()
    sundays = pd.to_datetime(plan["date"]).dt.dayofweek == 6
    assert (plan.loc[sundays & (plan["store"] != 10), "promo"] == 0).all()
    assert np.isin(plan["store"].unique(), range(1, 11)).all()


def test_closure_options_are_validated_and_reach_the_cli() -> None:
    from forecast_platform.cli.parser import build_parser

    with pytest.raises(ValueError, match="store_promo_share"):
        SyntheticConfig(closures=True, store_promo_share=1.0)
    with pytest.raises(ValueError, match="closure_promo_lift"):
        SyntheticConfig(closures=True, closure_promo_lift=0.0)
    with pytest.raises(ValueError, match="closures=True"):
        promo_plan(SyntheticConfig())
    assert build_parser().parse_args(["land", "--closures"]).closures is True
    assert build_parser().parse_args(["land"]).closures is False
