"""Scoring a range of periods: context features -> detector -> types and reasons, as stored rows.

Pure core (no Dagster): the ``sales_anomalies`` asset reads the expected values and actuals,
calls ``score_range`` and writes ``ScoredRange.rows``; the ``anomaly_model`` asset builds its
training features with the same ``score_context``, so fitting, scoring and the serving parity
tests all see one feature computation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from forecast_platform.anomalies.classify import classify
from forecast_platform.anomalies.context import ContextFeatures, context_features, with_day_factors
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


def score_context(frame: pd.DataFrame, spec: DatasetSpec, start: dt.date) -> ContextFeatures:
    """``context_features`` of ``frame`` (with the day factors) from ``start`` on, in the spec's
    periods: the one call the detector's fit, the scoring asset and the serving parity share."""
    return context_features(with_day_factors(frame), start=pd.Timestamp(start),
                            step_days=spec.step_days)


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


def score_range(frame: pd.DataFrame, spec: DatasetSpec, start: dt.date,
                detector: AnomalyDetector, detector_version: int) -> ScoredRange:
    """Score ``frame``'s periods from ``start`` on (rows before it are history only).

    A detector that cannot read the features (another feature version, a missing column)
    scores nothing: the rows are skipped and counted, not scored wrongly, and the range's
    previous rows are replaced by none, since they came from the same mismatched detector.
    """
    features = score_context(frame, spec, start)
    rows = features.rows
    skipped = {**features.skipped, "detector_mismatch": 0}
    messages = features.messages
    problem = detector.incompatibility(features)
    if problem:
        skipped["detector_mismatch"] = len(rows)
        messages = [*messages, f"{len(rows)} rows skipped: detector v{detector_version} "
                    f"cannot score them: {problem}"]
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
    return ScoredRange(out, skipped, messages, problem)
