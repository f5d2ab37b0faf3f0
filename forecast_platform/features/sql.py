"""Feature SQL: one set-based DuckDB query, the same offline (asset) and online (service).

Every feature states the horizon it is safe for. A direct model forecasting ``horizon`` periods
ahead may only use features whose ``safe_horizon`` is at least that: lags and windows therefore
end ``lag0`` periods before the target date, where ``lag0`` is the horizon rounded up to whole
weeks (so weekday patterns line up). Calendar and known-in-advance covariates are safe for any
horizon. Every window has a bounded lookback, so computing one day on its own gives the same
values as a five-year backfill; ``lookback_days`` says how much history a range needs.

Windows are ``RANGE`` frames over the date, not ``ROWS``: a missing day stays missing instead of
silently shifting every lag by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.warehouse.store import quote

KNOWN_IN_ADVANCE = 10**9  # safe_horizon of calendar and known covariates: any horizon


@dataclass(frozen=True)
class Feature:
    name: str
    sql: str
    safe_horizon: int
    description: str


@dataclass(frozen=True)
class FeaturePlan:
    """The features of one dataset at one horizon, and the history they need."""

    spec: DatasetSpec
    horizon: int
    features: tuple[Feature, ...]
    lookback_days: int

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]


def _lag0(spec: DatasetSpec, horizon: int) -> int:
    """The first usable lag, in periods: the horizon, rounded up to whole weeks for daily data."""
    if spec.frequency == "D":
        return int(math.ceil(horizon / 7) * 7)
    return horizon


def plan_features(spec: DatasetSpec, horizon: int | None = None) -> FeaturePlan:
    horizon = horizon or spec.horizon
    step = spec.step_days
    lag0 = _lag0(spec, horizon)
    season = spec.season_length
    week = 7 // step if spec.frequency == "D" else 1  # periods per week
    y = "y"
    by_series = "PARTITION BY series_id ORDER BY ds"

    def frame(first: int, last: int) -> str:
        """Periods ``first..last`` before the row, as a RANGE frame in days."""
        return f"RANGE BETWEEN INTERVAL {last * step} DAYS PRECEDING " \
               f"AND INTERVAL {first * step} DAYS PRECEDING"

    feats: list[Feature] = []

    def add(name: str, sql: str, safe: int, description: str) -> None:
        feats.append(Feature(name, sql, safe, description))

    # Calendar: known in advance.
    add("dow", "isodow(ds)", KNOWN_IN_ADVANCE, "ISO day of week, 1 = Monday")
    add("dom", "dayofmonth(ds)", KNOWN_IN_ADVANCE, "day of month")
    add("doy", "dayofyear(ds)", KNOWN_IN_ADVANCE, "day of year")
    add("week", "weekofyear(ds)", KNOWN_IN_ADVANCE, "ISO week of year")
    add("month", "month(ds)", KNOWN_IN_ADVANCE, "month")
    add("year", "year(ds)", KNOWN_IN_ADVANCE, "year")
    for unit, period, expr in (("dow", 7, "isodow(ds)"), ("doy", 365.25, "dayofyear(ds)")):
        if unit == "dow" and spec.frequency == "W":
            continue
        angle = f"2 * pi() * {expr} / {period}"
        add(f"{unit}_sin", f"sin({angle})", KNOWN_IN_ADVANCE, f"cyclical {unit}, sine")
        add(f"{unit}_cos", f"cos({angle})", KNOWN_IN_ADVANCE, f"cyclical {unit}, cosine")
    add("is_holiday", "coalesce(h.is_holiday, 0)", KNOWN_IN_ADVANCE, "holiday calendar flag")
    add("days_to_holiday", "coalesce(h.days_to_holiday, 99)", KNOWN_IN_ADVANCE,
        "days until the next holiday (capped at 99): pre-holiday peaks")
    for col in spec.known:
        add(col, f"src.{quote(col)}", KNOWN_IN_ADVANCE, f"known-in-advance covariate {col}")

    # Lags, all weekday-aligned and at least lag0 periods back.
    lags = sorted({lag0, lag0 + week, season, 2 * season} - {0})
    for lag in (lag for lag in lags if lag >= lag0):
        add(f"y_lag_{lag}", f"max({y}) OVER (PARTITION BY series_id ORDER BY ds {frame(lag, lag)})",
            lag, f"target {lag} periods before")

    # Rolling level and spread, windows ending lag0 periods back.
    for window in sorted({week, 4 * week, 13 * week, season}):
        if window < 1:
            continue
        f = frame(lag0, lag0 + window - 1)
        add(f"y_mean_{window}", f"avg({y}) OVER ({by_series} {f})", lag0,
            f"mean of the {window} periods ending {lag0} back")
        if window > 1:
            add(f"y_std_{window}", f"stddev_samp({y}) OVER ({by_series} {f})", lag0,
                f"standard deviation of the {window} periods ending {lag0} back")

    if spec.frequency == "D":
        # Same weekday over the last 13 and 52 weeks: the series' own weekly profile.
        for weeks in (13, 52):
            f = frame(lag0, lag0 + 7 * (weeks - 1))
            add(f"y_dow_mean_{weeks}w",
                f"avg({y}) OVER (PARTITION BY series_id, isodow(ds) ORDER BY ds {f})", lag0,
                f"mean of the same weekday over {weeks} weeks ending {lag0} days back")

    # Same season last year, and year-over-year growth.
    half = 2 * week
    add("y_last_year_mean", f"avg({y}) OVER ({by_series} {frame(season - half, season + half)})",
        season - half, "mean of the target around the same date last year")
    add("y_zero_share", f"avg(CASE WHEN {y} = 0 THEN 1.0 ELSE 0.0 END) OVER "
        f"({by_series} {frame(lag0, lag0 + season - 1)})", lag0,
        "share of zero periods over the last year: intermittent series")
    add("y_growth",
        f"avg({y}) OVER ({by_series} {frame(lag0, lag0 + season - 1)}) / "
        f"nullif(avg({y}) OVER ({by_series} {frame(lag0 + season, lag0 + 2 * season - 1)}), 0)",
        lag0, "year-over-year growth of the yearly mean")

    longest = max(lag0 + 2 * season, 2 * season + half)
    return FeaturePlan(spec, horizon, tuple(feats), lookback_days=(longest + 1) * step)


def features_select(plan: FeaturePlan, source: str, holidays: str, start_param: str = "?",
                    end_param: str = "?") -> str:
    """SQL for the feature rows with ``start <= ds <= end``.

    ``source`` must yield ``ds DATE, series_id, <keys>, y, <known covariates>`` and include the
    lookback before ``start`` (rows whose y is NULL, e.g. future dates, are fine). ``holidays``
    must yield ``ds DATE, is_holiday INTEGER, days_to_holiday INTEGER``.
    """
    spec = plan.spec
    keys = ", ".join(f"src.{quote(k)}" for k in spec.keys)
    feature_sql = ",\n    ".join(f"{f.sql} AS {quote(f.name)}" for f in plan.features)
    return f"""
SELECT * FROM (
  SELECT ds, src.series_id, {keys}, src.y,
    {feature_sql}
  FROM ({source}) src LEFT JOIN ({holidays}) h USING (ds)
) WHERE ds BETWEEN {start_param} AND {end_param}
"""
