"""The code location: every asset, check, job and sensor of the configured dataset.

``dagster dev`` (through workspace.yaml) imports ``defs``; tests call ``build_definitions`` with
their own settings so each test gets its own warehouse.
"""

from __future__ import annotations

import dagster as dg

from forecast_platform.assets.anomalies import build_anomaly_assets
from forecast_platform.assets.features import build_feature_assets
from forecast_platform.assets.forecasting import build_forecasting_assets
from forecast_platform.assets.ingest import build_ingest_assets
from forecast_platform.assets.monitoring import build_monitoring_assets
from forecast_platform.assets.serving import build_serving_assets
from forecast_platform.assets.validate import build_validate_assets
from forecast_platform.datasets.registry import get_spec
from forecast_platform.jobs import build_jobs
from forecast_platform.monitoring_sensors import build_monitoring_sensors
from forecast_platform.resources import PlatformResource
from forecast_platform.schedules import build_schedules
from forecast_platform.sensors import build_sensors
from forecast_platform.settings import Settings, load_settings
from forecast_platform.tracking import mlflow_resource


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    spec = get_spec(settings.dataset)
    jobs = build_jobs(spec)
    return dg.Definitions(
        assets=[
            *build_ingest_assets(spec),
            *build_validate_assets(spec),
            *build_feature_assets(spec),
            *build_forecasting_assets(spec),
            *build_anomaly_assets(spec),
            *build_serving_assets(spec),
            *build_monitoring_assets(spec),
        ],
        jobs=jobs,
        sensors=[*build_sensors(spec), *build_monitoring_sensors(jobs)],
        schedules=build_schedules(jobs),
        resources={
            "platform": PlatformResource.from_settings(settings),
            "mlflow": mlflow_resource,
        },
    )


defs = build_definitions()
