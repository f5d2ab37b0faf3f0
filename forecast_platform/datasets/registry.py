"""The datasets the platform knows, by name, and how each one lands its files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from forecast_platform.datasets.landing import write_landing_files
from forecast_platform.datasets.spec import DatasetSpec

LABELS_FILE = "anomaly_labels.csv"


def with_upstream_mistakes(sales: pd.DataFrame, seed: int = 7, days: int = 6) -> pd.DataFrame:
    """Add the kinds of bad rows real upstream systems send, on a few days near the end.

    A demo should show the quarantine at work: one negative sale, one non-numeric sale, one
    missing key, one unparseable date and one duplicated row, each on its own day.
    """
    out = sales.astype({"sales": object, "store": object, "date": object}).copy()
    out["date"] = pd.to_datetime(out["date"]).dt.strftime("%Y-%m-%d")
    rng = np.random.default_rng(seed)
    last_days = sorted(out["date"].unique())[-60:]
    picks = rng.choice(len(last_days), size=days, replace=False)
    rows = []
    for i in picks:
        day_rows = out.index[out["date"] == last_days[i]]
        rows.append(day_rows[int(rng.integers(0, len(day_rows)))])
    out.loc[rows[0], "sales"] = -3
    out.loc[rows[1], "sales"] = "12a"
    out.loc[rows[2], "store"] = None
    out.loc[rows[3], "sales"] = None
    duplicate = out.loc[[rows[4]]]
    out.loc[rows[5], "date"] = "2017-02-30"  # an impossible date, in the right day's file
    # The date column drives the landing file name: keep the broken date in its own day's file.
    out["_file_day"] = pd.to_datetime(sales["date"]).dt.strftime("%Y-%m-%d")
    duplicate = duplicate.assign(_file_day=out.loc[rows[4], "_file_day"])
    return pd.concat([out, duplicate]).sort_index(kind="stable")


def land_synthetic(
    spec: DatasetSpec,
    landing_dir: Path,
    source_dir: Path | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    n_stores: int = 10,
    n_items: int = 50,
    drift_from: dt.date | None = None,
    seed: int = 42,
    mistakes: bool = True,
) -> list[Path]:
    """Generate the embedded default data and drop it as landing files.

    The generator always simulates from the spec's start (so the series are the same whatever
    window is landed) and lands only ``start..end``. Anomaly labels go beside the files: they
    are the ground truth anomaly detection is scored against, not an input.
    """
    from forecast_platform.datasets.synthetic import SyntheticConfig, generate_sales

    config = SyntheticConfig(
        n_stores=n_stores, n_items=n_items, start=spec.start, end=end or spec.end,
        drift_from=drift_from, seed=seed,
    )
    sales, labels = generate_sales(config)
    # Holidays come from the platform's calendar (holiday_calendar), not from the sales feed.
    sales = sales.drop(columns=["holiday"])
    if start is not None:
        sales = sales[sales["date"] >= pd.Timestamp(start)]
        labels = labels[labels["date"] >= pd.Timestamp(start)]
    if mistakes:
        sales = with_upstream_mistakes(sales, seed=seed)
        written = write_landing_files(sales, landing_dir, "_file_day", keep_key=False)
    else:
        written = write_landing_files(sales, landing_dir, spec.date_column)
    labels.to_csv(landing_dir / LABELS_FILE, index=False)
    return written


def land_store_item(
    spec: DatasetSpec, landing_dir: Path, source_dir: Path | None = None, **_: object
) -> list[Path]:
    """Split Kaggle's ``train.csv.gz`` into daily landing files (the file is never copied)."""
    if source_dir is None:
        raise ValueError(
            "dataset 'store_item' needs FORECAST_SOURCE_DIR: the folder holding train.csv.gz "
            "(in development: ../shared/data/store_item_demand)"
        )
    path = source_dir / "train.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"dataset 'store_item': {path} does not exist")
    frame = duckdb.sql(f"SELECT * FROM read_csv('{path}', all_varchar = true)").df()
    return write_landing_files(frame, landing_dir, spec.date_column)


def _synthetic_spec() -> DatasetSpec:
    return DatasetSpec(
        name="synthetic",
        description="Embedded realistic generator: stores x items, daily, with labelled anomalies",
        frequency="D",
        date_column="date",
        keys=("store", "item"),
        key_types={"store": "int", "item": "int"},
        target="sales",
        known={"promo": "int"},
        start=dt.date(2013, 1, 1),
        end=dt.date(2017, 12, 31),
        horizon=90,
        lander=land_synthetic,
    )


def _store_item_spec() -> DatasetSpec:
    return DatasetSpec(
        name="store_item",
        description="Kaggle Store Item Demand: 10 stores x 50 items, daily, 2013-2017",
        frequency="D",
        date_column="date",
        keys=("store", "item"),
        key_types={"store": "int", "item": "int"},
        target="sales",
        start=dt.date(2013, 1, 1),
        end=dt.date(2017, 12, 31),
        horizon=90,
        lander=land_store_item,
    )


BUILTIN = {"synthetic": _synthetic_spec, "store_item": _store_item_spec}


def get_spec(name: str) -> DatasetSpec:
    try:
        return BUILTIN[name]()
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}: expected one of {sorted(BUILTIN)} (FORECAST_DATASET)"
        ) from None
