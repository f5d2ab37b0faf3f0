"""Every setting of the platform in one typed place.

Everything the platform writes lives under one data directory, so two runs with different
``FORECAST_DATA_DIR`` never touch each other's files. Each setting is an environment variable
with an embedded default: ``dagster dev`` and the CLI work with no set-up, and PostgreSQL or a
remote MLflow server stay one variable away.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATASET = "synthetic"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    dataset: str
    source_dir: Path | None
    mlflow_tracking_uri: str
    dagster_home: Path
    # BENTOML_HOME when set explicitly; otherwise the BentoML store lives under the data dir.
    bentoml_dir: Path | None = None
    # FORECAST_ALERT_WEBHOOK_URL: alerts are POSTed here (Slack-compatible JSON) when set.
    alert_webhook_url: str | None = None
    # FORECAST_RETRAIN_COOLDOWN_MINUTES: no automatic retrain within this long of the last one.
    retrain_cooldown_minutes: float = 360.0

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def landing_root(self) -> Path:
        return self.data_dir / "landing"

    def landing_dir(self, dataset: str | None = None) -> Path:
        return self.landing_root / (dataset or self.dataset)

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def prediction_log_dir(self) -> Path:
        return self.data_dir / "prediction_log"

    @property
    def bentoml_home(self) -> Path:
        """The BentoML home (model store, bentos) for the serving bundle.

        Under the data directory unless ``BENTOML_HOME`` is set, so a test or a second
        deployment never serves another one's models from ``~/bentoml``.
        """
        return self.bentoml_dir or self.data_dir / "bentoml"

    @property
    def alerts_spool_dir(self) -> Path:
        """Alerts raised by sensors, waiting for a run to record them (monitoring/spool.py)."""
        return self.data_dir / "alerts"

    @property
    def datasets_dir(self) -> Path:
        """User dataset specs (YAML) written by ``forecast-platform init-dataset``."""
        return self.data_dir / "datasets"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: the process environment).

    Paths are made absolute at load time so that a run's working directory cannot move files.
    """
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("FORECAST_DATA_DIR") or "data").expanduser().resolve()
    source = env.get("FORECAST_SOURCE_DIR")
    mlflow_uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir / 'mlflow.db'}"
    dagster_home = Path(env.get("DAGSTER_HOME") or data_dir / "dagster_home").expanduser().resolve()
    bentoml_home = env.get("BENTOML_HOME")
    cooldown = env.get("FORECAST_RETRAIN_COOLDOWN_MINUTES") or "360"
    try:
        cooldown_minutes = float(cooldown)
    except ValueError:
        raise ValueError(f"FORECAST_RETRAIN_COOLDOWN_MINUTES={cooldown!r} is not a number of "
                         "minutes (e.g. 360)") from None
    if cooldown_minutes < 0:
        raise ValueError(f"FORECAST_RETRAIN_COOLDOWN_MINUTES={cooldown!r} must be >= 0")
    return Settings(
        data_dir=data_dir,
        dataset=env.get("FORECAST_DATASET") or DEFAULT_DATASET,
        source_dir=Path(source).expanduser().resolve() if source else None,
        mlflow_tracking_uri=mlflow_uri,
        dagster_home=dagster_home,
        bentoml_dir=Path(bentoml_home).expanduser().resolve() if bentoml_home else None,
        alert_webhook_url=env.get("FORECAST_ALERT_WEBHOOK_URL") or None,
        retrain_cooldown_minutes=cooldown_minutes,
    )
