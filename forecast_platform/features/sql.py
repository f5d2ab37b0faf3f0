"""Feature SQL: one set-based DuckDB query, the same offline (asset) and online (service).

Every feature states the horizon it is safe for. A direct model forecasting ``horizon`` periods
ahead may only use features whose ``safe_horizon`` is at least that: lags and windows therefore
end ``lag0`` periods before the target date, where ``lag0`` is the horizon rounded up to whole
weeks (so weekday patterns line up). Calendar and known-in-advance covariates are safe for any
horizon. Every window has a bounded lookback, so computing one day on its own gives the same
values as a five-year backfill; ``lookback_days`` says how much history a range needs.

Windows are ``RANGE`` frames over the date, not ``ROWS``: a missing day stays missing instead of
silently shifting every lag by one.

Pooled features read many series at once. Each is built from daily means of the non-null
targets (over all series, or per value of one key column, e.g. per store), then a window over
those daily means, joined back on the date (and the key):

    share_<key>       the key's mean / the all-series mean, over the year ending lag0 back
    level_all         the all-series mean over the year ending lag0 back
    series_dev        the series' own yearly mean / level_all x its key shares: how far the
                      series departs from the multiplicative key model (1 = not at all)
    level_all_yearly  the all-series mean over the year centred on t - season
    yoy               all-series growth: the quarter ending lag0 back / the same quarter a year
                      earlier
    norm              the expected level of the series on the target date:
                      product of the shares x level_all_yearly x yoy (NULL when unusable)

A pooled window is NULL unless at least ``MIN_COVERAGE`` of its periods have data: a partial
window at the start of the data is a different, biased feature, not the steady-state one, and
``norm`` is NULL with it (the forecaster neither trains nor predicts on such rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.warehouse.store import quote

KNOWN_IN_ADVANCE = 10**9  # safe_horizon of calendar and known covariates: any horizon
MIN_COVERAGE = 0.95  # share of a pooled window's periods that must hold data, else NULL
POOL_ALL = "_pool_all"  # CTE alias of the all-series pooled windows


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
    # Common table expressions (``name AS (...)``, reading ``src``) and the joins that bring
    # their columns next to each source row: what the pooled features refer to.
    ctes: tuple[str, ...] = ()
    joins: tuple[str, ...] = ()

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

    # Pooled (cross-series) features; windows in periods before the target date.
    quarter = max(1, season // 4)
    w_year = (lag0, lag0 + season - 1)
    ly0 = max(lag0, season - season // 2)  # centred on t - season when the horizon allows
    w_last_year = (ly0, max(ly0 + 2 * (season - ly0), ly0 + quarter - 1))
    w_recent = (lag0, lag0 + quarter - 1)
    w_recent_ly = (lag0 + season, lag0 + season + quarter - 1)

    def covered_mean(order: str, window: tuple[int, int]) -> str:
        """Mean of the daily means ``m`` over ``window``; NULL if too few periods hold data."""
        over = f"OVER ({order} {frame(*window)})"
        need = math.ceil(MIN_COVERAGE * (window[1] - window[0] + 1))
        return f"CASE WHEN count(m) {over} >= {need} THEN avg(m) {over} END"

    ctes = [f"""{POOL_ALL} AS (
  SELECT ds,
    {covered_mean("ORDER BY ds", w_year)} AS level_year,
    {covered_mean("ORDER BY ds", w_last_year)} AS level_last_year,
    {covered_mean("ORDER BY ds", w_recent)} AS level_recent,
    {covered_mean("ORDER BY ds", w_recent_ly)} AS level_recent_ly
  FROM (SELECT ds, avg(y) AS m FROM src GROUP BY ds)
)"""]
    joins = [f"LEFT JOIN {POOL_ALL} USING (ds)"]
    shares = []
    for i, key in enumerate(spec.keys):
        alias, k = f"_pool_key{i}", quote(key)
        ctes.append(f"""{alias} AS (
  SELECT {k}, ds,
    {covered_mean(f"PARTITION BY {k} ORDER BY ds", w_year)} AS level_year
  FROM (SELECT {k}, ds, avg(y) AS m FROM src GROUP BY {k}, ds)
)""")
        joins.append(f"LEFT JOIN {alias} USING ({k}, ds)")
        share = f"{alias}.level_year / nullif({POOL_ALL}.level_year, 0)"
        shares.append(share)
        add(f"share_{key}", share, w_year[0],
            f"mean of the series sharing this row's {key} / mean of all series, over the "
            f"{season} periods ending {lag0} back")
    add("level_all", f"{POOL_ALL}.level_year", w_year[0],
        f"mean of all series over the {season} periods ending {lag0} back")
    own = (f"CASE WHEN count({y}) OVER ({by_series} {frame(*w_year)}) >= "
           f"{math.ceil(MIN_COVERAGE * season)} "
           f"THEN avg({y}) OVER ({by_series} {frame(*w_year)}) END")
    expected = " * ".join([f"{POOL_ALL}.level_year", *(f"({s})" for s in shares)])
    add("series_dev", f"({own}) / nullif({expected}, 0)", w_year[0],
        f"the series' own mean over the {season} periods ending {lag0} back / what the key "
        "shares predict for it (level_all x the shares): 1 when the series follows its keys")
    level_ly = f"{POOL_ALL}.level_last_year"
    add("level_all_yearly", level_ly, w_last_year[0],
        f"mean of all series over the {w_last_year[1] - w_last_year[0] + 1} periods centred "
        f"on {(w_last_year[0] + w_last_year[1]) // 2} back")
    yoy = f"{POOL_ALL}.level_recent / nullif({POOL_ALL}.level_recent_ly, 0)"
    add("yoy", yoy, w_recent[0],
        f"all-series growth: mean of the {quarter} periods ending {lag0} back / the same "
        f"periods {season} earlier")
    product = " * ".join([*(f"({s})" for s in shares), level_ly, f"({yoy})"])
    add("norm", f"CASE WHEN {product} > 0 THEN {product} END",
        min(w_year[0], w_last_year[0], w_recent[0]),
        "expected level of the series: product of the key shares x level_all_yearly x yoy; "
        "NULL when a part is missing or not positive (the model's target is y / norm)")

    longest = max(lag0 + 2 * season, 2 * season + half, w_last_year[1], w_recent_ly[1])
    return FeaturePlan(spec, horizon, tuple(feats), lookback_days=(longest + 1) * step,
                       ctes=tuple(ctes), joins=tuple(joins))


def features_select(plan: FeaturePlan, source: str, holidays: str, start_param: str = "?",
                    end_param: str = "?") -> str:
    """SQL for the feature rows with ``start <= ds <= end``.

    ``source`` must yield ``ds DATE, series_id, <keys>, y, <known covariates>`` and include the
    lookback before ``start`` (rows whose y is NULL, e.g. future dates, are fine). ``holidays``
    must yield ``ds DATE, is_holiday INTEGER, days_to_holiday INTEGER``. The parameters are
    the source's (in order), then ``start`` and ``end``. Rows come ordered by series and date,
    so the same data always gives the same frame (row order changes a subsampled fit).
    """
    spec = plan.spec
    keys = ", ".join(f"src.{quote(k)}" for k in spec.keys)
    feature_sql = ",\n    ".join(f"{f.sql} AS {quote(f.name)}" for f in plan.features)
    ctes = "".join(f",\n{cte}" for cte in plan.ctes)
    joins = "".join(f"\n  {join}" for join in plan.joins)
    return f"""
WITH src AS MATERIALIZED ({source}){ctes}
SELECT * FROM (
  SELECT ds, src.series_id, {keys}, src.y,
    {feature_sql}
  FROM src LEFT JOIN ({holidays}) h USING (ds){joins}
) WHERE ds BETWEEN {start_param} AND {end_param}
ORDER BY series_id, ds
"""
