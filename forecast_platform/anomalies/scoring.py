"""Scoring a range of periods: context features -> detector -> types and reasons, as stored rows.

Pure core (no Dagster): the ``sales_anomalies`` asset reads the expected values and actuals,
calls ``score_range`` and writes ``ScoredRange.rows``; the ``anomaly_model`` asset builds its
training features with the same ``score_context``, so fitting, scoring and the serving parity
tests all see one feature computation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from forecast_platform.anomalies.classify import classify
from forecast_platform.anomalies.context import (
    ContextFeatures,
    context_features,
    skip_messages,
    with_day_factors,
)
from forecast_platform.anomalies.detector import AnomalyDetector
from forecast_platform.anomalies.expected import context_days
from forecast_platform.datasets.spec import DatasetSpec

# The sales_anomalies table's columns, in order.
OUTPUT_COLUMNS = ["ds", "series_id", "y", "p10", "p50", "p90", "forecast_p50", "day_factor",
                  "score", "is_anomaly", "anomaly_type", "reason", "detector_version"]


def history_start(spec: DatasetSpec, start: dt.date) -> dt.date:
    """The first date to read for scoring from ``start`` on: the features' reference window
    and run context come from the periods before it (``context_days``)."""
    return start - dt.timedelta(days=context_days(spec))


def score_context(frame: pd.DataFrame, spec: DatasetSpec, start: dt.date,
                  factors: pd.Series | None = None) -> ContextFeatures:
    """``context_features`` of ``frame`` (with the day factors) from ``start`` on, in the spec's
    periods: the one call the detector's fit, the scoring asset and the serving parity share.
    ``factors``: the days' factors of every series, when ``frame`` holds a block of them."""
    return context_features(with_day_factors(frame, factors=factors),
                            start=pd.Timestamp(start), step_days=spec.step_days)


@dataclass
class ScoredRange:
    """What scoring a range gives: the rows to store and what was left out, with the reason.

    ``rows``: ``OUTPUT_COLUMNS``, a type and reason on flagged rows only. ``skipped``: counts
    by reason (``ContextFeatures.skipped`` plus ``detector_mismatch``); ``messages`` says why
    in words. ``problem``: why the detector could not score the features (None when it could).
    """

    rows: pd.DataFrame
    skipped: dict[str, int]
    messages: list[str]
    problem: str | None
    # Per day: ds, rows, flagged, day_factor; None: count them from ``rows`` (which then hold
    # every scored row). A range scored a block at a time keeps these and not every row.
    daily: pd.DataFrame | None = None
    hints: dict[str, str] = field(default_factory=dict)  # why, by reason of ``skipped``


def daily_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """Scored rows, flagged rows and the day factor of each day of ``rows``."""
    grouped = rows.groupby("ds")
    return pd.DataFrame({"rows": grouped.size(), "flagged": grouped["is_anomaly"].sum(),
                         "day_factor": grouped["day_factor"].first()}).reset_index()


@dataclass
class BlockTally:
    """What a range scored a block of series at a time keeps of each block: its days'
    counts, its flagged rows and the rows at ``keep`` points (e.g. the generator's labels,
    for ``label_scores``), and its skipped rows. The stored rows go elsewhere (Parquet,
    warehouse/staging.py), so memory is one block's, whatever the number of series."""

    keep: pd.DataFrame | None = None  # series_id, ds of the points to keep
    daily: list[pd.DataFrame] = field(default_factory=list)
    kept: list[pd.DataFrame] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    _points: pd.MultiIndex | None = field(default=None, repr=False)

    def add(self, scored: ScoredRange) -> None:
        rows = scored.rows
        self.daily.append(daily_counts(rows))
        wanted = rows["is_anomaly"].to_numpy(dtype=bool)
        if self.keep is not None and len(self.keep):
            if self._points is None:
                self._points = pd.MultiIndex.from_frame(self.keep[["series_id", "ds"]].assign(
                    ds=lambda f: pd.to_datetime(f["ds"])))
            here = pd.MultiIndex.from_arrays([rows["series_id"], pd.to_datetime(rows["ds"])])
            wanted |= here.isin(self._points)
        self.kept.append(rows[wanted])
        for reason, n in scored.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n
        self.hints.update(scored.hints)
        self.problem = self.problem or scored.problem

    def result(self) -> ScoredRange:
        """The range as one ``ScoredRange``: ``rows`` are the kept rows only, ``daily`` counts
        every scored row."""
        daily = pd.concat(self.daily, ignore_index=True) if self.daily else \
            pd.DataFrame(columns=["ds", "rows", "flagged", "day_factor"])
        daily = daily.groupby("ds", as_index=False).agg(
            rows=("rows", "sum"), flagged=("flagged", "sum"), day_factor=("day_factor", "first"))
        kept = [k for k in self.kept if len(k)]
        rows = pd.concat(kept, ignore_index=True) if kept else \
            pd.DataFrame(columns=OUTPUT_COLUMNS).astype({"is_anomaly": bool})
        return ScoredRange(rows, dict(self.skipped), skip_messages(self.skipped, self.hints),
                           self.problem, daily, dict(self.hints))


def score_range(frame: pd.DataFrame, spec: DatasetSpec, start: dt.date,
                detector: AnomalyDetector, detector_version: int,
                factors: pd.Series | None = None) -> ScoredRange:
    """Score ``frame``'s periods from ``start`` on (rows before it are history only).

    A detector that cannot read the features (another feature version, a missing column)
    scores nothing: the rows are skipped and counted, not scored wrongly, and the range's
    previous rows are replaced by none, since they came from the same mismatched detector.
    """
    features = score_context(frame, spec, start, factors)
    rows = features.rows
    skipped = {**features.skipped, "detector_mismatch": 0}
    problem = detector.incompatibility(features)
    hints = {**features.hints,
             "detector_mismatch": f"detector v{detector_version} cannot score them: {problem}"}
    if problem:
        skipped["detector_mismatch"] = len(rows)
        rows = rows.iloc[:0]
        result = pd.DataFrame({"score": pd.Series(dtype=float),
                               "is_anomaly": pd.Series(dtype=bool)})
    else:
        result = detector.score(features)
    scored = pd.concat([rows.reset_index(drop=True), result.reset_index(drop=True)], axis=1)
    # Types and reasons only for flagged rows: classify is per row, and most rows are clean.
    flagged_rows = scored[scored["is_anomaly"].to_numpy(dtype=bool)]
    labels = classify(flagged_rows, spec.step_days)
    scored = scored.assign(anomaly_type=labels["anomaly_type"], reason=labels["reason"],
                           detector_version=detector_version)
    out = scored[OUTPUT_COLUMNS].astype({"is_anomaly": bool})
    return ScoredRange(out, skipped, skip_messages(skipped, hints), problem, hints=hints)
