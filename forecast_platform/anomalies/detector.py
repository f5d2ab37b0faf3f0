"""Sales anomalies: context features on forecast residuals, a calibrated PyOD detector, and a
type and a one-line reason a planner can act on.

Pure core (no Dagster): the assets read the out-of-sample forecasts and actuals from the
warehouse, call ``context_features`` -> ``AnomalyDetector.score`` -> ``classify``, and store the
result.

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

import io
import json
import pickle
import time
import warnings
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
# The detector's default inputs, chosen by benchmarks/anomalies.py (see docs/benchmarks.md).
DETECTOR_FEATURES = ("nb_tail", "run_stat", "zero_expected")
KINDS = ("ecod", "copod", "iforest", "ensemble")
CALIBRATIONS = ("tail", "quantile")
TAILS = ("exponential", "empirical")
DEFAULT_KIND = "ecod"
MAD_TO_SD = 1.4826
SCALE_FLOOR = 0.5  # in Poisson units: no count series is more predictable than half its noise
RUN_Z = 1.0  # a period joins a same-sign run when its |z| exceeds this
LEVEL_PERIODS = 7  # level_7d: the mean z over this many periods (7 days for daily data)
DAY_FACTOR_MIN_SERIES = 30  # fewer series with a usable expectation on a day: no day factor
DAY_FACTOR_MIN_P50 = 5.0  # series expected to sell less are too noisy to measure a ratio on
DAY_FACTOR_BOUNDS = (0.01, 100.0)  # only keeps the scaled expectation positive and finite


def anomaly_model_name(spec) -> str:
    """The model_registry name of a dataset's detector (``<dataset>_anomaly``): the
    anomaly_model asset registers under it, the serving bundle packs its champion."""
    return f"{spec.name}_anomaly"



# ---------------------------------------------------------------------------- features


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
    def messages(self) -> list[str]:
        hints = {
            "missing_expected": "no expected value (P10/P50/P90) for the day: not scored",
            "missing_actual": "no sales recorded for the day: not scored",
            "short_history": (f"series with fewer than {self.params.get('min_history')} past "
                              "residuals: too little history to scale, not scored"),
        }
        return [f"{n} rows skipped: {hints[k]}" for k, n in self.skipped.items() if n]


def day_factors(frame: pd.DataFrame, min_series: int = DAY_FACTOR_MIN_SERIES) -> pd.Series:
    """Per day, how far actual sales of ALL series sit from their expectation: the ratio
    sum(y) / sum(p50) over the series whose own ratio is within the day's 10-90 % range (so a
    few anomalous series do not move it), among series expected to sell at least
    ``DAY_FACTOR_MIN_P50``. 1 on days with fewer than ``min_series`` such series; clipped to
    ``DAY_FACTOR_BOUNDS`` (a day with no sales at all gets 0.01).

    Why: a shift every series shares on the same day is not a store-item anomaly. Store Item
    data steps on every 1 January and the forecaster, whose features lag 91+ days, cannot see
    it; early in the history (little training data) its expectations of December-February sit
    25-45 % above all series at once. Point-wise that flagged 2.4 % of the clean data, mostly
    as level shifts, one per series. A planner asks which series behaved strangely against
    the others, so the expectation is scaled by the day's common factor first. A day every
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


def with_day_factors(frame: pd.DataFrame, min_series: int = DAY_FACTOR_MIN_SERIES
                     ) -> pd.DataFrame:
    """``frame`` with a ``day_factor`` column (see ``day_factors``), for ``context_features``.

    Computed from the frame's own series: pass the whole cross-section of a day (as the
    ``sales_anomalies`` asset does), or the factors it stored, never one series alone.
    """
    factors = day_factors(frame, min_series)
    ds = pd.to_datetime(frame["ds"])
    return frame.assign(day_factor=ds.map(factors).fillna(1.0).to_numpy())


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
    sorts last) instead of np.nanmedian, which is ~3x slower and the backfill's hot loop."""
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
    NB tail prices a fall by its probability instead. Measured (benchmarks/anomalies.py, Store
    Item, contaminated fit, same run): F1 0.897 -> 0.910 in place of z, dip recall 0.72 ->
    0.82; the synthetic demo against its labels: F1 0.557 -> 0.588, dip recall 0.07 -> 0.23.
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


# ---------------------------------------------------------------------------- detector


BULK_QUANTILES = (0.80, 0.95)  # the "clean bulk" tails and thresholds are extrapolated from


class _FrozenTails:
    """ECOD / COPOD scoring against the TRAINING distribution only, with modelled tails.

    PyOD's ECOD and COPOD score new rows by re-estimating the empirical CDFs on the training
    rows plus the new batch: a batch full of anomalies (or a whole backfill at once) then
    fattens its own tails and lowers its own scores, and the calibrated threshold no longer
    means what it did. Here the CDFs are frozen at fit time.

    Inside the bulk (between the 5 % and 95 % quantiles of a feature) the tail probability is
    the empirical one, as in PyOD (+1 smoothing). Beyond it, each side's tail is an exponential
    fitted to that side's bulk (the 80 % -> 95 % quantile span), anchored at the 95 % quantile.
    Why: the training window is never known to be clean (the synthetic demo's has ~2 % labelled
    anomalies, production's whatever happened). With empirical tails, a few per cent of
    anomalies in the training rows own the extreme tail: a clean value at the clean 99.8 %
    quantile gets a tail probability of ~1 % instead of 0.2 %, every score beyond the bulk is
    compressed, and no threshold on the sum separates clean tails from anomalies well. The bulk
    is where a few per cent of contamination barely moves the quantiles; the modelled tail
    then gives clean extremes and anomalies the scores a clean training window would have given
    them (and an anomaly beyond the training range keeps growing instead of saturating at
    log(n)). A side whose bulk has no spread (e.g. ``zero_expected``, 0 on almost every row)
    keeps the empirical tail.
    """

    def __init__(self, x: np.ndarray, kind: str, tails: str = "exponential"):
        from scipy.stats import skew

        self.kind = kind
        self.tails = tails
        self.sorted = np.sort(x, axis=0)
        self.skew_sign = np.nan_to_num(np.sign(skew(x, axis=0)))  # constant column: 0
        lo, hi = BULK_QUANTILES
        q = np.quantile(x, [1 - hi, 1 - lo, lo, hi], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            decades = np.log((1 - lo) / (1 - hi))
            self.right_rate = np.where(q[3] > q[2], decades / (q[3] - q[2]), np.nan)
            self.left_rate = np.where(q[1] > q[0], decades / (q[1] - q[0]), np.nan)
        self.right_anchor, self.left_anchor = q[3], q[0]
        self.right_p = self._empirical(q[3][None, :])[1][0]
        self.left_p = self._empirical(q[0][None, :])[0][0]

    def _empirical(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.sorted.shape[0]
        left = np.empty_like(x, dtype=float)
        right = np.empty_like(x, dtype=float)
        for j in range(x.shape[1]):
            col = self.sorted[:, j]
            left[:, j] = (np.searchsorted(col, x[:, j], side="right") + 1) / (n + 1)
            right[:, j] = (n - np.searchsorted(col, x[:, j], side="left") + 1) / (n + 1)
        return left, right

    def tail_probabilities(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(X <= x) and P(X >= x) per feature under the frozen (modelled) training CDF."""
        left, right = self._empirical(x)
        # Detectors pickled before tails were modelled have no tail attributes: empirical.
        if getattr(self, "tails", "empirical") == "exponential":
            beyond = (x > self.right_anchor) & np.isfinite(self.right_rate)
            modelled = self.right_p * np.exp(-np.nan_to_num(self.right_rate)
                                             * (x - self.right_anchor))
            right = np.where(beyond, modelled, right)
            beyond = (x < self.left_anchor) & np.isfinite(self.left_rate)
            modelled = self.left_p * np.exp(-np.nan_to_num(self.left_rate)
                                            * (self.left_anchor - x))
            left = np.where(beyond, modelled, left)
        return left, right

    def score(self, x: np.ndarray) -> np.ndarray:
        left, right = self.tail_probabilities(x)
        tiny = np.finfo(float).tiny
        u_l, u_r = -np.log(np.maximum(left, tiny)), -np.log(np.maximum(right, tiny))
        s = self.skew_sign
        u_skew = u_l * -np.sign(s - 1) + u_r * np.sign(s + 1)
        if self.kind == "ecod":
            out = np.maximum(np.maximum(u_l, u_r), u_skew)
        else:  # copod
            out = np.maximum(u_skew, (u_l + u_r) / 2)
        return out.sum(axis=1)


def tail_threshold(scores: np.ndarray, target: float, bulk: tuple[float, float] = BULK_QUANTILES,
                   iterations: int = 3) -> tuple[float, dict]:
    """The score a CLEAN window exceeds with probability ``target``, from a possibly
    contaminated sample of scores: an exponential fitted to the bulk of the sample's survival
    curve (16 quantiles from ``bulk[0]`` to ``bulk[1]``), extrapolated to ``target``.

    Why not the sample's ``1 - target`` quantile: with a share c of anomalies in the sample,
    that quantile sits inside the anomalies as soon as c > target (2 % of anomalies vs a 0.2 %
    target: the threshold then flags only the strongest tenth of them). The bulk is where
    contamination of a few per cent barely moves the curve, and the ECOD score of clean rows is
    a sum of -log tail probabilities, whose survival curve is close to exponential from the
    bulk on (measured on Store Item: 4.2-4.4 score units per decade from the 80 % to the
    99.9 % quantile). The anomalies' own mass in the bulk is corrected for: the share of the
    sample above the threshold beyond ``target`` is taken as contamination and removed from
    the bulk's survival, and the fit repeated (``iterations`` times).

    The extrapolation errs on the high side (fewer false alarms than targeted) whenever the
    clean scores' log-survival bends down beyond the bulk, as it does for sums of
    log-concave parts (measured: 0.07 % false alarms for a 0.2 % target on clean Store Item).
    The sample's plain quantile errs on the high side too, by the contamination: with a share
    c of anomalies, clean rows exceed it with probability at most target / (1 - c). So the
    detector uses the lower of the two: the quantile on a clean window, the extrapolation on
    a contaminated one.
    """
    if not 0 < target < 1 - bulk[1]:
        raise ValueError(f"tail calibration extrapolates beyond the bulk's top quantile "
                         f"{bulk[1]}: target false-alarm rate {target} must be below "
                         f"{1 - bulk[1]:.2f}")
    qs = np.linspace(bulk[0], bulk[1], 16)
    values = np.quantile(scores, qs)
    if not np.ptp(values) > 0:
        raise ValueError("the training scores have no spread in their bulk "
                         f"({bulk[0]:.0%}..{bulk[1]:.0%} quantiles): cannot extrapolate a tail")
    contamination = 0.0
    for _ in range(iterations):
        survival = np.clip(((1 - qs) - contamination) / (1 - contamination), 1e-6, None)
        slope, intercept = np.polyfit(values, np.log(survival), 1)
        if slope >= 0:
            raise ValueError("the training scores' survival does not fall over their bulk: "
                             "cannot extrapolate a tail")
        threshold = float((np.log(target) - intercept) / slope)
        excess = float((scores > threshold).mean()) - target
        contamination = min(max(excess, 0.0), 0.5 * (1 - qs[-1]))  # keeps survival > 0
    return threshold, {
        "method": "tail", "bulk_quantiles": list(bulk),
        "score_units_per_decade": float(-np.log(10) / slope),
        "estimated_contamination": round(contamination, 5),
        "empirical_quantile_threshold": float(np.quantile(scores, 1 - target)),
    }


def _tail_score(train: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """-log10 of the share of training scores at or above each score: puts detectors with
    different score scales on one scale before they are averaged."""
    ordered = np.sort(train)
    n = len(ordered)
    above = n - np.searchsorted(ordered, scores, side="left")
    return -np.log10((above + 1) / (n + 1))


@dataclass
class AnomalyDetector:
    """A PyOD detector on context features, with a threshold calibrated for a false-alarm rate.

    ``kind``: ``ecod`` (default; deterministic, parameter-free, scored against the frozen
    training distribution), ``copod`` (same), ``iforest`` (``random_state`` fixed) or
    ``ensemble`` (the mean of the three, each first turned into a training tail score).

    ``calibration``: how the threshold is set from the training scores. ``tail`` (default): the
    lower of the training scores' ``1 - target_false_alarm_rate`` quantile and the score a
    clean window exceeds with that probability, extrapolated from the bulk of the training
    scores (``tail_threshold``), so a training window with a few per cent of anomalies does not
    drag the threshold into them. ``quantile``: the plain
    ``1 - target_false_alarm_rate`` quantile of the training scores (right only when the
    training window is clean). Either way no contamination share is guessed.
    ``tails``: ``exponential`` (default) or ``empirical`` tails of the ECOD / COPOD CDFs beyond
    their bulk (see ``_FrozenTails``).
    """

    kind: str = DEFAULT_KIND
    features: tuple[str, ...] = DETECTOR_FEATURES
    target_false_alarm_rate: float = 0.002
    random_state: int = 0
    threshold: float | None = None
    info: dict = field(default_factory=dict)
    calibration: str = "tail"
    tails: str = "exponential"
    _models: dict = field(default_factory=dict, repr=False)
    _train_scores: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown detector kind {self.kind!r}: expected one of {KINDS}")
        if not 0 < self.target_false_alarm_rate < 0.5:
            raise ValueError("target_false_alarm_rate must be in (0, 0.5)")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {self.calibration!r}: expected one of "
                             f"{CALIBRATIONS}")
        if self.tails not in TAILS:
            raise ValueError(f"unknown tails {self.tails!r}: expected one of {TAILS}")
        if self.calibration == "tail" and self.target_false_alarm_rate >= 1 - BULK_QUANTILES[1]:
            raise ValueError(f"target_false_alarm_rate {self.target_false_alarm_rate} is inside "
                             f"the bulk (>= {1 - BULK_QUANTILES[1]:.2f}): use calibration="
                             "'quantile' for such a high rate")
        self.features = tuple(self.features)

    # -- inputs ---------------------------------------------------------------------------
    def incompatibility(self, features: ContextFeatures | pd.DataFrame) -> str | None:
        """Why this detector cannot score these features (None when it can): features of
        another version than it was trained on, or lacking one of its columns. The asset
        skips (and counts) the rows instead of scoring them wrongly."""
        rows = features.rows if isinstance(features, ContextFeatures) else features
        if isinstance(features, ContextFeatures) and self.info.get("feature_version") not in (
                None, features.version):
            return (f"features are {features.version!r} but the detector was trained on "
                    f"{self.info['feature_version']!r}: retrain the detector on the current "
                    "features")
        missing = [c for c in self.features if c not in rows.columns]
        if missing:
            return (f"features lack columns {missing} the detector was trained on "
                    f"({list(self.features)}): the feature code changed since training; "
                    "retrain")
        return None

    def _matrix(self, features: ContextFeatures | pd.DataFrame) -> np.ndarray:
        rows = features.rows if isinstance(features, ContextFeatures) else features
        problem = self.incompatibility(features)
        if problem:
            raise ValueError(problem)
        x = rows[list(self.features)].to_numpy(dtype=float)
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or infinite values: build them with "
                             "context_features, which skips rows it cannot compute")
        return x

    # -- training -------------------------------------------------------------------------
    def fit(self, features: ContextFeatures | pd.DataFrame, info: dict | None = None
            ) -> AnomalyDetector:
        """Fit on a (mostly clean) history window and calibrate the threshold on it.

        ``info``: what the detector was built from, stored in ``metadata`` (e.g. the
        forecaster version, so a check can tell when the two drift apart).
        """
        x = self._matrix(features)
        if len(x) < 100:
            raise ValueError(f"{len(x)} training rows: too few to calibrate a "
                             f"{self.target_false_alarm_rate:.2%} false-alarm threshold")
        started = time.perf_counter()
        members = ("ecod", "copod", "iforest") if self.kind == "ensemble" else (self.kind,)
        self._models, self._train_scores = {}, {}
        for name in members:
            self._models[name] = self._fit_one(name, x)
            self._train_scores[name] = self._models[name].score(x) if name != "iforest" \
                else self._models[name].decision_function(x)
        train = self._combine(self._raw_member_scores(x, fitted=True))
        if self.calibration == "tail":
            # Both are upper bounds of the clean threshold (see tail_threshold): take the
            # tighter. Clean window: the quantile; contaminated: the extrapolation.
            extrapolated, calibration = tail_threshold(train, self.target_false_alarm_rate)
            quantile = calibration["empirical_quantile_threshold"]
            self.threshold = min(extrapolated, quantile)
            calibration.update(extrapolated_threshold=extrapolated,
                               used="quantile" if quantile <= extrapolated else "extrapolated")
        else:
            self.threshold = float(np.quantile(train, 1 - self.target_false_alarm_rate))
            calibration = {"method": "quantile"}
        rows = features.rows if isinstance(features, ContextFeatures) else features
        self.info = {
            **(info or {}),
            "feature_version": features.version if isinstance(features, ContextFeatures)
            else FEATURE_VERSION,
            "training_rows": int(len(x)),
            "training_window": [str(pd.Timestamp(rows["ds"].min()).date()),
                                str(pd.Timestamp(rows["ds"].max()).date())]
            if "ds" in rows.columns else None,
            "training_flagged_share": float((train > self.threshold).mean()),
            "calibration": calibration,
            "fit_seconds": time.perf_counter() - started,
        }
        return self

    def _fit_one(self, name: str, x: np.ndarray):
        if name in ("ecod", "copod"):
            # PyOD's ECOD / COPOD formulas with frozen training CDFs (see _FrozenTails).
            return _FrozenTails(x, name, self.tails)
        from pyod.models.iforest import IForest

        return IForest(n_estimators=200, random_state=self.random_state, n_jobs=1).fit(x)

    def _raw_member_scores(self, x: np.ndarray, fitted: bool = False) -> dict[str, np.ndarray]:
        if fitted:
            return dict(self._train_scores)
        return {name: (m.score(x) if name != "iforest" else m.decision_function(x))
                for name, m in self._models.items()}

    def _combine(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        if self.kind != "ensemble":
            return next(iter(scores.values()))
        return np.mean([_tail_score(self._train_scores[n], s) for n, s in scores.items()],
                       axis=0)

    # -- scoring --------------------------------------------------------------------------
    def score(self, features: ContextFeatures | pd.DataFrame) -> pd.DataFrame:
        """``score`` (higher = stranger) and ``is_anomaly`` (score above the calibrated
        threshold) per row, on the rows' index."""
        if self.threshold is None:
            raise RuntimeError("the detector is not trained: call fit first")
        rows = features.rows if isinstance(features, ContextFeatures) else features
        x = self._matrix(features)
        if len(x) == 0:
            return pd.DataFrame({"score": [], "is_anomaly": []}, index=rows.index)
        s = self._combine(self._raw_member_scores(x))
        return pd.DataFrame({"score": s, "is_anomaly": s > self.threshold}, index=rows.index)

    @property
    def metadata(self) -> dict:
        """What the detector is, for the model table, MLflow and the version check."""
        return {
            "detector": self.kind,
            "features": list(self.features),
            "threshold": self.threshold,
            "target_false_alarm_rate": self.target_false_alarm_rate,
            "random_state": self.random_state,
            "calibration_method": self.calibration,
            "tails": self.tails,
            **self.info,
        }

    @property
    def version(self) -> dict:
        return self.metadata

    # -- persistence ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """A JSON header (readable without unpickling) then the pickled fitted models.

        Pickle: the blob must come from the platform's own warehouse, never from outside.
        """
        header = json.dumps({
            "kind": self.kind, "features": list(self.features),
            "target_false_alarm_rate": self.target_false_alarm_rate,
            "random_state": self.random_state, "threshold": self.threshold, "info": self.info,
            "calibration": self.calibration, "tails": self.tails,
        }).encode()
        buffer = io.BytesIO()
        buffer.write(len(header).to_bytes(8, "little"))
        buffer.write(header)
        pickle.dump({"models": self._models, "train_scores": self._train_scores}, buffer,
                    protocol=pickle.HIGHEST_PROTOCOL)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> AnomalyDetector:
        size = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + size])
        # Blobs written before calibration / tails existed were quantile-calibrated with
        # empirical tails; their stored threshold is what they score with either way.
        detector = cls(header["kind"], tuple(header["features"]),
                       header["target_false_alarm_rate"], header["random_state"],
                       header["threshold"], header["info"],
                       calibration=header.get("calibration", "quantile"),
                       tails=header.get("tails", "empirical"))
        state = pickle.loads(blob[8 + size:])  # noqa: S301 - our own warehouse's blob
        detector._models, detector._train_scores = state["models"], state["train_scores"]
        return detector


# ---------------------------------------------------------------------------- explanation

LEVEL_SHIFT_PERIODS = 3  # a run this long (same sign, |z| > RUN_Z) reads as a level shift


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"


def classify(rows: pd.DataFrame, step_days: int = 1) -> pd.DataFrame:
    """``anomaly_type`` and a one-line ``reason`` per row (rows from ``context_features``).

    zero_run: no sales (a stock-out, or a feed that stopped); level_shift: the period ends a run
    of at least ``LEVEL_SHIFT_PERIODS`` periods on the same side of the expectation; otherwise
    spike (above) or dip (below). ``step_days`` names the period in the reasons (day, week):
    runs are counted in the data's periods.
    """
    unit = period_name(step_days)
    out_type, out_reason = [], []
    for r in rows.itertuples(index=False):
        y, p50 = float(r.y), float(r.p50)
        if y == 0 and r.zero_run >= 1:
            kind = "zero_run"
            periods = int(r.zero_run)
            reason = (f"no sales for {periods} {unit}{'s' if periods > 1 else ''} vs expected "
                      f"{_fmt(p50)} a {unit} ({_fmt(r.zero_expected)} in all): stock-out?")
        elif abs(r.run_len) >= LEVEL_SHIFT_PERIODS:
            kind = "level_shift"
            side, band = ("above", f"P90 {_fmt(r.p90)}") if r.run_len > 0 \
                else ("below", f"P10 {_fmt(r.p10)}")
            reason = (f"{unit} {int(abs(r.run_len))} in a row {side} expectation: sales {_fmt(y)} "
                      f"vs expected {_fmt(p50)} ({band}); the run is at {r.run_ratio:.2f}x "
                      "the usual")
        elif y >= p50:
            kind = "spike"
            reason = (f"sales {_fmt(y)} vs expected {_fmt(p50)} (P90 {_fmt(r.p90)}), "
                      f"{r.ratio:.1f}x the usual")
        else:
            kind = "dip"
            reason = (f"sales {_fmt(y)} vs expected {_fmt(p50)} (P10 {_fmt(r.p10)}), "
                      f"{r.ratio:.2f}x the usual")
        out_type.append(kind)
        out_reason.append(reason)
    return pd.DataFrame({"anomaly_type": out_type, "reason": out_reason}, index=rows.index)
