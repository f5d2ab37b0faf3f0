"""Features never read the future: changing data after the origin leaves them unchanged, and a
single day computed alone equals the same day of a full backfill."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast_platform.assets.features import CALENDAR, FEATURES, compute_features
from forecast_platform.datasets.registry import get_spec
from forecast_platform.features.calendar import calendar_frame
from forecast_platform.features.sql import KNOWN_IN_ADVANCE, plan_features

SPEC = get_spec("synthetic")
PLAN = plan_features(SPEC)
START, END = dt.date(2015, 1, 1), dt.date(2017, 6, 30)


def warehouse(tmp_path, name: str, tamper_after: dt.date | None = None):
    """A validated_sales table of 3 series, optionally with every value after a date changed."""
    days = pd.date_range(START, END, freq="D")
    rng = np.random.default_rng(0)
    frames = []
    for store in (1, 2, 3):
        sales = rng.poisson(20 + 5 * store, len(days)).astype(float)
        if tamper_after is not None:
            sales[days > pd.Timestamp(tamper_after)] *= 10
        frames.append(pd.DataFrame({
            "date": days.date, "store": store, "item": 1, "sales": sales,
            "promo": rng.integers(0, 2, len(days)), "holiday": 0,
            "series_id": f"{store}|1",
        }))
    con = duckdb.connect(str(tmp_path / f"{name}.duckdb"))
    con.register("v", pd.concat(frames))
    con.execute("CREATE TABLE validated_sales AS SELECT * FROM v")
    con.register("c", calendar_frame(SPEC.start, SPEC.end))
    con.execute(f"CREATE TABLE {CALENDAR} AS SELECT * FROM c")
    return con


def features(con, start: dt.date, end: dt.date) -> pd.DataFrame:
    compute_features(con, PLAN, start, end)
    return con.execute(
        f"SELECT * FROM {FEATURES} WHERE ds BETWEEN ? AND ? ORDER BY series_id, ds", [start, end]
    ).df()


def test_every_feature_states_a_safe_horizon_covering_the_model_horizon():
    for feature in PLAN.features:
        assert feature.safe_horizon >= PLAN.horizon, feature


def test_changing_the_future_leaves_features_unchanged(tmp_path):
    origin = dt.date(2017, 3, 1)
    target_days = (origin + dt.timedelta(days=1), origin + dt.timedelta(days=PLAN.horizon))
    clean = features(warehouse(tmp_path, "clean"), *target_days)
    tampered = features(warehouse(tmp_path, "tampered", tamper_after=origin), *target_days)
    # The targets themselves changed (so the tampering is real) ...
    assert not np.allclose(clean["y"], tampered["y"])
    # ... but no feature for a date up to `horizon` after the origin did.
    cols = [f.name for f in PLAN.features]
    pd.testing.assert_frame_equal(clean[cols], tampered[cols])


def test_lag_features_do_see_data_right_at_the_horizon(tmp_path):
    """The leakage test above must be able to fail: one day later, lag features do change."""
    origin = dt.date(2017, 3, 1)
    late = origin + dt.timedelta(days=PLAN.horizon + 8)
    clean = features(warehouse(tmp_path, "clean"), late, late)
    tampered = features(warehouse(tmp_path, "tampered", tamper_after=origin), late, late)
    lagged = [f.name for f in PLAN.features if f.safe_horizon < KNOWN_IN_ADVANCE]
    assert not np.allclose(clean[lagged].fillna(0), tampered[lagged].fillna(0))


def test_one_day_alone_equals_the_same_day_of_a_backfill(tmp_path):
    day = dt.date(2017, 5, 17)
    backfill = features(warehouse(tmp_path, "full"), dt.date(2016, 1, 1), END)
    alone = features(warehouse(tmp_path, "one"), day, day)
    expected = backfill[backfill["ds"] == pd.Timestamp(day)].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), expected, check_dtype=False)


@pytest.mark.parametrize("name", ["y_lag_91", "y_lag_364", "y_mean_28", "y_dow_mean_13w"])
def test_feature_values_match_a_direct_computation(tmp_path, name):
    con = warehouse(tmp_path, "w")
    day = dt.date(2017, 5, 17)
    got = features(con, day, day).set_index("series_id")[name]
    hist = con.execute("SELECT series_id, date, sales FROM validated_sales").df()
    hist["date"] = pd.to_datetime(hist["date"])
    ts = pd.Timestamp(day)
    for sid, value in got.items():
        s = hist[hist["series_id"] == sid].set_index("date")["sales"]
        if name.startswith("y_lag_"):
            expected = s[ts - pd.Timedelta(days=int(name.rsplit("_", 1)[1]))]
        elif name == "y_mean_28":
            expected = s[ts - pd.Timedelta(days=91 + 27): ts - pd.Timedelta(days=91)].mean()
        else:
            same_dow = [ts - pd.Timedelta(days=91 + 7 * k) for k in range(13)]
            expected = s[same_dow].mean()
        assert value == pytest.approx(expected), (sid, name)
