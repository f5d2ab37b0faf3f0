"""A real champion in a real warehouse, and a real ``bentoml serve``, for tests and benchmarks.

The serving tests and ``benchmarks/serving.py`` share it, so the benchmark measures exactly the
bundle and server the tests check (same feature SQL, same Forecaster, same subprocess), only
bigger. It is a library, not a test (no pytest), and core: the server is a subprocess, so
BentoML is never imported here. Materializing the anomaly assets on the warehouse is Dagster's
part, in ``defs/harness.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.datasets.synthetic import SyntheticConfig, generate_sales
from forecast_platform.features.offline import compute_features, load_sales
from forecast_platform.features.sql import plan_features
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.forecaster import (
    Forecaster,
    ForecasterParams,
    default_model_features,
)
from forecast_platform.settings import child_env, load_settings
from forecast_platform.warehouse.store import connect
from forecast_platform.warehouse.tables import FEATURES

SERVICE_DIR = Path(__file__).resolve().parents[2] / "bentos"
SERVICE_FILE = SERVICE_DIR / "service.py"
DEFAULT_METRICS = {"xgboost": {"smape": 0.2}, "seasonal_naive": {"smape": 0.3}}


def build_champion_warehouse(
    warehouse: Path, spec: DatasetSpec, model_name: str, *, n_stores: int, n_items: int,
    start: dt.date, end: dt.date, seed: int = 3, params: ForecasterParams | None = None,
    metrics: Mapping[str, Any] | None = None, mlflow_run_id: str | None = "run-123",
) -> Forecaster:
    """Synthetic ``validated_sales``, ``holiday_calendar``, ``sales_features`` and a promoted
    champion in DuckDB.

    The features come from the real feature SQL and the model is the real ``Forecaster``, so
    a bundle built from this warehouse is what the ``serving_bundle`` asset would pack after a
    real training run (only the backtest metrics are stand-ins). Returns the trained model.
    """
    params = params or ForecasterParams()
    plan = plan_features(spec)
    sales, _ = generate_sales(SyntheticConfig(n_stores=n_stores, n_items=n_items, start=start,
                                              end=end, seed=seed))
    sales = sales.drop(columns=["holiday"]).assign(
        date=lambda f: pd.to_datetime(f["date"]).dt.date,
        series_id=lambda f: f["store"].astype(str) + "|" + f["item"].astype(str),
    )
    with connect(warehouse) as con:
        load_sales(con, spec, sales, calendar=(start, end))
        # sales_features as the asset materializes it (the bundle serves its recent rows).
        compute_features(con, plan, start, end)
        frame = con.execute(f"SELECT * FROM {FEATURES} ORDER BY series_id, ds").df()
        features = default_model_features(plan.names, spec.frequency, list(spec.known))
        model = Forecaster(params, features, plan.horizon).fit(frame)
        changed = {k: v for k, v in vars(params).items() if v != getattr(ForecasterParams(), k)}
        version = registry.register(
            con, model_name=model_name, horizon=plan.horizon, train_start=start,
            train_end=end, features=features, params=changed,
            metrics=dict(metrics or DEFAULT_METRICS), model_bytes=model.to_bytes(),
            mlflow_run_id=mlflow_run_id)
        registry.decide(con, model_name, version, True, {"passed": True})
    return model


@dataclass(frozen=True)
class RunningServer:
    """A started ``bentoml serve``: its base URL and its process (the process group leader)."""

    url: str
    proc: subprocess.Popen


def free_port() -> int:
    """A free TCP port on loopback (the server binds it right after; races are unlikely)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def bentoml_server(env: Mapping[str, str], *, target: str = "service:ForecastService",
                   cwd: Path = SERVICE_DIR, port: int | None = None,
                   ready_timeout: float = 60.0, extra_args: Sequence[str] = (),
                   stderr_path: Path | None = None) -> Iterator[RunningServer]:
    """Run the real ``bentoml serve`` on 127.0.0.1; yield it once ready.

    ``env``: the variables to set on top of this process's environment. The child gets the
    settings they resolve to (``child_env``, as ``forecast-platform serve`` passes them), with
    ``env`` itself last, so an empty value there still unsets a variable of this process.
    By default the service of ``bentos/`` (as ``forecast-platform serve`` runs it); ``target``
    may also be a built bento's tag.

    The server runs in its own session (process group) so that the whole tree BentoML starts
    (arbiter, API workers) is terminated on exit, whatever happens in the body. Waits for
    ``/readyz``; a server that dies or never gets ready raises with the tail of its stderr.
    """
    port = port or free_port()
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    err = open(stderr_path, "wb") if stderr_path else subprocess.PIPE  # noqa: SIM115
    proc = subprocess.Popen(
        [str(bentoml_cli), "serve", target, "--host", "127.0.0.1", "--port", str(port),
         *extra_args],
        cwd=cwd, env=child_env(load_settings(env), env), stdout=subprocess.DEVNULL,
        stderr=err, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def tail() -> str:
        if stderr_path:
            return Path(stderr_path).read_text(errors="replace")[-3000:]
        return proc.stderr.read().decode(errors="replace")[-3000:] if proc.stderr else ""

    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {proc.returncode}:\n{tail()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not get ready in {ready_timeout:.0f} s")
            time.sleep(0.3)
        yield RunningServer(base, proc)
    finally:
        stop_group(proc)
        if stderr_path:
            err.close()


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    try:
        os.killpg(proc.pid, 15)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
