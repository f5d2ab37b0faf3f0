"""Where a forecaster's booster is fitted: in this process (the default) or elsewhere.

``Forecaster`` decides *what* to fit (rows, normalised label, weights, parameters, rounds) and
what to do with the booster afterwards (the residual band, the registry's bytes, predictions);
an engine only turns those arrays into a trained ``xgboost.Booster``. Keeping the seam that
narrow is what lets a Dask cluster (``forecasting/distributed.py``) train the very same recipe:
everything before and after the fit — the backtest's per-origin refits included — is shared
code, so the two paths can only differ by how XGBoost builds its histograms.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import xgboost as xgb


class FitEngine(Protocol):
    """Fits one booster; ``name`` is what MLflow and the asset's metadata record."""

    name: str

    def train(self, params: dict, x: np.ndarray, label: np.ndarray, rounds: int, *,
              weight: np.ndarray | None = None, max_bin: int = 256, nthread: int = 0
              ) -> xgb.Booster:
        """A booster trained for exactly ``rounds`` rounds on ``x`` (float32, columns in the
        forecaster's feature order), or an exception: never a partial model."""
        ...


class LocalEngine:
    """XGBoost in this process: a ``QuantileDMatrix`` and ``xgb.train``."""

    name = "local"

    def train(self, params: dict, x: np.ndarray, label: np.ndarray, rounds: int, *,
              weight: np.ndarray | None = None, max_bin: int = 256, nthread: int = 0
              ) -> xgb.Booster:
        dtrain = xgb.QuantileDMatrix(x, label=label, weight=weight, max_bin=max_bin,
                                     nthread=nthread)
        return xgb.train(params, dtrain, num_boost_round=rounds)


LOCAL = LocalEngine()
