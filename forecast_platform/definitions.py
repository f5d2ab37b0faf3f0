"""The code location: every asset, check, job, sensor and schedule of the configured dataset.

``dagster dev`` (through workspace.yaml) imports ``defs``, built from the environment; the CLI
and tests call ``build_definitions`` with the settings they resolved, so each gets its own
warehouse. Settings and the dataset spec are resolved here once and handed down.
"""

from __future__ import annotations

import dagster as dg

from forecast_platform.defs.anomalies import build_anomaly_assets
from forecast_platform.defs.automation import build_landing_sensors, build_schedules
from forecast_platform.defs.dashboard import build_dashboard_assets, build_dashboard_sensor
from forecast_platform.defs.dask_cluster import DaskCluster
from forecast_platform.defs.features import build_feature_assets
from forecast_platform.defs.forecasting import build_forecasting_assets
from forecast_platform.defs.ingestion import build_ingestion_assets
from forecast_platform.defs.jobs import build_jobs
from forecast_platform.defs.monitoring import build_monitoring_assets
from forecast_platform.defs.monitoring_sensors import build_monitoring_sensors
from forecast_platform.defs.planning import build_planning_assets
from forecast_platform.defs.resources import Platform
from forecast_platform.defs.serving import build_serving_assets
from forecast_platform.defs.tracking import mlflow_resource
from forecast_platform.settings import Settings, load_settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    platform = Platform.from_settings(settings or load_settings())
    spec = platform.spec
    jobs = build_jobs(spec)
    return dg.Definitions(
        assets=[
            *build_ingestion_assets(spec),
            *build_feature_assets(spec),
            *build_forecasting_assets(spec),
            *build_planning_assets(spec),
            *build_anomaly_assets(spec),
            *build_serving_assets(spec),
            *build_monitoring_assets(spec),
            *build_dashboard_assets(spec),
        ],
        jobs=jobs,
        sensors=[*build_landing_sensors(spec), *build_monitoring_sensors(jobs),
                 build_dashboard_sensor(jobs)],
        schedules=build_schedules(jobs),
        resources={"platform": platform, "mlflow": mlflow_resource,
                   "dask_cluster": DaskCluster(platform.settings)},
    )


defs = build_definitions()
