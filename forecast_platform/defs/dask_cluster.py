"""The Dask cluster resource: where the forecaster's boosters are fitted when the settings say
``FORECAST_TRAINING_ENGINE=dask`` (see forecasting/distributed.py).

A plain object, like ``platform``: which cluster a code location trains on is deployment, set by
environment variables, not a Launchpad edit. It opens nothing by itself: the ``forecaster`` asset
asks for a client (or an engine) around its training only, so a ``LocalCluster`` lives exactly
as long as the fits and is closed, client first, before MLflow and the registry are written.
With the default engine (``local``) it is never touched and nothing Dask-related starts.

The cluster never sees the warehouse: the run reads DuckDB as always (one writer) and hands the
fits' rows over as Parquet under ``FORECAST_HANDOFF_DIR``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import dagster as dg
import distributed

from forecast_platform.forecasting.distributed import DaskEngine, dask_client
from forecast_platform.forecasting.engine import LOCAL, FitEngine
from forecast_platform.settings import Settings


class _Log(Protocol):
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class DaskCluster:
    """The settings' Dask cluster: ``FORECAST_DASK_SCHEDULER``'s, or a ``LocalCluster`` of
    ``FORECAST_DASK_WORKERS`` processes started per use."""

    settings: Settings

    @property
    def enabled(self) -> bool:
        """Whether the forecaster trains on Dask (``FORECAST_TRAINING_ENGINE=dask``)."""
        return self.settings.training_engine == "dask"

    @property
    def description(self) -> str:
        """Where training runs, for logs, MLflow and the asset's metadata."""
        s = self.settings
        if not self.enabled:
            return "local"
        return f"dask ({s.dask_scheduler or f'LocalCluster of {s.dask_workers} workers'})"

    @contextmanager
    def client(self) -> Iterator[distributed.Client]:
        """A ``distributed.Client`` of the configured cluster, closed on exit; fails within
        ``FORECAST_DASK_CONNECT_SECONDS`` naming a scheduler address that does not answer."""
        s = self.settings
        with dask_client(s.dask_scheduler, workers=s.dask_workers,
                         connect_seconds=s.dask_connect_seconds) as client:
            yield client

    @contextmanager
    def engine(self, log: _Log) -> Iterator[FitEngine]:
        """The engine the settings choose: this process, or ``xgboost.dask`` on the cluster."""
        if not self.enabled:
            yield LOCAL
            return
        s = self.settings
        if s.dask_scheduler and s.handoff_dir is None:
            log.warning(
                f"training on the Dask cluster at {s.dask_scheduler} with the Parquet hand-off "
                f"in {s.handoff_root}, under the data directory: remote workers can read it only "
                "if it is shared with them; set FORECAST_HANDOFF_DIR to a shared path or an "
                "object-store URL")
        log.info(f"training on {self.description}; Parquet hand-off under {s.handoff_root}")
        with self.client() as client:
            yield DaskEngine(client, s.handoff_root)


DaskClusterResource = dg.ResourceParam[DaskCluster]
