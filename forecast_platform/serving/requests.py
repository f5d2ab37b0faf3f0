"""What a request may ask of a bundle, checked before any feature or prediction is touched.

Every check raises a ``ServingError`` carrying an HTTP status, the offending field and what was
expected, so the service answers bad input with a precise 4xx and never a 500. The checks know
the bundle only through ``Served`` (its spec, horizon, dates and series), so they stay the same
whichever way the online model computes its answers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from forecast_platform.datasets.spec import DatasetSpec

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


# -- values -------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class Served:
    """What one bundle serves, which is all a request is checked against.

    ``dates`` run from the recent observed dates to the last forecast date, one per period;
    ``series_index`` maps each served series id to its row in the online model's grid.
    """

    spec: DatasetSpec
    horizon: int
    origin: dt.date
    future_start: dt.date
    dates: list[dt.date]
    series_index: dict[str, int]

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
                f"unknown series {canonical}: the bundle serves the {len(self.series_index)} "
                f"series with sales in the 28 periods before {self.origin}", field,
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
        h = self.horizon
        if horizon is None:
            return h
        if isinstance(horizon, bool) or not isinstance(horizon, int):
            raise InvalidInput(f"horizon: {horizon!r} is not an integer", "horizon",
                               f"an integer from 1 to {h}")
        if not 1 <= horizon <= h:
            raise InvalidInput(f"horizon: {horizon} is outside 1 .. {h}, the model's horizon",
                               "horizon", f"an integer from 1 to {h}")
        return horizon

    def check_batch(self, series: Any, max_batch: int, field: str = "series") -> None:
        if len(series) == 0:
            raise InvalidInput(f"{field} is empty", field, "at least one series")
        if len(series) > max_batch:
            raise BatchTooLarge(f"{field} holds {len(series)} series, more than the limit of "
                                f"{max_batch} per request", field,
                                f"at most {max_batch} series; split the batch")

    @staticmethod
    def check_top(top: Any) -> int:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise InvalidInput(f"top: {top!r} is not a positive integer", "top",
                               "an integer >= 1")
        return top

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
        first = self.future_start
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

    def score_date(self, value: Any, first: dt.date, last: dt.date, field: str = "date"
                   ) -> dt.date:
        """A date anomaly scoring has context for (``first .. last``), or a 422 saying which
        dates those are."""
        day = parse_date(value, field)
        expected = (f"a date from {first} to {last} (the recent observed dates and the "
                    "first date after the data's last)")
        if not first <= day <= last:
            later = (" A later date needs the actuals of the days before it, which this bundle "
                     "does not hold: score it after the next bundle.") if day > last else ""
            raise InvalidInput(f"{field}: {day} cannot be scored; this bundle scores "
                               f"{first} .. {last}.{later}", field, expected)
        if (day - first).days % self.spec.step_days:
            raise InvalidInput(f"{field}: {day} is not a period start of this data", field,
                               f"a date {self.spec.step_days} days apart from {first}")
        return day

    def check_actual(self, actual: Any) -> float:
        """The observed value as a float, or a 422 naming ``actual``."""
        negative_ok = self.spec.allow_negative_target
        if isinstance(actual, bool) or not isinstance(actual, (int, float)) \
                or not math.isfinite(actual) or (actual < 0 and not negative_ok):
            raise InvalidInput(f"actual: {actual!r} is not a valid {self.spec.target}", "actual",
                               "a finite number" + ("" if negative_ok else " >= 0"))
        return float(actual)
