"""Features never read the future: changing data after the origin leaves them unchanged, and a
single day computed alone equals the same day of a full backfill."""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast_platform.datasets.registry import get_spec
from forecast_platform.features.calendar import calendar_frame
from forecast_platform.features.offline import (
    compute_features,
    feature_frame,
    feature_params,
    history_features_sql,
    short_range,
)
from forecast_platform.features.sql import KNOWN_IN_ADVANCE, features_select, plan_features
from forecast_platform.warehouse.tables import CALENDAR, FEATURES

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
            "promo": rng.integers(0, 2, len(days)),
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


def _window_mean(s: pd.Series, ts: pd.Timestamp, first: int, last: int) -> float:
    """Mean of ``s`` over the days ``first..last`` before ``ts`` (both included)."""
    return s[ts - pd.Timedelta(days=last): ts - pd.Timedelta(days=first)].mean()


@pytest.mark.parametrize("name", ["y_lag_91", "y_lag_364", "y_mean_28", "y_dow_mean_13w",
                                  "share_store", "share_item", "yoy", "level_all_yearly",
                                  "level_all", "series_dev", "norm"])
def test_feature_values_match_a_direct_computation(tmp_path, name):
    con = warehouse(tmp_path, "w")
    day = dt.date(2017, 5, 17)
    got = features(con, day, day).set_index("series_id")[name]
    hist = con.execute("SELECT series_id, store, date, sales FROM validated_sales").df()
    hist["date"] = pd.to_datetime(hist["date"])
    ts = pd.Timestamp(day)
    # Pooled means: the mean over series of each day, then over the days of the window.
    pool = hist.groupby("date")["sales"].mean()
    by_store = {k: g.groupby("date")["sales"].mean() for k, g in hist.groupby("store")}
    year_all = _window_mean(pool, ts, 91, 454)
    level_ly = _window_mean(pool, ts, 182, 546)
    yoy = _window_mean(pool, ts, 91, 181) / _window_mean(pool, ts, 455, 545)
    for sid, value in got.items():
        s = hist[hist["series_id"] == sid].set_index("date")["sales"]
        store = int(sid.split("|")[0])
        share_store = _window_mean(by_store[store], ts, 91, 454) / year_all
        if name.startswith("y_lag_"):
            expected = s[ts - pd.Timedelta(days=int(name.rsplit("_", 1)[1]))]
        elif name == "y_mean_28":
            expected = s[ts - pd.Timedelta(days=91 + 27): ts - pd.Timedelta(days=91)].mean()
        elif name == "share_store":
            expected = share_store
        elif name == "share_item":  # one item: its mean is the all-series mean
            expected = 1.0
        elif name == "yoy":
            expected = yoy
        elif name == "level_all_yearly":
            expected = level_ly
        elif name == "level_all":
            expected = year_all
        elif name == "series_dev":
            expected = _window_mean(s, ts, 91, 454) / (year_all * share_store * 1.0)
        elif name == "norm":
            expected = share_store * 1.0 * level_ly * yoy
        else:
            same_dow = [ts - pd.Timedelta(days=91 + 7 * k) for k in range(13)]
            expected = s[same_dow].mean()
        assert value == pytest.approx(expected), (sid, name)


def test_pooled_features_need_a_covered_window(tmp_path):
    """A pooled window mostly before the first data is NULL, not a biased partial mean."""
    con = warehouse(tmp_path, "w")
    early = features(con, dt.date(2015, 6, 1), dt.date(2015, 6, 1))  # 151 days of data
    assert early[["share_store", "level_all_yearly", "yoy", "norm"]].isna().all().all()
    late = features(con, dt.date(2017, 5, 17), dt.date(2017, 5, 17))
    assert late[["share_store", "level_all_yearly", "yoy", "norm"]].notna().all().all()


def test_regular_closures_keep_pooled_windows_and_norm(tmp_path):
    """A store closed on Sundays (no rows) and for two weeks gets its pooled windows, its
    series_dev and norm from its open days; a window mostly before the data stays NULL, and the
    open store's features are those of the gapless history."""
    con = warehouse(tmp_path, "closed")
    gapless = features(con, dt.date(2017, 5, 17), dt.date(2017, 5, 23))
    con.execute("DELETE FROM validated_sales WHERE store <> 3 AND (isodow(date) = 7 "
                "OR date BETWEEN DATE '2016-09-05' AND DATE '2016-09-18')")
    late = features(con, dt.date(2017, 5, 17), dt.date(2017, 5, 23))
    cols = ["share_store", "share_item", "level_all", "series_dev", "level_all_yearly", "yoy",
            "norm"]
    assert late[cols].notna().all().all()
    assert not (late["ds"].map(lambda d: d.isoweekday()) == 7)[late["store"] != 3].any()
    open_store = late[late["store"] == 3].reset_index(drop=True)
    same = gapless[gapless["store"] == 3].reset_index(drop=True)
    pd.testing.assert_series_equal(open_store["y_mean_28"], same["y_mean_28"])
    # Store 1's share is its open-day mean over the all-series mean, not a count-shrunk one.
    assert 0.7 < late.loc[late["store"] == 1, "share_store"].iloc[0] < 1.0
    early = features(con, dt.date(2015, 6, 1), dt.date(2015, 6, 1))
    assert early[["share_store", "series_dev", "norm"]].isna().all().all()


def test_future_rows_with_null_targets_get_the_same_features(tmp_path):
    """Rows with y NULL (future dates) are features-only: pooled means skip them."""
    origin = dt.date(2017, 3, 1)
    days = (origin + dt.timedelta(days=1), origin + dt.timedelta(days=PLAN.horizon))
    full = features(warehouse(tmp_path, "full"), *days)
    con = warehouse(tmp_path, "future")
    con.execute("UPDATE validated_sales SET sales = NULL WHERE date > ?", [origin])
    future = features(con, *days)
    assert future["y"].isna().all()
    cols = [f.name for f in PLAN.features]
    pd.testing.assert_frame_equal(full[cols], future[cols])
    assert future["norm"].notna().all()


def test_weekly_plan_runs_and_states_safe_horizons():
    spec = dataclasses.replace(SPEC, frequency="W", horizon=13)
    plan = plan_features(spec)
    assert "dow_sin" not in plan.names and {"share_store", "share_item", "norm"} <= set(plan.names)
    for feature in plan.features:
        assert feature.safe_horizon >= plan.horizon, feature
    weeks = pd.date_range("2013-01-07", "2017-06-26", freq="7D")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame([
        {"ds": d.date(), "series_id": f"{s}|{i}", "store": s, "item": i, "promo": 0,
         "y": float(rng.poisson(100 * s + 10 * i))}
        for d in weeks for s in (1, 2) for i in (1, 2, 3)
    ])
    con = duckdb.connect()
    con.register("hist", frame)
    con.register("cal", calendar_frame(SPEC.start, SPEC.end))
    sql = features_select(plan, "SELECT * FROM hist WHERE ds BETWEEN ? AND ?",
                          "SELECT CAST(ds AS DATE) AS ds, is_holiday, days_to_holiday FROM cal")
    last = weeks[-1].date()
    out = con.execute(sql, [last - dt.timedelta(days=plan.lookback_days), last, last, last]).df()
    assert len(out) == 6 and out["norm"].notna().all()
    # The norm tracks the series' level: bigger stores and items get bigger norms.
    out = out.set_index("series_id")
    assert out.loc["2|3", "norm"] > out.loc["1|3", "norm"] > out.loc["1|1", "norm"]


def _ragged_history(seed: int = 3) -> pd.DataFrame:
    """Daily history that breaks every shortcut a grid could take: series starting and ending
    on different days, missing days and a missing month, zero runs, fractional targets and
    future rows whose target is NULL."""
    rng = np.random.default_rng(seed)
    frames = []
    for n, (store, item) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]):
        days = pd.date_range(dt.date(2014, 1, 1) + dt.timedelta(days=40 * n),
                             dt.date(2017, 6, 30) - dt.timedelta(days=17 * n), freq="D")
        y = rng.gamma(2.0, 10.0 + 5 * n, len(days)).round(3)
        y[rng.random(len(days)) < 0.08 * n] = 0.0  # intermittent series, one never zero
        keep = rng.random(len(days)) > 0.03 * (n + 1)  # scattered missing days
        if n == 2:
            keep &= ~((days >= "2016-02-01") & (days < "2016-03-05"))  # a missing month
        frame = pd.DataFrame({"date": days.date, "store": store, "item": item, "sales": y,
                              "promo": rng.integers(0, 2, len(days)),
                              "series_id": f"{store}|{item}"})[keep]
        frames.append(frame)
    sales = pd.concat(frames, ignore_index=True)
    sales.loc[pd.to_datetime(sales["date"]) > pd.Timestamp("2017-04-01"), "sales"] = np.nan
    return sales


def test_dense_grid_rows_frames_equal_the_direct_range_frames():
    """The fast plan (ROWS frames over a dense day grid, each window once) gives the values of
    the direct RANGE formulation on ragged data, to rounding."""
    con = duckdb.connect()
    con.register("v", _ragged_history())
    con.execute("CREATE TABLE validated_sales AS SELECT * FROM v")
    con.register("c", calendar_frame(SPEC.start, SPEC.end))
    con.execute(f"CREATE TABLE {CALENDAR} AS SELECT CAST(ds AS DATE) AS ds, * EXCLUDE (ds) "
                "FROM c")
    fast, direct = plan_features(SPEC), plan_features(SPEC, frames="range")
    assert fast.windows and not direct.windows and fast.names == direct.names
    start, end = dt.date(2015, 6, 1), dt.date(2017, 6, 30)
    got = feature_frame(con, fast, start, end)
    want = feature_frame(con, direct, start, end)
    assert len(got) == len(want) > 3000
    pd.testing.assert_frame_equal(got[["series_id", "ds", "y"]], want[["series_id", "ds", "y"]])
    for name in fast.names:
        a, b = got[name].to_numpy(float), want[name].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
    # The comparison can fail: the windows are really exercised (most values present, gaps and
    # zeros seen), and a one-day shift of the grid would be caught.
    for name in ("y_lag_91", "y_std_7", "y_dow_mean_13w", "y_zero_share", "series_dev"):
        assert got[name].notna().mean() > 0.25, name
    assert got["y_lag_91"].isna().any()  # a lag onto a missing day stays missing
    assert (got["y_zero_share"] > 0).any() and (got["y_zero_share"] == 0).any()
    shifted = got.groupby("series_id")["y_lag_91"].shift(1).to_numpy(float)
    assert not np.allclose(shifted, want["y_lag_91"].to_numpy(float), equal_nan=True)


@pytest.mark.parametrize("days", [1, 7])
def test_a_short_range_computes_its_windows_at_its_rows_with_the_grids_values(days):
    """The daily ingest's path (each target row's windows over its own history rows) gives
    the values of the dense grid over the whole lookback, on ragged data, to rounding."""
    con = duckdb.connect()
    con.register("v", _ragged_history())
    con.execute("CREATE TABLE validated_sales AS SELECT * FROM v")
    con.register("c", calendar_frame(SPEC.start, SPEC.end))
    con.execute(f"CREATE TABLE {CALENDAR} AS SELECT CAST(ds AS DATE) AS ds, * EXCLUDE (ds) "
                "FROM c")
    plan = plan_features(SPEC)
    # Days after the missing month (whose lags and windows reach into it) and the last days.
    for end in (dt.date(2016, 5, 20), dt.date(2017, 4, 1)):
        start = end - dt.timedelta(days=days - 1)
        params = feature_params(plan, start, end)
        grid = con.execute(history_features_sql(plan), params).df()
        at_rows = con.execute(history_features_sql(plan, at_targets=True), params).df()
        assert len(grid) == len(at_rows) >= 4 * days
        pd.testing.assert_frame_equal(at_rows[["series_id", "ds", "y"]],
                                      grid[["series_id", "ds", "y"]])
        for name in plan.names:
            a, b = at_rows[name].to_numpy(float), grid[name].to_numpy(float)
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True,
                                       err_msg=name)
        # The windows are really compared: the long ones are mostly present.
        assert (grid[["y_lag_364", "y_dow_mean_52w", "series_dev"]].notna().mean() > 0.5).all()
    # The daily ingest takes this path (and a longer range the grid's).
    assert short_range(end, end) and short_range(end - dt.timedelta(days=6), end)
    assert not short_range(end - dt.timedelta(days=7), end)


def test_weekly_plans_keep_range_frames():
    """Weekly dates need not lie on a regular grid: the weekly plan keeps its RANGE windows."""
    spec = dataclasses.replace(SPEC, frequency="W", horizon=13)
    assert not plan_features(spec).windows
    assert plan_features(spec) == plan_features(spec, frames="range")
    with pytest.raises(ValueError, match="frames"):
        plan_features(SPEC, frames="rowz")
