"""Context features of sales anomalies: each series-period's residual against an honest
forecast, put in the context of the series' own past and of the day's other series.

Pure core (no Dagster): ``context_features`` is what the detector (``detector.py``) reads and
what ``classify`` (``classify.py``) explains.

Why residuals and context rather than raw sales: raw sales carry the weekly and yearly cycle, so
a raw-sales detector mostly flags Saturdays and December. The residual against an honest
(out-of-sample) forecast removes what was expected; scaling it per series (median and MAD of the
series' own PAST residuals) makes a 10-unit miss on a slow mover and on a best seller
comparable. A point-wise score still misses what only neighbours show: twenty days each a little
below expectation are one level shift, not twenty coincidences, so each row also carries the
run of same-sign residuals it ends (its length and standardised sum), the 7-period mean, and
the length of the current zero run with the sales that run was expected to have (a stock-out
on a best seller is far stranger than three quiet days of a slow mover).

Every statistic of a row is computed from that row and the rows BEFORE it (never after), and
its reference statistics (median, MAD) from the rows before it only: scoring a day gives the
same features whether or not later days exist, as in the daily production run.

Windows, runs and minimum histories count PERIODS of the data (``step_days`` apart: days for
daily data, weeks for weekly), not calendar days: they are statistics over a number of past
residuals, and a robust scale from the 26 weekly residuals of 182 days is far noisier than
from 182 daily ones. The grid is one row per period, so a weekly series has no empty days
between its weeks to break a run or dilute a mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FEATURE_VERSION = "context-v3"  # v3: nb_tail; v2: day factors; older detectors must retrain
INPUT_COLUMNS = ("series_id", "ds", "y", "p10", "p50", "p90")
# Every column context_features computes (besides the input columns).
CONTEXT_COLUMNS = (
    "residual", "pearson", "z", "nb_tail", "interval_pos", "dow", "level_7d", "run_len", "run_stat",
    "run_ratio", "zero_run", "zero_expected", "ratio", "ref_median", "ref_scale", "ref_points",
    "day_factor", "forecast_p50",
)
MAD_TO_SD = 1.4826
SCALE_FLOOR = 0.5  # in Poisson units: no count series is more predictable than half its noise
RUN_Z = 1.0  # a period joins a same-sign run when its |z| exceeds this
LEVEL_PERIODS = 7  # level_7d: the mean z over this many periods (7 days for daily data)
DAY_FACTOR_MIN_SERIES = 30  # fewer series with a usable expectation on a day: no day factor
DAY_FACTOR_MIN_P50 = 5.0  # series expected to sell less are too noisy to measure a ratio on
DAY_FACTOR_BOUNDS = (0.01, 100.0)  # only keeps the scaled expectation positive and finite


@dataclass
class ContextFeatures:
    """The scored rows and what was left out, with the reason.

    ``rows``: one row per scorable (series, day): the input columns plus ``CONTEXT_COLUMNS``.
    ``skipped``: counts of rows NOT scored, by reason: ``missing_expected`` (no P10/P50/P90,
    e.g. a day the forecaster had no forecast for), ``missing_actual`` (no sales) and
    ``short_history`` (fewer than ``min_history`` past residuals to scale the series by).
    """

    rows: pd.DataFrame
    skipped: dict[str, int]
    version: str = FEATURE_VERSION
    params: dict = field(default_factory=dict)

    @property
    def hints(self) -> dict[str, str]:
        """Why a row is skipped, by reason."""
        return {
            "missing_expected": "no expected value (P10/P50/P90) for the day: not scored",
            "missing_actual": "no sales recorded for the day: not scored",
            "short_history": (f"series with fewer than {self.params.get('min_history')} past "
                              "residuals: too little history to scale, not scored"),
        }

    @property
    def messages(self) -> list[str]:
        return skip_messages(self.skipped, self.hints)


def skip_messages(skipped: dict[str, int], hints: dict[str, str]) -> list[str]:
    """One line per reason that skipped rows: how many, and why."""
    return [f"{n} rows skipped: {hints[k]}" for k, n in skipped.items() if n]


def day_factors(frame: pd.DataFrame, min_series: int = DAY_FACTOR_MIN_SERIES) -> pd.Series:
    """Per day, how far actual sales of ALL series sit from their expectation: the ratio
    sum(y) / sum(p50) over the series whose own ratio is within the day's 10-90 % range (so a
    few anomalous series do not move it), among series expected to sell at least
    ``DAY_FACTOR_MIN_P50``. 1 on days with fewer than ``min_series`` such series; clipped to
    ``DAY_FACTOR_BOUNDS`` (a day with no sales at all gets 0.01).

    Why: a shift every series shares on the same day is not a store-item anomaly. Sales can
    step for every series at once (Store Item steps on every 1 January) and the forecaster,
    whose features lag 91+ days, cannot see it; early in the history (little training data)
    its expectations can sit well above all series for weeks. Point-wise, each series would
    then be flagged, mostly as a level shift (the figures are in docs/benchmarks.md). A
    planner asks which series behaved strangely against the others, so the expectation is
    scaled by the day's common factor first. A day every
    series shares (a closure such as Christmas in the synthetic data, a feed outage, a
    forecaster miss) is then not hundreds of anomalies: the ``sales_anomalies`` asset reports
    days whose factor is far from 1 as a data problem in its ``anomaly_rate`` check instead.
    """
    f = frame[["ds", "y", "p50"]].dropna()
    f = f[f["p50"] >= DAY_FACTOR_MIN_P50]
    if f.empty:
        return pd.Series(dtype=float, name="day_factor")
    ds = pd.to_datetime(f["ds"])
    days = pd.DatetimeIndex(np.sort(ds.unique()))
    row = days.get_indexer(ds)
    col = f.groupby(ds).cumcount().to_numpy()  # a dense (day, k-th row of the day) grid
    y = np.full((len(days), col.max() + 1), np.nan)
    p50 = np.full_like(y, np.nan)
    y[row, col] = f["y"].to_numpy(dtype=float)
    p50[row, col] = f["p50"].to_numpy(dtype=float)
    ratio = y / p50
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(ratio, [0.1, 0.9], axis=1)
    core = (ratio >= lo[:, None]) & (ratio <= hi[:, None])
    total_p50 = np.where(core, p50, 0.0).sum(axis=1)
    factor = pd.Series(np.where(core, y, 0.0).sum(axis=1) / np.where(total_p50 > 0, total_p50,
                                                                    np.nan),
                       index=days).fillna(1.0).clip(*DAY_FACTOR_BOUNDS)
    enough = (~np.isnan(ratio)).sum(axis=1) >= min_series
    return factor.where(enough, 1.0).rename("day_factor")


def with_day_factors(frame: pd.DataFrame, min_series: int = DAY_FACTOR_MIN_SERIES,
                     factors: pd.Series | None = None) -> pd.DataFrame:
    """``frame`` with a ``day_factor`` column (see ``day_factors``), for ``context_features``.

    Computed from the frame's own series: pass the whole cross-section of a day (as the
    ``sales_anomalies`` asset does), or the factors it stored, never one series alone.
    ``factors`` (by day, as ``day_factors`` gives them): a block of series takes the factors
    of every series' cross-section (``day_factors_of``) instead of its own.
    """
    if factors is None:
        factors = day_factors(frame, min_series)
    ds = pd.to_datetime(frame["ds"])
    return frame.assign(day_factor=ds.map(factors).fillna(1.0).to_numpy())


def day_factors_of(slices: Iterable[pd.DataFrame], min_series: int = DAY_FACTOR_MIN_SERIES
                   ) -> pd.Series:
    """``day_factors`` of slices of days that each hold whole days' cross-sections (every
    series of a day in one slice): the same factors as of all rows at once, in a slice's
    memory."""
    parts = [day_factors(part, min_series) for part in slices]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.Series(dtype=float, name="day_factor")
    return pd.concat(parts).rename("day_factor")


def _scaled(frame: pd.DataFrame) -> pd.DataFrame:
    """The input columns, P10/P50/P90 times the frame's ``day_factor`` (1 where absent)."""
    f = frame[list(INPUT_COLUMNS)].copy()
    factor = frame["day_factor"].fillna(1.0).to_numpy(dtype=float) \
        if "day_factor" in frame.columns else np.ones(len(frame))
    if (factor <= 0).any() or not np.isfinite(factor).all():
        bad = factor[(factor <= 0) | ~np.isfinite(factor)][0]
        raise ValueError(f"day_factor must be positive and finite, got {bad}")
    for c in ("p10", "p50", "p90"):
        f[c] = f[c].to_numpy(dtype=float) * factor
    return f.assign(day_factor=factor)


def _periods(ds: pd.Series, step_days: int, what: str) -> pd.DatetimeIndex:
    """Every period from the first to the last of ``ds``, ``step_days`` apart: the grid rows.

    Raises when a date falls between two periods: it would have no grid row (weekly data
    labelled by different weekdays, or daily dates with a time of day).
    """
    if step_days < 1:
        raise ValueError(f"step_days must be a positive number of days, got {step_days}")
    first = ds.min()
    off = (ds - first) % pd.Timedelta(days=step_days) != pd.Timedelta(0)
    if off.any():
        bad = ds[off].iloc[0]
        raise ValueError(f"{what}: ds {bad} is not a period start: with step_days={step_days} "
                         f"every date must be a whole number of periods after {first}")
    return pd.date_range(first, ds.max(), freq=f"{step_days}D")


def period_name(step_days: int) -> str:
    """What one period is called in a reason: day, week, or n-day period."""
    return {1: "day", 7: "week"}.get(step_days, f"{step_days}-day period")


def _grid(frame: pd.DataFrame, days: pd.DatetimeIndex, series: np.ndarray, column: str
          ) -> np.ndarray:
    out = np.full((len(days), len(series)), np.nan)
    r = days.get_indexer(frame["ds"])
    c = np.searchsorted(series, frame["series_id"].to_numpy())
    out[r, c] = frame[column].to_numpy(dtype=float)
    return out


def _nan_median_sorted(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column count and median of a (rows, columns) block, ignoring NaN: one sort (NaN
    sorts last) instead of np.nanmedian, whose masked path is slower, in the backfill's hot
    loop (see docs/benchmarks.md)."""
    ordered = np.sort(block, axis=0)
    count = (~np.isnan(block)).sum(axis=0)
    cols = np.arange(block.shape[1])
    lo = np.clip((count - 1) // 2, 0, None)
    hi = np.clip(count // 2, 0, max(block.shape[0] - 1, 0))
    med = np.where(count > 0, (ordered[lo, cols] + ordered[hi, cols]) / 2, np.nan) \
        if block.shape[0] else np.full(block.shape[1], np.nan)
    return count, med


def _robust(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column count, median and MAD of a (days, series) block, ignoring NaN."""
    count, med = _nan_median_sorted(block)
    _, mad = _nan_median_sorted(np.abs(block - med))
    return count, med, mad


def context_features(
    frame: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    *,
    start: pd.Timestamp | str | None = None,
    window_periods: int = 182,
    min_history: int = 28,
    context_periods: int = 28,
    step_days: int = 1,
) -> ContextFeatures:
    """Context features for the rows of ``frame`` on or after ``start``.

    ``frame``: ``series_id, ds, y, p10, p50, p90`` (one row per series and period, periods
    ``step_days`` apart; P10/P50/P90 out-of-sample forecasts), covering the scored periods and
    the history before them (at least ``min_history`` periods, ideally ``window_periods``, plus
    ``context_periods`` for the runs). Rows before ``start`` (default: the first period) are
    history only. Every window counts periods (see the module docstring): with the defaults,
    182 days for daily data, 182 weeks (all of a typical weekly history) for weekly.

    The residual is put on a Poisson scale, ``pearson = (y - p50) / sqrt(max(p50, 1))``, then
    robustly standardised per series: ``z = (pearson - median) / max(1.4826 MAD, 0.5)``, with
    the median and MAD of the series' pearson residuals over the ``window_periods`` BEFORE the
    row (the row itself excluded), or over ``reference`` (rows of the same shape, all before
    ``start``) when given, e.g. the detector's training window.

    An optional ``day_factor`` column (``with_day_factors``) scales P10/P50/P90 first: the rows
    out then carry the scaled expectation the day was judged against in ``p10, p50, p90``, the
    forecaster's own P50 in ``forecast_p50`` and the factor in ``day_factor`` (1 without it).
    """
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"context_features needs columns {list(INPUT_COLUMNS)}; "
                         f"missing {missing}")
    f = _scaled(frame)
    f["ds"] = pd.to_datetime(f["ds"])
    f["series_id"] = f["series_id"].astype(str)
    if f.duplicated(["series_id", "ds"]).any():
        raise ValueError("frame has several rows for one series and day (overlapping forecast "
                         "origins?): keep one forecast per day, e.g. the latest origin's")
    start_ts = pd.Timestamp(start) if start is not None else f["ds"].min()
    params = {"window_periods": window_periods, "min_history": min_history,
              "context_periods": context_periods, "step_days": step_days,
              "reference": reference is not None}
    empty = ContextFeatures(pd.DataFrame(columns=[*INPUT_COLUMNS, *CONTEXT_COLUMNS]),
                            {"missing_expected": 0, "missing_actual": 0, "short_history": 0},
                            params=params)
    if f.empty:
        return empty
    # Only the history the statistics can use is read.
    first_needed = start_ts - pd.Timedelta(days=(window_periods + context_periods) * step_days)
    f = f[(f["ds"] >= first_needed)]
    if f.empty:
        return empty
    days = _periods(f["ds"], step_days, "frame")
    series = np.sort(f["series_id"].unique())
    y, p10, p50, p90, factor = (_grid(f, days, series, c)
                                for c in ("y", "p10", "p50", "p90", "day_factor"))
    expected_ok = ~(np.isnan(p10) | np.isnan(p50) | np.isnan(p90))
    root = np.sqrt(np.clip(p50, 1.0, None))
    pearson = np.where(expected_ok, (y - p50) / root, np.nan)

    first_out = int(np.searchsorted(days, start_ts))
    first_stat = max(first_out - context_periods, 0)
    n_days, n_series = y.shape
    med = np.full_like(y, np.nan)
    mad = np.full_like(y, np.nan)
    level = np.full_like(y, np.nan)  # the series' median expectation over the same window
    count = np.zeros_like(y)
    if reference is not None:
        ref = _scaled(reference).assign(ds=lambda r: pd.to_datetime(r["ds"]),
                                                    series_id=lambda r: r["series_id"].astype(str))
        if (ref["ds"] >= start_ts).any():
            raise ValueError(f"reference rows must all be before the first scored day "
                             f"{start_ts.date()}: statistics may not see the scored days")
        ref = ref[ref["series_id"].isin(series)]
        ref_pearson = (ref["y"] - ref["p50"]) / np.sqrt(ref["p50"].clip(lower=1.0))
        ref = ref.assign(pearson=ref_pearson).dropna(subset=["pearson"])
        rdays = _periods(ref["ds"], step_days, "reference") if len(ref) \
            else pd.DatetimeIndex([])
        block = _grid(ref, rdays, series, "pearson") if len(ref) else np.full((1, n_series),
                                                                              np.nan)
        c, m, d = _robust(block)
        count[:], med[:], mad[:] = c, m, d
        level[:] = _nan_median_sorted(
            _grid(ref.assign(mu=ref["p50"].clip(lower=1.0)), rdays, series, "mu")
            if len(ref) else np.full((1, n_series), np.nan))[1]
    else:
        mu = np.where(np.isnan(pearson), np.nan, np.clip(p50, 1.0, None))
        for t in range(first_stat, n_days):  # the window ENDS the period before t
            window = slice(max(t - window_periods, 0), t)
            c, m, d = _robust(pearson[window])
            count[t], med[t], mad[t] = c, m, d
            level[t] = _nan_median_sorted(mu[window])[1]
    scale = np.maximum(MAD_TO_SD * mad, SCALE_FLOOR)
    nb_tail = _nb_tail(y, p50, scale, level)
    z = (pearson - med) / scale

    # Runs and windows, walking forward in time (vectorised over series).
    run_len = np.zeros_like(y)  # signed: +k = k-th period above expectation in a row
    run_sum = np.zeros_like(y)
    run_y = np.zeros_like(y)
    run_p = np.zeros_like(y)
    zero_run = np.zeros_like(y)
    zero_exp = np.zeros_like(y)
    zeros = np.zeros(n_series)
    for t in range(first_stat, n_days):
        zt = z[t]
        sign = np.where(np.abs(zt) > RUN_Z, np.sign(zt), 0.0)
        first = t == first_stat
        prev = zeros if first else run_len[t - 1]
        cont = (sign != 0) & (np.sign(prev) == sign)
        run_len[t] = np.where(sign == 0, 0.0, np.where(cont, prev + sign, sign))
        for acc, value in ((run_sum, zt), (run_y, y[t]), (run_p, p50[t])):
            before = zeros if first else acc[t - 1]
            v = np.nan_to_num(value)
            acc[t] = np.where(sign == 0, 0.0, np.where(cont, before + v, v))
        is_zero = y[t] == 0
        zero_run[t] = np.where(is_zero, (zeros if first else zero_run[t - 1]) + 1, 0.0)
        zero_exp[t] = np.where(is_zero, (zeros if first else zero_exp[t - 1])
                               + np.nan_to_num(p50[t]), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = pd.DataFrame(z).rolling(LEVEL_PERIODS, min_periods=1).mean().to_numpy()
    run_stat = np.where(run_len != 0, run_sum / np.sqrt(np.maximum(np.abs(run_len), 1)), 0.0)

    # Rows out: scored days with everything they need; the others counted by reason.
    out = np.zeros_like(y, dtype=bool)
    out[first_out:] = True
    row_present = out & ~np.isnan(_grid(f.assign(one=1.0), days, series, "one"))
    actual_ok = ~np.isnan(y)
    history_ok = count >= min_history
    skipped = {
        "missing_expected": int((row_present & ~expected_ok).sum()),
        "missing_actual": int((row_present & expected_ok & ~actual_ok).sum()),
        "short_history": int((row_present & expected_ok & actual_ok & ~history_ok).sum()),
    }
    keep_mask = out & expected_ok & actual_ok & history_ok
    t_idx, s_idx = np.nonzero(keep_mask)
    pick = lambda a: a[t_idx, s_idx]  # noqa: E731
    width = pick(p90) - pick(p10)
    rows = pd.DataFrame({
        "series_id": series[s_idx],
        "ds": days[t_idx],
        "y": pick(y), "p10": pick(p10), "p50": pick(p50), "p90": pick(p90),
        "residual": pick(y) - pick(p50),
        "pearson": pick(pearson),
        "z": pick(z),
        "nb_tail": pick(nb_tail),
        "interval_pos": (pick(y) - pick(p50)) / np.maximum(width, 1.0),
        "dow": days[t_idx].dayofweek.to_numpy().astype(float),
        "level_7d": pick(level),
        "run_len": pick(run_len),
        "run_stat": pick(run_stat),
        "run_ratio": pick(run_y) / np.maximum(pick(run_p), 1e-9),
        "zero_run": pick(zero_run),
        "zero_expected": pick(zero_exp),
        "ratio": pick(y) / np.maximum(pick(p50), 1e-9),
        "ref_median": pick(med),
        "ref_scale": pick(scale),
        "ref_points": pick(count),
        "day_factor": pick(factor),
        "forecast_p50": pick(p50) / pick(factor),
    })
    rows = rows.sort_values(["ds", "series_id"], ignore_index=True)
    return ContextFeatures(rows, skipped, params=params)


def _nb_tail(y: np.ndarray, p50: np.ndarray, scale: np.ndarray, level: np.ndarray
             ) -> np.ndarray:
    """Signed tail surprise of each sale under a negative binomial around its expectation:
    ``-log10 P(Y >= y) + log10 P(Y <= y)`` (positive above, negative below), with the series'
    own dispersion ``alpha = max(scale^2 - 1, 0) / level`` (Pearson residuals of an NB have
    variance ``1 + alpha * mu``; ``scale`` and ``level`` come from the same past window).

    Why: z measures a fall in units of the series' residual spread, and a sale cannot fall
    below 0, so on overdispersed series a x0.33 dip is z -2.2, inside the clean tails. The
    NB tail prices a fall by its probability instead, so dips are found that z leaves in the
    clean tails (benchmarks/anomalies.py compares the two; results in docs/benchmarks.md).
    Non-integer targets (sales in dollars) are floored, negative ones count as 0; the surprise
    is capped at 300 (a probability of 1e-300).
    """
    out = np.full(y.shape, np.nan)
    ok = ~(np.isnan(y) | np.isnan(p50) | np.isnan(scale) | np.isnan(level))
    if not ok.any():
        return out
    from scipy.stats import nbinom

    mu = np.clip(p50[ok], 0.1, None)
    alpha = np.clip(np.maximum(scale[ok] ** 2 - 1.0, 0.0) / np.clip(level[ok], 1.0, None),
                    1e-8, None)
    k = 1.0 / alpha
    p = k / (k + mu)
    count = np.floor(np.clip(y[ok], 0.0, None))
    with np.errstate(all="ignore"):
        value = (-nbinom.logsf(count - 1, k, p) + nbinom.logcdf(count, k, p)) / np.log(10)
    out[ok] = np.clip(np.nan_to_num(value, nan=0.0, posinf=300.0, neginf=-300.0), -300, 300)
    return out


def raw_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The raw-sales feature set (no forecast): level and day of week, for the baseline that
    runs the same detector without residual context."""
    return pd.DataFrame({"y": frame["y"].to_numpy(dtype=float),
                         "dow": pd.to_datetime(frame["ds"]).dt.dayofweek.to_numpy(dtype=float)},
                        index=frame.index)
