"""``forecast-platform init-dataset``: a user's CSV in its own shape (other column names, two
keys, weekly, day-first dates, a text-coded covariate) becomes a dataset spec by configuration,
and the graph runs on it to the champion's forecasts. Mapping errors stop before any file is
written, naming the column and the value.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from forecast_platform.cli import main
from forecast_platform.datasets.custom import (
    MappingError,
    figure,
    inspect_csv,
    readable_bound,
    to_spec,
)
from forecast_platform.datasets.registry import get_spec
from forecast_platform.planning.files import read_plan
from forecast_platform_tests.conftest import check_results, make_settings, materialized, run_job

FIRST_WEEK = dt.date(2014, 1, 5)  # Sundays
WEEKS = 160


def weekly_csv(path: Path) -> Path:
    """Two regions x three SKUs, weekly (Sunday), yearly seasonality, a late starter, a gap."""
    rng = np.random.default_rng(3)
    rows = []
    for r, region in enumerate(["north", "south"]):
        for sku in (101, 102, 103):
            level = 40 + 25 * r + 10 * (sku - 101)
            for w in range(WEEKS):
                if (region, sku) == ("south", 103) and w < 30:
                    continue  # starts late
                if (region, sku) == ("north", 102) and w == 90:
                    continue  # one missing week: no row, not zero
                day = FIRST_WEEK + dt.timedelta(weeks=w)
                season = 1 + 0.35 * np.sin(2 * np.pi * w / 52.18) + (0.5 if day.month == 12 else 0)
                promo = int(rng.random() < 0.15)
                mean = level * season * (1 + 0.002 * w) * (1.3 if promo else 1)
                rows.append({
                    "week_ending": day.strftime("%d/%m/%Y"), "region": region, "sku": sku,
                    "units": int(rng.poisson(mean)), "on_promo": promo,
                    "price_band": "ab"[int(rng.random() < 0.3)],
                    "temp_c": round(10 + 10 * np.sin(2 * np.pi * w / 52.18), 1),
                    "holiday": int(day.month == 12 and 18 <= day.day <= 24),
                    "region_type": ("metro", "rural")[r],
                })
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# The four weeks after the data, planned in the CSV's own date format (DD/MM/YYYY) as the same
# system would export them: a promotion for north's SKU 101 in the second week.
PLANNED = [FIRST_WEEK + dt.timedelta(weeks=WEEKS + w) for w in range(4)]


def plan_csv(path: Path) -> Path:
    rows = [{"week_ending": day.strftime("%d/%m/%Y"), "region": region, "sku": sku,
             "on_promo": int((w, region, sku) == (1, "north", 101))}
            for w, day in enumerate(PLANNED) for region in ("north", "south")
            for sku in (101, 102, 103)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


ARGS = ["--name", "shop", "--date", "week_ending", "--keys", "region,sku",
        "--target", "units", "--known", "on_promo,price_band", "--observed", "temp_c",
        "--static", "region_type", "--holiday", "holiday"]


def test_proposal_infers_types_frequency_and_gaps(tmp_path):
    csv = weekly_csv(tmp_path / "sales.csv")
    p = inspect_csv(csv, "shop", "week_ending", ["region", "sku"], "units",
                    known=["on_promo", "price_band"], observed=["temp_c"])
    s = p.spec
    assert s["frequency"] == "W" and s["date_format"] == "%d/%m/%Y"
    assert s["key_types"] == {"region": "str", "sku": "int"}
    assert s["known"] == {"on_promo": "int", "price_band": "str"}
    assert s["observed"] == {"temp_c": "float"}
    assert s["categories"] == {"price_band": ["a", "b"]}
    assert s["start"] == "2014-01-05" and s["horizon"] == 13
    assert s["closed_dates"] == [] and not s["allow_negative_target"]
    text = p.text()
    assert "1 series-periods missing" in text  # north|102's missing week
    # The one missing series-week is a sixth of its date: the tolerance follows the data.
    assert s["max_missing_share"] == pytest.approx(0.2)


@pytest.mark.parametrize("change, args, message", [
    (None, ["--keys", "region,store"], "key column 'store' does not exist"),
    (None, ["--known", "on_promo,discount"], "known covariate column 'discount' does not exist"),
    ("bad_date", [], "value '31/02/2015' on line"),
    ("duplicate", [], "not unique per date"),
    (None, ["--keys", "region"], "not unique per date"),  # sku is a key too
    (None, ["--freq", "D"], "look weekly"),
    ("static_varies", [], "static column 'region_type' is not constant per series: "
                          "{'region': 'north', 'sku': '101'} has the values ['metro', 'rural']"),
    (None, ["--holiday", "on_promo", "--known", "price_band"], None),  # 0/1: accepted
    (None, ["--holiday", "temp_c", "--observed", "on_promo"],
     "holiday column 'temp_c' must hold 0 or 1, got '10.0' on line 2"),
    (None, ["--metric", "wmae", "--holiday", ""], "--metric wmae weighs holiday periods"),
])
def test_mapping_errors_are_reported_before_anything_is_written(tmp_path, capsys, change,
                                                                 args, message):
    csv = weekly_csv(tmp_path / "sales.csv")
    frame = pd.read_csv(csv, dtype=str)
    if change == "bad_date":
        frame.loc[7, "week_ending"] = "31/02/2015"
    if change == "duplicate":
        frame = pd.concat([frame, frame.iloc[[5]]])
    if change == "static_varies":
        frame.loc[3, "region_type"] = "rural"  # north|101 changes type one week
    frame.to_csv(csv, index=False)
    data_dir = tmp_path / "data"
    given = dict(zip(ARGS[::2], ARGS[1::2], strict=True))
    given.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = ["init-dataset", "--csv", str(csv), "--data-dir", str(data_dir)]
    for flag, value in given.items():
        if value:
            argv += [flag, value]
    if message is None:  # a control: the same call with a valid mapping writes the spec
        assert main(argv) == 0
        assert (data_dir / "datasets" / "shop.yaml").is_file()
        return
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert message in str(err.value)
    assert not (data_dir / "datasets").exists() or not any((data_dir / "datasets").iterdir())


def test_the_date_error_names_column_and_value(tmp_path):
    csv = tmp_path / "x.csv"
    pd.DataFrame({"when": ["2020-01-01", "yesterday"], "k": [1, 1], "y": [1, 2]}).to_csv(
        csv, index=False)
    with pytest.raises(MappingError, match="date column 'when' does not parse: value "
                                           "'yesterday' on line 3"):
        inspect_csv(csv, "x", "when", ["k"], "y")


def test_the_target_bound_is_proposed_from_the_history(tmp_path):
    """10x the largest target, rounded up to a readable figure, and listed in the report."""
    csv = weekly_csv(tmp_path / "sales.csv")
    largest = pd.read_csv(csv)["units"].max()
    p = inspect_csv(csv, "shop", "week_ending", ["region", "sku"], "units")
    bound = p.spec["max_target"]
    assert 10 * largest <= bound <= 50 * largest
    assert f"{bound:g}".lstrip("0.")[0] in "125"  # 1, 2 or 5 times a power of ten
    assert f"plausibility bound max_target {figure(bound)}" in p.text()
    assert f"largest value of the history, {figure(largest)}" in p.text()
    spec = to_spec(p.spec)
    assert spec.max_target == bound and spec.encoding == "utf-8"


@pytest.mark.parametrize(("value", "bound"), [(2310, 5000), (6_930_993.6, 10_000_000),
                                              (83_590, 100_000), (10_000, 10_000), (0.3, 0.5)])
def test_readable_bound_rounds_up_to_1_2_or_5_times_a_power_of_ten(value, bound):
    assert readable_bound(value) == bound


def test_a_windows_1252_csv_is_refused_unless_declared(tmp_path):
    csv = tmp_path / "x.csv"
    # Weekly, 160 weeks: the history the forecaster needs (a shorter one is refused first).
    weeks = pd.date_range("2020-01-05", periods=160, freq="7D")
    text = "when,k,y\n" + "".join(f"{d.date()},Café,{i % 9 + 1}\n" for i, d in enumerate(weeks))
    csv.write_bytes(text.encode("cp1252"))
    with pytest.raises(MappingError, match=r"is not UTF-8: byte 0xe9 at offset 23 .*cp1252"):
        inspect_csv(csv, "x", "when", ["k"], "y")
    p = inspect_csv(csv, "x", "when", ["k"], "y", encoding="cp1252")
    assert p.spec["encoding"] == "cp1252" and "read as cp1252" in p.text()
    spec = to_spec(yaml.safe_load(yaml.safe_dump(p.spec)))
    assert spec.encoding == "cp1252"
    files = spec.lander(spec, tmp_path / "landing")  # the lander reads it as declared
    assert "Café" in files[0].read_text(encoding="utf-8")


def test_flag_words_as_spreadsheets_export_them_are_read_as_1_and_0(tmp_path):
    """TRUE/FALSE (Walmart's IsHoliday) and yes/no flags: the holiday flag is accepted, the
    flags are integers, and the landed files and a plan file hold 1 and 0."""
    frame = pd.read_csv(weekly_csv(tmp_path / "plain.csv"), dtype=str)
    frame["holiday"] = frame["holiday"].map({"0": "FALSE", "1": "TRUE"})
    frame["on_promo"] = frame["on_promo"].map({"0": "no", "1": "Yes"})
    csv = tmp_path / "words.csv"
    frame.to_csv(csv, index=False)
    p = inspect_csv(csv, "words", "week_ending", ["region", "sku"], "units",
                    known=["on_promo"], holiday="holiday")
    assert p.spec["flags"] == ["on_promo", "holiday"]
    assert p.spec["known"] == {"on_promo": "int", "holiday": "int"}
    assert "on_promo, holiday: flag words (TRUE/FALSE, yes/no) read as 1/0" in p.text()
    spec = to_spec(yaml.safe_load(yaml.safe_dump(p.spec)))
    landed = pd.concat(pd.read_csv(f, dtype=str) for f in spec.lander(spec, tmp_path / "land"))
    assert set(landed["holiday"]) == set(landed["on_promo"]) == {"0", "1"}
    assert (landed["holiday"] == "1").sum() == (frame["holiday"] == "TRUE").sum()
    plan = tmp_path / "plan.csv"
    plan.write_text("week_ending,region,sku,on_promo\n"
                    f"{PLANNED[0]:%d/%m/%Y},north,101,TRUE\n")
    assert read_plan(plan, spec)["on_promo"].tolist() == ["1"]


def test_a_semicolon_export_is_read_as_it_is(tmp_path):
    """Spreadsheets in much of Europe separate with semicolons: the CSV and its plan are read
    with the delimiter their header uses."""
    frame = pd.read_csv(weekly_csv(tmp_path / "plain.csv"), dtype=str)
    csv = tmp_path / "semicolons.csv"
    frame.to_csv(csv, index=False, sep=";")
    p = inspect_csv(csv, "semi", "week_ending", ["region", "sku"], "units", known=["on_promo"])
    spec = to_spec(p.spec)
    landed = pd.concat(pd.read_csv(f, dtype=str) for f in spec.lander(spec, tmp_path / "land"))
    assert len(landed) == len(frame) and set(landed["on_promo"]) == {"0", "1"}
    plan = tmp_path / "plan.csv"
    plan.write_text(f"week_ending;region;sku;on_promo\n{PLANNED[0]:%d/%m/%Y};north;101;1\n")
    assert read_plan(plan, spec)[["region", "on_promo"]].values.tolist() == [["north", "1"]]


# -- from the CSV to forecasts, through the CLI's init-dataset and the real graph ---------------


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("init")
    csv = weekly_csv(tmp / "sales.csv")
    settings = make_settings(tmp, dataset="shop")
    with pytest.MonkeyPatch.context() as mp:
        # The spec is found through the data directory, as the CLI and code location find it.
        mp.setenv("FORECAST_DATA_DIR", str(settings.data_dir))
        assert main(["init-dataset", "--csv", str(csv), *ARGS,
                     "--plan", str(plan_csv(tmp / "plan.csv"))]) == 0
        spec = get_spec("shop", settings.datasets_dir)
        spec.lander(spec, settings.landing_dir(), settings.source_dir)
        instance = dg.DagsterInstance.ephemeral()

        def run(job, start=None, end=None, config=None):
            return run_job(settings, start, end, job, instance, run_config=config)

        ingest = run("ingest_job", spec.start, spec.end)
        assert run("plan_job", PLANNED[0], PLANNED[-1]).success
        train = run("train_job",
                    config={"ops": {"forecaster": {"config": {"backtest_origins": 2}}}})
    return settings, spec, ingest, train


def test_init_dataset_writes_a_spec_get_spec_finds(graph):
    settings, spec, *_ = graph
    path = settings.datasets_dir / "shop.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["keys"] == ["region", "sku"] and data["frequency"] == "W"
    assert spec.frequency == "W" and spec.keys == ("region", "sku")
    assert spec.columns == ["week_ending", "region", "sku", "units", "on_promo", "price_band",
                            "holiday", "temp_c", "region_type"]
    assert spec.categories == {"price_band": ("a", "b"), "region_type": ("metro", "rural")}
    # The static attribute is constant per region, the holiday flag makes WMAE the metric.
    assert spec.static == {"region_type": "str"} and spec.static_keys == ("region",)
    assert spec.holiday_column == "holiday" and spec.metric == "wmae"
    # The plausibility bound and the encoding go through the YAML.
    assert spec.max_target == data["max_target"] > 0 and spec.encoding == "utf-8"


def test_the_graph_runs_on_the_users_csv_to_forecasts(graph):
    settings, spec, ingest, train = graph
    assert ingest.success
    failed = {k: r.description for k, r in check_results(ingest).items() if not r.passed}
    assert not failed
    gate = check_results(train)["forecaster.champion_gate"]
    assert gate.passed, gate.description
    assert {"forecaster", "forecasts"} <= materialized(train)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        raw, valid = con.execute("SELECT (SELECT count(*) FROM raw_sales), "
                                 "(SELECT count(*) FROM validated_sales)").fetchone()
        fc = con.execute("SELECT * FROM forecasts").df()
        band = con.execute("SELECT DISTINCT price_band FROM sales_features").df()
        types = con.execute("SELECT DISTINCT region, region_type FROM sales_features "
                            "ORDER BY region").fetchall()
        holidays = con.execute("SELECT DISTINCT ds, is_holiday FROM sales_features "
                               "WHERE is_holiday = 1").df()
    assert raw == valid == 6 * WEEKS - 30 - 1
    last = FIRST_WEEK + dt.timedelta(weeks=WEEKS - 1)
    assert fc["ds"].min() == pd.Timestamp(last + dt.timedelta(weeks=1))
    assert fc["ds"].nunique() == 13 and fc["series_id"].nunique() == 6
    assert (pd.to_datetime(fc["ds"]).dt.dayofweek == 6).all()  # Sundays, as the data
    assert set(band["price_band"]) == {1, 2}  # the text codes, as categories
    assert types == [("north", 1), ("south", 2)]  # the static attribute, joined per region
    # The data's own holiday flag is the features' is_holiday (WMAE's weights): Dec 18-24 weeks.
    assert holidays["is_holiday"].tolist() == [1] * len(holidays)
    assert set(holidays["ds"].dt.month) == {12} and holidays["ds"].dt.day.min() >= 18
    assert check_results(train)["forecaster.champion_gate"].metadata["metric"].value == "wmae"


def test_a_plan_in_the_csvs_own_date_format_is_planned_and_forecast_with(graph):
    settings, spec, _, train = graph
    assert spec.date_format == "%d/%m/%Y"
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        plan = con.execute("SELECT ds, series_id, on_promo FROM covariate_plan "
                           "ORDER BY ds, series_id").df()
        rejects = con.execute("SELECT count(*) FROM plan_rejects").fetchall()[0][0]
    assert rejects == 0
    assert len(plan) == 4 * 6 and sorted(set(plan["ds"].dt.date)) == PLANNED
    promoted = plan[plan["on_promo"] == 1]
    assert promoted[["ds", "series_id"]].astype(str).values.tolist() == [
        [str(PLANNED[1]), "north|101"]]
    meta = train.asset_materializations_for_node("forecasts")[0].metadata
    assert meta["plan_rows_used"].value > 0


def test_the_users_series_are_served_as_forecast_offline(graph):
    """The train job packs the user's champion into a serving bundle: the service forecasts a
    late-starting series of the CSV exactly as the forecasts asset did, and a planned promotion
    (a known covariate the model trained on) is a what-if the service answers."""
    from forecast_platform.defs.bentoml_store import load_stored_bundle
    from forecast_platform.serving.online import OnlineModel
    from forecast_platform.serving.requests import InvalidInput

    settings, spec, _, train = graph
    assert "serving_bundle" in materialized(train)
    meta = train.asset_materializations_for_node("serving_bundle")[0].metadata
    model = OnlineModel(load_stored_bundle(meta["bentoml_tag"].value, settings.bentoml_home))
    served = model.forecast([{"region": "south", "sku": 103}])[0]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        offline = con.execute("SELECT ds, p50 FROM forecasts WHERE series_id = 'south|103' "
                              "ORDER BY ds").df()
    assert served["dates"] == [str(d)[:10] for d in offline["ds"]]
    assert served["p50"] == pytest.approx(offline["p50"].tolist(), rel=1e-6)
    first = served["dates"][0]
    promo = model.forecast([{"region": "south", "sku": 103}],
                           scenario={first: {"on_promo": 1}})[0]
    assert promo["p50"][1:] == pytest.approx(served["p50"][1:], rel=1e-6)  # other weeks alone
    assert promo["p50"][0] > 1.05 * served["p50"][0]  # a promotion sells more (x1.3 in the CSV)
    # A text-coded covariate takes its codes in a scenario, and names them when it does not.
    banded = model.forecast([{"region": "south", "sku": 103}],
                            scenario={first: {"price_band": "b"}})[0]
    assert len(banded["p50"]) == len(served["p50"])
    with pytest.raises(InvalidInput, match=r"scenario\.[-0-9]+\.price_band: 'c' is not a code") \
            as err:
        model.forecast([{"region": "south", "sku": 103}], scenario={first: {"price_band": "c"}})
    assert err.value.as_dict()["expected"] == "one of ['a', 'b']"
