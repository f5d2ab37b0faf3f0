"""Every setting of the platform in one typed place, and the only reader of the environment.

Everything the platform writes lives under one data directory, so two runs with different
``FORECAST_DATA_DIR`` never touch each other's files. Each setting is an environment variable
with an embedded default: ``dagster dev`` and the CLI work with no set-up, and PostgreSQL or a
remote MLflow server stay one variable away. The CLI builds ``Settings`` from its flags
(``load_settings(overrides=...)``) and hands them on; a child process it starts (``dagster
dev``, ``bentoml serve``) gets them back as variables from ``child_env``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATASET = "synthetic"
DEFAULT_BUNDLE_NAME = "forecast_bundle"
DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_LOCK_WAIT_SECONDS = 180.0
# Where the dashboard's what-if page finds the forecasting service (`forecast-platform serve`).
DEFAULT_SERVICE_URL = "http://127.0.0.1:3001"  # `serve`'s default; the Dagster UI has 3000
# How the forecaster's boosters are fitted: in the training process, or on a Dask cluster
# (forecasting/distributed.py) fed Parquet from FORECAST_HANDOFF_DIR.
TRAINING_ENGINES = ("local", "dask")
DEFAULT_DASK_WORKERS = 2
DEFAULT_DASK_CONNECT_SECONDS = 10.0
# DuckDB's own memory in a process that opens the warehouse (it spills to <warehouse>.tmp
# beyond it); DuckDB's default, 80 % of the machine, leaves pandas nothing beside a big query.
DEFAULT_DUCKDB_MEMORY_LIMIT = "6GB"

# Variable -> meaning, for error messages and the README's settings table (a test keeps the
# two equal).
VARIABLES = {
    "FORECAST_DATA_DIR": "everything the platform writes",
    "FORECAST_DATASET": "which dataset the code location serves",
    "FORECAST_SOURCE_DIR": "where a real dataset's source files are",
    "MLFLOW_TRACKING_URI": "experiment tracking store",
    "DAGSTER_HOME": "Dagster's own storage",
    "BENTOML_HOME": "the BentoML model store the serving bundle is packed into",
    "FORECAST_BUNDLE": "the serving bundle's BentoML model name",
    "FORECAST_MAX_BATCH": "most series in one service request",
    "FORECAST_MAX_BODY_BYTES": "largest service request body",
    "FORECAST_LOCK_WAIT_SECONDS": "how long a write waits for another process's hold on the "
                                  "warehouse",
    "FORECAST_API_KEY": "key every service API call must carry",
    "FORECAST_ADMIN_KEY": "key the service's /reload needs",
    "FORECAST_ALERT_WEBHOOK_URL": "alerts are POSTed here",
    "FORECAST_RETRAIN_COOLDOWN_MINUTES": "no automatic retrain within this long of the last",
    "FORECAST_SERVICE_URL": "the forecasting service the dashboard's what-if page calls",
    "FORECAST_TRAINING_ENGINE": "where the forecaster is fitted: local or dask",
    "FORECAST_DASK_SCHEDULER": "the Dask scheduler to train on (empty: a LocalCluster)",
    "FORECAST_DASK_WORKERS": "workers of the LocalCluster started when no scheduler is set",
    "FORECAST_DASK_CONNECT_SECONDS": "how long to wait for the Dask scheduler to answer",
    "FORECAST_HANDOFF_DIR": "where training features are written as Parquet for Dask workers",
    "FORECAST_DUCKDB_MEMORY_LIMIT": "DuckDB's memory in a process using the warehouse",
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    dataset: str
    source_dir: Path | None
    mlflow_tracking_uri: str
    dagster_home: Path
    # BENTOML_HOME when set explicitly; otherwise the BentoML store lives under the data dir.
    bentoml_dir: Path | None = None
    bundle_name: str = DEFAULT_BUNDLE_NAME
    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    api_key: str | None = None
    admin_key: str | None = None
    alert_webhook_url: str | None = None
    retrain_cooldown_minutes: float = 360.0
    service_url: str = DEFAULT_SERVICE_URL
    training_engine: str = "local"
    # A scheduler address (tcp://host:8786); None: the run starts a LocalCluster of
    # ``dask_workers`` processes on this machine and closes it afterwards.
    dask_scheduler: str | None = None
    dask_workers: int = DEFAULT_DASK_WORKERS
    dask_connect_seconds: float = DEFAULT_DASK_CONNECT_SECONDS
    # A folder or fsspec URL every Dask worker can read; None: <data dir>/handoff, which only
    # workers on this machine (the LocalCluster) can.
    handoff_dir: str | None = None
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def landing_root(self) -> Path:
        return self.data_dir / "landing"

    def landing_dir(self, dataset: str | None = None) -> Path:
        return self.landing_root / (dataset or self.dataset)

    def plans_dir(self, dataset: str | None = None) -> Path:
        """Where landed plan files are kept, one per plan version (planning/files.py)."""
        return self.data_dir / "plans" / (dataset or self.dataset)

    @property
    def dashboard_dir(self) -> Path:
        """Where the dashboard_snapshot asset publishes what the dashboard reads."""
        return self.data_dir / "dashboard"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def staging_dir(self) -> Path:
        """Scratch Parquet of assets that compute in blocks (warehouse/staging.py)."""
        return self.data_dir / "staging"

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

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.data_dir / "mlartifacts"

    @property
    def handoff_root(self) -> str:
        """Where the Dask engine writes each fit's Parquet (a path or an fsspec URL)."""
        return self.handoff_dir or str(self.data_dir / "handoff")

    def as_env(self) -> dict[str, str]:
        """These settings as the variables ``load_settings`` reads back to the same values."""
        env = {
            "FORECAST_DATA_DIR": str(self.data_dir),
            "FORECAST_DATASET": self.dataset,
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "DAGSTER_HOME": str(self.dagster_home),
            "BENTOML_HOME": str(self.bentoml_home),
            "FORECAST_BUNDLE": self.bundle_name,
            "FORECAST_MAX_BATCH": str(self.max_batch),
            "FORECAST_MAX_BODY_BYTES": str(self.max_body_bytes),
            "FORECAST_LOCK_WAIT_SECONDS": str(self.lock_wait_seconds),
            "FORECAST_RETRAIN_COOLDOWN_MINUTES": str(self.retrain_cooldown_minutes),
            "FORECAST_SERVICE_URL": self.service_url,
            "FORECAST_TRAINING_ENGINE": self.training_engine,
            "FORECAST_DASK_WORKERS": str(self.dask_workers),
            "FORECAST_DASK_CONNECT_SECONDS": str(self.dask_connect_seconds),
            "FORECAST_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
        }
        optional = {"FORECAST_SOURCE_DIR": self.source_dir, "FORECAST_API_KEY": self.api_key,
                    "FORECAST_ADMIN_KEY": self.admin_key,
                    "FORECAST_ALERT_WEBHOOK_URL": self.alert_webhook_url,
                    "FORECAST_DASK_SCHEDULER": self.dask_scheduler,
                    "FORECAST_HANDOFF_DIR": self.handoff_dir}
        env.update({k: str(v) for k, v in optional.items() if v})
        return env


def child_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process (``dagster dev``, ``bentoml serve``): this process's
    own (PATH, locale...) with the settings and ``extra`` on top, so the child resolves the
    very same settings without the parent ever writing its own environment."""
    return {**os.environ, **settings.as_env(), **(extra or {})}


def export_bentoml_home(settings: Settings) -> None:
    """Point this process's BentoML at ``settings.bentoml_home`` unless BENTOML_HOME is set.

    For the service alone, before it imports BentoML: BentoML reads its home only from the
    environment, and a ``bentoml serve`` started by hand with just FORECAST_DATA_DIR must serve
    that data directory's store, not ``~/bentoml``.
    """
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home))


def _number(env: Mapping[str, str], name: str, default: str, kind: type, example: str,
            minimum: float) -> float | int:
    raw = env.get(name) or default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a {kind.__name__} (e.g. {example})") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be >= {minimum:g}")
    return value


def _memory_limit(env: Mapping[str, str]) -> str:
    raw = (env.get("FORECAST_DUCKDB_MEMORY_LIMIT") or DEFAULT_DUCKDB_MEMORY_LIMIT).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", raw, re.IGNORECASE):
        raise ValueError(f"FORECAST_DUCKDB_MEMORY_LIMIT={raw!r} is not an amount of memory "
                         "(expected a number and a unit, e.g. 6GB or 512MiB)")
    return raw


def load_settings(env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, str | None] | None = None) -> Settings:
    """Read settings from ``env`` (default: the process environment), with ``overrides``
    (variable -> value, e.g. from command-line flags; None means "not given") on top.

    Paths are made absolute at load time so that a run's working directory cannot move files.
    """
    env = dict(os.environ if env is None else env)
    env.update({k: v for k, v in (overrides or {}).items() if v})
    data_dir = Path(env.get("FORECAST_DATA_DIR") or "data").expanduser().resolve()
    source = env.get("FORECAST_SOURCE_DIR")
    mlflow_uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir / 'mlflow.db'}"
    dagster_home = Path(env.get("DAGSTER_HOME") or data_dir / "dagster_home").expanduser().resolve()
    bentoml_home = env.get("BENTOML_HOME")
    return Settings(
        data_dir=data_dir,
        dataset=env.get("FORECAST_DATASET") or DEFAULT_DATASET,
        source_dir=Path(source).expanduser().resolve() if source else None,
        mlflow_tracking_uri=mlflow_uri,
        dagster_home=dagster_home,
        bentoml_dir=Path(bentoml_home).expanduser().resolve() if bentoml_home else None,
        bundle_name=env.get("FORECAST_BUNDLE") or DEFAULT_BUNDLE_NAME,
        max_batch=int(_number(env, "FORECAST_MAX_BATCH", str(DEFAULT_MAX_BATCH), int, "1000",
                              1)),
        max_body_bytes=int(_number(env, "FORECAST_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES),
                                   int, "1000000", 1024)),
        lock_wait_seconds=float(_number(env, "FORECAST_LOCK_WAIT_SECONDS",
                                        str(DEFAULT_LOCK_WAIT_SECONDS), float, "180", 0)),
        api_key=env.get("FORECAST_API_KEY") or None,
        admin_key=env.get("FORECAST_ADMIN_KEY") or None,
        alert_webhook_url=env.get("FORECAST_ALERT_WEBHOOK_URL") or None,
        retrain_cooldown_minutes=float(_number(env, "FORECAST_RETRAIN_COOLDOWN_MINUTES", "360",
                                               float, "360", 0)),
        service_url=(env.get("FORECAST_SERVICE_URL") or DEFAULT_SERVICE_URL).rstrip("/"),
        training_engine=_training_engine(env),
        duckdb_memory_limit=_memory_limit(env),
        dask_scheduler=(env.get("FORECAST_DASK_SCHEDULER") or "").strip() or None,
        dask_workers=int(_number(env, "FORECAST_DASK_WORKERS", str(DEFAULT_DASK_WORKERS), int,
                                 "2", 1)),
        dask_connect_seconds=float(_number(env, "FORECAST_DASK_CONNECT_SECONDS",
                                           str(DEFAULT_DASK_CONNECT_SECONDS), float, "10", 0.1)),
        handoff_dir=_handoff_dir(env.get("FORECAST_HANDOFF_DIR")),
    )


def _training_engine(env: Mapping[str, str]) -> str:
    raw = (env.get("FORECAST_TRAINING_ENGINE") or "local").strip()
    if raw.lower() not in TRAINING_ENGINES:
        raise ValueError(f"FORECAST_TRAINING_ENGINE={raw!r} is not one of "
                         f"{', '.join(TRAINING_ENGINES)}")
    return raw.lower()


def _handoff_dir(raw: str | None) -> str | None:
    """A local folder made absolute (a run's working directory must not move it); a URL
    (``s3://bucket/handoff``) as given, for fsspec."""
    if not raw:
        return None
    return raw if "://" in raw else str(Path(raw).expanduser().resolve())


def disable_telemetry() -> None:
    """Opt out of usage telemetry before a library that reports it (Evidently) is imported.

    Monitoring runs inside Dagster runs and sensors, often offline or behind a firewall: a
    library phoning home must not slow a report down or leak that it ran. Evidently checks
    ``DO_NOT_TRACK`` whenever it would report, so setting it before the import covers
    everything it does from then on; ``setdefault`` leaves a user's explicit choice alone.
    Kept here because only this module touches the environment.
    """
    os.environ.setdefault("DO_NOT_TRACK", "1")
