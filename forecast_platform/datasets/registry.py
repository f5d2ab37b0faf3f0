"""The datasets the platform knows, by name, and how each one lands its files."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

from forecast_platform.datasets.landing import DailyFileWriter, write_landing_files
from forecast_platform.datasets.spec import ClosureRule, DatasetSpec

if TYPE_CHECKING:
    from forecast_platform.datasets.synthetic import SyntheticConfig

LABELS_FILE = "anomaly_labels.csv"
# Each planted mistake quarantines one row of its day; below this many series that one row is
# over the blocking checks' 5 % (quarantine rate, completeness) and would stop a small demo.
MISTAKES_MIN_SERIES = 25
# The planted mistakes go on days among the landed window's last this many.
MISTAKE_WINDOW_DAYS = 60
# Above this many series the generator runs whole stores at a time, about this many series
# each: its dense (day x series) arrays take over 1 GB per 5,000 series over five years, so
# 50,000 series at once would not fit a worker. At or below it the data is one block, as ever.
LAND_BLOCK_SERIES = 5_000


def with_upstream_mistakes(sales: pd.DataFrame, seed: int = 7, days: int = 6) -> pd.DataFrame:
    """Add the kinds of bad rows real upstream systems send, on a few days near the end.

    A demo should show the quarantine at work: one negative sale, one non-numeric sale, one
    missing key, one unparseable date and one duplicated row, each on its own day.
    """
    out = sales.astype({"sales": object, "store": object, "date": object}).copy()
    out["date"] = pd.to_datetime(out["date"]).dt.strftime("%Y-%m-%d")
    rng = np.random.default_rng(seed)
    last_days = sorted(out["date"].unique())[-MISTAKE_WINDOW_DAYS:]
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
    closures: bool = False,
) -> list[Path]:
    """Generate the embedded default data and drop it as landing files.

    The generator always simulates from the spec's start (so the series are the same whatever
    window is landed) and lands only ``start..end``. Anomaly labels go beside the files: they
    are the ground truth anomaly detection is scored against, not an input.

    ``closures``: a retailer's calendar (``SyntheticConfig.closures``): open store-days only,
    a ``region`` column, store-wide promotions, the refurbishment inside the landed window, and
    the promotion plan of the six weeks after ``end`` beside the labels (``PLAN_FILE``).

    Beyond ``LAND_BLOCK_SERIES`` series the data is generated and written a block of stores
    at a time (``store_blocks``), so memory does not grow with the store count; each day's
    file still appears whole, once every block is in.
    """
    from forecast_platform.datasets.synthetic import (
        PLAN_FILE,
        SyntheticConfig,
        default_refurbish_start,
        generate_sales,
        promo_plan,
    )

    last = end or spec.end
    config = SyntheticConfig(
        n_stores=n_stores, n_items=n_items, start=spec.start, end=last,
        drift_from=drift_from, seed=seed, closures=closures,
        refurbish_start=default_refurbish_start(max(start or spec.start, spec.start), last)
        if closures else None,
    )
    plant = mistakes and n_stores * n_items >= MISTAKES_MIN_SERIES
    first_day = pd.Timestamp(start) if start is not None else None
    label_parts = []
    events_before = 0
    with DailyFileWriter(landing_dir) as writer:
        for index, (stores_before, block) in enumerate(store_blocks(config)):
            sales, labels = generate_sales(block)
            # Holidays come from the platform's calendar (holiday_calendar), not the sales feed.
            sales = _renumbered(sales.drop(columns=["holiday"]), stores_before)
            labels = _renumbered(labels, stores_before, events_before)
            events_before = int(labels["event_id"].max()) if len(labels) else events_before
            if first_day is not None:
                sales = sales[sales["date"] >= first_day]
                labels = labels[labels["date"] >= first_day]
            # One block carries the planted mistakes: a few rows in all, as in one block.
            _land_block(writer, sales, spec.date_column, seed if plant and index == 0 else None)
            label_parts.append(labels)
            del sales  # the next block is generated without this one still held
        written = writer.commit()
    _all_labels(label_parts).to_csv(landing_dir / LABELS_FILE, index=False)
    if closures:
        promo_plan(config).to_csv(landing_dir / PLAN_FILE, index=False)
    return written


def store_blocks(config: SyntheticConfig) -> list[tuple[int, SyntheticConfig]]:
    """The configs generating ``config``'s data a block of whole stores at a time, each with
    the number of stores before it, so memory stays bounded whatever the store count.

    Up to ``LAND_BLOCK_SERIES`` series it is ``config`` itself: the data stays what it always
    was. Each further block draws from a seed derived from (seed, block), so a landing is
    reproducible and its blocks independent; a block's stores and items therefore have their
    own traits (item 3 of store 1 and of a store of another block share only the number).
    ``closures`` is never split: its store roles (region, Sunday opening) follow the store
    numbers 1..n, and its datasets have ten stores.
    """
    if config.closures or config.n_stores * config.n_items <= LAND_BLOCK_SERIES:
        return [(0, config)]
    per_block = max(1, LAND_BLOCK_SERIES // config.n_items)
    return [
        (before, dataclasses.replace(config, n_stores=min(per_block, config.n_stores - before),
                                     seed=_block_seed(config.seed, index)))
        for index, before in enumerate(range(0, config.n_stores, per_block))
    ]


def _block_seed(seed: int, block: int) -> int:
    """A block's own seed: SeedSequence mixes (seed, block), so no two pairs collide the way
    ``seed * 1000 + block`` would."""
    return int(np.random.SeedSequence([seed, block]).generate_state(1)[0])


def _renumbered(frame: pd.DataFrame, stores_before: int, events_before: int = 0
                ) -> pd.DataFrame:
    """A block's rows with the store numbers (and label event ids) of the whole landing:
    a block numbers its stores from 1 and its events from 1."""
    if stores_before:
        frame["store"] += stores_before
    if events_before and "event_id" in frame:
        frame["event_id"] += events_before
    return frame


def _land_block(writer: DailyFileWriter, sales: pd.DataFrame, date_column: str,
                mistakes_seed: int | None) -> None:
    """Append a block's sales (sorted by date) to the day files, with the planted mistakes.

    The mistakes touch the last days only, so only those days take the slow object-typed
    detour of ``with_upstream_mistakes``; the rows are the ones it makes of the whole block.
    """
    if mistakes_seed is None or sales.empty:
        writer.append(sales, date_column)
        return
    dates = sales["date"].to_numpy()
    days = np.unique(dates)
    cut = int(np.searchsorted(dates, days[max(len(days) - MISTAKE_WINDOW_DAYS, 0)]))
    writer.append(sales.iloc[:cut], date_column)
    tail = with_upstream_mistakes(sales.iloc[cut:], seed=mistakes_seed)
    writer.append(tail, "_file_day", keep_key=False)


def _all_labels(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The blocks' anomaly labels as one frame in the generator's order (date, store, item)."""
    if len(parts) == 1:
        return parts[0]
    labels = pd.concat(parts, ignore_index=True)
    return labels.sort_values(["date", "store", "item"], ignore_index=True, kind="stable")

def land_store_item(
    spec: DatasetSpec, landing_dir: Path, source_dir: Path | None = None, **_: object
) -> list[Path]:
    """Split Kaggle's ``train.csv.gz`` into daily landing files (the file is never copied)."""
    path = _source_file(spec, source_dir, "train.csv.gz", "../shared/data/store_item_demand")
    frame = duckdb.sql(f"SELECT * FROM read_csv('{path}', all_varchar = true)").df()
    return write_landing_files(frame, landing_dir, spec.date_column)


def _source_file(spec: DatasetSpec, source_dir: Path | None, name: str, hint: str) -> Path:
    """A real dataset's source file, or a clear error saying which folder to configure."""
    if source_dir is None:
        raise ValueError(
            f"dataset {spec.name!r} needs FORECAST_SOURCE_DIR: the folder holding {name} "
            f"(in development: {hint})"
        )
    path = source_dir / name
    if not path.is_file():
        raise FileNotFoundError(f"dataset {spec.name!r}: {path} does not exist")
    return path


WALMART_COVARIATES = ("Temperature", "Fuel_Price", "MarkDown1", "MarkDown2", "MarkDown3",
                      "MarkDown4", "MarkDown5", "CPI", "Unemployment")


def walmart_select(source_dir: Path | None, spec: DatasetSpec, stores: list[int] | None = None
                   ) -> str:
    """SQL joining Walmart's train, features and stores files into the spec's landing shape.

    Covariates are joined at landing (one row per store x dept x week carries its store's
    covariates and attributes), so a landing file is self-contained. The markdowns are NA before
    November 2011 and on weeks without a promotion: NA is read as 0, "no markdown running",
    since a known covariate must be present (a documented choice; the other covariates have no
    NA in the training period). ``stores`` samples a few stores (tests).
    """
    hint = "../shared/data/walmart_recruiting"
    train = _source_file(spec, source_dir, "train.csv.gz", hint)
    features = _source_file(spec, source_dir, "features.csv.gz", hint)
    stores_file = _source_file(spec, source_dir, "stores.csv.gz", hint)
    markdown = ", ".join(f"coalesce(f.{c}, 0) AS {c}" for c in WALMART_COVARIATES
                         if c.startswith("MarkDown"))
    plain = ", ".join(f"f.{c}" for c in WALMART_COVARIATES if not c.startswith("MarkDown"))
    where = f"WHERE t.Store IN ({', '.join(str(int(s)) for s in stores)})" if stores else ""
    return f"""
        SELECT strftime(t.Date, '%Y-%m-%d') AS Date, t.Store, t.Dept, t.Weekly_Sales,
               CAST(t.IsHoliday AS INTEGER) AS IsHoliday, {plain}, {markdown}, s.Type, s.Size
        FROM read_csv('{train}', header = true) t
        JOIN read_csv('{features}', header = true, nullstr = 'NA') f USING (Store, Date)
        JOIN read_csv('{stores_file}', header = true) s USING (Store)
        {where}
        ORDER BY t.Date, t.Store, t.Dept
    """


def land_walmart(
    spec: DatasetSpec, landing_dir: Path, source_dir: Path | None = None,
    stores: list[int] | None = None, **_: object,
) -> list[Path]:
    """Split Walmart Recruiting into weekly landing files (Fridays), covariates joined."""
    frame = duckdb.sql(walmart_select(source_dir, spec, stores)).df()
    return write_landing_files(frame[spec.columns], landing_dir, spec.date_column)


def favorita_select(source_dir: Path | None, spec: DatasetSpec, stores: list[int] | None = None,
                    start: dt.date | None = None, end: dt.date | None = None) -> str:
    """SQL joining Favorita's transactions, holidays, oil and stores into the landing shape.

    * ``national_holiday``: a national Holiday, Transfer, Additional or Bridge day that was not
      transferred away (a transferred holiday is a normal day; its Transfer row is the day off);
      ``local_holiday`` the same for the store's city or state. Both are known in advance.
    * ``oil``: the WTI price is missing on weekends, holidays and 43 trading days. It is
      forward-filled (the last traded price is what the economy sees on a day without
      trading); the first day, before any price, stays NULL. An observed covariate.
    * Days a store has no row (closed, not yet opened) stay missing, not zero.

    ``stores``, ``start`` and ``end`` sample a few stores and a date window (tests); the oil
    price is forward-filled over the whole file either way, so a sample sees the same values.
    """
    hint = "../shared/data/favorita"
    tx = _source_file(spec, source_dir, "transactions.csv.gz", hint)
    holidays = _source_file(spec, source_dir, "holidays_events.csv.gz", hint)
    oil = _source_file(spec, source_dir, "oil.csv.gz", hint)
    stores_file = _source_file(spec, source_dir, "stores.csv.gz", hint)
    off = "type IN ('Holiday', 'Transfer', 'Additional', 'Bridge') AND NOT transferred"
    where = [f"t.date BETWEEN DATE '{start or spec.start}' AND DATE '{end or spec.end}'"]
    if stores:
        where.append(f"t.store_nbr IN ({', '.join(str(int(n)) for n in stores)})")
    return f"""
        WITH h AS (SELECT * FROM read_csv('{holidays}', header = true) WHERE {off}),
        days AS (SELECT unnest(generate_series(DATE '{spec.start}', DATE '{spec.end}',
                                               INTERVAL 1 DAY))::DATE AS date),
        oil AS (
            SELECT days.date, last_value(o.dcoilwtico IGNORE NULLS) OVER (ORDER BY days.date
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS oil
            FROM days LEFT JOIN read_csv('{oil}', header = true) o USING (date)
        )
        SELECT strftime(t.date, '%Y-%m-%d') AS date, t.store_nbr, t.transactions,
            CAST(EXISTS (SELECT 1 FROM h WHERE h.date = t.date AND h.locale = 'National')
                 AS INTEGER) AS national_holiday,
            CAST(EXISTS (SELECT 1 FROM h WHERE h.date = t.date AND h.locale <> 'National'
                         AND h.locale_name IN (s.city, s.state)) AS INTEGER) AS local_holiday,
            round(oil.oil, 4) AS oil, s.type, s.cluster
        FROM read_csv('{tx}', header = true) t
        JOIN read_csv('{stores_file}', header = true) s USING (store_nbr)
        LEFT JOIN oil ON oil.date = t.date
        WHERE {" AND ".join(where)}
        ORDER BY t.date, t.store_nbr
    """


def land_favorita_transactions(
    spec: DatasetSpec, landing_dir: Path, source_dir: Path | None = None,
    stores: list[int] | None = None, start: dt.date | None = None, end: dt.date | None = None,
    **_: object,
) -> list[Path]:
    """Split Favorita's transactions into daily landing files, covariates joined."""
    frame = duckdb.sql(favorita_select(source_dir, spec, stores, start, end)).df()
    return write_landing_files(frame[spec.columns], landing_dir, spec.date_column)


def _walmart_spec() -> DatasetSpec:
    return DatasetSpec(
        name="walmart",
        description="Kaggle Walmart Recruiting: 45 stores x 81 departments, weekly (Fridays), "
                    "2010-02-05..2012-10-26",
        frequency="W",
        date_column="Date",
        keys=("Store", "Dept"),
        key_types={"Store": "int", "Dept": "int"},
        target="Weekly_Sales",
        known={"IsHoliday": "int", **{c: "float" for c in WALMART_COVARIATES}},
        static={"Type": "str", "Size": "int"},
        static_keys=("Store",),
        categories={"Type": ("A", "B", "C")},
        holiday_column="IsHoliday",
        # Weather, fuel, CPI and unemployment are not known for future weeks, and the markdowns
        # are planned but only published from late 2011: landed and featured, not trained on.
        model_covariates=(),
        # Negative weekly sales are returns exceeding sales in a department-week: real, kept
        # (validation accepts them) and scored; the forecast is not negative (the P50 is
        # clipped at 0: a return is not a sale to plan for).
        allow_negative_target=True,
        # Up to ~12 % of the departments a store had in the previous 28 weeks miss a week.
        max_missing_share=0.15,
        # Weekly dollars per store-department: the history's largest is 693,099.
        max_target=10_000_000,
        start=dt.date(2010, 2, 5),
        end=dt.date(2012, 10, 26),
        horizon=39,  # the Kaggle task's horizon: 2012-11-02..2013-07-26
        metric="wmae",
        lander=land_walmart,
    )


def _favorita_transactions_spec() -> DatasetSpec:
    return DatasetSpec(
        name="favorita_transactions",
        description="Kaggle Favorita: daily transactions of 54 stores in Ecuador, 2013-2017, "
                    "with holidays and the oil price",
        frequency="D",
        date_column="date",
        keys=("store_nbr",),
        key_types={"store_nbr": "int"},
        target="transactions",
        known={"national_holiday": "int", "local_holiday": "int"},
        observed={"oil": "float"},
        static={"type": "str", "cluster": "int"},
        categories={"type": ("A", "B", "C", "D", "E")},
        # Every store is closed on Christmas; on New Year's day one store opens at most. The
        # source has an outage on 2016-01-02..04 (36, 0 and 14 of 53 stores): declared, so the
        # blocking checks do not stop the whole history on it (the rows there are kept).
        closed_dates=("12-25", "01-01", "2016-01-02", "2016-01-03", "2016-01-04"),
        # A store misses a day now and then (2013-06-19: 4 of 47).
        max_missing_share=0.10,
        max_target=100_000,  # transactions per store-day; the history's largest is 8,359
        start=dt.date(2013, 1, 1),
        end=dt.date(2017, 8, 15),
        horizon=28,
        lander=land_favorita_transactions,
    )


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
        max_target=100_000,  # units per store-item-day; the generator stays in the thousands
        start=dt.date(2013, 1, 1),
        end=dt.date(2017, 12, 31),
        horizon=90,
        lander=land_synthetic,
    )


# The stores the ``synthetic_closures`` spec's closure rules are written for (the CLI's default).
CLOSURE_STORES = 10


def synthetic_closure_rules(n_stores: int, start: dt.date, end: dt.date
                            ) -> tuple[ClosureRule, ...]:
    """The generator's own retail calendar (``closures=True``) for stores 1..n as rules: a
    Sunday rule per store closing on Sundays; per holiday and closing store a yearly rule when
    the holiday falls on the same MM-DD in every year of start..end, else one date rule a year
    (national: every store but the one open on holidays; regional: the stores of region A).
    The refurbishment is not a rule: its days depend on the landed window."""
    from forecast_platform.datasets.synthetic import closure_calendar, store_roles

    roles = store_roles(range(1, n_stores + 1))
    rules = [ClosureRule(weekday=7, match={"store": str(s)}, note="closed on Sundays")
             for s in roles.stores if s not in roles.sunday_open]
    calendar = closure_calendar(start, end)
    years = end.year - start.year + 1
    for (scope, name), days in calendar.groupby(["scope", "holiday"], sort=False)["date"]:
        closing = roles.region_a if scope == "regional" else [
            s for s in roles.stores if s != roles.holiday_open]
        mmdd = sorted(set(days.dt.strftime("%m-%d")))
        yearly = len(mmdd) == 1 and len(days) == years
        for s in closing:
            if yearly:
                rules.append(ClosureRule(yearly=mmdd[0], match={"store": str(s)},
                                         note=f"{scope}: {name}"))
            else:
                rules.extend(ClosureRule(date=d.strftime("%Y-%m-%d"), match={"store": str(s)},
                                         note=f"{scope}: {name}") for d in days)
    return tuple(rules)


def land_synthetic_closures(spec: DatasetSpec, landing_dir: Path, source_dir: Path | None = None,
                            n_stores: int = CLOSURE_STORES, **kwargs: object) -> list[Path]:
    """``land_synthetic`` with the retailer's calendar, for the stores the spec's rules name."""
    if n_stores != CLOSURE_STORES:
        raise ValueError(f"dataset {spec.name!r}: its closure rules are written for "
                         f"{CLOSURE_STORES} stores, not {n_stores}")
    kwargs.pop("closures", None)
    return land_synthetic(spec, landing_dir, source_dir, n_stores=n_stores, closures=True,
                          **kwargs)


def _synthetic_closures_spec() -> DatasetSpec:
    """The synthetic spec, with the retailer's calendar as closure rules and a region."""
    base = _synthetic_spec()
    return dataclasses.replace(
        base,
        name="synthetic_closures",
        description=f"The embedded generator with a retailer's calendar: {CLOSURE_STORES} "
                    "stores x items, daily, open store-days only (Sundays, national and "
                    "regional holidays, a refurbishment), store-wide promotions, a region",
        static={"region": "str"},
        static_keys=("store",),
        categories={"region": ("A", "B")},
        closure_rules=synthetic_closure_rules(CLOSURE_STORES, base.start, base.end),
        # The refurbishment (one store of ten closed for two weeks, placed in the landed
        # window) is no rule: completeness tolerates its tenth of the series.
        max_missing_share=0.12,
        lander=land_synthetic_closures,
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
        max_target=10_000,  # units per store-item-day; the history's largest is 231
        start=dt.date(2013, 1, 1),
        end=dt.date(2017, 12, 31),
        horizon=90,
        lander=land_store_item,
    )



def is_generated(spec: DatasetSpec) -> bool:
    """Whether the platform's own generator lands this dataset (it takes a size and dates)."""
    return spec.lander in (land_synthetic, land_synthetic_closures)


BUILTIN = {"synthetic": _synthetic_spec, "synthetic_closures": _synthetic_closures_spec,
           "store_item": _store_item_spec,
           "walmart": _walmart_spec, "favorita_transactions": _favorita_transactions_spec}


def get_spec(name: str, datasets_dir: Path | None = None) -> DatasetSpec:
    """A built-in spec, or a user's YAML spec ``<datasets_dir>/<name>.yaml``.

    ``datasets_dir`` is the settings' (``Settings.datasets_dir``, where ``forecast-platform
    init-dataset`` writes), passed by the caller that resolved them, so every process of one
    data directory (CLI, code location, run workers) finds the same specs.
    """
    if name in BUILTIN:
        return BUILTIN[name]()
    from forecast_platform.datasets.custom import load_spec

    if datasets_dir is None:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(BUILTIN)}, or a "
                         "user dataset with the folder of its spec (Settings.datasets_dir)")
    path = datasets_dir / f"{name}.yaml"
    if path.is_file():
        return load_spec(path)
    users = sorted(p.stem for p in datasets_dir.glob("*.yaml")) if datasets_dir.is_dir() else []
    raise ValueError(
        f"unknown dataset {name!r}: expected one of {sorted(BUILTIN) + users} (FORECAST_DATASET)"
        f"; a CSV of your own becomes one with `forecast-platform init-dataset` ({datasets_dir})"
    )
