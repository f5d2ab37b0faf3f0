"""Closed days in a forecast: the spec's closure rules applied to (series, date) rows.

A closed day keeps its forecast row, marked ``is_open = false`` with P10 = P50 = P90 = 0, so a
planner reads the closure in the forecasts table (and in the service's answer) instead of
guessing why a date is missing. A closed day never gets a positive forecast, whatever the model
or a scenario says. The rules are the spec's (``spec.rules``: the built-in ``closed_dates`` and
the closures file), matched on the series' key columns of the rows, exactly as
``datasets.closures.closed_sql`` matches them in SQL (the key value as text, an integer key
without leading zeros). The forecasts asset and the service call the same functions here. No
Dagster here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast_platform.datasets.closures import normalize_key
from forecast_platform.datasets.spec import DatasetSpec

QUANTILES = ("p10", "p50", "p90")


def closed_mask(spec: DatasetSpec, rows: pd.DataFrame, date_column: str = "ds") -> np.ndarray:
    """Per row of ``rows`` (a date column and the spec's key columns a rule matches on): whether
    a closure rule of ``spec`` closes that series on that date."""
    closed = np.zeros(len(rows), dtype=bool)
    if not len(rows) or not spec.rules:
        return closed
    stamps = pd.to_datetime(pd.Series(np.asarray(rows[date_column])))
    days = stamps.dt.date
    distinct = sorted(set(days))
    # Only the rules whose day pattern falls in the rows' dates: a horizon is a few weeks,
    # a closures file may hold years of holidays.
    rules = [r for r in spec.rules if any(r.applies(d) for d in distinct)]
    if not rules:
        return closed
    day_text = {"date": stamps.dt.strftime("%Y-%m-%d").to_numpy(),
                "yearly": stamps.dt.strftime("%m-%d").to_numpy(),
                "weekday": (stamps.dt.dayofweek + 1).astype(str).to_numpy()}
    keys: dict[str, np.ndarray] = {}
    for rule in rules:
        for k in rule.match:
            if k not in keys:
                if k not in rows.columns:
                    raise ValueError(f"closure rule {rule.describe()} matches on {k!r}, which "
                                     f"the forecast rows lack (columns {list(rows.columns)})")
                kind = spec.key_type(k)
                keys[k] = np.array([normalize_key(v, kind) for v in rows[k].to_numpy()],
                                   dtype=object)
    for rule in rules:
        hit = day_text[rule.kind] == rule.value
        for k, v in rule.match.items():
            hit &= keys[k] == v
        closed |= hit
    return closed


def apply_closures(spec: DatasetSpec, rows: pd.DataFrame, preds: pd.DataFrame,
                   date_column: str = "ds") -> pd.DataFrame:
    """``preds`` (P10/P50/P90 aligned with ``rows``) with ``is_open`` added and the quantiles
    of closed (series, date) rows set to 0."""
    closed = closed_mask(spec, rows, date_column)
    out = preds.copy()
    for q in QUANTILES:
        values = out[q].to_numpy(dtype=float, copy=True)
        values[closed] = 0.0
        out[q] = values
    out["is_open"] = ~closed
    return out
