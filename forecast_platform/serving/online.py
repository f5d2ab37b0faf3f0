"""Forecasts, explanations and anomaly scores from a loaded bundle.

Forecasts for "nothing planned" are lookups into the predictions the bundle was packed with
(``serving.snapshot``), so a request is an array lookup, not a query or a model call; a what-if
scenario reads its feature rows and predicts again over the rows it changes.
Requests are checked first (``serving.requests``), so bad input is a precise 4xx before any of
that runs.

Anomaly scores (``score_anomaly``) run the ``sales_anomalies`` asset's own core
(``context_features`` -> ``AnomalyDetector.score`` -> ``classify``, see ``serving.anomaly``) on
the context the bundle packed from the asset's own query: the same inputs give the asset's row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from forecast_platform.forecasting.closed import apply_closures, closed_mask
from forecast_platform.serving.anomaly import (
    Expected,
    NotScorable,
    expected_from_row,
    score_day,
)
from forecast_platform.serving.bundle import Bundle
from forecast_platform.serving.requests import (
    InvalidInput,
    NotAvailable,
    Resolved,
    Served,
    UnknownSeries,
)
from forecast_platform.serving.snapshot import Scenario, Snapshot, load_anomaly

DEFAULT_MAX_BATCH = 1000
DEFAULT_TOP = 5


class OnlineModel:
    """Features, forecasts, explanations and anomaly scores for one loaded bundle."""

    def __init__(self, bundle: Bundle, max_batch: int = DEFAULT_MAX_BATCH,
                 memory_limit: str | None = None):
        self.bundle = bundle
        self.spec = bundle.spec
        self.plan = bundle.plan
        self.windows = bundle.windows
        self.model = bundle.forecaster
        self.max_batch = max_batch
        self.snapshot = snap = Snapshot(bundle, memory_limit)
        self.passthrough = snap.passthrough
        self.series_ids = snap.series_ids
        self.dates = snap.dates
        self.served = Served(self.spec, self.plan.horizon, self.windows.origin,
                             self.windows.future_start, snap.dates, snap.series_index)
        # Predicted at build time with the closure rules applied (is_open false and every
        # quantile 0 on a closed day, whatever the model or a scenario says), as offline.
        self.p10, self.p50, self.p90, self.closed = snap.p10, snap.p50, snap.p90, snap.closed
        self.detector, self.anomaly_context, self.anomaly_missing = load_anomaly(bundle)

    # -- features ---------------------------------------------------------------------------
    def features(self, series: Sequence[Mapping[str, Any]], dates: Sequence[dt.date],
                 scenario: Mapping[Any, Mapping[str, Any]] | None = None,
                 exact: bool = False) -> pd.DataFrame:
        """Feature rows of the series (by keys) and dates, with a scenario applied.

        ``exact`` recomputes them through the SQL instead of the precomputed rows.
        """
        snap, served = self.snapshot, self.served
        resolved = [served.resolve(s, f"series[{i}]") for i, s in enumerate(series)]
        date_pos = [served.date_position(d, "dates") for d in dates]
        plan = served.parse_scenario(scenario, self.dates[-1])
        if exact or (plan and not self.passthrough):
            return snap.exact_rows([r.series_id for r in resolved],
                                   [self.dates[p] for p in date_pos], plan)
        idx = snap.rows_for([r.position for r in resolved], date_pos)
        if (idx < 0).any():
            raise UnknownSeries("no data for some of the requested series and dates", "dates")
        return snap.overlay(snap.frame(idx), plan)

    # -- endpoints ----------------------------------------------------------------------------
    def forecast(self, series: Sequence[Mapping[str, Any]], horizon: int | None = None,
                 scenario: Mapping[Any, Mapping[str, Any]] | None = None,
                 batch: bool = False) -> list[dict[str, Any]]:
        """P10/P50/P90 and ``is_open`` per series over the horizon: one vectorized lookup (or
        one predict). A closed day (the spec's closure rules) is ``is_open`` false with every
        quantile 0, as in the forecasts table; a scenario does not open it.

        ``batch`` names bad entries ``series[i]`` (a list) rather than ``series`` (one).
        """
        snap, served = self.snapshot, self.served
        field = "series"
        served.check_batch(series, self.max_batch, field)
        h = served.horizon_for(horizon)
        resolved = [served.resolve(s, f"{field}[{i}]" if batch else field)
                    for i, s in enumerate(series)]
        date_pos = list(range(snap.first_future, snap.first_future + h))
        plan = served.parse_scenario(scenario, self.dates[date_pos[-1]])
        idx = snap.rows_for([r.position for r in resolved], date_pos)
        if plan:
            frame = self.features(series, [self.dates[p] for p in date_pos], scenario) \
                if not self.passthrough else snap.overlay(snap.frame(idx), plan)
            # A scenario cannot open a closed day: the closure applies to its rows too.
            preds = apply_closures(self.spec, frame, self.model.predict(frame))
            p10, p50, p90 = (preds[c].to_numpy() for c in ("p10", "p50", "p90"))
            is_open = preds["is_open"].to_numpy()
        else:
            p10, p50, p90 = self.p10[idx], self.p50[idx], self.p90[idx]
            is_open = ~self.closed[idx]
        dates = snap.date_text[date_pos[0]:date_pos[-1] + 1]
        out = []
        for i, r in enumerate(resolved):
            sl = slice(i * h, (i + 1) * h)
            out.append({"series": r.keys, "series_id": r.series_id, "dates": dates,
                        "p10": p10[sl].tolist(), "p50": p50[sl].tolist(),
                        "p90": p90[sl].tolist(), "is_open": is_open[sl].tolist()})
        return out

    def explain(self, series: Mapping[str, Any], date: Any,
                scenario: Mapping[Any, Mapping[str, Any]] | None = None,
                top: int = DEFAULT_TOP) -> dict[str, Any]:
        """The top feature contributions (XGBoost ``pred_contribs``) to one P50.

        ``bias + sum(contributions) + rest`` equals ``raw_p50``; the served P50 is
        ``max(raw_p50, 0)``.
        """
        snap, served = self.snapshot, self.served
        served.check_top(top)
        resolved = served.resolve(series)
        pos = served.date_position(date, "date")
        day = self.dates[pos]
        plan: Scenario = served.parse_scenario(scenario, self.dates[-1])
        if snap.grid[resolved.position, pos] < 0:
            raise UnknownSeries(f"series {resolved.keys} has no data on {day}", "date",
                                "a date the series has sales for, or a forecast date")
        frame = self.features([series], [day], scenario) if plan else \
            snap.frame([snap.grid[resolved.position, pos]])
        pred = self.model.predict(frame).iloc[0]
        if pd.isna(pred["p50"]):
            # A weekly model forecasts from its origin's seasonal recipe: past weeks have none.
            w = self.windows
            raise InvalidInput(f"date: the model has no forecast for series {resolved.keys} on "
                               f"{day} to explain", "date",
                               f"a forecast date from {w.future_start} to {w.future_end}")
        if closed_mask(self.spec, frame)[0]:
            # The closure, not the features, sets a closed day's forecast: nothing to attribute.
            return {
                "series": resolved.keys, "series_id": resolved.series_id,
                "date": day.isoformat(), "is_open": False, "p10": 0.0, "p50": 0.0, "p90": 0.0,
                "contributions": [], "actual": _number(frame.at[0, "y"]),
                "note": "closed by the dataset's closure rules: the forecast is 0 whatever "
                        "the features say",
            }
        contribs = self.model.contributions(frame).iloc[0]
        values = self.model.inputs(frame)
        bias = float(contribs["bias"])
        parts = contribs.drop("bias")
        order = parts.abs().sort_values(ascending=False, kind="stable").index
        chosen = list(order[:top])
        rest = float(parts.drop(chosen).sum())
        return {
            "series": resolved.keys, "series_id": resolved.series_id, "date": day.isoformat(),
            "is_open": True,
            "p10": float(pred["p10"]), "p50": float(pred["p50"]), "p90": float(pred["p90"]),
            "raw_p50": float(contribs.sum()), "bias": bias, "rest": rest,
            "contributions": [{"feature": name, "value": _number(values.at[0, name]),
                               "contribution": float(parts[name])} for name in chosen],
            "actual": _number(frame.at[0, "y"]),
        }

    def score_date(self, value: Any, field: str = "date") -> dt.date:
        """A scorable date: the packed context's days, or a 422 saying which dates are."""
        ctx = self.anomaly_context
        if ctx is None:  # no scoring: still validate the date against the served ones
            return self.dates[self.served.date_position(value, field)]
        return self.served.score_date(value, ctx.first, ctx.last, field)

    def expected_for(self, resolved: Resolved, day: dt.date, actual: float
                     ) -> tuple[pd.DataFrame, Expected]:
        """The context rows before ``day`` and the expectation for it, as the asset has them.

        Up to the origin: the packed out-of-sample expectation (``expected_sales`` or an earlier
        forecast, the latest made before the day) and the day's factor from its packed
        cross-section with ``actual`` in. The day after the origin: the champion's forecast
        from the origin, which is what the ``forecasts`` asset stores and ``sales_anomalies``
        reads for it, with the day factor assumed 1 (the other series' sales are unknown).
        """
        ctx = self.anomaly_context
        history, at_day = ctx.rows(resolved.series_id, day)
        if day <= self.windows.origin:
            expected = expected_from_row(at_day, "out_of_sample")
            if expected is not None:
                expected = dataclasses.replace(
                    expected, day_factor=ctx.day_factor(resolved.series_id, day, actual),
                    day_factor_source="measured on the day's sales of all series")
        else:
            idx = self.snapshot.grid[resolved.position, self.snapshot.first_future]
            expected = None if idx < 0 else expected_from_row(
                pd.Series({"p10": self.p10[idx], "p50": self.p50[idx], "p90": self.p90[idx]}),
                f"forecast from {self.windows.origin}")
            if expected is not None:
                expected = dataclasses.replace(
                    expected, day_factor_source=(
                        "assumed 1: the other series' sales of the day are not in this bundle; "
                        "the daily sales_anomalies run scales by the whole day's factor"))
        if expected is None:
            raise InvalidInput(
                f"date: series {resolved.keys} has no expected value on {day} (no out-of-sample "
                "forecast for that day), so the sales_anomalies asset does not score it either",
                "date", "a date the series has an expected value for")
        return history, expected

    def score_anomaly(self, series: Mapping[str, Any], date: Any, actual: Any
                      ) -> dict[str, Any]:
        """Score one observed value exactly as the ``sales_anomalies`` asset scores its day.

        Score, flag, type and one-line reason (types only for flagged values, as the asset),
        the expected value with its P10/P90 interval, and the versions that produced them.
        """
        resolved = self.served.resolve(series)
        day = self.score_date(date)
        value = self.served.check_actual(actual)
        if self.detector is None:
            raise NotAvailable(f"anomaly scoring is not available: {self.anomaly_missing}",
                               "score_anomaly", "a bundle built with an anomaly detector champion")
        history, expected = self.expected_for(resolved, day, value)
        try:
            scored = score_day(self.detector, history, resolved.series_id, day, value, expected,
                               step_days=self.spec.step_days)
        except NotScorable as exc:
            hint = "a finite number of a plausible size" if exc.field == "actual" \
                else "a date with enough history before it"
            raise InvalidInput(f"{exc.field}: series {resolved.keys} cannot be scored on {day}: "
                               f"{exc}", exc.field, hint) from None
        return {"series": resolved.keys, "series_id": resolved.series_id,
                "date": day.isoformat(), "actual": value, **scored,
                "detector_version": self.bundle.detector_version,
                "forecaster_version": self.bundle.forecaster_version}

    def info(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {
            "bundle": self.bundle.tag, "bundle_created_at": m["created_at"],
            "dataset": m["dataset"], "origin": self.windows.origin.isoformat(),
            "forecast_dates": [self.windows.future_start.isoformat(),
                               self.windows.future_end.isoformat()],
            "explain_dates": [self.windows.recent_start.isoformat(),
                              self.windows.future_end.isoformat()],
            "horizon": self.plan.horizon, "series": len(self.series_ids),
            "series_keys": list(self.spec.keys), "known_covariates": list(self.spec.known),
            "max_batch": self.max_batch,
            "forecaster": {k: m["model"][k] for k in (
                "name", "version", "train_start", "train_end", "metrics", "mlflow_run_id",
                "mlflow_model_version", "features")},
            "anomaly": {**m["anomaly"], "available": self.detector is not None,
                        **({"unavailable_reason": self.anomaly_missing}
                           if self.detector is None else {})},
        }


def _number(value: Any) -> float | None:
    """A JSON-safe float (None for NULL/NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
