"""The landing sensor: new files become range runs, each file is requested once."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from forecast_platform.datasets.landing import contiguous_ranges, landed_files, write_landing_files
from forecast_platform.datasets.registry import get_spec
from forecast_platform.definitions import build_definitions
from forecast_platform.defs.automation import RANGE_END, RANGE_START
from forecast_platform_tests.conftest import make_settings

SPEC = get_spec("synthetic")


def land_days(settings, days: list[str]) -> None:
    import pandas as pd

    frame = pd.DataFrame({"date": days, "store": 1, "item": 1, "sales": 3, "promo": 0})
    write_landing_files(frame, settings.landing_dir(), "date", overwrite=True)


def tick(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def("landing_sensor")
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs,
        resources={"platform": defs.resources["platform"]},
    )
    return sensor(context)


def test_contiguous_days_become_ranges():
    d = dt.date
    days = [d(2017, 1, 1), d(2017, 1, 2), d(2017, 1, 3), d(2017, 1, 7), d(2017, 1, 9)]
    assert contiguous_ranges(days, 1) == [
        (d(2017, 1, 1), d(2017, 1, 3)), (d(2017, 1, 7), d(2017, 1, 7)),
        (d(2017, 1, 9), d(2017, 1, 9)),
    ]


def test_new_files_are_requested_once_and_relanded_files_again(tmp_path):
    settings = make_settings(tmp_path)
    defs = build_definitions(settings)
    land_days(settings, ["2017-01-01", "2017-01-02", "2017-01-03", "2017-01-10"])
    with dg.instance_for_test() as instance:
        first = tick(defs, instance)
        requests = first.run_requests
        assert len(requests) == 2
        ranged = next(r for r in requests if RANGE_START in r.tags)
        assert (ranged.tags[RANGE_START], ranged.tags[RANGE_END]) == ("2017-01-01", "2017-01-03")
        single = next(r for r in requests if RANGE_START not in r.tags)
        assert single.partition_key == "2017-01-10"
        assert all(r.job_name in (None, "ingest_job") for r in requests)

        # Nothing new: no request.
        second = tick(defs, instance, cursor=first.cursor)
        assert isinstance(second, dg.SkipReason)

        # A corrected file is landed again (newer mtime): only that day is requested.
        path = landed_files(settings.landing_dir())[dt.date(2017, 1, 2)]
        newer = path.stat().st_mtime_ns + 10_000_000_000
        os.utime(path, ns=(newer, newer))
        third = tick(defs, instance, cursor=first.cursor)
        assert [r.partition_key for r in third.run_requests] == ["2017-01-02"]
        assert third.run_requests[0].run_key != single.run_key


def test_files_the_cli_ingested_are_not_requested_again(tmp_path):
    """`demo` ingests the landed files before the daemon ever ticks: the sensor's first tick
    (no cursor) must not ingest them all again; a file re-landed afterwards is requested."""
    import pandas as pd

    from forecast_platform_tests.conftest import run_job

    settings = make_settings(tmp_path)
    defs = build_definitions(settings)
    days = ["2017-01-01", "2017-01-02", "2017-01-03"]
    land_days(settings, days)
    with dg.instance_for_test() as instance:
        ingest = run_job(settings, days[0], days[-1], instance=instance)  # as run_range does
        assert {r.partition_key for r in instance.fetch_materializations(
            dg.AssetKey("raw_sales"), limit=10).records} == set(days), ingest.success

        first = tick(defs, instance)
        assert not first.run_requests
        assert first.cursor  # the files were seen: the next tick does not look them up again

        # Upstream corrects one day: only that partition is requested, with or without cursor.
        frame = pd.DataFrame({"date": ["2017-01-02"], "store": 1, "item": 1, "sales": 5,
                              "promo": 0})
        write_landing_files(frame, settings.landing_dir(), "date", overwrite=True)
        assert [r.partition_key for r in tick(defs, instance, first.cursor).run_requests] \
            == ["2017-01-02"]
        assert [r.partition_key for r in tick(defs, instance).run_requests] == ["2017-01-02"]
