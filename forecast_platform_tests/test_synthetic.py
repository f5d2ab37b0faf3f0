"""The synthetic dataset must carry every effect the platform claims to model, with true labels.

Most tests use a small config (3 stores x 4 items x 2 years); one checks the full default size.
"""

from __future__ import annotations

import time
from datetime import date

import numpy as np
import pandas as pd
import pytest

from forecast_platform.datasets.synthetic import (
    ANOMALY_TYPES,
    SyntheticConfig,
    generate_sales,
    holiday_calendar,
)

SMALL = SyntheticConfig(n_stores=3, n_items=4, start=date(2015, 1, 1), end=date(2016, 12, 31))
DRIFT_FROM = date(2016, 7, 1)
KEYS = ["date", "store", "item"]


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_sales(SMALL)


@pytest.fixture(scope="module")
def drifted() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_sales(
        SyntheticConfig(
            n_stores=3,
            n_items=4,
            start=date(2015, 1, 1),
            end=date(2016, 12, 31),
            drift_from=DRIFT_FROM,
        )
    )


@pytest.fixture(scope="module")
def clean_small(small: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    """Sales with the labelled clean values put back, to measure the regular effects."""
    sales, labels = small
    expected = sales.merge(labels[[*KEYS, "expected"]], on=KEYS, how="left")["expected"]
    restored = expected.fillna(sales["sales"]).astype("int64")
    assert (restored != sales["sales"]).any()
    return sales.assign(sales=restored.to_numpy())


def _regular(sales: pd.DataFrame) -> pd.DataFrame:
    """Series that are not intermittent: the ones whose effects can be measured per series."""
    zero_share = sales.groupby(["store", "item"])["sales"].transform(lambda s: (s == 0).mean())
    return sales[zero_share < 0.2]


# ----------------------------------------------------------------------- shape and determinism


def test_same_config_gives_identical_frames(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sales, labels = generate_sales(SMALL)
    pd.testing.assert_frame_equal(sales, small[0])
    pd.testing.assert_frame_equal(labels, small[1])


def test_different_seed_gives_different_data(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    other, other_labels = generate_sales(
        SyntheticConfig(
            n_stores=3, n_items=4, start=date(2015, 1, 1), end=date(2016, 12, 31), seed=7
        )
    )
    assert (other["sales"] != small[0]["sales"]).mean() > 0.5
    assert not other_labels[KEYS].equals(small[1][KEYS])


def test_sales_shape_dtypes_and_order(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sales, _ = small
    n_days = (SMALL.end - SMALL.start).days + 1
    assert list(sales.columns) == ["date", "store", "item", "sales", "promo", "holiday"]
    assert len(sales) == n_days * 3 * 4
    assert sales.dtypes.to_dict() == {
        "date": np.dtype("datetime64[ns]"),
        "store": np.dtype("int64"),
        "item": np.dtype("int64"),
        "sales": np.dtype("int64"),
        "promo": np.dtype("int64"),
        "holiday": np.dtype("int64"),
    }
    assert sales["date"].min() == pd.Timestamp(SMALL.start)
    assert sales["date"].max() == pd.Timestamp(SMALL.end)
    assert sales["date"].nunique() == n_days
    assert sorted(sales["store"].unique()) == [1, 2, 3]
    assert sorted(sales["item"].unique()) == [1, 2, 3, 4]
    assert not sales.duplicated(KEYS).any()
    assert sales.equals(sales.sort_values(KEYS, ignore_index=True))
    assert isinstance(sales.index, pd.RangeIndex)


def test_sales_are_non_negative_counts_and_flags_are_binary(
    small: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    sales, _ = small
    assert (sales["sales"] >= 0).all()
    assert set(sales["promo"].unique()) == {0, 1}
    assert set(sales["holiday"].unique()) == {0, 1}


def test_full_default_size_is_fast_and_complete() -> None:
    started = time.perf_counter()
    sales, labels = generate_sales()
    elapsed = time.perf_counter() - started
    assert sales.shape == (913_000, 6)
    assert sales.groupby(["store", "item"]).ngroups == 500
    assert sales["date"].nunique() == 1826
    assert elapsed < 10, f"default dataset took {elapsed:.1f}s"  # ~0.3 s normally
    # Long-tail assortment: the best sellers sell several times the median item.
    item_means = sales.groupby("item")["sales"].mean()
    assert item_means.max() > 3 * item_means.median()
    # Year-over-year growth.
    yearly = sales.groupby(sales["date"].dt.year)["sales"].mean()
    assert yearly.is_monotonic_increasing
    assert yearly[2017] > 1.1 * yearly[2013]
    # 4 % of 500 series are intermittent.
    zero_share = sales.groupby(["store", "item"])["sales"].apply(lambda s: (s == 0).mean())
    assert (zero_share > 0.4).sum() == 20
    assert len(labels) / len(sales) == pytest.approx(0.02, rel=0.5)


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="before start"):
        SyntheticConfig(start=date(2017, 1, 1), end=date(2016, 1, 1))
    with pytest.raises(ValueError, match="anomaly_share"):
        SyntheticConfig(anomaly_share=1.5)
    with pytest.raises(ValueError, match="n_stores"):
        SyntheticConfig(n_stores=0)


# --------------------------------------------------------------------------- regular effects


def test_weekend_sells_more_than_midweek(clean_small: pd.DataFrame) -> None:
    by_weekday = clean_small.groupby(clean_small["date"].dt.dayofweek)["sales"].mean()
    assert by_weekday[5] > 1.2 * by_weekday[1]  # Saturday vs Tuesday
    assert by_weekday[[5, 6]].mean() > by_weekday[[0, 1, 2, 3]].mean()


def test_december_and_summer_beat_february(clean_small: pd.DataFrame) -> None:
    by_month = clean_small.groupby(clean_small["date"].dt.month)["sales"].mean()
    assert by_month[12] > 1.2 * by_month[2]
    assert by_month[7] > 1.2 * by_month[2]


def test_promotion_lifts_every_regular_series(clean_small: pd.DataFrame) -> None:
    regular = _regular(clean_small)
    by_promo = regular.groupby(["store", "item", "promo"])["sales"].mean().unstack("promo")
    lift = by_promo[1] / by_promo[0]
    assert len(lift) >= 10
    assert (lift > 1.0).all(), lift
    assert lift.median() > 1.2
    share = clean_small["promo"].mean()
    assert 0.02 < share < 0.07


def test_promo_spells_last_a_few_days(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sales, _ = small
    wide = sales.pivot_table(index="date", columns=["store", "item"], values="promo")
    lengths = []
    for column in wide:
        flags = wide[column].to_numpy()[:-7]  # a spell may be cut short by the end of the data
        run_id = np.cumsum(np.r_[1, np.diff(flags) != 0])
        runs = pd.Series(flags).groupby(run_id).agg(["first", "size"])
        lengths.extend(runs.loc[runs["first"] == 1, "size"].iloc[:-1])
    assert np.median(lengths) <= 7
    assert min(lengths) >= 2


def test_intermittent_series_are_mostly_zero() -> None:
    config = SyntheticConfig(
        n_stores=3,
        n_items=4,
        start=date(2015, 1, 1),
        end=date(2016, 12, 31),
        intermittent_share=0.25,
    )
    sales, _ = generate_sales(config)
    zero_share = sales.groupby(["store", "item"])["sales"].apply(lambda s: (s == 0).mean())
    assert (zero_share > 0.4).sum() == 3  # 25 % of 12 series
    assert (zero_share < 0.1).sum() == 9


def test_holiday_flag_matches_calendar(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sales, _ = small
    calendar = holiday_calendar(SMALL.start, SMALL.end)
    flagged = set(sales.loc[sales["holiday"] == 1, "date"])
    assert flagged == set(calendar["date"])
    assert (sales.groupby("date")["holiday"].nunique() == 1).all()


def test_holiday_calendar_knows_the_us_retail_dates() -> None:
    calendar = holiday_calendar(date(2015, 1, 1), date(2016, 12, 31))
    assert list(calendar.columns) == ["date", "holiday"]
    assert calendar["date"].dtype == np.dtype("datetime64[ns]")
    assert calendar["date"].is_monotonic_increasing
    named = dict(zip(calendar["date"].dt.date, calendar["holiday"], strict=True))
    assert named[date(2015, 11, 26)] == "Thanksgiving"
    assert named[date(2015, 11, 27)] == "Black Friday"
    assert named[date(2016, 11, 24)] == "Thanksgiving"
    assert named[date(2016, 3, 27)] == "Easter Sunday"
    assert named[date(2015, 4, 5)] == "Easter Sunday"
    assert named[date(2016, 5, 30)] == "Memorial Day"
    assert named[date(2015, 9, 7)] == "Labor Day"
    assert named[date(2016, 7, 4)] == "Independence Day"
    assert named[date(2016, 12, 25)] == "Christmas Day"
    assert named[date(2016, 1, 1)] == "New Year's Day"
    assert len(calendar) == 2 * 10
    assert holiday_calendar(date(2015, 12, 26), date(2015, 12, 30)).empty


def test_holiday_effects(clean_small: pd.DataFrame) -> None:
    daily = clean_small.groupby("date")["sales"].sum()
    for year in (2015, 2016):
        christmas = daily[pd.Timestamp(year, 12, 25)]
        rush = daily[pd.Timestamp(year, 12, 18) : pd.Timestamp(year, 12, 23)].mean()
        early_december = daily[pd.Timestamp(year, 12, 1) : pd.Timestamp(year, 12, 7)].mean()
        assert christmas <= 0.05 * rush  # stores are closed
        assert rush > 1.1 * early_december
    calendar = holiday_calendar(SMALL.start, SMALL.end)
    black_fridays = calendar.loc[calendar["holiday"] == "Black Friday", "date"]
    november_fridays = daily[(daily.index.month == 11) & (daily.index.dayofweek == 4)]
    other_fridays = november_fridays.drop(black_fridays)
    assert len(black_fridays) == 2
    assert daily[black_fridays].min() > 1.3 * other_fridays.mean()


# -------------------------------------------------------------------------------- anomalies


def test_anomaly_labels_shape_and_share(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sales, labels = small
    assert list(labels.columns) == [
        "date",
        "store",
        "item",
        "anomaly_type",
        "event_id",
        "expected",
        "actual",
    ]
    assert labels["date"].dtype == np.dtype("datetime64[ns]")
    assert labels["expected"].dtype == np.dtype("float64")
    assert labels["actual"].dtype == np.dtype("int64")
    assert not labels.duplicated(KEYS).any()
    share = len(labels) / len(sales)
    assert 0.5 * SMALL.anomaly_share <= share <= 1.5 * SMALL.anomaly_share
    assert set(labels["anomaly_type"]) == set(ANOMALY_TYPES)
    first_allowed = pd.Timestamp(SMALL.start) + pd.Timedelta(days=60)
    assert labels["date"].min() >= first_allowed


def test_labels_match_the_sales_frame(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sales, labels = small
    joined = labels.merge(sales, on=KEYS, how="left", validate="one_to_one")
    assert joined["sales"].notna().all()
    assert (joined["actual"] == joined["sales"]).all()


def test_anomalies_change_the_values_as_labelled(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, labels = small
    kind = labels["anomaly_type"]
    assert (labels.loc[kind == "zero_run", "actual"] == 0).all()
    assert (labels.loc[kind == "zero_run", "expected"] > 0).mean() > 0.9
    spikes = labels[kind == "spike"]
    assert (spikes["actual"] > spikes["expected"]).all()
    dips = labels[kind == "dip"]
    assert (dips["actual"] <= 0.6 * dips["expected"] + 0.5).all()
    assert (labels["expected"] >= 0).all()


def test_events_are_contiguous_runs_of_the_right_length(
    small: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    _, labels = small
    events = labels.groupby("event_id").agg(
        store=("store", "nunique"),
        item=("item", "nunique"),
        kind=("anomaly_type", "nunique"),
        anomaly_type=("anomaly_type", "first"),
        days=("date", "size"),
        span=("date", lambda d: (d.max() - d.min()).days + 1),
    )
    assert (events[["store", "item", "kind"]] == 1).all().all()
    assert (events["days"] == events["span"]).all()
    limits = {"spike": (1, 1), "dip": (1, 3), "level_shift": (7, 28), "zero_run": (3, 14)}
    for kind, (low, high) in limits.items():
        days = events.loc[events["anomaly_type"] == kind, "days"]
        assert days.between(low, high).all(), kind


def test_anomaly_share_follows_config() -> None:
    config = SyntheticConfig(
        n_stores=3,
        n_items=4,
        start=date(2015, 1, 1),
        end=date(2016, 12, 31),
        anomaly_share=0.05,
    )
    sales, labels = generate_sales(config)
    assert 0.025 <= len(labels) / len(sales) <= 0.075
    none_sales, none_labels = generate_sales(
        SyntheticConfig(
            n_stores=3,
            n_items=4,
            start=date(2015, 1, 1),
            end=date(2016, 12, 31),
            anomaly_share=0.0,
        )
    )
    assert none_labels.empty
    assert list(none_labels.columns) == list(labels.columns)


# ------------------------------------------------------------------------------------ drift


def _window_mean(sales: pd.DataFrame, start: str, end: str) -> float:
    in_window = (sales["date"] >= start) & (sales["date"] < end)
    return float(sales.loc[in_window, "sales"].mean())


def test_drift_raises_the_level_after_drift_from(
    small: tuple[pd.DataFrame, pd.DataFrame], drifted: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    def after_over_before(sales: pd.DataFrame) -> float:
        after = _window_mean(sales, "2016-07-01", "2016-10-01")
        before = _window_mean(sales, "2016-04-01", "2016-07-01")
        return after / before

    assert after_over_before(drifted[0]) > 1.4
    assert 0.85 < after_over_before(small[0]) < 1.2  # no drift: only seasonality and growth


def test_drift_changes_weekly_profile_and_promo_share(
    drifted: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    sales, _ = drifted
    after = sales["date"] >= pd.Timestamp(DRIFT_FROM)
    for part, saturday_wins in ((sales[~after], True), (sales[after], False)):
        by_weekday = part.groupby(part["date"].dt.dayofweek)["sales"].mean()
        assert bool(by_weekday[5] > by_weekday[1]) is saturday_wins
    assert sales.loc[after, "promo"].mean() > 2 * sales.loc[~after, "promo"].mean()


def test_drift_leaves_the_past_untouched(
    small: tuple[pd.DataFrame, pd.DataFrame], drifted: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    before = small[0]["date"] < pd.Timestamp(DRIFT_FROM)
    pd.testing.assert_frame_equal(small[0][before], drifted[0][before])
    assert not small[0][~before].equals(drifted[0][~before])
