"""Embedded synthetic retail dataset: store x item daily sales with labelled anomalies.

The platform needs a default dataset that works with no download and that has every effect the
forecasting, anomaly and drift parts are meant to handle, with ground truth for each. Real data
(e.g. the Kaggle store-item set) is too clean and has no anomaly labels, so we generate it.

Demand is built multiplicatively on a (day, series) grid, with series ordered store-major so that
``grid.ravel()`` is already sorted by date, store, item:

    mean = base(store, item) * trend * weekly * yearly * holiday * promo * drift * latent AR(1)
    clean = NegativeBinomial(mean)            # Poisson-gamma, non-negative integers
    sales = clean with labelled anomaly events injected

Every random component draws from its own child stream of the seed, so switching one effect
(e.g. ``drift_from``) leaves the others unchanged: the data before ``drift_from`` is identical
to the data of the same config without drift.

``closures=True`` turns the grid into a typical retailer's daily export (see ``retail_calendar``):
most stores close on Sundays, all but one close on national holidays, the stores of region A
close on regional holidays, one store closes two weeks for a refurbishment, and a closed day has
no row at all. Promotions are then store-wide spells planned ahead, with one known lift
(``closure_promo_lift``). With ``closures=False`` (the default) the output is unchanged.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from dateutil.easter import easter

SALES_COLUMNS: tuple[str, ...] = ("date", "store", "item", "sales", "promo", "holiday")
ANOMALY_COLUMNS: tuple[str, ...] = (
    "date",
    "store",
    "item",
    "anomaly_type",
    "event_id",
    "expected",
    "actual",
)
ANOMALY_TYPES: tuple[str, ...] = ("spike", "dip", "level_shift", "zero_run")

# Monday..Sunday. Shoppers buy on weekends; after a drift the profile turns weekday-heavy
# (think a new office district), which a drift detector on day-of-week mix should notice.
WEEKLY_PROFILE = np.array([0.82, 0.88, 0.92, 0.97, 1.07, 1.20, 1.14])
DRIFT_WEEKLY_PROFILE = np.array([1.12, 1.08, 1.04, 1.02, 1.00, 0.90, 0.84])

# Mid-month knots of the yearly cycle, January..December: winter low, summer peak, and an
# elevated December on top of which the holiday effects add the pre-Christmas rush.
YEARLY_KNOTS = np.array([0.84, 0.82, 0.92, 1.00, 1.07, 1.13, 1.17, 1.11, 1.00, 0.96, 1.01, 1.08])

# The Christmas rush: +3.5 % a day over the two weeks before Christmas Eve.
_CHRISTMAS_RUSH = tuple((-k, 1.0 + 0.035 * (15 - k)) for k in range(14, 0, -1))

# Holiday name -> (day offset from the holiday, multiplier). Offsets let the rush build up
# before a holiday; a multiplier of 0 means stores are closed.
HOLIDAY_EFFECTS: dict[str, tuple[tuple[int, float], ...]] = {
    "New Year's Day": ((0, 0.55),),
    "Easter Sunday": ((-1, 1.15), (0, 0.60)),
    "Memorial Day": ((-2, 1.10), (-1, 1.15), (0, 1.20)),
    "Independence Day": ((-2, 1.10), (-1, 1.30), (0, 0.85)),
    "Labor Day": ((-1, 1.10), (0, 1.15)),
    "Thanksgiving": ((-2, 1.20), (-1, 1.45), (0, 0.40)),
    "Black Friday": ((0, 1.90), (1, 1.35), (2, 1.15)),
    "Christmas Eve": (*_CHRISTMAS_RUSH, (0, 1.35)),
    "Christmas Day": ((0, 0.0), (1, 1.20)),
    "New Year's Eve": ((0, 1.20),),
}

# Event-count weights and duration ranges (inclusive) of the injected anomaly types.
_ANOMALY_WEIGHTS = np.array([0.35, 0.25, 0.20, 0.20])
_ANOMALY_DAYS = {"spike": (1, 1), "dip": (1, 3), "level_shift": (7, 28), "zero_run": (3, 14)}
_ANOMALY_GAP_DAYS = 7  # clean days kept between two events of a series, so each has a baseline

# Names of the independent random streams; appending a name keeps the existing streams stable.
_STREAMS = ("params", "promo", "drift_promo", "latent", "noise", "anomalies", "store_promo")


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. Defaults match the shape of Kaggle's store-item demand data."""

    n_stores: int = 10
    n_items: int = 50
    start: datetime.date = date(2013, 1, 1)
    end: datetime.date = date(2017, 12, 31)
    seed: int = 42
    anomaly_share: float = 0.02  # share of series-days inside injected anomaly events
    intermittent_share: float = 0.04  # share of series that are intermittent (many zero days)
    drift_from: datetime.date | None = None  # from this date on, the data drifts
    drift_level: float = 1.6  # multiplicative level change after drift_from
    base_level: float = 30.0  # typical daily units of a median store x median item
    store_spread: float = 0.30  # log-sd of store size
    item_spread: float = 0.80  # log-sd of item popularity: a few best sellers, a long tail
    annual_growth: float = 0.05  # mean year-over-year growth; stores and items vary around it
    promo_share: float = 0.04  # share of series-days on promotion
    promo_days: tuple[int, int] = (2, 7)  # inclusive length range of one promotion spell
    promo_lift: tuple[float, float] = (1.2, 2.0)  # range of the item-specific promotion lift
    drift_promo_share: float = 0.12  # promotion share after drift_from
    dispersion: tuple[float, float] = (10.0, 40.0)  # negative binomial shape of regular series
    latent_sd: float = 0.08  # sd of the slow AR(1) demand shocks, on the log scale
    anomaly_start_day: int = 60  # no anomalies before this many days: detectors need history
    # A retailer's calendar (module docstring); the fields below apply only with closures=True.
    closures: bool = False
    store_promo_share: float = 0.12  # share of store-days in a store-wide promotion spell
    closure_promo_lift: float = 1.3  # the one multiplicative lift of a promotion day
    pre_closure_lift: float = 1.15  # the open day before a holiday closure (shoppers stock up)
    refurbish_start: datetime.date | None = None  # None: the Monday after mid start..end
    refurbish_days: int = 14  # 0: no refurbishment

    def __post_init__(self) -> None:
        if self.n_stores < 1 or self.n_items < 1:
            raise ValueError("n_stores and n_items must be at least 1")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        for name in ("anomaly_share", "intermittent_share", "promo_share", "drift_promo_share",
                     "store_promo_share"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.drift_level <= 0:
            raise ValueError(f"drift_level must be positive, got {self.drift_level}")
        if self.promo_days[0] < 1 or self.promo_days[1] < self.promo_days[0]:
            raise ValueError(f"promo_days must be an increasing range >= 1, got {self.promo_days}")
        if self.closure_promo_lift <= 0 or self.pre_closure_lift <= 0:
            raise ValueError("closure_promo_lift and pre_closure_lift must be positive")
        if self.refurbish_days < 0:
            raise ValueError(f"refurbish_days must be >= 0, got {self.refurbish_days}")


# --------------------------------------------------------------------------------- calendar


def _easter(year: int) -> date:
    """Western Easter Sunday (anonymous Gregorian algorithm): no extra dependency needed."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday_shift = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday_shift) // 451
    month, day = divmod(h + weekday_shift - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th given weekday of a month (n = -1: the last one)."""
    if n > 0:
        first = date(year, month, 1)
        return first + datetime.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    next_month = date(year + month // 12, month % 12 + 1, 1)
    last = next_month - datetime.timedelta(days=1)
    return last - datetime.timedelta(days=(last.weekday() - weekday) % 7)


def _holidays_of_year(year: int) -> list[tuple[date, str]]:
    thanksgiving = _nth_weekday(year, 11, 3, 4)
    return [
        (date(year, 1, 1), "New Year's Day"),
        (_easter(year), "Easter Sunday"),
        (_nth_weekday(year, 5, 0, -1), "Memorial Day"),
        (date(year, 7, 4), "Independence Day"),
        (_nth_weekday(year, 9, 0, 1), "Labor Day"),
        (thanksgiving, "Thanksgiving"),
        (thanksgiving + datetime.timedelta(days=1), "Black Friday"),
        (date(year, 12, 24), "Christmas Eve"),
        (date(year, 12, 25), "Christmas Day"),
        (date(year, 12, 31), "New Year's Eve"),
    ]


def holiday_calendar(start: date, end: date) -> pd.DataFrame:
    """US retail holidays in [start, end]: the ``holiday`` covariate, known in advance.

    Columns: ``date`` (datetime64[ns]) and ``holiday`` (name), one row per holiday, by date.
    """
    rows = [
        (day, name)
        for year in range(start.year, end.year + 1)
        for day, name in _holidays_of_year(year)
        if start <= day <= end
    ]
    rows.sort()
    return pd.DataFrame(
        {
            "date": pd.to_datetime([day for day, _ in rows]).astype("datetime64[ns]"),
            "holiday": pd.Series([name for _, name in rows], dtype=object),
        }
    )


def _holiday_multiplier(dates: pd.DatetimeIndex) -> np.ndarray:
    """Per-day demand multiplier of all holiday effects, including rushes before holidays.

    The calendar is taken a few weeks beyond the range so that a holiday just outside it
    still shapes the days inside it.
    """
    n_days = len(dates)
    multiplier = np.ones(n_days)
    first = dates[0].date()
    margin = datetime.timedelta(days=21)
    calendar = holiday_calendar(first - margin, dates[-1].date() + margin)
    for day, name in zip(calendar["date"], calendar["holiday"], strict=True):
        base = (day.date() - first).days
        for offset, factor in HOLIDAY_EFFECTS[name]:
            index = base + offset
            if 0 <= index < n_days:
                multiplier[index] *= factor
    return multiplier


# ------------------------------------------------------------------------ retail closures
#
# A typical European retailer's calendar, shared by the generator (``closures=True``) and the
# Store Item closure fixture (datasets/closures_fixture.py). Real dates per year.

CLOSURE_REASONS: tuple[str, ...] = ("open", "sunday", "national", "regional", "refurbishment")
PLAN_FILE = "covariate_plan.csv"  # known covariates planned after the landed end
PLAN_DAYS = 42  # six weeks of plan


def _closure_days_of_year(year: int) -> list[tuple[date, str, str]]:
    """(day, name, scope) of the closing holidays of a year; scope national or regional."""
    sunday = easter(year)
    day = datetime.timedelta
    national = [
        (date(year, 1, 1), "New Year's Day"),
        (sunday - day(days=2), "Good Friday"),
        (sunday + day(days=1), "Easter Monday"),
        (date(year, 5, 1), "Labour Day"),
        (sunday + day(days=39), "Ascension Day"),
        (sunday + day(days=50), "Whit Monday"),
        (date(year, 10, 3), "National Day"),
        (date(year, 12, 25), "Christmas Day"),
        (date(year, 12, 26), "St Stephen's Day"),
    ]
    regional = [
        (date(year, 1, 6), "Epiphany"),
        (sunday + day(days=60), "Corpus Christi"),
        (date(year, 8, 15), "Assumption Day"),
        (date(year, 11, 1), "All Saints' Day"),
    ]
    return [(d, n, "national") for d, n in national] + [(d, n, "regional") for d, n in regional]


def closure_calendar(start: date, end: date) -> pd.DataFrame:
    """The closing holidays in [start, end]: columns date, holiday (name), scope
    (``national``: every store but one closes; ``regional``: the stores of region A close)."""
    rows = sorted(
        row
        for year in range(start.year, end.year + 1)
        for row in _closure_days_of_year(year)
        if start <= row[0] <= end
    )
    return pd.DataFrame(
        {
            "date": pd.to_datetime([r[0] for r in rows]).astype("datetime64[ns]"),
            "holiday": pd.Series([r[1] for r in rows], dtype=object),
            "scope": pd.Series([r[2] for r in rows], dtype=object),
        }
    )


@dataclass(frozen=True)
class StoreRoles:
    """Which store does what on the retail calendar (stores sorted by number).

    ``sunday_open``: the last tenth of the stores (at least one when there are two or more);
    ``holiday_open``: the last store (open on national holidays, e.g. a station store);
    ``region``: region A for the first 60 % of the stores (they close on regional holidays),
    B for the rest; ``refurbished``: the first store, when there are two or more.
    """

    stores: tuple[int, ...]
    sunday_open: tuple[int, ...]
    holiday_open: int | None
    region: dict[int, str]
    refurbished: int | None

    @property
    def region_a(self) -> tuple[int, ...]:
        return tuple(s for s in self.stores if self.region[s] == "A")


def store_roles(stores: Sequence[int]) -> StoreRoles:
    ordered = tuple(sorted(int(s) for s in stores))
    n = len(ordered)
    n_sunday_open = max(1, n // 10) if n > 1 else 0
    n_region_a = int(round(0.6 * n))
    return StoreRoles(
        stores=ordered,
        sunday_open=ordered[n - n_sunday_open:],
        holiday_open=ordered[-1] if n > 1 else None,
        region={s: "A" if i < n_region_a else "B" for i, s in enumerate(ordered)},
        refurbished=ordered[0] if n > 1 else None,
    )


def default_refurbish_start(start: date, end: date) -> date:
    """The Monday on or after the middle of ``start``..``end``."""
    point = start + datetime.timedelta(days=(end - start).days // 2)
    return point + datetime.timedelta(days=(7 - point.weekday()) % 7)


@dataclass(frozen=True)
class RetailCalendar:
    """Per (day, store): why a store is closed (index into CLOSURE_REASONS, 0 = open)."""

    dates: pd.DatetimeIndex
    roles: StoreRoles
    reason: np.ndarray  # (n_days, n_stores) int8

    @property
    def closed(self) -> np.ndarray:
        return self.reason > 0

    def pre_closure(self) -> np.ndarray:
        """(n_days, n_stores) bool: the open day before a closure that includes a holiday
        (e.g. the Saturday before Easter Monday); the day before a plain Sunday is not one."""
        holiday = np.isin(self.reason, (2, 3))
        closed = self.closed
        pre = np.zeros_like(closed)
        for column in range(closed.shape[1]):
            upcoming = False
            for day in range(closed.shape[0] - 1, -1, -1):
                if closed[day, column]:
                    upcoming = upcoming or bool(holiday[day, column])
                else:
                    pre[day, column] = upcoming
                    upcoming = False
        return pre

    def closed_frame(self) -> pd.DataFrame:
        """One row per closed store-day: date, store, reason."""
        day, column = np.nonzero(self.closed)
        return pd.DataFrame(
            {
                "date": self.dates.to_numpy(dtype="datetime64[ns]")[day],
                "store": np.asarray(self.roles.stores, dtype=np.int64)[column],
                "reason": np.asarray(CLOSURE_REASONS, dtype=object)[self.reason[day, column]],
            }
        )


def retail_calendar(
    stores: Sequence[int],
    dates: pd.DatetimeIndex,
    refurbish: tuple[date, int] | None = None,
) -> RetailCalendar:
    """Closures of ``stores`` on ``dates``: Sundays, national and regional holidays
    (``closure_calendar``) by ``store_roles``, and ``refurbish`` = (first day, days) of the
    refurbished store. A day closed for several reasons keeps the first of national, regional,
    refurbishment, sunday."""
    roles = store_roles(stores)
    n_days, n_stores = len(dates), len(roles.stores)
    reason = np.zeros((n_days, n_stores), dtype=np.int8)
    column = {s: i for i, s in enumerate(roles.stores)}
    sunday = (dates.dayofweek == 6)
    for s in roles.stores:
        if s not in roles.sunday_open:
            reason[sunday, column[s]] = 1
    if refurbish is not None and roles.refurbished is not None and refurbish[1] > 0:
        first = pd.Timestamp(refurbish[0])
        inside = (dates >= first) & (dates < first + pd.Timedelta(days=refurbish[1]))
        reason[inside, column[roles.refurbished]] = 4
    if n_days:
        calendar = closure_calendar(dates[0].date(), dates[-1].date())
        for scope, code in (("regional", 3), ("national", 2)):
            on = dates.isin(calendar.loc[calendar["scope"] == scope, "date"])
            closing = roles.region_a if scope == "regional" else [
                s for s in roles.stores if s != roles.holiday_open]
            for s in closing:
                reason[on, column[s]] = code
    return RetailCalendar(dates=dates, roles=roles, reason=reason)


def store_promo_spells(
    seed: int,
    stores: Sequence[int],
    n_days: int,
    share: float,
    days: tuple[int, int],
    stream: int = _STREAMS.index("store_promo"),
) -> np.ndarray:
    """(n_days, n_stores) bool: store-wide promotion spells, planned from day 0 on.

    Each store alternates gaps (geometric, mean set so spells cover about ``share`` of its days)
    and spells of ``days`` (inclusive range), from its own random stream: a store's spells do not
    depend on ``n_days`` or on the other stores, so the spells after a landed end (the plan) are
    the ones a longer generation has there.
    """
    out = np.zeros((n_days, len(stores)), dtype=bool)
    if share <= 0:
        return out
    mean_length = (days[0] + days[1]) / 2
    mean_gap = max(mean_length * (1 - share) / share, 1.0)
    for column, store in enumerate(stores):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, int(store))))
        day = int(rng.geometric(1 / mean_gap)) - 1
        while day < n_days:
            length = int(rng.integers(days[0], days[1] + 1))
            out[day:day + length, column] = True
            day += length + int(rng.geometric(1 / mean_gap))
    return out


@dataclass(frozen=True, eq=False)
class ClosureTruth:
    """What a closure dataset was built with: tests and benchmarks score against it.

    ``closed``: one row per closed store-day (date, store, reason: sunday, national, regional,
    refurbishment) within start..end; ``promo``: one row per open store-day on promotion (date,
    store), every item of the store promoted; ``lift``: the multiplicative promotion lift.
    """

    start: date
    end: date
    closed: pd.DataFrame
    promo: pd.DataFrame
    lift: float
    roles: StoreRoles
    refurbishment: tuple[int, date, date] | None  # store, first and last closed day
    plan_path: Path | None = None
    holidays: pd.DataFrame = field(default_factory=pd.DataFrame)  # closure_calendar(start, end)

    def closed_days(self, store: int) -> set[date]:
        return set(self.closed.loc[self.closed["store"] == store, "date"].dt.date)


def _refurbishment(config: SyntheticConfig) -> tuple[date, int] | None:
    if config.refurbish_days <= 0:
        return None
    first = config.refurbish_start or default_refurbish_start(config.start, config.end)
    return first, config.refurbish_days


def _closure_world(config: SyntheticConfig, extra_days: int = 0
                   ) -> tuple[RetailCalendar, np.ndarray]:
    """The retail calendar and store promotions of start..end + ``extra_days``."""
    dates = pd.date_range(config.start, config.end + datetime.timedelta(days=extra_days), freq="D")
    stores = range(1, config.n_stores + 1)
    calendar = retail_calendar(stores, dates, _refurbishment(config))
    promo = store_promo_spells(config.seed, stores, len(dates), config.store_promo_share,
                               config.promo_days)
    return calendar, promo


def closure_truth(config: SyntheticConfig) -> ClosureTruth:
    """The closures and promotions ``generate_sales(config)`` has (config.closures must be on)."""
    if not config.closures:
        raise ValueError("closure_truth needs a config with closures=True")
    calendar, promo = _closure_world(config)
    day, column = np.nonzero(promo & ~calendar.closed)
    refurbish = _refurbishment(config)
    refurbished = calendar.roles.refurbished
    return ClosureTruth(
        start=config.start,
        end=config.end,
        closed=calendar.closed_frame(),
        promo=pd.DataFrame({"date": calendar.dates.to_numpy(dtype="datetime64[ns]")[day],
                            "store": np.asarray(calendar.roles.stores, dtype=np.int64)[column]}),
        lift=config.closure_promo_lift,
        roles=calendar.roles,
        refurbishment=None if refurbish is None or refurbished is None else (
            refurbished, refurbish[0], refurbish[0] + datetime.timedelta(days=refurbish[1] - 1)),
        holidays=closure_calendar(config.start, config.end),
    )


def plan_frame(calendar: RetailCalendar, promo: np.ndarray, items: Sequence[int],
               first: date, days: int = PLAN_DAYS) -> pd.DataFrame:
    """The promotion plan of ``days`` days from ``first``: date, store, item, promo for every
    calendar day and series (a complete grid); promo is 0 on a day the store is closed."""
    dates = calendar.dates
    keep = (dates >= pd.Timestamp(first)) & (dates < pd.Timestamp(first) + pd.Timedelta(days=days))
    flags = (promo & ~calendar.closed)[keep]
    n_days, n_stores, n_items = int(keep.sum()), len(calendar.roles.stores), len(items)
    return pd.DataFrame(
        {
            "date": np.repeat(dates[keep].strftime("%Y-%m-%d").to_numpy(), n_stores * n_items),
            "store": np.tile(np.repeat(np.asarray(calendar.roles.stores, dtype=np.int64),
                                       n_items), n_days),
            "item": np.tile(np.asarray(items, dtype=np.int64), n_days * n_stores),
            "promo": np.repeat(flags.astype(np.int64), n_items, axis=1).ravel(),
        }
    )


def promo_plan(config: SyntheticConfig, days: int = PLAN_DAYS) -> pd.DataFrame:
    """The promotion plan of the ``days`` days after ``config.end`` (closures=True): the
    flags a longer generation has there (``plan_frame``)."""
    if not config.closures:
        raise ValueError("promo_plan needs a config with closures=True")
    calendar, promo = _closure_world(config, extra_days=days)
    return plan_frame(calendar, promo, range(1, config.n_items + 1),
                      config.end + datetime.timedelta(days=1), days)


# ------------------------------------------------------------------------------ components


@dataclass(frozen=True)
class _SeriesParams:
    """Per-series parameters; arrays have one entry per series (store-major order)."""

    level: np.ndarray
    growth: np.ndarray
    weekly_power: np.ndarray
    store_weekly: np.ndarray  # (7, n_series): store-specific tweak of the weekly profile
    yearly_power: np.ndarray
    holiday_power: np.ndarray
    promo_lift: np.ndarray
    dispersion: np.ndarray
    intermittent: np.ndarray  # bool


def _series_params(config: SyntheticConfig, rng: np.random.Generator) -> _SeriesParams:
    """Draw store and item traits; a series combines its store's and its item's."""
    n_stores, n_items = config.n_stores, config.n_items
    n_series = n_stores * n_items
    store_of = np.repeat(np.arange(n_stores), n_items)
    item_of = np.tile(np.arange(n_items), n_stores)

    store_size = rng.lognormal(0.0, config.store_spread, n_stores)
    item_popularity = rng.lognormal(0.0, config.item_spread, n_items)
    series_jitter = rng.lognormal(0.0, 0.10, n_series)
    level = config.base_level * store_size[store_of] * item_popularity[item_of] * series_jitter

    store_growth = rng.normal(config.annual_growth, 0.02, n_stores)
    item_growth = rng.normal(0.0, 0.02, n_items)
    growth = store_growth[store_of] + item_growth[item_of]

    weekly_power = rng.uniform(0.6, 1.4, n_items)[item_of]
    store_weekly = rng.lognormal(0.0, 0.04, (7, n_stores))[:, store_of]
    yearly_power = rng.uniform(0.4, 1.6, n_items)[item_of]
    holiday_power = rng.uniform(0.7, 1.3, n_items)[item_of]
    promo_lift = rng.uniform(*config.promo_lift, n_items)[item_of]
    dispersion = rng.uniform(*config.dispersion, n_series)

    intermittent = np.zeros(n_series, dtype=bool)
    if config.intermittent_share > 0:
        n_intermittent = max(1, int(round(config.intermittent_share * n_series)))
        intermittent[rng.choice(n_series, size=n_intermittent, replace=False)] = True
    n_sparse = int(intermittent.sum())
    # Slow movers: well under one unit a day, heavily over-dispersed, so most days are zero.
    level[intermittent] = rng.uniform(0.15, 0.8, n_sparse)
    dispersion[intermittent] = rng.uniform(0.3, 0.8, n_sparse)
    return _SeriesParams(
        level=level,
        growth=growth,
        weekly_power=weekly_power,
        store_weekly=store_weekly,
        yearly_power=yearly_power,
        holiday_power=holiday_power,
        promo_lift=promo_lift,
        dispersion=dispersion,
        intermittent=intermittent,
    )


def _weekly_factor(profile: np.ndarray, params: _SeriesParams, dow: np.ndarray) -> np.ndarray:
    """(n_days, n_series) weekly factor: a shared shape, stronger or weaker per item and store."""
    shaped = profile[:, None] ** params.weekly_power[None, :] * params.store_weekly
    shaped /= shaped.mean(axis=0, keepdims=True)  # the weekly factor must not move the level
    return shaped[dow]


def _yearly_shape(dates: pd.DatetimeIndex) -> np.ndarray:
    """Smooth yearly cycle by periodic interpolation between mid-month knots."""
    year_length = np.where(dates.is_leap_year, 366.0, 365.0)
    phase = (dates.dayofyear.to_numpy() - 0.5) / year_length
    knots = (np.arange(12) + 0.5) / 12
    return np.interp(phase, knots, YEARLY_KNOTS, period=1.0)


def _promo_spells(
    rng: np.random.Generator,
    n_days: int,
    n_series: int,
    share: float,
    days: tuple[int, int],
    first_day: int = 0,
) -> np.ndarray:
    """(n_days, n_series) bool: random promotion spells covering about ``share`` of the days."""
    window = n_days - first_day
    if share <= 0 or window <= 0:
        return np.zeros((n_days, n_series), dtype=bool)
    mean_length = (days[0] + days[1]) / 2
    # Spells land independently and may overlap; this rate makes their union cover ``share``.
    coverage_rate = -np.log1p(-share)
    n_spells = rng.poisson(coverage_rate * window * n_series / mean_length)
    series = rng.integers(0, n_series, n_spells)
    starts = rng.integers(first_day, n_days, n_spells)
    stops = np.minimum(starts + rng.integers(days[0], days[1] + 1, n_spells), n_days)
    marks = np.zeros((n_days + 1, n_series), dtype=np.int32)
    np.add.at(marks, (starts, series), 1)
    np.add.at(marks, (stops, series), -1)
    return np.cumsum(marks, axis=0)[:-1] > 0


def _latent_shocks(
    rng: np.random.Generator, n_days: int, n_series: int, sd: float, phi: float = 0.85
) -> np.ndarray:
    """Slow multiplicative demand shocks (log AR(1)): real demand wanders, it is not i.i.d."""
    innovations = rng.normal(0.0, sd * np.sqrt(1 - phi**2), (n_days, n_series))
    state = rng.normal(0.0, sd, n_series)
    shocks = np.empty((n_days, n_series))
    for day in range(n_days):
        state = phi * state + innovations[day]
        shocks[day] = state
    return np.exp(shocks - sd**2 / 2)  # mean-one on the original scale


# ------------------------------------------------------------------------------- anomalies


@dataclass(frozen=True)
class _Events:
    series: np.ndarray
    start: np.ndarray
    length: np.ndarray
    kind: np.ndarray  # index into ANOMALY_TYPES
    factor: np.ndarray


def _draw_factor(kind: str, rng: np.random.Generator) -> float:
    if kind == "spike":
        return float(rng.uniform(1.5, 5.0))
    if kind == "dip":
        return float(rng.uniform(0.1, 0.6))
    if kind == "level_shift":
        return 0.5 if rng.random() < 0.5 else float(rng.uniform(1.6, 2.0))
    return 0.0


def _place_events(
    config: SyntheticConfig,
    rng: np.random.Generator,
    closed: np.ndarray,
    intermittent: np.ndarray,
    span_closed: bool = False,
) -> _Events:
    """Place non-overlapping events until they cover ``anomaly_share`` of all series-days.

    Events go on regular series only (an anomaly on a series that is mostly zero is not
    observable), never before ``anomaly_start_day`` and never over a closed day. The first four
    events take one type each, so every type is present whenever any anomaly is. With
    ``span_closed`` (a retail calendar: most weeks have a closed Sunday) an event may span
    closed days but starts and ends on open ones; its closed days get no label.
    """
    n_days, n_series = closed.shape
    target = int(round(config.anomaly_share * n_days * n_series))
    candidates = np.flatnonzero(~intermittent)
    if candidates.size == 0:
        candidates = np.arange(n_series)
    taken = np.zeros((n_days, n_series), dtype=bool)
    rows: list[tuple[int, int, int, int, float]] = []
    covered = 0
    attempts, max_attempts = 0, 100 * (target + 4)
    while target > 0 and (covered < target or len(rows) < len(ANOMALY_TYPES)):
        attempts += 1
        if attempts > max_attempts:
            break
        if len(rows) < len(ANOMALY_TYPES):
            kind = len(rows)
        else:
            kind = int(rng.choice(len(ANOMALY_TYPES), p=_ANOMALY_WEIGHTS))
        name = ANOMALY_TYPES[kind]
        low, high = _ANOMALY_DAYS[name]
        length = int(rng.integers(low, high + 1))
        series = int(candidates[rng.integers(candidates.size)])
        last_start = n_days - length
        if last_start < config.anomaly_start_day:
            continue
        start = int(rng.integers(config.anomaly_start_day, last_start + 1))
        stop = start + length
        guard = slice(max(start - _ANOMALY_GAP_DAYS, 0), stop + _ANOMALY_GAP_DAYS)
        if span_closed:
            blocked = bool(closed[start, series] or closed[stop - 1, series])
        else:
            blocked = bool(closed[start:stop, series].any())
        if taken[guard, series].any() or blocked:
            continue
        taken[start:stop, series] = True
        rows.append((start, series, length, kind, _draw_factor(name, rng)))
        covered += length
    rows.sort()  # event ids follow time, which is how a reader scans them
    table = np.array(rows, dtype=float).reshape(-1, 5)
    return _Events(
        start=table[:, 0].astype(np.int64),
        series=table[:, 1].astype(np.int64),
        length=table[:, 2].astype(np.int64),
        kind=table[:, 3].astype(np.int64),
        factor=table[:, 4],
    )


def _inject(
    clean: np.ndarray, mean: np.ndarray, events: _Events
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Apply the events to a copy of ``clean``; return it and one label row per event-day."""
    total = int(events.length.sum())
    offsets = np.arange(total) - np.repeat(np.cumsum(events.length) - events.length, events.length)
    day = np.repeat(events.start, events.length) + offsets
    series = np.repeat(events.series, events.length)
    kind = np.repeat(events.kind, events.length)
    factor = np.repeat(events.factor, events.length)
    event_id = np.repeat(np.arange(1, len(events.start) + 1), events.length)

    expected = clean[day, series]
    scaled = np.rint(expected * factor).astype(np.int64)
    # A spike is measured against the typical level too, so a spike on a quiet day still shows.
    spike = np.maximum(np.rint(np.maximum(expected, mean[day, series]) * factor), expected + 1)
    dip = np.minimum(scaled, np.maximum(expected - 1, 0))
    actual = np.select(
        [kind == 0, kind == 1, kind == 2],
        [spike, dip, scaled],
        default=0,
    ).astype(np.int64)

    sales = clean.copy()
    sales[day, series] = actual
    labels = {
        "day": day,
        "series": series,
        "anomaly_type": np.asarray(ANOMALY_TYPES, dtype=object)[kind],
        "event_id": event_id.astype(np.int64),
        "expected": expected.astype(np.float64),
        "actual": actual,
    }
    return sales, labels


# ---------------------------------------------------------------------------------- public


def generate_sales(
    config: SyntheticConfig = SyntheticConfig(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate the demo dataset; same config, same frames, bit for bit.

    Returns ``(sales, anomaly_labels)``. ``sales`` has one row per (date, store, item) with
    columns date, store, item, sales, promo, holiday, sorted by date, store, item. With
    ``config.closures`` it has rows for open store-days only, one more column ``region`` (the
    store's, A or B), and ``promo`` is the store-wide plan (``closure_truth`` tells it all).
    ``anomaly_labels`` has one row per injected anomalous series-day with columns date, store,
    item, anomaly_type, event_id, expected (the clean count before injection) and actual (the
    count in ``sales``).
    """
    streams = dict(
        zip(
            _STREAMS,
            (
                np.random.default_rng(s)
                for s in np.random.SeedSequence(config.seed).spawn(len(_STREAMS))
            ),
            strict=True,
        )
    )
    dates = pd.date_range(config.start, config.end, freq="D")
    n_days = len(dates)
    n_series = config.n_stores * config.n_items
    params = _series_params(config, streams["params"])

    dow = dates.dayofweek.to_numpy()
    years = np.arange(n_days)[:, None] / 365.25
    drift_day = n_days
    if config.drift_from is not None:
        drift_day = int(np.clip((config.drift_from - config.start).days, 0, n_days))
    drifted = (np.arange(n_days) >= drift_day)[:, None]

    weekly = _weekly_factor(WEEKLY_PROFILE, params, dow)
    if drift_day < n_days:
        after = _weekly_factor(DRIFT_WEEKLY_PROFILE, params, dow)
        weekly = np.where(drifted, after, weekly)

    holiday_mult = _holiday_multiplier(dates)
    store_index = np.repeat(np.arange(config.n_stores), config.n_items)
    if config.closures:
        # The retailer's own calendar decides closures; the one store open on Christmas Day
        # sells there at half its level instead of nothing.
        holiday_mult = np.where(holiday_mult == 0, 0.5, holiday_mult)
        calendar, store_promo = _closure_world(config)
        closed_series = calendar.closed[:, store_index]
        promo = store_promo[:, store_index]
        promo_mult = np.where(promo, config.closure_promo_lift, 1.0)
        promo_mult = promo_mult * np.where(
            calendar.pre_closure()[:, store_index], config.pre_closure_lift, 1.0)
    else:
        promo = _promo_spells(
            streams["promo"], n_days, n_series, config.promo_share, config.promo_days
        )
    if drift_day < n_days and not config.closures:
        # The extra spells overlap the regular ones, so their union reaches drift_promo_share.
        extra_share = max(1 - (1 - config.drift_promo_share) / (1 - config.promo_share), 0.0)
        promo |= _promo_spells(
            streams["drift_promo"], n_days, n_series, extra_share, config.promo_days, drift_day
        )
    # Shoppers stock up during a promotion and buy a little less the two days after it.
    hangover = np.zeros_like(promo)
    hangover[1:] |= promo[:-1]
    hangover[2:] |= promo[:-2]
    hangover &= ~promo
    if not config.closures:
        promo_mult = np.where(promo, params.promo_lift[None, :], 1.0) * np.where(
            hangover, 0.92, 1.0)

    mean = (
        params.level[None, :]
        * np.exp(np.log1p(params.growth)[None, :] * years)
        * weekly
        * _yearly_shape(dates)[:, None] ** params.yearly_power[None, :]
        * holiday_mult[:, None] ** params.holiday_power[None, :]
        * promo_mult
        * np.where(drifted, config.drift_level, 1.0)
        * _latent_shocks(streams["latent"], n_days, n_series, config.latent_sd)
    )

    noise = streams["noise"]
    shape = np.broadcast_to(params.dispersion, (n_days, n_series))
    clean = noise.poisson(mean * noise.gamma(shape, 1.0 / shape)).astype(np.int64)

    if config.closures:
        closed = closed_series
    else:
        closed = np.broadcast_to((holiday_mult == 0)[:, None], (n_days, n_series))
    events = _place_events(
        config, streams["anomalies"], closed, params.intermittent, span_closed=config.closures
    )
    sales, labels = _inject(clean, mean, events)

    store_of = np.repeat(np.arange(1, config.n_stores + 1, dtype=np.int64), config.n_items)
    item_of = np.tile(np.arange(1, config.n_items + 1, dtype=np.int64), config.n_stores)
    holiday_days = dates.isin(holiday_calendar(config.start, config.end)["date"])
    sales_frame = pd.DataFrame(
        {
            "date": np.repeat(dates.to_numpy(dtype="datetime64[ns]"), n_series),
            "store": np.tile(store_of, n_days),
            "item": np.tile(item_of, n_days),
            "sales": sales.ravel(),
            "promo": promo.ravel().astype(np.int64),
            "holiday": np.repeat(holiday_days.astype(np.int64), n_series),
        }
    )

    if config.closures:
        region = np.asarray([calendar.roles.region[s] for s in calendar.roles.stores], dtype=object)
        sales_frame["region"] = np.tile(region[store_index], n_days)
        sales_frame = sales_frame[~closed.ravel()].reset_index(drop=True)
        open_label = ~closed[labels["day"], labels["series"]]
        labels = {name: values[open_label] for name, values in labels.items()}

    label_frame = pd.DataFrame(
        {
            "date": dates.to_numpy(dtype="datetime64[ns]")[labels["day"]],
            "store": store_of[labels["series"]],
            "item": item_of[labels["series"]],
            "anomaly_type": labels["anomaly_type"],
            "event_id": labels["event_id"],
            "expected": labels["expected"],
            "actual": labels["actual"],
        }
    )
    label_frame = label_frame.sort_values(["date", "store", "item"], ignore_index=True)
    return sales_frame, label_frame
