"""The weekly seasonal recipe: a forecast computed at its origin from the sales up to it.

Why a recipe fit at the origin, rather than a feature row per target date. A direct model's
features must be safe for the whole horizon, so a weekly growth term ends a horizon (39 weeks)
before its target. On Walmart that staleness is most of the error: the same seasonal base x
growth does clearly worse with a growth 39 weeks old than with one measured at the origin
(``benchmarks/walmart_recipe.py``, where every step below was chosen on validation origins
inside the training file, never on the holdout; its figures are in docs/benchmarks.md). Like
the baselines, the recipe is recomputed at every origin (backtest, expected values, forecasts),
from the data up to it only.

At origin ``o`` (an index into a regular weekly grid; a week without a row counts 0), for the
target ``o + h``:

1. denoise: per group of the last key (a department), the series x weeks matrix keeps its first
   ``rank`` SVD components (the Kaggle winner's step: a department's stores share one shape);
2. source week: ``t - 52``, except around Easter, which moves: the ``easter_block`` weeks ending
   with the week that holds Easter Sunday copy last year's Easter weeks, and the weeks they
   displace fill the gap (a swap);
3. seasonal base: the source week smoothed 1/4-1/2-1/4 over its neighbours, unsmoothed where the
   source week was a holiday week (a holiday's peak is one week: smoothing halves it);
4. growth: for windows of 8 and 13 weeks, the last n weeks / the same n weeks a year earlier
   (1 while the history is too short for that), clipped to 0.5..2, for the series, for its
   group (the last key pooled over the others) and for its first key (pooled over the others),
   blended on the log scale 0.55 / 0.15 / 0.30, then the geometric mean over the two windows;
5. base = seasonal base x growth.

The lookback is bounded (``history_periods``, two seasons): the same origin gives the same base
whatever history the caller holds beyond it. Series ids are the keys joined by ``|`` (as
``validated_sales`` builds them); with one key, both pools are all series.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from dateutil.easter import easter

SEASON = 52
SEPARATOR = "|"
# Columns an anchor adds to a row: what the forecaster's correction may read (``recipe_base``
# is its normaliser, not a feature).
ANCHOR_COLUMNS = ("recipe_h", "recipe_base", "recipe_growth", "recipe_own_growth",
                  "recipe_holiday")


class ShortHistory(ValueError):
    """The history up to an origin is shorter than the recipe needs (``Recipe.min_periods``)."""


@dataclass(frozen=True)
class Recipe:
    """The recipe's parameters, as validated in ``benchmarks/walmart_recipe.py``."""

    rank: int = 10  # validation is flat from 8 to 12
    easter_block: int = 2
    holiday_unsmoothed: bool = True
    windows: tuple[int, ...] = (8, 13)
    weight_group: float = 0.15  # the last key's pool (a department over its stores)
    weight_first: float = 0.30  # the first key's pool (a store over its departments)
    kernel: tuple[float, float, float] = (0.25, 0.5, 0.25)
    clip: tuple[float, float] = (0.5, 2.0)
    history_periods: int = 2 * SEASON

    @property
    def min_periods(self) -> int:
        """Periods of grid up to the origin (included) the recipe needs: last year's week of the
        first target and its earlier neighbour. A growth window that does not fit a season
        back yet counts as no growth (1), as a series without sales a year ago does."""
        return SEASON + 1


@dataclass(frozen=True)
class Panel:
    """Sales on a regular grid: series x periods (NaN where a series has no row)."""

    y: np.ndarray
    holiday: np.ndarray  # per period: 1 if any row of it is flagged a holiday
    series: np.ndarray  # series ids, sorted
    periods: pd.DatetimeIndex
    step_days: int

    @classmethod
    def from_rows(cls, frame: pd.DataFrame, step_days: int) -> Panel:
        """``frame``: ``series_id, ds, y`` (and ``is_holiday``); rows without ``y`` are ignored.

        A date off the grid (weekly data whose weekday changed) goes to the nearest period.
        """
        rows = frame[frame["y"].notna()]
        if rows.empty:
            raise ValueError("no rows with a target: the seasonal recipe has no history")
        ds = pd.to_datetime(rows["ds"])
        start = ds.min()
        pos = np.rint((ds - start).dt.days.to_numpy() / step_days).astype(int)
        n = int(pos.max()) + 1
        series, codes = np.unique(rows["series_id"].astype(str).to_numpy(), return_inverse=True)
        y = np.full((len(series), n), np.nan)
        y[codes, pos] = rows["y"].to_numpy(dtype=float)
        holiday = np.zeros(n)
        if "is_holiday" in rows.columns:
            flags = pd.to_numeric(rows["is_holiday"], errors="coerce").fillna(0).to_numpy()
            np.maximum.at(holiday, pos, (flags > 0).astype(float))
        periods = pd.date_range(start, periods=n, freq=f"{step_days}D")
        return cls(y, holiday, series, periods, step_days)

    def index(self, day: pd.Timestamp | dt.date) -> int:
        return int(round((pd.Timestamp(day) - self.periods[0]).days / self.step_days))


@dataclass(frozen=True)
class Anchor:
    """The recipe's forecast from one origin: per series and horizon step, its base and parts."""

    origin: pd.Timestamp
    step_days: int
    series: np.ndarray  # S series ids
    base: np.ndarray  # S x H
    growth: np.ndarray  # S: the blended growth
    own_growth: np.ndarray  # S: the series' own growth (geometric mean over the windows)
    holiday: np.ndarray  # H: 1 where the holiday rule left the week unsmoothed

    @property
    def horizon(self) -> int:
        return self.base.shape[1]

    def lookup(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``ANCHOR_COLUMNS`` for each row of ``frame`` (``series_id, ds``), same index; NaN where
        the anchor has no forecast (an unknown series, a date outside its horizon)."""
        pos = {s: i for i, s in enumerate(self.series)}
        row = frame["series_id"].astype(str).map(pos).to_numpy(dtype=float)
        days = (pd.to_datetime(frame["ds"]) - self.origin).dt.days.to_numpy()
        h = days / self.step_days
        ok = ~np.isnan(row) & (h >= 1) & (h <= self.horizon) & (h == np.round(h))
        r, c = row[ok].astype(int), h[ok].astype(int) - 1
        out = np.full((len(frame), len(ANCHOR_COLUMNS)), np.nan)
        out[ok] = np.column_stack([c + 1, self.base[r, c], self.growth[r], self.own_growth[r],
                                   self.holiday[c]])
        return pd.DataFrame(out, columns=list(ANCHOR_COLUMNS), index=frame.index)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, origin=np.array(self.origin.isoformat()),
                 step_days=np.array(self.step_days), series=self.series.astype(str),
                 base=self.base, growth=self.growth, own_growth=self.own_growth,
                 holiday=self.holiday)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Anchor:
        data = np.load(io.BytesIO(blob), allow_pickle=False)
        return cls(pd.Timestamp(str(data["origin"])), int(data["step_days"]),
                   data["series"].astype(object), data["base"], data["growth"],
                   data["own_growth"], data["holiday"])


def _groups(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group codes of the first and the last key (all one group when there is one key)."""
    parts = [s.split(SEPARATOR) for s in series]
    if all(len(p) < 2 for p in parts):
        zeros = np.zeros(len(series), dtype=int)
        return zeros, zeros
    first = np.unique([p[0] for p in parts], return_inverse=True)[1]
    last = np.unique([p[-1] for p in parts], return_inverse=True)[1]
    return first, last


def _denoise(filled: np.ndarray, groups: np.ndarray, rank: int) -> np.ndarray:
    """Each group's series x periods matrix cut to its first ``rank`` SVD components."""
    out = filled.copy()
    if rank <= 0:
        return out
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if len(rows) <= rank:
            continue
        u, s, vt = np.linalg.svd(filled[rows], full_matrices=False)
        out[rows] = (u[:, :rank] * s[:rank]) @ vt[:rank]
    return out


def _easter_indices(periods: pd.DatetimeIndex, step_days: int) -> list[int]:
    """Index of the period that holds Easter Sunday (a period is labelled by its last day)."""
    out = []
    for year in range(periods[0].year - 1, periods[-1].year + 2):
        sunday = pd.Timestamp(easter(year))
        pos = int(np.ceil((sunday - periods[0]).days / step_days))
        if 0 <= pos < len(periods):
            out.append(pos)
    return out


def _source_periods(origin: int, horizon: int, easters: list[int], block: int) -> np.ndarray:
    """For the targets ``origin .. origin + horizon + 1`` (neighbours included), the period a
    season back each one copies; Easter's ``block`` periods swap with last year's."""
    targets = np.arange(origin, origin + horizon + 2)
    source = targets - SEASON
    if block == 0:
        return source
    for e in easters:
        earlier = [x for x in easters if x < e - SEASON // 2]
        if not earlier or not targets[0] <= e <= targets[-1]:
            continue
        last = earlier[-1]
        wanted = list(range(last - block + 1, last + 1))  # last year's Easter periods
        aligned = list(range(e - SEASON - block + 1, e - SEASON + 1))  # what t - 52 copies
        span = range(min(wanted + aligned), max(wanted + aligned) + 1)
        block_targets = list(range(e - block + 1, e + 1))
        pairs = list(zip(block_targets, wanted, strict=True))
        pairs += list(zip([x + SEASON for x in span if x + SEASON not in block_targets],
                          [x for x in span if x not in wanted], strict=True))
        for target, src in pairs:
            if targets[0] <= target <= targets[-1]:
                source[target - targets[0]] = src
    return source


def _ratio(num: np.ndarray, den: np.ndarray, clip: tuple[float, float]) -> np.ndarray:
    """``num / den`` clipped; 1 where ``den`` is not positive (no growth to measure)."""
    safe = np.where(den > 0, den, 1.0)
    return np.clip(np.where(den > 0, num / safe, 1.0), *clip)


def _pooled_ratio(num: np.ndarray, den: np.ndarray, groups: np.ndarray,
                  clip: tuple[float, float]) -> np.ndarray:
    nums = np.bincount(groups, weights=num)
    dens = np.bincount(groups, weights=den)
    return _ratio(nums, dens, clip)[groups]


def anchor_at(panel: Panel, origin: int, horizon: int, recipe: Recipe = Recipe()
              ) -> Anchor | None:
    """The recipe's forecast of periods ``origin + 1 .. origin + horizon`` from the panel's data
    up to ``origin`` (an index into it); None when the history is too short for it."""
    if horizon > SEASON - 1:
        raise ValueError(f"the seasonal recipe copies last year's week and its neighbours: a "
                         f"horizon of {horizon} periods is too long, expected at most "
                         f"{SEASON - 1}")
    start = max(0, origin - recipe.history_periods + 1)
    o = origin - start  # the origin inside the window
    if o + 1 < recipe.min_periods:
        return None
    window = panel.y[:, start:origin + 1]
    present = ~np.isnan(window).all(axis=1)  # series with a row in the window
    series = panel.series[present]
    filled = np.nan_to_num(window[present])
    first, last = _groups(series)
    smooth = _denoise(filled, last, recipe.rank)

    grid = pd.date_range(panel.periods[start], periods=o + horizon + 2,
                         freq=f"{panel.step_days}D")
    source = _source_periods(o, horizon, _easter_indices(grid, panel.step_days),
                             recipe.easter_block)
    values = smooth[:, source]
    centre = values[:, 1:-1]
    k = recipe.kernel
    seasonal = k[0] * values[:, :-2] + k[1] * centre + k[2] * values[:, 2:]
    holiday = panel.holiday[start:origin + 1][source[1:-1]] > 0
    if not recipe.holiday_unsmoothed:
        holiday[:] = False
    seasonal[:, holiday] = centre[:, holiday]

    logs, own_logs = [], []
    own_weight = 1.0 - recipe.weight_group - recipe.weight_first
    for n in recipe.windows:
        if o - n + 1 - SEASON < 0:  # the window a season back starts before the data
            own_logs.append(np.zeros(len(series)))
            logs.append(np.zeros(len(series)))
            continue
        num = filled[:, o - n + 1:o + 1].sum(axis=1)
        den = filled[:, o - n + 1 - SEASON:o + 1 - SEASON].sum(axis=1)
        own = np.log(_ratio(num, den, recipe.clip))
        own_logs.append(own)
        logs.append(own_weight * own
                    + recipe.weight_group * np.log(_pooled_ratio(num, den, last, recipe.clip))
                    + recipe.weight_first * np.log(_pooled_ratio(num, den, first, recipe.clip)))
    growth = np.exp(np.mean(logs, axis=0))
    return Anchor(origin=panel.periods[origin], step_days=panel.step_days, series=series,
                  base=seasonal * growth[:, None], growth=growth,
                  own_growth=np.exp(np.mean(own_logs, axis=0)), holiday=holiday.astype(float))


def last_anchor(panel: Panel, horizon: int, recipe: Recipe = Recipe()) -> Anchor:
    """The recipe's forecast from the panel's last period; ``ShortHistory`` when the panel is
    too short for it."""
    anchor = anchor_at(panel, len(panel.periods) - 1, horizon, recipe)
    if anchor is None:
        raise ShortHistory(
            f"the seasonal recipe needs {recipe.min_periods} periods of history up to the "
            f"origin, the history holds {len(panel.periods)} "
            f"({panel.periods[0].date()} .. {panel.periods[-1].date()})")
    return anchor
