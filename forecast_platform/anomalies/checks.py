"""The checks on a scored range, as plain functions returning an ``Outcome``.

Pure core (no Dagster): the ``sales_anomalies`` asset turns these outcomes into check results.
"""

from __future__ import annotations

import pandas as pd

from forecast_platform.anomalies.detector import AnomalyDetector
from forecast_platform.anomalies.scoring import ScoredRange, daily_counts
from forecast_platform.ingestion.checks import Outcome

MAX_DAILY_RATE = 0.05  # above this share of series flagged on one day: a data problem
# ... and at least this many series: with ten series one flag is already 10 %, which says
# nothing about the day's data.
MIN_BURST_SERIES = 3
# A day whose series ALL sit this far from expectation (day factor outside the band) is a
# closure, an outage or a forecaster miss: absorbed by the day factor, reported by the check.
DAY_FACTOR_BAND = (0.8, 1.25)


def anomaly_rate(scored: ScoredRange) -> Outcome:
    """Fails when a day flags more than ``MAX_DAILY_RATE`` of its series, or when a day's
    factor common to all series lies outside ``DAY_FACTOR_BAND``.

    Why: anomalies are rare and independent across series; a burst on one day, or every series
    off together, says the data of that day (a partial file, a closure, an outage) or the
    forecaster is wrong, and the day's flags should not be trusted as hundreds of anomalies.
    """
    skipped = scored.skipped
    daily = (scored.daily if scored.daily is not None else daily_counts(scored.rows)) \
        .set_index("ds")
    flagged = daily["flagged"]
    per_day = flagged / daily["rows"]
    bursts = per_day[(per_day > MAX_DAILY_RATE) & (flagged >= MIN_BURST_SERIES)]
    factors = daily["day_factor"]
    shifted = factors[(factors < DAY_FACTOR_BAND[0]) | (factors > DAY_FACTOR_BAND[1])]
    burst_rows = pd.concat([
        bursts.rename("value").reset_index().assign(what="share of series flagged"),
        shifted.rename("value").reset_index().assign(what="day factor (all series)"),
    ]).head(10)
    problems = []
    if len(bursts):
        problems.append(f"{len(bursts)} days flag more than {MAX_DAILY_RATE:.0%} of their "
                        f"series (and at least {MIN_BURST_SERIES})")
    if len(shifted):
        problems.append(
            f"{len(shifted)} days have ALL series at a common factor outside "
            f"{DAY_FACTOR_BAND[0]}-{DAY_FACTOR_BAND[1]} x their expectation (closure, "
            f"outage or a forecaster miss; e.g. {pd.Timestamp(shifted.index[0]).date()} at "
            f"{shifted.iloc[0]:.2f}x), absorbed before scoring")
    return Outcome(
        not problems,
        "no burst of anomalies, no day shifted as a whole" if not problems else
        "; ".join(problems) + ": check the data of those days before trusting the anomalies",
        {"days_over_limit": len(bursts), "max_daily_share": round(float(per_day.max()), 4)
         if len(per_day) else 0.0, "common_shift_days": len(shifted),
         "rows_skipped": int(sum(skipped.values()))},
        burst_rows if problems else None,
    )


def detector_matches_forecaster(detector: AnomalyDetector, detector_version: int,
                                champion_version: int | None, scored: ScoredRange) -> Outcome:
    """Passes when the detector was built on the current champion forecaster's residuals and
    could read the current context features (else the range's rows were not scored)."""
    built_on = detector.metadata.get("forecaster_version")
    problem = scored.problem
    return Outcome(
        built_on == champion_version and not problem,
        f"detector v{detector_version} built on forecaster v{built_on}; champion "
        f"v{champion_version}"
        + (f"; {scored.skipped['detector_mismatch']} rows not scored: {problem}"
           if problem else ""),
        {"rows_not_scored": scored.skipped["detector_mismatch"]},
    )
