"""Faults injected into Dask workers by the tests, in a module of its own: a worker process
unpickles the callback by importing this module, which must stay light (no Dagster, no pytest).
"""

from __future__ import annotations

import os
import signal

import xgboost as xgb


class KillWorkerAt(xgb.callback.TrainingCallback):
    """SIGKILL the worker process of collective rank ``rank`` after boosting round ``epoch``:
    a machine lost mid-fit, deterministic (no race with a timer)."""

    def __init__(self, epoch: int = 3, rank: int = 1) -> None:
        super().__init__()
        self.epoch, self.rank = epoch, rank

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        if epoch == self.epoch and xgb.collective.get_rank() == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)
        return False
