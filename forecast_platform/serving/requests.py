"""What a request may ask of a bundle, checked before any feature or prediction is touched.

Every check raises a ``ServingError`` carrying an HTTP status, the offending field and what was
expected, so the service answers bad input with a precise 4xx and never a 500. The checks know
the bundle only through ``Served`` (its spec, horizon, dates and series), so they stay the same
whichever way the online model computes its answers.

Error bodies stay small whatever the input: a message quotes at most ``QUOTE_CHARS`` characters
of an offending value or key (``quote``, ``shorten``), and ``bounded_error`` cuts any error body
the service sends to ``MAX_ERROR_BYTES`` (the service applies it to every 4xx, BentoML's own
included), keeping the message and the field.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from forecast_platform.datasets.spec import DatasetSpec

# -- bounded quoting -------------------------------------------------------------------------

QUOTE_CHARS = 200  # most characters of one offending value (or key) an error quotes
MESSAGE_CHARS = 2_000  # most characters of an error message
LISTED = 20  # most fields, details or keys one error body lists
MAX_ERROR_BYTES = 10_000  # largest error body, encoded

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = QUOTE_CHARS // 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 10
_REPR.maxlevel = 4


def shorten(text: str, limit: int = QUOTE_CHARS) -> str:
    """``text``, or its first ``limit`` characters and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` for an error message, at most about ``limit`` characters.

    Never builds the full repr of a large value (a 900 KB string or a dict of 50,000 keys): a
    long string is cut before quoting, a container is summarized by ``reprlib``.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    try:
        return shorten(_REPR.repr(value), limit)
    except ValueError:  # an integer past Python's 4,300-digit str() limit
        return f"<a {type(value).__name__} too long to quote>"


def bounded_error(data: Any, max_bytes: int = MAX_ERROR_BYTES) -> bytes:
    """An error body as JSON bytes of at most ``max_bytes``, keeping what names the problem.

    Every string is cut to ``QUOTE_CHARS`` (the message to ``MESSAGE_CHARS``) and every list
    or object to ``LISTED`` entries; if that is still too large, ``detail`` goes, then
    everything but ``error``, ``field``, ``fields`` and ``expected``, then the message is cut
    until it fits. A body that is not a JSON object becomes ``{"error": <its text>}``.
    """
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML wraps some errors in a one-element list
    if not isinstance(data, dict):
        data = {"error": data if isinstance(data, str) else _REPR.repr(data)}
    out = {shorten(str(k), QUOTE_CHARS): _clipped(v, MESSAGE_CHARS if k == "error"
                                                  else QUOTE_CHARS)
           for k, v in list(data.items())[:LISTED]}
    body = _encode(out)
    if len(body) <= max_bytes:
        return body
    out.pop("detail", None)
    body = _encode(out)
    if len(body) <= max_bytes:
        return body
    out = {k: out[k] for k in ("error", "field", "fields", "expected") if k in out}
    if isinstance(out.get("fields"), list):
        out["fields"] = out["fields"][:5]
    message = str(out.get("error", "invalid request"))
    limit = len(message)
    while True:
        body = _encode({**out, "error": message[:limit]})
        if len(body) <= max_bytes or limit == 0:
            return body
        limit //= 2


def _clipped(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return shorten(value, limit)
    if isinstance(value, dict):
        items = list(value.items())
        out = {shorten(str(k)): _clipped(v, QUOTE_CHARS) for k, v in items[:LISTED]}
        if len(items) > LISTED:
            out["..."] = f"{len(items) - LISTED:,} more"
        return out
    if isinstance(value, (list, tuple)):
        out = [_clipped(v, QUOTE_CHARS) for v in value[:LISTED]]
        if len(value) > LISTED:
            out.append(f"... and {len(value) - LISTED:,} more")
        return out
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 256 else quote(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return quote(value)


def _encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, allow_nan=False, default=str).encode()


# -- errors -----------------------------------------------------------------------------------

class ServingError(ValueError):
    """Bad input (or a missing capability), with what the client needs to fix it."""

    status = 400

    def __init__(self, message: str, field: str | None = None, expected: str | None = None):
        # Values are quoted short where the message is written; this caps what is left.
        message = shorten(message, MESSAGE_CHARS)
        super().__init__(message)
        self.message = message
        self.field = field if field is None else shorten(field)
        self.expected = expected if expected is None else shorten(expected, MESSAGE_CHARS)

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
    raise InvalidInput(f"{field}: {quote(value)} is not a date", field,
                       "an ISO date, YYYY-MM-DD")


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
                + ([f"has unknown keys {quote(extra)}"] if extra else [])
            problem = " and ".join(problems)
            first = shorten(str((missing or extra)[0]))
            raise InvalidInput(f"{field} {problem}", f"{field}.{first}", expected)
        canonical: dict[str, Any] = {}
        for k in spec.keys:
            value = keys[k]
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise InvalidInput(f"{field}.{k}: {quote(value)} is not a key value",
                                   f"{field}.{k}", "a string or an integer")
            if spec.key_type(k) == "int":
                try:
                    value = int(value)
                except ValueError:
                    raise InvalidInput(f"{field}.{k}: {quote(value)} is not an integer",
                                       f"{field}.{k}", "an integer") from None
            canonical[k] = value
        sid = "|".join(str(canonical[k]) for k in spec.keys)
        position = self.series_index.get(sid)
        if position is None:
            raise UnknownSeries(
                f"unknown series {quote(canonical)}: the bundle serves the "
                f"{len(self.series_index)} series with sales in the 28 periods before "
                f"{self.origin}", field,
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
            raise InvalidInput(f"horizon: {quote(horizon)} is not an integer", "horizon",
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
            raise InvalidInput(f"top: {quote(top)} is not a positive integer", "top",
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
            field = f"scenario.{shorten(str(raw_day))}"
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
                name = f"{field}.{shorten(str(col))}"
                if col not in self.spec.known:
                    raise InvalidInput(
                        f"{name}: {quote(col)} is not a known-in-advance covariate of this "
                        f"dataset", name, f"one of {known}" if known
                        else "nothing: this dataset has no known covariates")
                codes = self.spec.categories.get(col)
                if codes is not None:  # a text-coded covariate takes one of its codes
                    if not isinstance(value, str) or value not in codes:
                        raise InvalidInput(f"{name}: {quote(value)} is not a code of {col}",
                                           name, f"one of {list(codes)}")
                    clean[col] = value
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not math.isfinite(value):
                    raise InvalidInput(f"{name}: {quote(value)} is not a finite number",
                                       name, "a finite number")
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
            raise InvalidInput(f"actual: {quote(actual)} is not a valid {self.spec.target}",
                               "actual", "a finite number" + ("" if negative_ok else " >= 0"))
        bound = self.spec.max_target
        if bound is not None and actual > bound:
            # The same plausibility bound ingestion quarantines by: the two sides agree.
            raise InvalidInput(f"actual: {quote(actual)} is over the dataset's plausible "
                               f"maximum {bound:g} (max_target)", "actual",
                               f"a number <= {bound:g}")
        return float(actual)
