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
run of same-sign residuals it ends (its length and standardised sum), the 7-day mean, and the
length of the current zero run with the sales that run was expected to have (a stock-out on a
best seller is far stranger than three quiet days of a slow mover).

Every statistic of a row is computed from that row and the rows BEFORE it (never after), and
its reference statistics (median, MAD) from the rows before it only: scoring a day gives the
same features whether or not later days exist, as in the daily production run.
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

FEATURE_VERSION = "context-v1"
INPUT_COLUMNS = ("series_id", "ds", "y", "p10", "p50", "p90")
# Every column context_features computes (besides the input columns).
CONTEXT_COLUMNS = (
    "residual", "pearson", "z", "interval_pos", "dow", "level_7d", "run_len", "run_stat",
    "run_ratio", "zero_run", "zero_expected", "ratio", "ref_median", "ref_scale", "ref_points",
)
# The detector's default inputs, chosen by benchmarks/anomalies.py (see docs/benchmarks.md).
DETECTOR_FEATURES = ("z", "run_stat", "zero_expected")
KINDS = ("ecod", "copod", "iforest", "ensemble")
DEFAULT_KIND = "ecod"
MAD_TO_SD = 1.4826
SCALE_FLOOR = 0.5  # in Poisson units: no count series is more predictable than half its noise
RUN_Z = 1.0  # a day joins a same-sign run when its |z| exceeds this


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


def _grid(frame: pd.DataFrame, days: pd.DatetimeIndex, series: np.ndarray, column: str
          ) -> np.ndarray:
    out = np.full((len(days), len(series)), np.nan)
    r = days.get_indexer(frame["ds"])
    c = np.searchsorted(series, frame["series_id"].to_numpy())
    out[r, c] = frame[column].to_numpy(dtype=float)
    return out


def _robust(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column count, median and MAD of a (days, series) block, ignoring NaN."""
    count = (~np.isnan(block)).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, on purpose
        med = np.nanmedian(block, axis=0)
        mad = np.nanmedian(np.abs(block - med), axis=0)
    return count, med, mad


def context_features(
    frame: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    *,
    start: pd.Timestamp | str | None = None,
    window_days: int = 182,
    min_history: int = 28,
    context_days: int = 28,
) -> ContextFeatures:
    """Context features for the rows of ``frame`` on or after ``start``.

    ``frame``: ``series_id, ds, y, p10, p50, p90`` (one row per series and day; P10/P50/P90
    out-of-sample forecasts), covering the scored days and the history before them (at least
    ``min_history`` days, ideally ``window_days``, plus ``context_days`` for the runs). Rows
    before ``start`` (default: the first day) are history only.

    The residual is put on a Poisson scale, ``pearson = (y - p50) / sqrt(max(p50, 1))``, then
    robustly standardised per series: ``z = (pearson - median) / max(1.4826 MAD, 0.5)``, with
    the median and MAD of the series' pearson residuals over the ``window_days`` BEFORE the row
    (the row itself excluded), or over ``reference`` (rows of the same shape, all before
    ``start``) when given, e.g. the detector's training window.
    """
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"context_features needs columns {list(INPUT_COLUMNS)}; "
                         f"missing {missing}")
    f = frame[list(INPUT_COLUMNS)].copy()
    f["ds"] = pd.to_datetime(f["ds"])
    f["series_id"] = f["series_id"].astype(str)
    if f.duplicated(["series_id", "ds"]).any():
        raise ValueError("frame has several rows for one series and day (overlapping forecast "
                         "origins?): keep one forecast per day, e.g. the latest origin's")
    start_ts = pd.Timestamp(start) if start is not None else f["ds"].min()
    params = {"window_days": window_days, "min_history": min_history,
              "context_days": context_days, "reference": reference is not None}
    empty = ContextFeatures(pd.DataFrame(columns=[*INPUT_COLUMNS, *CONTEXT_COLUMNS]),
                            {"missing_expected": 0, "missing_actual": 0, "short_history": 0},
                            params=params)
    if f.empty:
        return empty
    # Only the history the statistics can use is read.
    first_needed = start_ts - pd.Timedelta(days=window_days + context_days)
    f = f[(f["ds"] >= first_needed)]
    days = pd.date_range(f["ds"].min(), f["ds"].max(), freq="D")
    series = np.sort(f["series_id"].unique())
    y, p10, p50, p90 = (_grid(f, days, series, c) for c in ("y", "p10", "p50", "p90"))
    expected_ok = ~(np.isnan(p10) | np.isnan(p50) | np.isnan(p90))
    root = np.sqrt(np.clip(p50, 1.0, None))
    pearson = np.where(expected_ok, (y - p50) / root, np.nan)

    first_out = int(np.searchsorted(days, start_ts))
    first_stat = max(first_out - context_days, 0)
    n_days, n_series = y.shape
    med = np.full_like(y, np.nan)
    mad = np.full_like(y, np.nan)
    count = np.zeros_like(y)
    if reference is not None:
        ref = reference[list(INPUT_COLUMNS)].assign(ds=lambda r: pd.to_datetime(r["ds"]),
                                                    series_id=lambda r: r["series_id"].astype(str))
        if (ref["ds"] >= start_ts).any():
            raise ValueError(f"reference rows must all be before the first scored day "
                             f"{start_ts.date()}: statistics may not see the scored days")
        ref = ref[ref["series_id"].isin(series)]
        ref_pearson = (ref["y"] - ref["p50"]) / np.sqrt(ref["p50"].clip(lower=1.0))
        ref = ref.assign(pearson=ref_pearson).dropna(subset=["pearson"])
        rdays = pd.date_range(ref["ds"].min(), ref["ds"].max(), freq="D") if len(ref) \
            else pd.DatetimeIndex([])
        block = _grid(ref, rdays, series, "pearson") if len(ref) else np.full((1, n_series),
                                                                              np.nan)
        c, m, d = _robust(block)
        count[:], med[:], mad[:] = c, m, d
    else:
        for t in range(first_stat, n_days):  # the window ENDS the day before t
            c, m, d = _robust(pearson[max(t - window_days, 0):t])
            count[t], med[t], mad[t] = c, m, d
    scale = np.maximum(MAD_TO_SD * mad, SCALE_FLOOR)
    z = (pearson - med) / scale

    # Runs and windows, walking forward in time (vectorised over series).
    run_len = np.zeros_like(y)  # signed: +k = k-th day above expectation in a row
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
        level = pd.DataFrame(z).rolling(7, min_periods=1).mean().to_numpy()
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
    })
    rows = rows.sort_values(["ds", "series_id"], ignore_index=True)
    return ContextFeatures(rows, skipped, params=params)


def raw_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The raw-sales feature set (no forecast): level and day of week, for the baseline that
    runs the same detector without residual context."""
    return pd.DataFrame({"y": frame["y"].to_numpy(dtype=float),
                         "dow": pd.to_datetime(frame["ds"]).dt.dayofweek.to_numpy(dtype=float)},
                        index=frame.index)


# ---------------------------------------------------------------------------- detector


class _FrozenTails:
    """ECOD / COPOD scoring against the TRAINING distribution only.

    PyOD's ECOD and COPOD score new rows by re-estimating the empirical CDFs on the training
    rows plus the new batch: a batch full of anomalies (or a whole backfill at once) then
    fattens its own tails and lowers its own scores, and the calibrated threshold no longer
    means what it did. Here the CDFs are frozen at fit time; on the training rows the scores
    equal PyOD's ``decision_scores_`` up to the +1 smoothing that keeps a value outside the
    training range finite (its tail probability is 1 / (n + 1), not 0).
    """

    def __init__(self, x: np.ndarray, kind: str):
        from scipy.stats import skew

        self.kind = kind
        self.sorted = np.sort(x, axis=0)
        self.skew_sign = np.nan_to_num(np.sign(skew(x, axis=0)))  # constant column: 0

    def score(self, x: np.ndarray) -> np.ndarray:
        n = self.sorted.shape[0]
        left = np.empty_like(x, dtype=float)
        right = np.empty_like(x, dtype=float)
        for j in range(x.shape[1]):
            col = self.sorted[:, j]
            left[:, j] = (np.searchsorted(col, x[:, j], side="right") + 1) / (n + 1)
            right[:, j] = (n - np.searchsorted(col, x[:, j], side="left") + 1) / (n + 1)
        u_l, u_r = -np.log(left), -np.log(right)
        s = self.skew_sign
        u_skew = u_l * -np.sign(s - 1) + u_r * np.sign(s + 1)
        if self.kind == "ecod":
            out = np.maximum(np.maximum(u_l, u_r), u_skew)
        else:  # copod
            out = np.maximum(u_skew, (u_l + u_r) / 2)
        return out.sum(axis=1)


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
    The threshold is the ``1 - target_false_alarm_rate`` quantile of the training scores: on a
    mostly clean training window that flags about that share of normal days, whatever the
    (unknown) share of anomalies in the scored days; no contamination guess.
    """

    kind: str = DEFAULT_KIND
    features: tuple[str, ...] = DETECTOR_FEATURES
    target_false_alarm_rate: float = 0.002
    random_state: int = 0
    threshold: float | None = None
    info: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict, repr=False)
    _train_scores: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown detector kind {self.kind!r}: expected one of {KINDS}")
        if not 0 < self.target_false_alarm_rate < 0.5:
            raise ValueError("target_false_alarm_rate must be in (0, 0.5)")
        self.features = tuple(self.features)

    # -- inputs ---------------------------------------------------------------------------
    def _matrix(self, features: ContextFeatures | pd.DataFrame) -> np.ndarray:
        rows = features.rows if isinstance(features, ContextFeatures) else features
        if isinstance(features, ContextFeatures) and self.info.get("feature_version") not in (
                None, features.version):
            raise ValueError(
                f"features are {features.version!r} but the detector was trained on "
                f"{self.info['feature_version']!r}: retrain the detector on the current features"
            )
        missing = [c for c in self.features if c not in rows.columns]
        if missing:
            raise ValueError(
                f"features lack columns {missing} the detector was trained on "
                f"({list(self.features)}): the feature code changed since training; retrain"
            )
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
        self.threshold = float(np.quantile(train, 1 - self.target_false_alarm_rate))
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
            "fit_seconds": time.perf_counter() - started,
        }
        return self

    def _fit_one(self, name: str, x: np.ndarray):
        if name in ("ecod", "copod"):
            # PyOD's ECOD / COPOD formulas with frozen training CDFs (see _FrozenTails).
            return _FrozenTails(x, name)
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
        detector = cls(header["kind"], tuple(header["features"]),
                       header["target_false_alarm_rate"], header["random_state"],
                       header["threshold"], header["info"])
        state = pickle.loads(blob[8 + size:])  # noqa: S301 - our own warehouse's blob
        detector._models, detector._train_scores = state["models"], state["train_scores"]
        return detector


# ---------------------------------------------------------------------------- explanation

LEVEL_SHIFT_DAYS = 3  # a run this long (same sign, |z| > RUN_Z) reads as a level shift


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"


def classify(rows: pd.DataFrame) -> pd.DataFrame:
    """``anomaly_type`` and a one-line ``reason`` per row (rows from ``context_features``).

    zero_run: no sales (a stock-out, or a feed that stopped); level_shift: the day ends a run of
    at least ``LEVEL_SHIFT_DAYS`` days on the same side of the expectation; otherwise spike
    (above) or dip (below).
    """
    out_type, out_reason = [], []
    for r in rows.itertuples(index=False):
        y, p50 = float(r.y), float(r.p50)
        if y == 0 and r.zero_run >= 1:
            kind = "zero_run"
            days = int(r.zero_run)
            reason = (f"no sales for {days} day{'s' if days > 1 else ''} vs expected "
                      f"{_fmt(p50)} a day ({_fmt(r.zero_expected)} in all): stock-out?")
        elif abs(r.run_len) >= LEVEL_SHIFT_DAYS:
            kind = "level_shift"
            side, band = ("above", f"P90 {_fmt(r.p90)}") if r.run_len > 0 \
                else ("below", f"P10 {_fmt(r.p10)}")
            reason = (f"day {int(abs(r.run_len))} in a row {side} expectation: sales {_fmt(y)} "
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
