"""Shared fixtures: every test gets its own data directory, warehouse and Dagster instance."""

from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest

from forecast_platform.settings import Settings, load_settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STORE_ITEM_DIR = SHARED_DATA / "store_item_demand"

os.environ.setdefault("DO_NOT_TRACK", "1")

_EXIT_CODE = [1]


def pytest_configure(config) -> None:
    """End the test process as the CLI ends (``_end_process_after_exit_handlers``): after the
    exit handlers, without module teardown, whose order makes DuckDB's extension print a
    "nanobind: leaked" report of its own module objects after some sequences of in-process
    runs (train, then monitor) although no connection of ours is open."""
    from forecast_platform.cli.parser import _end_process_after_exit_handlers

    atexit.register(_end_process_after_exit_handlers, _EXIT_CODE)


def pytest_sessionfinish(session, exitstatus) -> None:
    _EXIT_CODE[0] = int(exitstatus)


def make_settings(tmp_path: Path, dataset: str = "synthetic", source: Path | None = None
                  ) -> Settings:
    env = {"FORECAST_DATA_DIR": str(tmp_path / "data"), "FORECAST_DATASET": dataset}
    if source:
        env["FORECAST_SOURCE_DIR"] = str(source)
    return load_settings(env)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


# The synthetic world of the graph tests (test_forecasting_graph, test_monitoring_graph): 5 stores
# x 8 items, no planted mistakes, landed 2015-01-01..2017-12-31 and ingested up to
# SYNTHETIC_INGESTED. An ingest run records every day of its range as a partition of each asset
# (most of its time), so the 2.5 years both modules start from are ingested once per session.
SYNTHETIC_WORLD = {"n_stores": 5, "n_items": 8, "mistakes": False}
SYNTHETIC_START, SYNTHETIC_END = dt.date(2015, 1, 1), dt.date(2017, 12, 31)
SYNTHETIC_INGESTED = dt.date(2017, 6, 30)


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory) -> Settings:
    """The landing files and the warehouse of one real ingest run up to SYNTHETIC_INGESTED.

    Read only: a module copies it (``copy_world``) into its own data directory and goes on
    from there with its own Dagster instance, MLflow store and runs."""
    from forecast_platform.datasets.registry import get_spec, land_synthetic

    settings = make_settings(tmp_path_factory.mktemp("synthetic_world"))
    land_synthetic(get_spec("synthetic"), settings.landing_dir(), start=SYNTHETIC_START,
                   end=SYNTHETIC_END, **SYNTHETIC_WORLD)
    assert run_job(settings, SYNTHETIC_START, SYNTHETIC_INGESTED).success
    assert not list(settings.data_dir.glob("warehouse.duckdb.*"))  # closed, nothing beside it
    return settings


# `forecast-platform demo` as test_cli runs it: 6 stores x 5 items, 2016-01-01..2017-11-30.
DEMO_ARGS = ["--stores", "6", "--items", "5", "--start", "2016-01-01"]


def user_env() -> dict[str, str]:
    """This environment without the platform's, Dagster's and MLflow's variables: a command
    run with it finds everything from its flags, as a user's does."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("FORECAST_", "DAGSTER_", "MLFLOW_", "BENTOML_HOME"))}


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``forecast-platform demo`` run once, as a user runs it (its own process and
    environment): its data directory and what it printed.

    Read only: test_cli asserts on what it printed and built; test_dashboard copies the data
    directory (a demo warehouse, its Dagster instance and its dashboard snapshot)."""
    data = tmp_path_factory.mktemp("demo") / "data"
    done = subprocess.run(
        [sys.executable, "-m", "forecast_platform.cli", "demo", "--data-dir", str(data),
         *DEMO_ARGS],
        env=user_env(), capture_output=True, text=True, timeout=600,
    )
    return data, done


def copy_world(world: Settings, settings: Settings, landing: bool = True) -> None:
    """``world``'s warehouse (and its landing files, unless ``landing`` is false) into the
    empty data directory of ``settings``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    assert not settings.warehouse_path.exists()
    shutil.copyfile(world.warehouse_path, settings.warehouse_path)
    if landing:
        shutil.copytree(world.landing_root, settings.landing_root)


def range_tags(start: dt.date | str, end: dt.date | str) -> dict[str, str]:
    from forecast_platform.defs.automation import RANGE_END, RANGE_START

    return {RANGE_START: str(start), RANGE_END: str(end)}


def run_job(settings: Settings, start, end, job: str = "ingest_job", instance=None,
            run_config: dict | None = None):
    """Run a job of the real definitions (over a range when ``start`` is given), in process, on
    a real instance."""
    import dagster as dg

    from forecast_platform.definitions import build_definitions

    defs = build_definitions(settings)
    tags = range_tags(start, end) if start is not None else {}
    with nullcontext(instance or dg.DagsterInstance.ephemeral()) as inst:
        return defs.resolve_job_def(job).execute_in_process(
            instance=inst, tags=tags, run_config=run_config, raise_on_error=False
        )


def check_results(result) -> dict[str, object]:
    """Asset check evaluations of a run by 'asset.check' name."""
    return {
        f"{e.event_specific_data.asset_key.to_user_string()}.{e.event_specific_data.check_name}":
            e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def materialized(result) -> set[str]:
    return {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }


def metadata(result, asset: str) -> dict:
    """The metadata of ``asset``'s materialization in a run result; fails if there is none."""
    from forecast_platform.defs.metadata import run_metadata

    meta = run_metadata(result, asset)
    assert meta is not None, f"{asset} was not materialized"
    return meta
