"""Model-quality figures for planners, computed from a snapshot's registry, backtest and
forecasts: pure functions over DataFrames, so the page only lays them out and tests call them
directly.

Why these figures: a planner trusts a forecast when it beats the simple rule they would use
otherwise (the seasonal naive: "same day last week"), when its error is known where they act
(by horizon: the lead time; by store), when its bias is small (a biased forecast builds or
starves stock), and when its band means what it says (P10-P90 should hold 80 % of actuals).
The safety-stock view turns the quantiles into stock at a service level, and says how that
service level held up on the backtest, because an over-confident band under-stocks.
"""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pandas as pd

from forecast_platform.dashboard.extract import KEY_SEP

MODEL = "model"
Z90 = NormalDist().inv_cdf(0.9)  # P90 - P50 of a normal distribution, in standard deviations
NOMINAL_COVERAGE = 0.8  # P10-P90


def forecaster_versions(registry: pd.DataFrame, model_name: str, metric: str) -> pd.DataFrame:
    """Every version of the forecaster, newest first: status, window, trigger, its backtest
    score on the metric of record and the gate's reasons."""
    rows = registry[registry["model_name"] == model_name] if len(registry) else registry
    out = []
    for r in rows.itertuples(index=False):
        metrics = json.loads(r.metrics) if r.metrics else {}
        gate = json.loads(r.gate) if r.gate else {}
        out.append({"version": int(r.version), "status": r.status,
                    "created_at": r.created_at, "train_window": f"{r.train_start} .. "
                                                                f"{r.train_end}",
                    "trigger": r.trigger, metric: metrics.get(MODEL, {}).get(metric),
                    "gate": "; ".join(gate.get("reasons", [])),
                    "mlflow_run_id": r.mlflow_run_id})
    frame = pd.DataFrame(out)
    return frame.sort_values("version", ascending=False).reset_index(drop=True) \
        if len(frame) else frame


def backtest_table(metrics_json: str | None) -> pd.DataFrame:
    """A registry row's backtest metrics, one row per method (model first)."""
    metrics = json.loads(metrics_json) if metrics_json else {}
    frame = pd.DataFrame.from_dict(metrics, orient="index")
    frame.index.name = "method"
    return frame.reset_index()


def seasonal_naive(methods: list[str]) -> str | None:
    """The seasonal-naive baseline with the shortest season ("same day last week" for daily
    data): the rule a planner would otherwise use."""
    found = [m for m in methods if m.startswith("seasonal_naive_")]
    return min(found, key=lambda m: int(m.rsplit("_", 1)[1])) if found else None


def value_added(backtest: pd.DataFrame, baseline: str,
                metrics: tuple[str, ...] = ("mae", "rmse", "smape", "wmae")) -> pd.DataFrame:
    """Forecast value added over ``baseline``: ``1 - model / baseline`` per metric (0.2 = the
    model's error is 20 % lower)."""
    table = backtest.set_index("method")
    rows = []
    for m in metrics:
        if m in table.columns and MODEL in table.index and baseline in table.index:
            model, base = float(table.loc[MODEL, m]), float(table.loc[baseline, m])
            rows.append({"metric": m, "model": model, baseline: base,
                         "value_added": 1 - model / base if base else float("nan")})
    return pd.DataFrame(rows)


def _errors(points: pd.DataFrame) -> pd.DataFrame:
    return points.assign(err=points["forecast"] - points["y"],
                         abs_err=(points["forecast"] - points["y"]).abs(),
                         inside=(points["y"] >= points["p10"]) & (points["y"] <= points["p90"]))


def _summary(g: pd.DataFrame) -> pd.Series:
    denom = g["y"].abs().sum()
    return pd.Series({"points": len(g), "mae": g["abs_err"].mean(), "bias": g["err"].mean(),
                      "wape": g["abs_err"].sum() / denom if denom else float("nan")})


def accuracy_by(points: pd.DataFrame, by: str, methods: list[str]) -> pd.DataFrame:
    """MAE, bias (mean forecast - actual) and WAPE per value of ``by`` and method, plus the
    model's P10-P90 coverage; ``by`` is "step" (the horizon) or a key column."""
    data = _errors(points[points["method"].isin(methods)])
    out = (data.groupby([by, "method"], sort=True)[["y", "err", "abs_err"]]
           .apply(_summary).reset_index())
    model = data[data["method"] == MODEL]
    if len(model):
        cover = model.groupby(by)["inside"].mean().rename("coverage_p10_p90").reset_index()
        out = out.merge(cover.assign(method=MODEL), on=[by, "method"], how="left")
    return out


def with_keys(points: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Backtest points with one column per key, split from ``series_id``."""
    parts = points["series_id"].str.split(KEY_SEP, n=len(keys) - 1, expand=True)
    return points.assign(**{k: parts[i] for i, k in enumerate(keys)})


def coverage(points: pd.DataFrame) -> float:
    model = points[points["method"] == MODEL]
    if not len(model):
        return float("nan")
    return float(((model["y"] >= model["p10"]) & (model["y"] <= model["p90"])).mean())


def sigma(p10: pd.Series | np.ndarray, p90: pd.Series | np.ndarray) -> np.ndarray:
    """The standard deviation a P10-P90 band implies, read as a normal distribution."""
    return np.maximum(np.asarray(p90, dtype=float) - np.asarray(p10, dtype=float), 0) / (2 * Z90)


def service_level_on_backtest(points: pd.DataFrame, service_level: float) -> dict[str, float]:
    """How the quantile ``P50 + z * sigma`` at ``service_level`` held on the backtest.

    ``achieved``: the share of backtest actuals at or below it (what the stock would have
    covered, period by period). ``calibrated_z``: the multiplier that would have achieved the
    service level exactly, from the backtest's standardised errors; an over-confident band
    needs a larger one than the normal ``z``.
    """
    model = points[points["method"] == MODEL]
    s = sigma(model["p10"], model["p90"])
    ok = s > 0
    z = NormalDist().inv_cdf(service_level)
    if not ok.any():
        return {"z": z, "achieved": float("nan"), "calibrated_z": float("nan"), "points": 0}
    y, p50 = model["y"].to_numpy()[ok], model["forecast"].to_numpy()[ok]
    standardised = (y - p50) / s[ok]
    return {"z": z, "achieved": float(np.mean(standardised <= z)),
            "calibrated_z": float(np.quantile(standardised, service_level)),
            "points": int(ok.sum())}


def safety_stock(forecasts: pd.DataFrame, lead_time: int, z: float,
                 calibrated_z: float | None = None) -> pd.DataFrame:
    """Per series, the stock its quantiles imply to cover demand over the first ``lead_time``
    forecast periods at the multiplier ``z``.

    Demand over the lead time: the sum of the P50s; its spread: the periods' sigmas added in
    quadrature (independent periods). Safety stock = z x spread; stock to hold = demand +
    safety stock. With ``calibrated_z`` the same with the backtest's multiplier. Closed days
    (P10 = P90 = 0) add nothing.
    """
    if not len(forecasts):
        return pd.DataFrame()
    f = forecasts.sort_values(["series_id", "ds"])
    f = f[f.groupby("series_id").cumcount() < lead_time]
    f = f.assign(var=sigma(f["p10"], f["p90"]) ** 2)
    g = f.groupby("series_id", sort=True).agg(periods=("p50", "size"),
                                              lead_time_demand=("p50", "sum"),
                                              var=("var", "sum")).reset_index()
    spread = np.sqrt(g.pop("var"))
    g["spread"] = spread
    g["safety_stock"] = z * spread
    g["stock_to_hold"] = g["lead_time_demand"] + g["safety_stock"]
    if calibrated_z is not None and math.isfinite(calibrated_z):
        g["safety_stock_calibrated"] = calibrated_z * spread
        g["stock_to_hold_calibrated"] = g["lead_time_demand"] + g["safety_stock_calibrated"]
    return g
