"""A retailer-shaped fixture from real data: Kaggle's Store Item Demand with closures.

Most retailers' daily exports hold open days only: stores close on Sundays and on public
holidays (national and regional), and a daily promotion flag is planned weeks ahead. The Store
Item data has every day of every series and no promotions, so this module turns it into such an
export, with the truth of what it did, for the tests and benchmarks of closure-aware work:

- ~2.5 years are kept (from ``FIXTURE_START``);
- the shared retail calendar of the synthetic generator applies (``synthetic.retail_calendar``):
  9 of 10 stores close on Sundays, all stores but one on national holidays, stores 1-6
  (region A) on regional holidays, and store 1 for a two-week refurbishment mid-window;
- closed store-days are dropped (no row), as a retailer's export does;
- a store-wide ``promo`` flag (0/1) marks planned spells of a few days, and the sales of a
  promoted store-day are multiplied by ``PROMO_LIFT`` and rounded half up;
- the promotion plan of the six weeks after the end goes to ``covariate_plan.csv`` beside the
  output (date, store, item, promo; promo 0 on a day the store is closed).

The source is read from a configured directory and nothing derived from it is committed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from forecast_platform.datasets.synthetic import (
    PLAN_DAYS,
    PLAN_FILE,
    ClosureTruth,
    closure_calendar,
    default_refurbish_start,
    plan_frame,
    retail_calendar,
    store_promo_spells,
)

__all__ = ["FIXTURE_START", "PROMO_LIFT", "ClosureTruth", "promoted_sales",
           "store_item_with_closures"]

FIXTURE_START = dt.date(2015, 6, 1)  # to the data's end (2017-12-31): about 2.5 years
PROMO_LIFT = 1.3
PROMO_SHARE = 0.12  # share of store-days in a promotion spell
PROMO_DAYS = (2, 7)  # inclusive length range of one spell
REFURBISH_DAYS = 14
COLUMNS = ("date", "store", "item", "sales", "promo", "region")


def promoted_sales(sales: np.ndarray | pd.Series, lift: float = PROMO_LIFT) -> np.ndarray:
    """Sales of a promoted day: ``sales * lift`` rounded half up, as integers."""
    return np.floor(np.asarray(sales, dtype=float) * lift + 0.5).astype(np.int64)


def store_item_with_closures(
    train_csv: Path, out_csv: Path, seed: int = 0, start: dt.date | None = None
) -> ClosureTruth:
    """Write the Store Item data of ``start``.. as a retailer's export (open days only, with
    ``promo`` and ``region``) to ``out_csv`` and the six-week promotion plan beside it; return
    what was done (closed store-days with their reason, promoted store-days, the lift)."""
    start = start or FIXTURE_START
    frame = pd.read_csv(train_csv, parse_dates=["date"])
    frame = frame[frame["date"] >= pd.Timestamp(start)]
    if frame.empty:
        raise ValueError(f"{train_csv} has no row on or after {start}")
    end = frame["date"].max().date()
    stores = sorted(int(s) for s in frame["store"].unique())
    items = sorted(int(i) for i in frame["item"].unique())

    dates = pd.date_range(start, end + dt.timedelta(days=PLAN_DAYS), freq="D")
    refurbish_first = default_refurbish_start(start, end)
    calendar = retail_calendar(stores, dates, (refurbish_first, REFURBISH_DAYS))
    promo = store_promo_spells(seed, stores, len(dates), PROMO_SHARE, PROMO_DAYS)

    day = (frame["date"] - pd.Timestamp(start)).dt.days.to_numpy()
    column = np.searchsorted(np.asarray(stores), frame["store"].to_numpy())
    closed = calendar.closed[day, column]
    promoted = promo[day, column] & ~closed
    sales = frame["sales"].to_numpy()
    out = frame.assign(
        sales=np.where(promoted, promoted_sales(sales), sales).astype(np.int64),
        promo=promoted.astype(np.int64),
        region=np.asarray([calendar.roles.region[s] for s in stores], dtype=object)[column],
    )[~closed]
    out = out.sort_values(["date", "store", "item"], kind="stable")[list(COLUMNS)]
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    out.assign(date=out["date"].dt.strftime("%Y-%m-%d")).to_csv(out_csv, index=False)
    plan_path = out_csv.parent / PLAN_FILE
    plan_frame(calendar, promo, items, end + dt.timedelta(days=1), PLAN_DAYS).to_csv(
        plan_path, index=False)

    n_days = (end - start).days + 1
    closed_frame = calendar.closed_frame()
    promo_day, promo_column = np.nonzero((promo & ~calendar.closed)[:n_days])
    refurbished = calendar.roles.refurbished
    return ClosureTruth(
        start=start,
        end=end,
        closed=closed_frame[closed_frame["date"] <= pd.Timestamp(end)].reset_index(drop=True),
        promo=pd.DataFrame({"date": dates.to_numpy(dtype="datetime64[ns]")[promo_day],
                            "store": np.asarray(stores, dtype=np.int64)[promo_column]}),
        lift=PROMO_LIFT,
        roles=calendar.roles,
        refurbishment=None if refurbished is None else (
            refurbished, refurbish_first,
            refurbish_first + dt.timedelta(days=REFURBISH_DAYS - 1)),
        plan_path=plan_path,
        holidays=closure_calendar(start, end),
    )
