"""Scored rows against ground-truth anomaly labels (the synthetic generator's, or injected ones).

Pure core (no Dagster): the ``sales_anomalies`` asset reads the generator's labels file when
the landed data came from it and reports these scores as metadata.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from forecast_platform.datasets.spec import DatasetSpec


def labelled_series(labels: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The generator's labels (one row per anomalous key-date, with an ``event_id``) with the
    ``series_id`` and ``ds`` the scored rows carry, so the two can be joined."""
    keys = [labels[k].astype(str) for k in spec.keys]
    series = keys[0].str.cat(keys[1:], sep="|") if len(keys) > 1 else keys[0]
    return labels.assign(series_id=series, ds=labels["date"])


def labels_between(labels: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """The labels of ``start``..``end`` (both included): those of the scored range only."""
    ds = pd.to_datetime(labels["ds"])
    return labels[(ds >= pd.Timestamp(start)) & (ds <= pd.Timestamp(end))]


def label_scores(scored: pd.DataFrame, labels: pd.DataFrame) -> dict[str, float]:
    """Point precision/recall/F1 and event recall against ground-truth labels on scored rows."""
    truth = labels.assign(ds=pd.to_datetime(labels["ds"]))[["series_id", "ds", "event_id"]]
    rows = scored[["series_id", "ds", "is_anomaly"]].assign(ds=lambda f: pd.to_datetime(f["ds"]))
    rows = rows.merge(truth, on=["series_id", "ds"], how="left")
    actual = rows["event_id"].notna()
    flagged = rows["is_anomaly"].astype(bool)
    tp = int((actual & flagged).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(actual.sum()), 1)
    events = rows[actual].groupby("event_id")["is_anomaly"].any()
    return {
        "precision": round(precision, 4), "recall": round(recall, 4),
        "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
        "event_recall": round(float(events.mean()) if len(events) else 0.0, 4),
        "labelled_points": int(actual.sum()), "flagged_points": int(flagged.sum()),
    }
