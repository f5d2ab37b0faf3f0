"""Resources: the settings and dataset spec the code location was built with, and MLflow.

``platform`` is a plain object, not a configurable resource: the partitions, assets and jobs
were built for one dataset and one data directory, so a Launchpad edit of either could only
disagree with them. To serve another, start the code location with other settings.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from forecast_platform.datasets.registry import get_spec
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.settings import Settings
from forecast_platform.warehouse.store import connect


@dataclass(frozen=True)
class Platform:
    """Settings resolved once, and the dataset spec they name."""

    settings: Settings
    spec: DatasetSpec

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        return cls(settings, get_spec(settings.dataset, settings.datasets_dir))

    @property
    def warehouse_path(self) -> Path:
        return self.settings.warehouse_path

    def connect(self, read_only: bool = False, log: Callable[[str], None] | None = None
                ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """The warehouse, waiting up to the settings' lock wait for another process's hold
        (``log`` hears who holds it: pass the run's ``context.log.warning``)."""
        return connect(self.warehouse_path, read_only, self.settings.lock_wait_seconds, log,
                       self.settings.duckdb_memory_limit)

    @property
    def landing_dir(self) -> Path:
        return self.settings.landing_dir()


PlatformResource = dg.ResourceParam[Platform]
