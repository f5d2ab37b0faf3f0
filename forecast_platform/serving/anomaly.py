"""Online anomaly scoring: one observed value, scored as the ``sales_anomalies`` asset scores it.

The asset scores day D with ``context_features(with_day_factors(expected_with_actuals(
D - context_days, D)), start=D, step_days=...)``, then ``AnomalyDetector.score`` and, for
flagged rows, ``classify``. "Day" here is a period of the data (a week for weekly data): the
context window and every statistic count the data's periods, and so does this module.
Every context statistic of a series (its robust scale, runs, zero runs) comes from
that series' own rows, once each day's expectation is scaled by that day's common factor, which
comes from the day's cross-section of all series (``with_day_factors``). So one series scored
alone, with the day factors of its days, gives the asset's row for it. This module does exactly
that for one (series, day, actual): the series' packed context rows before D (with the day
factors packed by the bundle), plus D with the client's actual, the expectation for D and D's
day factor, through the same functions. No re-implementation of any statistic: what the
detector's owner changes there applies here (the serving parity test says when it no longer
does).

D's day factor: for a recent observed day, ``with_day_factors`` over the packed cross-section
of D with the client's actual in place of the series' recorded one (the asset's value when the
actual is the recorded one). For the day after the bundle's origin the other series' sales are
not known yet: the factor is taken as 1 (the day as usual) and the answer says so; the daily
``sales_anomalies`` run then scales by the factor of the whole day, so the two agree when that
factor is 1 (always with fewer series than the factor needs).

Pure (pandas, numpy and the anomaly core; no BentoML, no DuckDB).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecast_platform.anomalies.classify import classify
from forecast_platform.anomalies.context import (
    FEATURE_VERSION,
    INPUT_COLUMNS,
    context_features,
    with_day_factors,
)
from forecast_platform.anomalies.detector import AnomalyDetector

# Context features returned with a score: what a person needs to read the score.
SHOWN_FEATURES = ("z", "run_len", "run_stat", "zero_run", "zero_expected", "ref_points")


class NotScorable(ValueError):
    """The day cannot be scored for this series (no expectation, too little history...)."""

    field = "date"


class ActualOutOfRange(NotScorable):
    """The actual is so far out that the context features overflow (e.g. 1e308)."""

    field = "actual"


DAY_FACTOR = "day_factor"


@dataclass(frozen=True)
class Expected:
    """The forecaster's expectation for the scored day, where it came from, and the day's
    common factor (``day_factor_source`` says whether it was measured or assumed)."""

    p10: float
    p50: float
    p90: float
    source: str
    day_factor: float = 1.0
    day_factor_source: str = "assumed"


class AnomalyContext:
    """The bundle's packed context rows (``series_id, ds, y, p10, p50, p90`` and the day
    factor when packed), by series and, for the scorable days, by day.

    ``first .. last`` are the scorable days; ``context_days`` the history the asset reads
    before a scored day, in days (its ``CONTEXT_PERIODS`` times ``step_days``); ``step_days``
    the days between two periods of the data, which ``score_day`` computes the features in.
    """

    def __init__(self, frame: pd.DataFrame, context_days: int, first: dt.date, last: dt.date,
                 step_days: int = 1):
        missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"the bundle's anomaly context lacks columns {missing}: rebuild it")
        columns = [*INPUT_COLUMNS, *([DAY_FACTOR] if DAY_FACTOR in frame.columns else [])]
        frame = frame[columns].assign(
            ds=lambda f: pd.to_datetime(f["ds"]).astype("datetime64[ns]"),
            series_id=lambda f: f["series_id"].astype(str),
        ).sort_values(["series_id", "ds"], ignore_index=True)
        self.frame = frame
        self.context_days = int(context_days)
        self.step_days = int(step_days)
        self.first, self.last = first, last
        ids = frame["series_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([])
        stops = np.r_[starts[1:], len(ids)] if len(ids) else np.array([])
        self.spans = {str(ids[a]): (int(a), int(b)) for a, b in zip(starts, stops, strict=True)}
        self.ds = frame["ds"].to_numpy()
        scorable = frame.index[frame["ds"] >= pd.Timestamp(first)]
        self.days = {pd.Timestamp(d): idx.to_numpy() for d, idx in
                     frame.loc[scorable].groupby("ds").groups.items()}
        # Day factor of a day with its recorded sales (the common request: score what was
        # sold), computed once; a what-if actual recomputes it.
        self._recorded_factor: dict[pd.Timestamp, float] = {}

    def rows(self, series_id: str, day: dt.date) -> tuple[pd.DataFrame, pd.Series | None]:
        """The series' rows in ``[day - context_days, day)`` and its packed row of ``day``."""
        a, b = self.spans.get(series_id, (0, 0))
        ds = self.ds[a:b]
        stamp = np.datetime64(pd.Timestamp(day), "ns")
        lo = a + int(np.searchsorted(ds, stamp - np.timedelta64(self.context_days, "D")))
        hi = a + int(np.searchsorted(ds, stamp))
        at_day = self.frame.iloc[hi] if hi < b and self.ds[hi] == stamp else None
        return self.frame.iloc[lo:hi], at_day


    def day_factor(self, series_id: str, day: dt.date, actual: float) -> float:
        """``day``'s common factor as the asset computes it, with ``actual`` in place of the
        series' recorded sales (``with_day_factors`` over the day's packed cross-section)."""
        stamp = pd.Timestamp(day)
        idx = self.days.get(stamp)
        if idx is None:
            return 1.0
        cross = self.frame.iloc[idx][list(INPUT_COLUMNS)]
        mine = cross["series_id"].to_numpy() == series_id
        recorded = cross["y"].to_numpy()
        as_recorded = bool((recorded[mine] == float(actual)).all())
        if as_recorded and stamp in self._recorded_factor:
            return self._recorded_factor[stamp]
        cross = cross.assign(y=np.where(mine, float(actual), recorded))
        factors = with_day_factors(cross)[DAY_FACTOR].to_numpy()
        factor = float(factors[0]) if len(factors) else 1.0
        if as_recorded:
            self._recorded_factor[stamp] = factor
        return factor


def expected_from_row(row: pd.Series | None, source: str) -> Expected | None:
    """The packed expectation of a day, or None when the asset had none (NaN) or no row."""
    if row is None:
        return None
    values = [float(row[c]) for c in ("p10", "p50", "p90")]
    if any(math.isnan(v) for v in values):
        return None
    return Expected(*values, source=source)


def check_detector(detector: AnomalyDetector) -> str | None:
    """Why this code cannot score with the detector, or None when it can."""
    version = detector.info.get("feature_version")
    if version not in (None, FEATURE_VERSION):
        return (f"the bundle's detector was trained on context features {version!r}, this code "
                f"computes {FEATURE_VERSION!r}: retrain anomaly_model and rebuild the bundle")
    if detector.threshold is None:
        return "the bundle's detector is not trained"
    return None


def score_day(detector: AnomalyDetector, history: pd.DataFrame, series_id: str, day: dt.date,
              actual: float, expected: Expected, step_days: int = 1) -> dict[str, Any]:
    """Score ``actual`` on ``day`` against ``expected``, with ``history`` as its context.

    ``history``: the series' rows before ``day`` (``INPUT_COLUMNS``), as the asset reads them;
    ``step_days``: the data's period (the asset's ``spec.step_days``).
    Raises ``NotScorable`` with the asset's own skip reason when the day cannot be scored.
    """
    stamp = pd.Timestamp(day)
    today = pd.DataFrame({"series_id": [series_id], "ds": [stamp], "y": [float(actual)],
                          "p10": [expected.p10], "p50": [expected.p50], "p90": [expected.p90],
                          DAY_FACTOR: [expected.day_factor]})
    if len(history) and DAY_FACTOR not in history.columns:
        history = history.assign(**{DAY_FACTOR: 1.0})
    frame = pd.concat([history, today], ignore_index=True) if len(history) else today
    features = context_features(frame, start=stamp, step_days=step_days)
    rows = features.rows
    if rows.empty:
        raise NotScorable("; ".join(features.messages) or "the day could not be scored")
    # z too: the reasons and the type read it, and a capped feature (nb_tail) stays finite.
    values = rows[list(dict.fromkeys(["z", *detector.features]))].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ActualOutOfRange(f"{actual:g} is so far from the expectation {expected.p50:.1f} "
                               "that the context features overflow")
    scored = detector.score(features)
    flagged = bool(scored["is_anomaly"].iloc[0])
    score = float(scored["score"].iloc[0])
    row = rows.iloc[0]
    # What the day was judged against: the expectation times the day factor (as the asset
    # stores it in p10/p50/p90).
    p10, p50, p90 = (float(row[c]) for c in ("p10", "p50", "p90"))
    if flagged:  # types and reasons for flagged rows only, as the asset
        label = classify(rows, step_days).iloc[0]
        kind, reason = str(label["anomaly_type"]), str(label["reason"])
    else:
        kind = None
        reason = (f"not an anomaly: score {score:.2f} <= threshold {detector.threshold:.2f}; "
                  f"sales {actual:g} vs expected {p50:.1f} (P10 {p10:.1f}, P90 {p90:.1f})")
    return {
        "score": score, "threshold": float(detector.threshold), "is_anomaly": flagged,
        "anomaly_type": kind, "reason": reason,
        "expected": p50, "p10": p10, "p90": p90, "forecast_p50": expected.p50,
        "expected_source": expected.source,
        "day_factor": expected.day_factor, "day_factor_source": expected.day_factor_source,
        "context": {k: float(row[k]) for k in SHOWN_FEATURES},
    }
