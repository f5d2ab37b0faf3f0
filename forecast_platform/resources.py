"""Resources: where the platform's files are and which dataset it serves.

The DuckDB warehouse path derives from the data directory, so a test or a second deployment
points everything elsewhere by changing one value.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.settings import Settings, load_settings


class PlatformResource(dg.ConfigurableResource):
    """The platform's settings as a Dagster resource (editable per run in the Launchpad)."""

    data_dir: str
    dataset: str
    source_dir: str | None = None
    mlflow_tracking_uri: str | None = None
    bentoml_home: str | None = None  # an explicit BENTOML_HOME; default <data_dir>/bentoml
    alert_webhook_url: str | None = None  # FORECAST_ALERT_WEBHOOK_URL
    retrain_cooldown_minutes: float = 360.0  # FORECAST_RETRAIN_COOLDOWN_MINUTES

    @classmethod
    def from_settings(cls, settings: Settings) -> PlatformResource:
        return cls(
            data_dir=str(settings.data_dir),
            dataset=settings.dataset,
            source_dir=str(settings.source_dir) if settings.source_dir else None,
            mlflow_tracking_uri=settings.mlflow_tracking_uri,
            bentoml_home=str(settings.bentoml_dir) if settings.bentoml_dir else None,
            alert_webhook_url=settings.alert_webhook_url,
            retrain_cooldown_minutes=settings.retrain_cooldown_minutes,
        )

    @property
    def settings(self) -> Settings:
        env = {"FORECAST_DATA_DIR": self.data_dir, "FORECAST_DATASET": self.dataset}
        if self.source_dir:
            env["FORECAST_SOURCE_DIR"] = self.source_dir
        if self.mlflow_tracking_uri:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_tracking_uri
        if self.bentoml_home:
            env["BENTOML_HOME"] = self.bentoml_home
        if self.alert_webhook_url:
            env["FORECAST_ALERT_WEBHOOK_URL"] = self.alert_webhook_url
        env["FORECAST_RETRAIN_COOLDOWN_MINUTES"] = str(self.retrain_cooldown_minutes)
        return load_settings(env)

    @property
    def spec(self) -> DatasetSpec:
        return get_spec(self.dataset)

    @property
    def warehouse_path(self) -> Path:
        return self.settings.warehouse_path

    @property
    def landing_dir(self) -> Path:
        return self.settings.landing_dir()
