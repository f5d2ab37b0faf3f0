"""What the plan adds: each forecast with the plan against the same forecast with the plan's
covariates switched off, side by side, so a planner sees a promotion's lift before running it.

"Switched off" is the forecasts' own default, "nothing planned" (0, or NULL for a text code),
for the covariates asked (all the known ones unless told); the others keep their planned value,
so a plan with prices and promotions can show the promotions' lift alone.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.forecasting.closed import apply_closures
from forecast_platform.forecasting.forecaster import Forecaster


def switched_off(spec: DatasetSpec, rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The future feature ``rows`` with ``columns`` set to "nothing planned".

    Only valid when those covariates reach the model as their own pass-through columns
    (``features.sql.known_passthrough``); otherwise compute the rows again from SQL.
    """
    out = rows.copy()
    for column in columns:
        out[column] = None if column in spec.categories else 0
    return out


def plan_lift(model: Forecaster, spec: DatasetSpec, planned: pd.DataFrame,
              unplanned: pd.DataFrame, plan: pd.DataFrame, columns: list[str],
              origin: dt.date, forecaster_version: int) -> pd.DataFrame:
    """Per series and future date with a plan row: P50 with the plan, P50 with ``columns``
    off, and the difference; closed days stay 0 either way.

    ``planned`` and ``unplanned`` are the same future rows (same order) computed with and
    without the plan; ``plan`` the plan rows (ds, series_id, plan_version) in force.
    """
    with_plan = apply_closures(spec, planned, model.predict(planned))
    without = apply_closures(spec, unplanned, model.predict(unplanned))
    out = planned[["ds", "series_id", *spec.keys]].assign(
        ds=lambda f: pd.to_datetime(f["ds"]),
        p50_plan=with_plan["p50"].to_numpy(), p50_unplanned=without["p50"].to_numpy(),
        p90_plan=with_plan["p90"].to_numpy(), is_open=with_plan["is_open"].to_numpy())
    out["lift"] = out["p50_plan"] - out["p50_unplanned"]
    versions = plan[["ds", "series_id", "plan_version", *[c for c in columns if c in plan]]]
    versions = versions.assign(ds=lambda f: pd.to_datetime(f["ds"]))
    out = out.merge(versions.rename(columns={c: f"planned_{c}" for c in columns}),
                    on=["ds", "series_id"], how="inner")
    return out.assign(origin=origin, forecaster_version=forecaster_version,
                      switched_off=", ".join(columns), created_at=dt.datetime.now())


def lift_by_date(lift: pd.DataFrame) -> pd.DataFrame:
    """Totals per date of a selection of ``plan_lift`` rows: what a planner reads."""
    if lift.empty:
        return pd.DataFrame(columns=["ds", "series", "p50_plan", "p50_unplanned", "lift",
                                     "lift_pct"])
    out = lift.groupby("ds", as_index=False).agg(
        series=("series_id", "nunique"), p50_plan=("p50_plan", "sum"),
        p50_unplanned=("p50_unplanned", "sum"), lift=("lift", "sum"))
    base = out["p50_unplanned"].where(out["p50_unplanned"] > 0)
    out["lift_pct"] = (100 * out["lift"] / base).round(1)
    return out
