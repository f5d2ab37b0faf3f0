"""The Dagster half of the serving harness (``serving/harness.py``): the anomaly assets.

Tests and ``benchmarks/serving.py`` need a bundle with a real anomaly detector, and the only
faithful way to get one is to materialize the very assets that make it; that needs Dagster, so
it lives with the wiring.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import dagster as dg
import mlflow

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.anomalies import build_anomaly_assets
from forecast_platform.defs.dask_cluster import DaskCluster
from forecast_platform.defs.forecasting import build_forecasting_assets
from forecast_platform.defs.resources import Platform
from forecast_platform.defs.tracking import mlflow_resource
from forecast_platform.features.offline import compute_features
from forecast_platform.features.sql import plan_features
from forecast_platform.settings import Settings
from forecast_platform.warehouse.store import connect

ANOMALY_ASSETS = ("forecasts", "expected_sales", "anomaly_model")


def add_anomaly_detector(settings: Settings, spec: DatasetSpec, start: dt.date, end: dt.date,
                         config: Mapping[str, Any] | None = None) -> None:
    """``sales_features`` of ``start..end``, then the real ``forecasts``, ``expected_sales`` and
    ``anomaly_model`` assets, materialized on a champion warehouse
    (``serving.harness.build_champion_warehouse``). ``config``: the ``anomaly_model`` asset's
    run config (``AnomalyConfig`` fields).

    After this the warehouse holds what ``sales_anomalies`` and the ``serving_bundle`` read
    for anomaly scoring: out-of-sample expectations, the champion's forward forecasts and a
    promoted detector (tracked in the data directory's own MLflow store).
    """
    plan = plan_features(spec)
    with connect(settings.warehouse_path) as con:
        compute_features(con, plan, start, end)
    assets = [a for a in [*build_forecasting_assets(spec), *build_anomaly_assets(spec)]
              if a.key.to_user_string() in ANOMALY_ASSETS]
    try:
        result = dg.materialize(
            assets, resources={"platform": Platform.from_settings(settings),
                               "mlflow": mlflow_resource,
                               "dask_cluster": DaskCluster(settings)},
            run_config={"ops": {"anomaly_model": {"config": dict(config)}}} if config else None)
    finally:
        # dagster-mlflow leaves its run open outside a job (no end-of-run hook here).
        while mlflow.active_run() is not None:
            mlflow.end_run()
    if not result.success:
        raise RuntimeError(f"materializing {ANOMALY_ASSETS} failed")
