"""Online features and predictions from a loaded bundle: the same SQL as the offline assets.

At load, the bundle's snapshot goes into an in-memory DuckDB under the warehouse's own table
names (``validated_sales``, ``holiday_calendar``), and the ``forecasts`` asset's query
(``future_source`` + ``features_select``) computes the feature rows of every active series for
the served dates: the recent observed dates and the horizon after the origin. Forecasts for
"nothing planned" (known covariates 0, as offline) are then lookups into precomputed arrays, so
a request costs microseconds, not a query.

What-if scenarios set known-in-advance covariates (e.g. ``promo = 1``) on future dates. In the
plan those covariates are pure pass-through columns (``src."promo"``) that no other feature
reads, which ``OnlineModel`` verifies at load; a scenario then only overwrites those columns of
the precomputed rows. When that does not hold, or when asked (``exact=True``), the scenario goes
into the SQL source instead and the whole query runs again; a test shows both agree.

Anomaly scores (``score_anomaly``) run the ``sales_anomalies`` asset's own core
(``context_features`` -> ``AnomalyDetector.score`` -> ``classify``, see ``serving.anomaly``) on
the context the bundle packed from the asset's own query: the same inputs give the asset's row.

Errors are ``ServingError``s carrying an HTTP status, the offending field and what was expected,
so the service can answer bad input with a precise 4xx and never a 500.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from forecast_platform.anomalies.detector import AnomalyDetector
from forecast_platform.features.offline import HOLIDAYS_SOURCE
from forecast_platform.features.sql import features_select
from forecast_platform.forecasting.future import future_params, future_source
from forecast_platform.serving.anomaly import (
    AnomalyContext,
    Expected,
    NotScorable,
    check_detector,
    expected_from_row,
    score_day,
)
from forecast_platform.serving.bundle import Bundle
from forecast_platform.warehouse.store import quote
from forecast_platform.warehouse.tables import CALENDAR, VALIDATED

DEFAULT_MAX_BATCH = 1000
DEFAULT_TOP = 5


# -- errors -----------------------------------------------------------------------------------

class ServingError(ValueError):
    """Bad input (or a missing capability), with what the client needs to fix it."""

    status = 400

    def __init__(self, message: str, field: str | None = None, expected: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.expected = expected

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.expected is not None:
            out["expected"] = self.expected
        return out


class InvalidInput(ServingError):
    """Well-formed JSON whose values the model cannot serve (out-of-range dates, horizons)."""

    status = 422


class UnknownSeries(ServingError):
    status = 404


class BatchTooLarge(ServingError):
    status = 413


class NotAvailable(ServingError):
    """The bundle lacks what the request needs (e.g. no anomaly detector was packed)."""

    status = 501


# -- helpers ------------------------------------------------------------------------------------

def known_passthrough(bundle: Bundle) -> bool:
    """Whether every known covariate reaches the model only as its own pass-through column.

    Then a scenario changes those columns and nothing else, and overwriting them in the
    precomputed rows equals recomputing the SQL with the scenario in the source.
    """
    plan = bundle.plan
    for col in plan.spec.known:
        q = quote(col)
        own = [f for f in plan.features if f.sql == f"src.{q}"]
        if len(own) != 1 or own[0].name != col:
            return False
        others = [f.sql for f in plan.features if f is not own[0]] + list(plan.ctes) \
            + list(plan.joins)
        if any(q in text for text in others):
            return False
    return True


def scenario_source(bundle: Bundle) -> str:
    """``future_source`` with known covariates of future rows taken from ``_scenario`` if set.

    Same parameters as ``future_source``; ``_scenario`` holds ``series_id, ds`` and one
    column per known covariate (NULL where the scenario leaves it alone).
    """
    spec = bundle.spec
    keys = ", ".join(f"b.{quote(k)}" for k in spec.keys)
    known = "".join(f", coalesce(sc.{quote(c)}, b.{quote(c)}) AS {quote(c)}" for c in spec.known)
    return (f"SELECT b.ds, b.series_id, {keys}, b.y{known} "
            f"FROM ({future_source(spec, bundle.plan.horizon)}) b "
            "LEFT JOIN _scenario sc ON sc.series_id = b.series_id AND sc.ds = b.ds "
            "AND b.y IS NULL")


def parse_date(value: Any, field: str) -> dt.date:
    """A date from a date or an ISO string, else a 422 naming the field."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidInput(f"{field}: {value!r} is not a date", field, "an ISO date, YYYY-MM-DD")


@dataclass(frozen=True)
class Resolved:
    """One requested series, validated: its id, grid row, and canonical keys."""

    series_id: str
    position: int
    keys: dict[str, Any]


# -- the online model ---------------------------------------------------------------------------

class OnlineModel:
    """Features, forecasts, explanations and anomaly scores for one loaded bundle."""

    def __init__(self, bundle: Bundle, max_batch: int = DEFAULT_MAX_BATCH):
        self.bundle = bundle
        self.spec = bundle.spec
        self.plan = bundle.plan
        self.windows = bundle.windows
        self.model = bundle.forecaster
        self.max_batch = max_batch
        self.passthrough = known_passthrough(bundle)
        self._lock = threading.Lock()
        self.con = duckdb.connect(":memory:")
        self.con.register("_history", bundle.history)
        self.con.execute(f"CREATE TABLE {VALIDATED} AS SELECT * REPLACE "
                         f"(CAST({quote(self.spec.date_column)} AS DATE) AS "
                         f"{quote(self.spec.date_column)}) FROM _history")
        self.con.unregister("_history")
        self.con.register("_holidays", bundle.holidays)
        self.con.execute(f"CREATE TABLE {CALENDAR} AS SELECT CAST(ds AS DATE) AS ds, "
                         "is_holiday, days_to_holiday FROM _holidays")
        self.con.unregister("_holidays")

        # Future rows exactly as the forecasts asset computes them (same lookback, so the same
        # window frames and the same floating-point sums); the recent observed dates with the
        # longer lookback they need.
        rows = pd.concat([
            self.compute_features(self.windows.recent_start, self.windows.origin),
            self.compute_features(self.windows.future_start, self.windows.future_end),
        ], ignore_index=True)
        rows = rows.sort_values(["series_id", "ds"], kind="stable").reset_index(drop=True)
        self.rows = rows
        step = self.spec.step_days
        n_dates = (self.windows.future_end - self.windows.recent_start).days // step + 1
        self.dates = [self.windows.recent_start + dt.timedelta(days=i * step)
                      for i in range(n_dates)]
        self.date_text = [d.isoformat() for d in self.dates]
        self.first_future = self.dates.index(self.windows.future_start)
        # Served series: the active ones, i.e. those with future rows (as offline forecasts).
        future = rows[rows["ds"] > pd.Timestamp(self.windows.origin)]
        self.series_ids = sorted(future["series_id"].unique().tolist())
        self.series_index = {sid: i for i, sid in enumerate(self.series_ids)}
        self.grid = np.full((len(self.series_ids), n_dates), -1, dtype=np.int64)
        pos = rows["series_id"].map(self.series_index)
        known = pos.notna().to_numpy()
        date_pos = ((rows["ds"] - pd.Timestamp(self.windows.recent_start))
                    .dt.days // step).to_numpy()
        self.grid[pos[known].astype(int).to_numpy(), date_pos[known]] = \
            np.arange(len(rows))[known]
        preds = self.model.predict(rows)
        self.p10 = preds["p10"].to_numpy()
        self.p50 = preds["p50"].to_numpy()
        self.p90 = preds["p90"].to_numpy()
        self.detector, self.anomaly_context, self.anomaly_missing = self._load_anomaly(bundle)

    @staticmethod
    def _load_anomaly(bundle: Bundle
                      ) -> tuple[AnomalyDetector | None, AnomalyContext | None, str | None]:
        """The detector and its context, or why anomaly scoring is not available."""
        if bundle.anomaly_bytes is None:
            return None, None, (f"bundle {bundle.tag} holds no anomaly detector. Materialize "
                                "anomaly_model, then serving_bundle, then reload.")
        info = bundle.manifest.get("anomaly", {})
        if bundle.anomaly_context is None or "score_dates" not in info:
            return None, None, (f"bundle {bundle.tag} holds an anomaly detector but not the "
                                "context it scores with (built by an older version): "
                                "re-materialize serving_bundle, then reload.")
        detector = AnomalyDetector.from_bytes(bundle.anomaly_bytes)
        problem = check_detector(detector)
        if problem is not None:
            return None, None, problem
        first, last = (dt.date.fromisoformat(d) for d in info["score_dates"])
        context = AnomalyContext(bundle.anomaly_context, info["context_days"], first, last,
                                 step_days=bundle.spec.step_days)
        return detector, context, None

    # -- features ---------------------------------------------------------------------------
    def compute_features(self, start: dt.date, end: dt.date,
                         scenario: pd.DataFrame | None = None) -> pd.DataFrame:
        """Feature rows for ``start..end`` by the offline SQL over the snapshot.

        With ``scenario`` (``series_id, ds, <known covariates>``) the known covariates of those
        future rows are set before the features are computed: the exact what-if path. Ranges
        of forecast dates read the forecasts asset's lookback (``origin - lookback_days``).
        """
        w = self.windows
        history_start = w.history_start if start <= w.origin \
            else w.origin - dt.timedelta(days=self.plan.lookback_days)
        params = [*future_params(history_start, w.origin), start, end]
        cur = self.con.cursor()
        try:
            if scenario is None:
                source = future_source(self.spec, self.plan.horizon)
            else:
                cur.register("_scenario", scenario)
                source = scenario_source(self.bundle)
            rows = cur.execute(features_select(self.plan, source, HOLIDAYS_SOURCE), params).df()
        finally:
            cur.close()
        rows["ds"] = pd.to_datetime(rows["ds"])
        return rows

    def rows_for(self, positions: Sequence[int], date_positions: Sequence[int]) -> np.ndarray:
        """Row numbers of the precomputed features, series-major; -1 where no row exists."""
        return self.grid[np.asarray(positions)[:, None], np.asarray(date_positions)[None, :]] \
            .reshape(-1)

    def features(self, series: Sequence[Mapping[str, Any]], dates: Sequence[dt.date],
                 scenario: Mapping[Any, Mapping[str, Any]] | None = None,
                 exact: bool = False) -> pd.DataFrame:
        """Feature rows of the series (by keys) and dates, with a scenario applied.

        ``exact`` recomputes them through the SQL instead of the precomputed rows.
        """
        resolved = [self.resolve(s, f"series[{i}]") for i, s in enumerate(series)]
        date_pos = [self.date_position(d, "dates") for d in dates]
        plan = self.parse_scenario(scenario, self.dates[-1])
        if exact or (plan and not self.passthrough):
            return self._exact_rows(resolved, [self.dates[p] for p in date_pos], plan)
        idx = self.rows_for([r.position for r in resolved], date_pos)
        if (idx < 0).any():
            raise UnknownSeries("no data for some of the requested series and dates", "dates")
        frame = self.rows.iloc[idx].reset_index(drop=True)
        return self._apply(frame, plan)

    def _exact_rows(self, resolved: list[Resolved], dates: list[dt.date],
                    plan: dict[dt.date, dict[str, float | str]]) -> pd.DataFrame:
        ids = [r.series_id for r in resolved]
        scenario = pd.DataFrame(
            [{"series_id": sid, "ds": d, **values} for sid in ids for d, values in plan.items()],
            columns=["series_id", "ds", *self.spec.known],
        ).astype({c: "object" if c in self.spec.categories else "float64"
                  for c in self.spec.known})
        scenario["ds"] = pd.to_datetime(scenario["ds"]).dt.date
        rows = self.compute_features(min(dates), max(dates), scenario)
        stamps = [pd.Timestamp(d) for d in dates]
        rows = rows[rows["series_id"].isin(ids) & rows["ds"].isin(stamps)]
        order = {(sid, d): i for i, (sid, d) in enumerate((s, d) for s in ids for d in stamps)}
        rows = rows.assign(_order=[order[(s, d)] for s, d in zip(rows["series_id"], rows["ds"],
                                                                   strict=True)])
        return rows.sort_values("_order").drop(columns="_order").reset_index(drop=True)

    def _apply(self, frame: pd.DataFrame, plan: dict[dt.date, dict[str, float | str]]
               ) -> pd.DataFrame:
        """Overwrite the known covariates of the scenario's dates (pass-through columns)."""
        if not plan:
            return frame
        frame = frame.copy()
        ds = frame["ds"]
        for day, values in plan.items():
            hit = (ds == pd.Timestamp(day)).to_numpy()
            for col, value in values.items():
                frame.loc[hit, col] = value
        return frame

    # -- validation -------------------------------------------------------------------------
    def resolve(self, keys: Any, field: str = "series") -> Resolved:
        """A served series from its keys, or a 4xx naming the field."""
        spec = self.spec
        expected = "an object with the keys " + ", ".join(spec.keys)
        if not isinstance(keys, Mapping) or not keys:
            raise InvalidInput(f"{field} must name the series by its keys", field, expected)
        missing = [k for k in spec.keys if k not in keys]
        extra = [k for k in keys if k not in spec.keys]
        if missing or extra:
            problems = ([f"lacks {missing}"] if missing else []) \
                + ([f"has unknown keys {extra}"] if extra else [])
            problem = " and ".join(problems)
            raise InvalidInput(f"{field} {problem}", f"{field}.{(missing or extra)[0]}",
                               expected)
        canonical: dict[str, Any] = {}
        for k in spec.keys:
            value = keys[k]
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise InvalidInput(f"{field}.{k}: {value!r} is not a key value", f"{field}.{k}",
                                   "a string or an integer")
            if spec.key_type(k) == "int":
                try:
                    value = int(value)
                except ValueError:
                    raise InvalidInput(f"{field}.{k}: {value!r} is not an integer",
                                       f"{field}.{k}", "an integer") from None
            canonical[k] = value
        sid = "|".join(str(canonical[k]) for k in spec.keys)
        position = self.series_index.get(sid)
        if position is None:
            raise UnknownSeries(
                f"unknown series {canonical}: the bundle serves the {len(self.series_ids)} series "
                f"with sales in the 28 periods before {self.windows.origin}", field,
                "the keys of a served series (see model_info)")
        return Resolved(sid, position, canonical)

    def date_position(self, value: Any, field: str) -> int:
        day = parse_date(value, field)
        first, last = self.dates[0], self.dates[-1]
        if not first <= day <= last:
            raise InvalidInput(f"{field}: {day} is outside the served dates {first} .. {last}",
                               field, f"a date from {first} to {last}")
        offset = (day - first).days
        if offset % self.spec.step_days:
            raise InvalidInput(f"{field}: {day} is not a period start of this weekly data",
                               field, f"a date {self.spec.step_days} days apart from {first}")
        return offset // self.spec.step_days

    def horizon_for(self, horizon: Any) -> int:
        h = self.plan.horizon
        if horizon is None:
            return h
        if isinstance(horizon, bool) or not isinstance(horizon, int):
            raise InvalidInput(f"horizon: {horizon!r} is not an integer", "horizon",
                               f"an integer from 1 to {h}")
        if not 1 <= horizon <= h:
            raise InvalidInput(f"horizon: {horizon} is outside 1 .. {h}, the model's horizon",
                               "horizon", f"an integer from 1 to {h}")
        return horizon

    def parse_scenario(self, scenario: Mapping[Any, Mapping[str, Any]] | None,
                       last: dt.date) -> dict[dt.date, dict[str, float | str]]:
        """``{date: {covariate: value}}`` for future dates up to ``last``, validated: a number,
        or for a text-coded covariate one of its codes."""
        if not scenario:
            return {}
        if not isinstance(scenario, Mapping):
            raise InvalidInput("scenario must map dates to covariate values", "scenario",
                               'an object like {"2018-01-05": {"promo": 1}}')
        known = list(self.spec.known)
        first = self.windows.future_start
        out: dict[dt.date, dict[str, float | str]] = {}
        for raw_day, values in scenario.items():
            field = f"scenario.{raw_day}"
            day = parse_date(raw_day, field)
            if not first <= day <= last:
                raise InvalidInput(
                    f"{field}: {day} is not a forecast date; scenarios set known covariates of "
                    f"the forecast dates {first} .. {last}", field,
                    f"a date from {first} to {last}")
            if (day - first).days % self.spec.step_days:
                raise InvalidInput(f"{field}: {day} is not a period start", field,
                                   f"a date {self.spec.step_days} days apart from {first}")
            if not isinstance(values, Mapping) or not values:
                raise InvalidInput(f"{field} must set at least one covariate", field,
                                   f"an object with some of {known}")
            clean: dict[str, float | str] = {}
            for col, value in values.items():
                if col not in self.spec.known:
                    raise InvalidInput(
                        f"{field}.{col}: {col!r} is not a known-in-advance covariate of this "
                        f"dataset", f"{field}.{col}", f"one of {known}" if known
                        else "nothing: this dataset has no known covariates")
                codes = self.spec.categories.get(col)
                if codes is not None:  # a text-coded covariate takes one of its codes
                    if not isinstance(value, str) or value not in codes:
                        raise InvalidInput(f"{field}.{col}: {value!r} is not a code of {col}",
                                           f"{field}.{col}", f"one of {list(codes)}")
                    clean[col] = value
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not math.isfinite(value):
                    raise InvalidInput(f"{field}.{col}: {value!r} is not a finite number",
                                       f"{field}.{col}", "a finite number")
                clean[col] = float(value)
            out[day] = clean
        return out

    # -- endpoints ----------------------------------------------------------------------------
    def forecast(self, series: Sequence[Mapping[str, Any]], horizon: int | None = None,
                 scenario: Mapping[Any, Mapping[str, Any]] | None = None,
                 batch: bool = False) -> list[dict[str, Any]]:
        """P10/P50/P90 per series over the horizon: one vectorized lookup (or one predict).

        ``batch`` names bad entries ``series[i]`` (a list) rather than ``series`` (one).
        """
        field = "series"
        if len(series) == 0:
            raise InvalidInput(f"{field} is empty", field, "at least one series")
        if len(series) > self.max_batch:
            raise BatchTooLarge(f"{field} holds {len(series)} series, more than the limit of "
                                f"{self.max_batch} per request", field,
                                f"at most {self.max_batch} series; split the batch")
        h = self.horizon_for(horizon)
        resolved = [self.resolve(s, f"{field}[{i}]" if batch else field)
                    for i, s in enumerate(series)]
        date_pos = list(range(self.first_future, self.first_future + h))
        plan = self.parse_scenario(scenario, self.dates[date_pos[-1]])
        idx = self.rows_for([r.position for r in resolved], date_pos)
        if plan:
            frame = self.features(series, [self.dates[p] for p in date_pos], scenario) \
                if not self.passthrough else self._apply(
                    self.rows.iloc[idx].reset_index(drop=True), plan)
            preds = self.model.predict(frame)
            p10, p50, p90 = (preds[c].to_numpy() for c in ("p10", "p50", "p90"))
        else:
            p10, p50, p90 = self.p10[idx], self.p50[idx], self.p90[idx]
        dates = self.date_text[date_pos[0]:date_pos[-1] + 1]
        out = []
        for i, r in enumerate(resolved):
            sl = slice(i * h, (i + 1) * h)
            out.append({"series": r.keys, "series_id": r.series_id, "dates": dates,
                        "p10": p10[sl].tolist(), "p50": p50[sl].tolist(),
                        "p90": p90[sl].tolist()})
        return out

    def explain(self, series: Mapping[str, Any], date: Any,
                scenario: Mapping[Any, Mapping[str, Any]] | None = None,
                top: int = DEFAULT_TOP) -> dict[str, Any]:
        """The top feature contributions (XGBoost ``pred_contribs``) to one P50.

        ``bias + sum(contributions) + rest`` equals ``raw_p50``; the served P50 is
        ``max(raw_p50, 0)``.
        """
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise InvalidInput(f"top: {top!r} is not a positive integer", "top",
                               "an integer >= 1")
        resolved = self.resolve(series)
        pos = self.date_position(date, "date")
        day = self.dates[pos]
        plan = self.parse_scenario(scenario, self.dates[-1])
        if self.grid[resolved.position, pos] < 0:
            raise UnknownSeries(f"series {resolved.keys} has no data on {day}", "date",
                                "a date the series has sales for, or a forecast date")
        frame = self.features([series], [day], scenario) if plan else \
            self.rows.iloc[[self.grid[resolved.position, pos]]].reset_index(drop=True)
        pred = self.model.predict(frame).iloc[0]
        if pd.isna(pred["p50"]):
            # A weekly model forecasts from its origin's seasonal recipe: past weeks have none.
            w = self.windows
            raise InvalidInput(f"date: the model has no forecast for series {resolved.keys} on "
                               f"{day} to explain", "date",
                               f"a forecast date from {w.future_start} to {w.future_end}")
        contribs = self.model.contributions(frame).iloc[0]
        values = self.model.inputs(frame)
        bias = float(contribs["bias"])
        parts = contribs.drop("bias")
        order = parts.abs().sort_values(ascending=False, kind="stable").index
        chosen = list(order[:top])
        rest = float(parts.drop(chosen).sum())
        return {
            "series": resolved.keys, "series_id": resolved.series_id, "date": day.isoformat(),
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
            return self.dates[self.date_position(value, field)]
        day = parse_date(value, field)
        expected = (f"a date from {ctx.first} to {ctx.last} (the recent observed dates and the "
                    "first date after the data's last)")
        if not ctx.first <= day <= ctx.last:
            later = (" A later date needs the actuals of the days before it, which this bundle "
                     "does not hold: score it after the next bundle.") if day > ctx.last else ""
            raise InvalidInput(f"{field}: {day} cannot be scored; this bundle scores "
                               f"{ctx.first} .. {ctx.last}.{later}", field, expected)
        if (day - ctx.first).days % self.spec.step_days:
            raise InvalidInput(f"{field}: {day} is not a period start of this data", field,
                               f"a date {self.spec.step_days} days apart from {ctx.first}")
        return day

    def check_actual(self, actual: Any) -> float:
        """The observed value as a float, or a 422 naming ``actual``."""
        negative_ok = self.spec.allow_negative_target
        if isinstance(actual, bool) or not isinstance(actual, (int, float)) \
                or not math.isfinite(actual) or (actual < 0 and not negative_ok):
            raise InvalidInput(f"actual: {actual!r} is not a valid {self.spec.target}", "actual",
                               "a finite number" + ("" if negative_ok else " >= 0"))
        return float(actual)

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
            idx = self.grid[resolved.position, self.first_future]
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
        resolved = self.resolve(series)
        day = self.score_date(date)
        value = self.check_actual(actual)
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
        anomaly = self.bundle.manifest["anomaly"]
        return {"series": resolved.keys, "series_id": resolved.series_id,
                "date": day.isoformat(), "actual": value, **scored,
                "detector_version": int(anomaly["version"]),
                "forecaster_version": self.bundle.model_version}

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
