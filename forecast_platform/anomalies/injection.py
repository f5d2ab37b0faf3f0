"""Seeded anomaly injection into REAL sales, for measuring the detector against ground truth.

Real data (Kaggle Store Item Demand, Walmart) has no anomaly labels, and the synthetic
generator's anomalies sit on demand the generator itself made up. To measure the detector on
demand it did not make, we take real sales and put labelled events into an evaluation window:

    spike        1 day, x1.5-5 (of the day's sales, or of the series' typical day if that is
                 larger, so a spike on a quiet day still shows)
    dip          1-3 days, down to 10-60 % of the day's sales (at least one unit lower)
    level_shift  7-28 days, x0.4-0.6 (down) or x1.6-2.0 (up), one factor for the whole event
    zero_run     3-14 days of zero sales (a stock-out)

Events are drawn with the synthetic generator's type weights (0.35 / 0.25 / 0.20 / 0.20 per
event), never overlap and keep ``gap_days`` clean days between two events of a series (each
event needs a normal baseline around it to be an event at all). Precision and F1 depend on the
anomaly share, so the share is exact: events are placed until the labelled points are exactly
``round(share x evaluation points)``; the last event is shortened (and its type chosen to fit
the length) when a full one would overshoot.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

ANOMALY_TYPES: tuple[str, ...] = ("spike", "dip", "level_shift", "zero_run")
EVENT_WEIGHTS = np.array([0.35, 0.25, 0.20, 0.20])
EVENT_DAYS = {"spike": (1, 1), "dip": (1, 3), "level_shift": (7, 28), "zero_run": (3, 14)}
LABEL_COLUMNS = ("series_id", "date", "anomaly_type", "event_id", "factor", "expected", "actual")


def _factor(kind: str, rng: np.random.Generator) -> float:
    if kind == "spike":
        return float(rng.uniform(1.5, 5.0))
    if kind == "dip":
        return float(rng.uniform(0.1, 0.6))
    if kind == "level_shift":
        return float(rng.uniform(0.4, 0.6) if rng.random() < 0.5 else rng.uniform(1.6, 2.0))
    return 0.0


def _kind_for_length(length: int, rng: np.random.Generator) -> str:
    """A type whose length range holds ``length`` (for the last, shortened event)."""
    fits = [k for k, (lo, hi) in EVENT_DAYS.items() if lo <= length <= hi]
    if not fits:  # 15-27 days: only a level shift is that long
        return "level_shift"
    return str(fits[int(rng.integers(len(fits)))])


def inject_anomalies(
    sales: pd.DataFrame,
    start: dt.date,
    end: dt.date,
    share: float = 0.03,
    seed: int = 0,
    *,
    series_column: str = "series_id",
    date_column: str = "date",
    target: str = "sales",
    gap_days: int = 7,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Put labelled anomalies into ``sales`` between ``start`` and ``end`` (inclusive).

    ``sales`` has one row per series and day (``series_column``, ``date_column``, ``target``);
    the evaluation points are its rows inside the window. Returns ``(modified, labels)``:
    ``modified`` is a copy of ``sales`` (same rows, same order, target as float) with the events
    applied;
    ``labels`` has one row per anomalous point: series_id, date, anomaly_type, event_id (events
    numbered 1.. in time order), factor, expected (the real value before injection) and actual.
    Same input and seed, same output.
    """
    if not 0 <= share < 0.5:
        raise ValueError(f"share must be in [0, 0.5), got {share}")
    frame = sales.copy()
    frame[date_column] = pd.to_datetime(frame[date_column])
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    days = pd.date_range(lo, hi, freq="D")
    inside = frame[date_column].between(lo, hi)
    if not inside.any():
        raise ValueError(f"no sales rows between {start} and {end}: nothing to inject into")
    series = np.sort(frame.loc[inside, series_column].unique())
    # Dense (day, series) grid of the window; NaN where a series has no row that day.
    row = days.get_indexer(frame.loc[inside, date_column])
    col = np.searchsorted(series, frame.loc[inside, series_column].to_numpy())
    values = np.full((len(days), len(series)), np.nan)
    values[row, col] = frame.loc[inside, target].to_numpy(dtype=float)
    present = ~np.isnan(values)
    typical = np.nanmedian(values, axis=0)

    target_points = int(round(share * int(present.sum())))
    rng = np.random.default_rng(seed)
    taken = np.zeros_like(present)
    events: list[tuple[int, int, int, str, float]] = []  # start day, series, length, kind, f
    covered, attempts = 0, 0
    while covered < target_points:
        attempts += 1
        if attempts > 200 * (target_points + 10):
            raise ValueError(
                f"could not place {target_points} anomalous points ({share:.1%}) without "
                f"overlap: the window {start}..{end} is too small for that share"
            )
        kind = str(ANOMALY_TYPES[int(rng.choice(len(ANOMALY_TYPES), p=EVENT_WEIGHTS))])
        length = int(rng.integers(EVENT_DAYS[kind][0], EVENT_DAYS[kind][1] + 1))
        if length > target_points - covered:
            length = target_points - covered
            kind = _kind_for_length(length, rng)
        s = int(rng.integers(len(series)))
        if length > len(days):
            continue
        d0 = int(rng.integers(0, len(days) - length + 1))
        guard = slice(max(d0 - gap_days, 0), d0 + length + gap_days)
        if taken[guard, s].any() or not present[d0:d0 + length, s].all():
            continue
        taken[d0:d0 + length, s] = True
        events.append((d0, s, length, kind, _factor(kind, rng)))
        covered += length

    events.sort()
    labels: list[dict] = []
    for event_id, (d0, s, length, kind, factor) in enumerate(events, start=1):
        for d in range(d0, d0 + length):
            before = values[d, s]
            if kind == "spike":
                after = max(np.rint(max(before, typical[s]) * factor), before + 1)
            elif kind == "dip":
                after = min(np.rint(before * factor), max(before - 1, 0.0))
            elif kind == "level_shift":
                after = np.rint(before * factor)
            else:
                after = 0.0
            values[d, s] = after
            labels.append({"series_id": series[s], "date": days[d], "anomaly_type": kind,
                           "event_id": event_id, "factor": factor, "expected": before,
                           "actual": after})
    frame[target] = frame[target].astype(float)
    frame.loc[inside, target] = values[row, col]
    label_frame = pd.DataFrame(labels, columns=list(LABEL_COLUMNS))
    return frame, label_frame.sort_values(["date", "series_id"], ignore_index=True)
