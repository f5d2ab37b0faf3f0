"""Fitting the forecaster's boosters on a Dask cluster (``xgboost.dask``), fed Parquet.

The training process still reads the warehouse (DuckDB admits one writer, and a remote worker
cannot open the file anyway), builds the rows, labels and weights exactly as for a local fit
(``Forecaster.fit``), and hands them to the cluster as Parquet: one folder per fit under the
hand-off root, split into files that the workers read with ``dask.dataframe``. Every worker
must be able to read that root: the data directory for a ``LocalCluster`` on this machine, a
shared mount or an object-store URL (fsspec) for a real cluster.

On the cluster, ``DaskQuantileDMatrix`` sketches the same features with the same ``max_bin``
and ``xgboost.dask.train`` runs the same parameters for the same rounds. The sketch of a
distributed matrix is merged from the workers' sketches, so the booster is not bit-identical to
a local fit (and row subsampling draws differently): metrics agree, bytes do not. The booster
comes back to the training process and becomes an ordinary ``Forecaster``'s, so its residual
band, bytes, registry row, MLflow model and serving bundle are the local path's.

Failures are answers: a scheduler that does not answer, or answers something that is not a
Dask scheduler, raises ``DaskUnavailable`` naming the address within the connect timeout; a
worker that dies mid-fit makes XGBoost's collective fail at once on the survivors, and
``DistributedTrainingFailed`` names the worker that disappeared. Neither returns a model, so the
caller never registers a partial one; a booster with fewer rounds than asked is refused too.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import dask.dataframe as dd
import distributed
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb
import xgboost.dask  # explicit: "import xgboost" does not load its dask module
from xgboost.collective import Config as CollectiveConfig

log = logging.getLogger(__name__)

# Rows per Parquet file of a hand-off (~10 float32 columns: ~10 MB a file); at least one file
# per worker, so every worker holds data to sketch.
ROWS_PER_PART = 250_000
LABEL, WEIGHT = "label", "weight"
# XGBoost's collective waits this long for a peer before it gives up. A dead worker's sockets
# close at once, so this only bounds a peer that hangs without dying (a frozen machine). The
# same bound applies to the tracker, which xgboost.dask runs in a thread of the *scheduler's*
# process: after a failed fit it waits for the dead worker's goodbye, forever without a timeout
# (a thread and a socket leaked per failure on a long-lived scheduler).
COLLECTIVE_TIMEOUT_SECONDS = 600
# After a failed fit, how long to wait for the scheduler to notice a dead worker, to name it.
WORKER_LOSS_WAIT_SECONDS = 3.0


class DaskUnavailable(RuntimeError):
    """The Dask scheduler could not be reached (or is no Dask scheduler)."""


class DistributedTrainingFailed(RuntimeError):
    """A fit on the cluster failed; no booster was produced."""


def connect(address: str, timeout: float) -> distributed.Client:
    """A client of the scheduler at ``address``, or ``DaskUnavailable`` naming it after at most
    ``timeout`` seconds (the default would keep a run waiting 30 s, then say little)."""
    started = time.monotonic()
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except Exception as err:
        # Normally an OSError ("Timed out trying to connect"); but whatever listens on that port
        # may answer bytes that are no Dask message, and distributed then fails with anything
        # (a MemoryError decoding a bogus frame length was seen): all of them mean "no
        # scheduler there".
        waited = time.monotonic() - started
        raise DaskUnavailable(
            f"the Dask scheduler at {address} did not answer ({type(err).__name__}: "
            f"{_first_line(err)}) after {waited:.1f} s: check FORECAST_DASK_SCHEDULER, or leave "
            "it empty to train on a LocalCluster on this machine"
        ) from err


@contextmanager
def dask_client(address: str | None, *, workers: int = 2, connect_seconds: float = 10.0,
                processes: bool = True, threads_per_worker: int | None = None
                ) -> Iterator[distributed.Client]:
    """A client for one training run: of the scheduler at ``address``, or of a ``LocalCluster``
    of ``workers`` started here and closed afterwards (client first, then the cluster, so the
    shutdown does not log lost connections).

    ``processes=True`` is what a real cluster is like (workers in other processes that only
    see the Parquet hand-off); threads share this process and suit quick checks.
    """
    if address:
        client = connect(address, connect_seconds)
        try:
            yield client
        finally:
            client.close()
        return
    # No dashboard, and the scheduler's HTTP endpoints (health, metrics) on a free port: the
    # default, 8787, is taken by any other cluster on the machine, which earns a warning.
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                  processes=processes, dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": ":0"},
                                  silence_logs=logging.ERROR) as cluster:
        client = distributed.Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()


def scheduler_address(client: distributed.Client) -> str:
    return str(client.scheduler.address)


def workers_of(client: distributed.Client) -> set[str]:
    return set(client.scheduler_info(n_workers=-1).get("workers", {}))


def write_handoff(root: str, x: np.ndarray, label: np.ndarray, weight: np.ndarray | None,
                  parts: int) -> str:
    """Write one fit's rows as ``parts`` Parquet files in a new folder under ``root`` (a path or
    an fsspec URL) and return the folder's URL. Columns: ``f0..f{n-1}`` (the forecaster's
    feature order, which are also XGBoost's default names), ``label`` and maybe ``weight``."""
    fs, base = fsspec.core.url_to_fs(root)
    folder = f"{base.rstrip('/')}/fit-{uuid.uuid4().hex}"
    fs.makedirs(folder, exist_ok=True)
    columns = {f"f{i}": x[:, i] for i in range(x.shape[1])}
    columns[LABEL] = np.asarray(label, dtype=np.float32)
    if weight is not None:
        columns[WEIGHT] = np.asarray(weight, dtype=np.float32)
    table = pa.table(columns)
    bounds = np.linspace(0, len(x), parts + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        with fs.open(f"{folder}/part-{i:05d}.parquet", "wb") as handle:
            pq.write_table(table.slice(lo, hi - lo), handle)
    return fs.unstrip_protocol(folder)


def remove_handoff(url: str) -> None:
    """Delete a fit's folder; a failure to clean up is logged, never raised over the fit's own
    outcome."""
    fs, path = fsspec.core.url_to_fs(url)
    try:
        fs.rm(path, recursive=True)
    except OSError as err:
        log.warning("could not remove the training hand-off %s: %s", url, err)


@dataclass
class DaskEngine:
    """Fits boosters with ``xgboost.dask`` on ``client``'s cluster (see the module docstring).

    ``callbacks``: XGBoost training callbacks run on every worker (progress reporting; the tests
    use one to kill a worker mid-fit).
    """

    client: distributed.Client
    handoff_root: str
    rows_per_part: int = ROWS_PER_PART
    callbacks: Sequence[xgb.callback.TrainingCallback] = field(default=(), repr=False)
    collective_timeout: int = COLLECTIVE_TIMEOUT_SECONDS
    name: str = "dask"

    @property
    def address(self) -> str:
        return scheduler_address(self.client)

    def train(self, params: dict, x: np.ndarray, label: np.ndarray, rounds: int, *,
              weight: np.ndarray | None = None, max_bin: int = 256, nthread: int = 0
              ) -> xgb.Booster:
        before = workers_of(self.client)
        if not before:
            raise DistributedTrainingFailed(f"the Dask cluster at {self.address} has no workers")
        parts = max(len(before), math.ceil(len(x) / self.rows_per_part))
        url = write_handoff(self.handoff_root, x, label, weight, parts)
        # xgboost.dask looks the client up as "the current one": make ours current for the
        # fit rather than the process's default (a run must not change the process's state).
        try:
            out = self._fit(url, params, rounds, weighted=weight is not None, max_bin=max_bin)
        except Exception as err:
            # Whatever the cluster raised (XGBoostError from the collective, KilledWorker,
            # CommClosedError, a cancelled future): the fit produced no model. Say where, and
            # which worker vanished when one did.
            raise self._failure(err, before) from err
        finally:
            remove_handoff(url)
        booster: xgb.Booster = out["booster"]
        if booster.num_boosted_rounds() != rounds:
            raise DistributedTrainingFailed(
                f"the Dask cluster at {self.address} returned a booster of "
                f"{booster.num_boosted_rounds()} rounds instead of {rounds}: refused")
        # As a local fit's booster: no feature names (it was trained on bare arrays: the
        # forecaster maps f0.. to its features), and this process's threads for predictions.
        booster.feature_names = None
        booster.set_param({"nthread": nthread})
        return booster

    def _fit(self, url: str, params: dict, rounds: int, *, weighted: bool, max_bin: int
             ) -> dict:
        # xgboost.dask looks the client up as "the current one": ours is made current for the
        # fit only, not the process's default (a run must not change the process's state).
        with self.client.as_current():
            # Read every column into the workers' memory first: projected straight from the
            # files, dask would fuse the narrow label's files into fewer partitions than the
            # features', and XGBoost needs them aligned. The matrix would hold them anyway.
            frame = self.client.persist(dd.read_parquet(url))
            features = [c for c in frame.columns if c not in (LABEL, WEIGHT)]
            dtrain = xgboost.dask.DaskQuantileDMatrix(
                self.client, frame[features], frame[LABEL],
                weight=frame[WEIGHT] if weighted else None, max_bin=max_bin)
            # Each worker uses its own threads (xgboost.dask sets them); this process's
            # nthread means nothing there.
            remote = {k: v for k, v in params.items() if k not in ("nthread", "n_jobs")}
            return xgboost.dask.train(
                self.client, remote, dtrain, num_boost_round=rounds, verbose_eval=False,
                callbacks=list(self.callbacks) or None,
                coll_cfg=CollectiveConfig(timeout=self.collective_timeout,
                                          tracker_timeout=self.collective_timeout))

    def _failure(self, err: BaseException, before: set[str]) -> DistributedTrainingFailed:
        lost: set[str] = set()
        deadline = time.monotonic() + WORKER_LOSS_WAIT_SECONDS
        while True:
            try:
                lost = before - workers_of(self.client)
            except Exception:  # the scheduler itself is gone: nothing more to learn from it
                break
            if lost or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        where = f"distributed training on the Dask cluster at {self.address} failed"
        cause = f"{type(err).__name__}: {_first_line(err)}"
        if lost:
            return DistributedTrainingFailed(
                f"{where}: worker {', '.join(sorted(lost))} died during the fit ({cause}). No "
                "model was produced or registered; run the training again (XGBoost cannot lose a "
                "worker mid-fit, so the fit is not resumed)")
        return DistributedTrainingFailed(f"{where} ({cause}); no model was produced")


# XGBoost's messages prefix every line with the time and a C++ source position.
_XGB_NOISE = re.compile(r"\[\d\d:\d\d:\d\d\]\s*\S+:\d+:\s*|\[[\w./]+:\d+\|[\d:]+\]:?\s*")


def _first_line(err: BaseException) -> str:
    """The informative start of an error: XGBoost's carry source positions and a C++ stack
    trace, which the run's message does not need."""
    lines = []
    for line in str(err).splitlines():
        if line.strip().startswith(("Stack trace", "[bt]")):
            break
        line = _XGB_NOISE.sub("", line).strip(" -;:")
        if line:
            lines.append(line)
    text = "; ".join(lines[:3]) if lines else repr(err)
    return text if len(text) <= 300 else text[:297] + "..."
