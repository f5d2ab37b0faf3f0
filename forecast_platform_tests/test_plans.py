"""Promotion plans end to end: `forecast-platform plan` lands a file, covariate_plan keeps the
valid rows and quarantines the others with reasons, forecasts and the service use the plan, a
scenario overrides it, a newer plan replaces an older one, plan_lift and `what-if` show the
lift, and the plan sensor refreshes the forecasts.

One module-scoped warehouse: synthetic sales of 2 stores x 2 items (whose promotions lift
sales), a small real champion, then the real CLI and assets on it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast_platform.cli import main
from forecast_platform.datasets.registry import get_spec
from forecast_platform.defs.automation import build_landing_sensors
from forecast_platform.defs.forecasting import build_forecasting_assets
from forecast_platform.defs.planning import build_planning_assets
from forecast_platform.defs.resources import Platform
from forecast_platform.forecasting.forecaster import ForecasterParams
from forecast_platform.planning.files import (
    PlanFileError,
    partitions_of,
    plan_files,
    plan_range,
    store_plan,
)
from forecast_platform.planning.validation import validate_plan
from forecast_platform.serving.bundle import load_bundle, pack_bundle
from forecast_platform.serving.harness import build_champion_warehouse
from forecast_platform.serving.online import OnlineModel
from forecast_platform.warehouse.store import connect
from forecast_platform_tests.conftest import make_settings

SPEC = get_spec("synthetic")
END = dt.date(2015, 12, 31)
PROMO_DAYS = ["2016-01-05", "2016-01-06", "2016-01-07"]
FIRST_PLAN = [
    "date,store,item,promo",
    *(f"{d},1,{i},1" for d in PROMO_DAYS for i in (1, 2)),  # 6 valid rows
    "2016-01-10,2,1,1",  # valid
    "2015-12-30,1,1,1",  # in the past: sales are landed up to 2015-12-31
    "2016-01-08,9,1,1",  # unknown series
    "2016-01-08,1,1,yes",  # wrong type
    "2016-01-09,2,2,1",  # conflicting duplicates
    "2016-01-09,2,2,0",
    "2016-13-01,2,2,1",  # not a date
]
VALID = 7


def _lines(settings, text: list[str], name: str) -> Path:
    path = settings.data_dir.parent / name
    path.write_text("\n".join(text) + "\n")
    return path


def _read(settings, sql: str, params: list | None = None) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).df()


def _refresh(settings) -> dict[str, dict]:
    """The forecasts and plan_lift assets on the warehouse, as the refresh job runs them."""
    assets = [a for a in [*build_forecasting_assets(SPEC), *build_planning_assets(SPEC)]
              if a.key.to_user_string() in ("forecasts", "plan_lift")]
    result = dg.materialize(assets, resources={"platform": Platform.from_settings(settings)},
                            selection=["forecasts", "plan_lift"])
    assert result.success
    return {key: {k: getattr(v, "value", v) for k, v in
                  result.asset_materializations_for_node(key)[0].metadata.items()}
            for key in ("forecasts", "plan_lift")}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("plans")
    settings = make_settings(root)
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    build_champion_warehouse(settings.warehouse_path, SPEC, "synthetic_forecaster",
                             n_stores=2, n_items=2, start=dt.date(2014, 1, 1), end=END, seed=5,
                             params=ForecasterParams(n_estimators=40, min_child_weight=1.0))
    csv = _lines(settings, FIRST_PLAN, "plan_v1.csv")
    code = main(["plan", "--data-dir", str(settings.data_dir), "--dataset", "synthetic",
                 "--csv", str(csv), "--no-refresh"])
    assert code == 0
    meta = _refresh(settings)
    return settings, meta


def test_plan_rows_are_planned_or_quarantined_with_a_reason(planned, capsys):
    settings, _ = planned
    plan = _read(settings, "SELECT * FROM covariate_plan ORDER BY ds, series_id")
    rejects = _read(settings, "SELECT * FROM plan_rejects ORDER BY source_line")
    assert len(plan) == VALID and len(plan) + len(rejects) == len(FIRST_PLAN) - 1
    assert set(plan["series_id"]) == {"1|1", "1|2", "2|1"} and (plan["promo"] == 1).all()
    reasons = dict(zip(rejects["source_line"], rejects["reason"], strict=True))
    assert "2015-12-30 is not in the future; sales are landed up to 2015-12-31" in reasons[9]
    assert "unknown series store='9', item='1'" in reasons[10]
    assert "column 'promo': value 'yes' is not an integer" in reasons[11]
    assert "duplicate (date, store, item): 2 rows" in reasons[12] and reasons[12] == reasons[13]
    assert "column 'date': value '2016-13-01' is not a date; expected YYYY-MM-DD" in reasons[14]
    assert set(rejects["rule"]) == {"dates", "series", "covariates", "duplicates"}


def test_forecasts_use_the_plan_and_say_how_much(planned):
    settings, meta = planned
    version = plan_files(settings.plans_dir("synthetic"))[0].version
    assert meta["forecasts"]["plan_rows_used"] == VALID
    assert meta["forecasts"]["plan_versions"] == version
    lift = _read(settings, "SELECT * FROM plan_lift ORDER BY series_id, ds")
    assert len(lift) == VALID and (lift["plan_version"] == version).all()
    # The synthetic sales rise on promotion days: the model forecasts more with the plan.
    assert (lift["lift"] > 0).mean() >= 0.8 and lift["lift"].sum() > 0
    fc = _read(settings, "SELECT f.series_id, f.ds, f.p50 FROM forecasts f "
                         "JOIN plan_lift l USING (series_id, ds)")
    both = fc.merge(lift, on=["series_id", "ds"])
    np.testing.assert_allclose(both["p50"], both["p50_plan"], rtol=1e-6)


def test_what_if_prints_the_lift_of_a_store(planned, capsys):
    settings, _ = planned
    assert main(["what-if", "--data-dir", str(settings.data_dir), "--where", "store=1"]) == 0
    out = capsys.readouterr().out
    assert "store=1" in out and "2016-01-05" in out and "2016-01-10" not in out
    assert "with the plan vs" in out
    with pytest.raises(SystemExit, match="expected KEY=VALUE with KEY one of"):
        main(["what-if", "--data-dir", str(settings.data_dir), "--where", "shop=1"])


def test_the_service_answers_from_the_plan_and_a_scenario_overrides_it(planned):
    settings, _ = planned
    with connect(settings.warehouse_path) as con:
        packed = pack_bundle(con, SPEC, "synthetic_forecaster")
    folder = settings.data_dir / "bundle"
    folder.mkdir()
    packed.write(folder)
    online = OnlineModel(load_bundle(folder))
    lift = _read(settings, "SELECT * FROM plan_lift WHERE series_id = '1|1' ORDER BY ds")
    served = online.forecast([{"store": 1, "item": 1}])[0]
    days = [served["dates"].index(str(d)[:10]) for d in lift["ds"]]
    np.testing.assert_allclose([served["p50"][i] for i in days], lift["p50_plan"], rtol=1e-5)
    off = online.forecast([{"store": 1, "item": 1}],
                          scenario={d: {"promo": 0} for d in PROMO_DAYS})[0]
    np.testing.assert_allclose([off["p50"][i] for i in days], lift["p50_unplanned"], rtol=1e-5)


def test_a_newer_plan_replaces_the_older_for_its_dates(planned):
    settings, _ = planned
    csv = _lines(settings, ["date,store,item,promo", "2016-01-06,1,1,0"], "plan_v2.csv")
    assert main(["plan", "--data-dir", str(settings.data_dir), "--csv", str(csv),
                 "--no-refresh"]) == 0
    old, new = (p.version for p in plan_files(settings.plans_dir("synthetic")))
    plan = _read(settings, "SELECT CAST(ds AS VARCHAR) AS ds, series_id, promo, plan_version "
                           "FROM covariate_plan ORDER BY ds, series_id")
    jan6 = plan[plan["ds"] == "2016-01-06"]
    assert jan6[["series_id", "promo", "plan_version"]].values.tolist() == [["1|1", 0, new]]
    assert (plan.loc[plan["ds"] != "2016-01-06", "plan_version"] == old).all()
    # Both plans' rows are still accounted for: the older file's rows of other dates stay.
    assert len(plan) == VALID - 1


def test_a_plan_that_cannot_land_is_refused_whole(planned, tmp_path):
    settings, _ = planned
    before = len(plan_files(settings.plans_dir("synthetic")))
    no_keys = _lines(settings, ["date,store,promo", "2016-01-05,1,1"], "no_item.csv")
    with pytest.raises(SystemExit, match=r"columns \['item'\] are missing"):
        main(["plan", "--data-dir", str(settings.data_dir), "--csv", str(no_keys)])
    far = _lines(settings, ["date,store,item,promo", "2030-01-05,1,1,1"], "far.csv")
    with pytest.raises(SystemExit, match="no row has a date the plan can hold"):
        main(["plan", "--data-dir", str(settings.data_dir), "--csv", str(far)])
    assert len(plan_files(settings.plans_dir("synthetic"))) == before
    with pytest.raises(PlanFileError, match="no known covariate among its columns"):
        bare = _lines(settings, ["date,store,item", "2016-01-05,1,1"], "bare.csv")
        store_plan(bare, tmp_path, SPEC, plan_range(SPEC))


def test_the_plan_sensor_refreshes_forecasts_once_per_new_plan():
    sensor = next(s for s in build_landing_sensors(SPEC) if s.name == "plan_sensor")
    with dg.instance_for_test() as instance:
        def report(asset: str) -> None:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset))

        report("forecaster")
        report("forecasts")
        report("covariate_plan")
        result = sensor(dg.build_sensor_context(instance=instance))
        assert [r.tags["trigger"] for r in result.run_requests] == ["plan"]
        cursor = result.cursor
        again = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
        assert isinstance(again, dg.SkipReason) and "no new plan" in again.skip_message
        report("covariate_plan")
        report("forecasts")  # the CLI refreshed already
        done = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
        assert not done.run_requests and "after the newest plan" in done.skip_reason.skip_message


def test_a_weekly_plan_keeps_to_the_period_grid_and_each_column_its_type():
    walmart = get_spec("walmart")
    window = plan_range(walmart)
    frame = pd.DataFrame({
        "Date": ["2012-11-02", "2012-11-03", "2012-11-09", "2012-11-09"],
        "Store": ["1", "1", "1", "1"], "Dept": ["1", "1", "1", "2"],
        "IsHoliday": ["0", "0", "1", "0"], "MarkDown1": ["1500.5", "0", "inf", ""],
        "_source_line": [2, 3, 4, 5]})
    split = validate_plan(frame, partitions_of(frame, walmart, window), walmart, "v", "f.csv",
                          {"1|1", "1|2"}, dt.date(2012, 10, 26), window)
    assert split.valid[["series_id", "IsHoliday", "MarkDown1"]].astype(str).values.tolist() \
        == [["1|1", "0", "1500.5"]]
    assert split.valid["Temperature"].isna().all()  # not in the plan: nothing planned
    reasons = dict(zip(split.rejected["source_line"], split.rejected["reason"], strict=True))
    assert "2012-11-03 is a Saturday; this weekly dataset's periods start on a Friday" \
        in reasons[3]
    assert "column 'MarkDown1': value 'inf' is not a finite number" in reasons[4]
    assert "column 'MarkDown1' is empty" in reasons[5]
    assert split.landed == len(frame)


def test_a_plan_may_write_dates_as_the_datasets_own_files_do():
    """A plan exported by the system that exports the sales writes dates its way (DD.MM.YYYY
    here); ISO is read too, and anything else is refused naming both formats."""
    spec = dataclasses.replace(SPEC, date_format="%d.%m.%Y")
    window = plan_range(spec)
    frame = pd.DataFrame({"date": ["05.01.2016", "2016-01-06", "07/01/2016"],
                          "store": ["1"] * 3, "item": ["1"] * 3, "promo": ["1"] * 3,
                          "_source_line": [2, 3, 4]})
    split = validate_plan(frame, partitions_of(frame, spec, window), spec, "v", "f.csv",
                          {"1|1"}, END, window)
    assert sorted(pd.to_datetime(split.valid["ds"]).dt.date) == [dt.date(2016, 1, 5),
                                                                  dt.date(2016, 1, 6)]
    assert split.rejected["reason"].tolist() == [
        "column 'date': value '07/01/2016' is not a date; expected DD.MM.YYYY or YYYY-MM-DD"]
    with pytest.raises(PlanFileError, match="written DD.MM.YYYY or YYYY-MM-DD; found "
                                            "'07/01/2016'"):
        partitions_of(frame.iloc[[2]], spec, window)
