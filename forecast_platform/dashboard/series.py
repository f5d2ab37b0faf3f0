"""Finding a series among 50,000 and shaping what the Forecasts page shows of it.

Why a search and not a dropdown: a selectbox of 50,000 labels is megabytes sent to the
browser on every run and unusable by hand. The page filters the snapshot's series index by
words (all must occur in the id or the label: "store 3 item 12", "3|12", "store=3") and offers
the first matches.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from forecast_platform.dashboard.extract import TOTAL
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.forecasting.closed import closed_mask

MATCHES = 50  # most series offered for one search


def search(index: pd.DataFrame, query: str, limit: int = MATCHES) -> pd.DataFrame:
    """The series (and aggregates) whose id or label holds every word of ``query``.

    With no query: the aggregates first (a planner starts from the total), then the first
    series. An exact id comes first when it matches.
    """
    if not len(index):
        return index
    words = query.lower().split()
    if not words:
        ordered = pd.concat([index[index["kind"] == "aggregate"],
                             index[index["kind"] == "series"]])
        return ordered.head(limit)
    text = index["search"]
    mask = np.ones(len(index), dtype=bool)
    for word in words:
        mask &= text.str.contains(word, regex=False).to_numpy()
    found = index[mask]
    if not len(found):
        return found
    # Whole words and whole two-word phrases rank first: "store 1 item 1" is item 1 of
    # store 1, not item 12 or store 11.
    text = found["search"].str.replace(" · ", " ", regex=False)
    score = np.zeros(len(found))
    phrases = [[w] for w in words] + [[a, b] for a, b in zip(words, words[1:], strict=False)]
    for phrase in phrases:
        body = r"\s+".join(re.escape(w) for w in phrase)
        hit = text.str.contains(rf"(?:^|[\s|=]){body}(?:$|[\s|=])", regex=True).to_numpy()
        score += hit * len(phrase)
    score += 100 * (found["series_id"].str.lower() == query.strip().lower()).to_numpy()
    order = np.argsort(-score, kind="stable")
    return found.iloc[order].head(limit)


def lookup(index: pd.DataFrame, series_id: str) -> pd.Series | None:
    """The index row of an exact series id (or aggregate id), or None."""
    hit = index[index["series_id"] == series_id]
    return hit.iloc[0] if len(hit) else None


def default_window(history_end: dt.date, step_days: int) -> dt.date:
    """Where the chart starts by default: a year of daily data, three of weekly (a weekly
    series needs more than one season on screen to be read)."""
    return history_end - dt.timedelta(days=365 if step_days == 1 else 3 * 364)


def missing_days(history: pd.DataFrame, start: dt.date, end: dt.date,
                 step_days: int) -> list[dt.date]:
    """Periods from ``start`` to ``end`` (on the data's grid) with no row: days a store was
    closed or the series had no data. A missing row never means zero sales."""
    if not len(history):
        return []
    first = max(pd.Timestamp(start), history["ds"].min())
    grid = pd.date_range(first, pd.Timestamp(end), freq=f"{step_days}D")
    have = set(history["ds"])
    return [d.date() for d in grid if d not in have]


def closed_days(spec: DatasetSpec | None, keys: dict[str, str], days: list[dt.date]
                ) -> set[dt.date]:
    """Which of a series' ``days`` its dataset's closure rules close (the rest are gaps)."""
    if spec is None or not spec.rules or not days or not keys:
        return set()
    rows = pd.DataFrame({"ds": pd.to_datetime(days), **{k: [v] * len(days)
                                                       for k, v in keys.items()}})
    mask = closed_mask(spec, rows)
    return {d for d, c in zip(days, mask, strict=True) if c}


def shown(history: pd.DataFrame, forecasts: pd.DataFrame, plan: pd.DataFrame,
          start: dt.date, known: list[str], closed: set[dt.date], missing: list[dt.date]
          ) -> pd.DataFrame:
    """One frame of what the chart shows from ``start`` on, as the CSV download gives it:
    per period the actual, the expected band, the anomaly, the forecast quantiles, whether
    the day is open, and the known covariates (planned ones for the future)."""
    hist = history[history["ds"] >= pd.Timestamp(start)]
    cols = ["ds", "y", "exp_p10", "exp_p50", "exp_p90", "is_anomaly", "anomaly_type",
            "reason", *[k for k in known if k in hist.columns]]
    past = hist.reindex(columns=cols).assign(part="history", is_open=True)
    gaps = pd.DataFrame({"ds": pd.to_datetime(sorted(missing))})
    if len(gaps):
        gaps = gaps.assign(part="history", is_open=[d.date() not in closed for d in gaps["ds"]],
                           note=["closed" if d.date() in closed else "no data"
                                 for d in gaps["ds"]])
    future = forecasts.reindex(columns=["ds", "p10", "p50", "p90", "is_open"]) \
        .assign(part="forecast")
    if len(plan) and len(future):
        planned = [k for k in known if k in plan.columns]
        future = future.merge(plan[["ds", *planned, "plan_version"]], on="ds", how="left")
    frames = [f for f in (past, gaps, future) if len(f)]
    if not frames:
        return pd.DataFrame(columns=["ds", "part"])
    out = pd.concat(frames, ignore_index=True).sort_values("ds", kind="stable")
    if "note" not in out.columns:
        out["note"] = None
    closed_future = (out["part"] == "forecast") & (out["is_open"] == False)  # noqa: E712
    out.loc[closed_future, "note"] = "closed"
    out["is_anomaly"] = out["is_anomaly"].astype("boolean").fillna(False)
    out["ds"] = pd.to_datetime(out["ds"]).dt.date
    return out.reset_index(drop=True)


def is_total(series_id: str) -> bool:
    return series_id == TOTAL or "=" in series_id
