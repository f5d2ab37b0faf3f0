"""When drift should retrain the champion: a few columns, and only what it has not seen.

The drift report watches every history feature, but most of them lag the target by a horizon
(91+ days) or are ratios that ignore a level shift, so "half the columns drifted" reacts months
late. The retrain rule looks at the columns that move within a short window: the target, the
known-in-advance covariates (promotions) and the champion's own predictions.

A drifted column retrains only if the champion has not already trained on the new regime. The
report's reference is the same weeks a year earlier (``seasonal_reference``), which stays
different from a shifted level for a whole year, so the report keeps saying "drift" after a
retrain has absorbed it. The rule therefore also compares the current window with the last weeks
of the champion's own training window (same distances, same thresholds): a column that drifted
against last year but looks like what the champion trained on most recently is *seen*, not new.
Without this second look every cooldown would start another retrain on the same drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.monitoring.drift import DEFAULT_NUM_THRESHOLD, DriftSummary

DEFAULT_CAT_THRESHOLD = 0.1  # Jensen-Shannon distance, Evidently's default
PREDICTION = "p50"


def retrain_columns(spec: DatasetSpec, target: str = "y") -> list[str]:
    """The columns whose drift can retrain: target, known covariates, the champion's P50."""
    return [target, *spec.known, PREDICTION]


def normed_wasserstein(reference: pd.Series, current: pd.Series) -> float:
    """Evidently's numerical test: Wasserstein distance in reference standard deviations."""
    ref = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(float)
    cur = pd.to_numeric(current, errors="coerce").dropna().to_numpy(float)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    return float(stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))


def jensen_shannon(reference: pd.Series, current: pd.Series) -> float:
    """Evidently's categorical test: Jensen-Shannon distance of the value frequencies."""
    ref, cur = reference.dropna(), current.dropna()
    if ref.empty or cur.empty:
        return float("nan")
    values = sorted(set(ref.astype(str)) | set(cur.astype(str)))
    p = ref.astype(str).value_counts(normalize=True).reindex(values, fill_value=0.0)
    q = cur.astype(str).value_counts(normalize=True).reindex(values, fill_value=0.0)
    return float(distance.jensenshannon(p.to_numpy(), q.to_numpy()))


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    drifted: list[str]  # retrain columns drifted against the seasonal reference
    unseen: list[str]  # ... and unlike the champion's most recent training weeks
    recent_scores: dict[str, float]
    reason: str


def decide_retrain(
    summary: DriftSummary,
    recent_training: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    categorical: Sequence[str] = (),
    num_threshold: float = DEFAULT_NUM_THRESHOLD,
    cat_threshold: float = DEFAULT_CAT_THRESHOLD,
) -> RetrainDecision:
    """Retrain when a retrain column drifted in ``summary`` and also differs from
    ``recent_training`` (the champion's last training weeks, same length as ``current``)."""
    drifted = summary.drifted_among(columns)
    scores: dict[str, float] = {}
    unseen: list[str] = []
    for col in drifted:
        if recent_training.empty:
            scores[col] = float("nan")
            unseen.append(col)  # nothing recent to compare with: trust the report
            continue
        if col in set(categorical):
            score, limit = jensen_shannon(recent_training[col], current[col]), cat_threshold
        else:
            score, limit = normed_wasserstein(recent_training[col], current[col]), num_threshold
        scores[col] = score
        if not score < limit:  # NaN counts as unseen
            unseen.append(col)
    if not drifted:
        reason = (f"no retrain column drifted ({', '.join(columns)}); "
                  f"{summary.drifted_count} of {len(summary.columns)} columns drifted in all")
    elif unseen:
        reason = ("drifted and unlike the champion's last training weeks: "
                  + ", ".join(f"{c} ({scores[c]:.2f})" for c in unseen))
    else:
        reason = ("drifted against last year but the champion already trained on it: "
                  + ", ".join(f"{c} ({scores[c]:.2f} vs its last training weeks)"
                              for c in drifted))
    return RetrainDecision(bool(unseen), drifted, unseen, scores, reason)
