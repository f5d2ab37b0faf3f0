"""Forecast accuracy metrics as plain numpy functions, implemented once for the whole platform.

Each competition the platform benchmarks against scores differently (Kaggle Store Item Demand:
SMAPE; Rossmann: RMSPE; Walmart: holiday-weighted MAE), so every definition lives here, with the
edge cases (0/0 terms, zero actuals) decided once instead of per notebook. All functions take
array-likes, validate that they are non-empty and of equal length, and return a plain ``float``
so the results can go straight into asset metadata or MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike

WALMART_HOLIDAY_WEIGHT = 5.0
"""Weight of a holiday week in Walmart's WMAE (non-holiday points weigh 1)."""


def _as_arrays(*arrays: ArrayLike, names: Sequence[str]) -> list[np.ndarray]:
    """Convert to 1-D float arrays, refusing empty or mismatched inputs.

    A metric of nothing is undefined rather than 0 or NaN: failing loudly catches an empty
    holdout (e.g. a wrong date filter) before it is reported as a perfect score.
    """
    out = [np.asarray(a, dtype=float).ravel() for a in arrays]
    for name, arr in zip(names, out, strict=True):
        if arr.size == 0:
            raise ValueError(f"{name} is empty: a metric needs at least one point")
    sizes = {name: arr.size for name, arr in zip(names, out, strict=True)}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{n}={s}" for n, s in sizes.items())
        raise ValueError(f"inputs must have the same length, got {detail}")
    return out


def _nonzero_actuals(
    y_true: np.ndarray, y_pred: np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the points whose actual is non-zero: percentage errors are undefined at zero."""
    keep = y_true != 0
    if not keep.any():
        raise ValueError(f"{metric} is undefined: every actual value is zero")
    return y_true[keep], y_pred[keep]


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error, in the units of the target."""
    a, f = _as_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    return float(np.mean(np.abs(f - a)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error, in the units of the target."""
    a, f = _as_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    return float(np.sqrt(np.mean((f - a) ** 2)))


def smape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Symmetric MAPE in percent (0..200), the Kaggle Store Item Demand definition.

    Mean of ``200 * |F - A| / (|A| + |F|)``; a term where both actual and forecast are 0 counts
    as 0 (a perfect forecast of a zero), not NaN, exactly as Kaggle scored it.
    """
    a, f = _as_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    denom = np.abs(a) + np.abs(f)
    safe = np.where(denom == 0, 1.0, denom)
    terms = np.where(denom == 0, 0.0, 200.0 * np.abs(f - a) / safe)
    return float(np.mean(terms))


def mape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute percentage error in percent, over the points with a non-zero actual."""
    a, f = _as_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    a, f = _nonzero_actuals(a, f, "MAPE")
    return float(100.0 * np.mean(np.abs((f - a) / a)))


def rmspe(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared percentage error as a fraction (Rossmann), over non-zero actuals.

    Rossmann ignored days with zero sales (closed stores), so zero actuals are dropped rather
    than making the metric infinite.
    """
    a, f = _as_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    a, f = _nonzero_actuals(a, f, "RMSPE")
    return float(np.sqrt(np.mean(((a - f) / a) ** 2)))


def wmae(y_true: ArrayLike, y_pred: ArrayLike, is_holiday: ArrayLike) -> float:
    """Weighted MAE (Walmart): holiday points weigh 5, the others 1.

    ``is_holiday`` is a boolean array aligned with the points; the weights are derived here so
    every caller uses the competition's weight.
    """
    a, f, h = _as_arrays(y_true, y_pred, is_holiday, names=("y_true", "y_pred", "is_holiday"))
    w = np.where(h.astype(bool), WALMART_HOLIDAY_WEIGHT, 1.0)
    return float(np.sum(w * np.abs(a - f)) / np.sum(w))


def bias(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean error ``mean(F - A)``: positive means the forecast over-predicts."""
    a, f = _as_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    return float(np.mean(f - a))


def r2(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``.

    A constant actual has no variance to explain: the score is 1.0 for a perfect forecast and
    ``-inf`` otherwise, rather than a division-by-zero NaN.
    """
    a, f = _as_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    ss_res = float(np.sum((a - f) ** 2))
    ss_tot = float(np.sum((a - a.mean()) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else float("-inf")
    return 1.0 - ss_res / ss_tot


def coverage(y_true: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Share (0..1) of actuals inside the closed interval ``[lo, hi]``: checks P10-P90 bands."""
    a, low, high = _as_arrays(y_true, lo, hi, names=("y_true", "lo", "hi"))
    return float(np.mean((a >= low) & (a <= high)))


def point_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    is_holiday: ArrayLike | None = None,
    lo: ArrayLike | None = None,
    hi: ArrayLike | None = None,
) -> dict[str, float]:
    """Every metric at once, for asset metadata and model comparison.

    ``wmae`` uses ``is_holiday`` when given, else all weights are 1 (so it equals MAE).
    ``mape``/``rmspe`` are NaN when every actual is zero, instead of failing the whole report.
    ``coverage`` is present only when both ``lo`` and ``hi`` are given.
    """
    a, f = _as_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    holiday = np.zeros(a.size, dtype=bool) if is_holiday is None else is_holiday
    out: dict[str, float] = {
        "mae": mae(a, f),
        "rmse": rmse(a, f),
        "smape": smape(a, f),
        "mape": mape(a, f) if (a != 0).any() else float("nan"),
        "rmspe": rmspe(a, f) if (a != 0).any() else float("nan"),
        "wmae": wmae(a, f, holiday),
        "bias": bias(a, f),
        "r2": r2(a, f),
    }
    if (lo is None) != (hi is None):
        raise ValueError("coverage needs both lo and hi")
    if lo is not None and hi is not None:
        out["coverage"] = coverage(a, lo, hi)
    return out
