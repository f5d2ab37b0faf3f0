"""Landing a large synthetic dataset block by block must give the same kind of day files as one
block would: every series once a day, reproducible, and (up to the block size) today's bytes.

The block size is patched down to two stores' worth of series, so a 5-store landing has three
blocks and the tests stay small.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from forecast_platform.datasets import registry
from forecast_platform.datasets.landing import (
    DailyFileWriter,
    landed_files,
    write_landing_files,
)
from forecast_platform.datasets.registry import LABELS_FILE, get_spec, land_synthetic
from forecast_platform.datasets.synthetic import SyntheticConfig, generate_sales

START, END = dt.date(2017, 1, 1), dt.date(2017, 3, 31)
# The generator simulates from the spec's start: a short spec keeps the tests fast.
SPEC = dataclasses.replace(get_spec("synthetic"), start=START, end=END)
N_STORES, N_ITEMS = 5, 3


def _land(landing: Path, **kwargs: object) -> list[Path]:
    return land_synthetic(SPEC, landing, n_stores=kwargs.pop("n_stores", N_STORES),
                          n_items=kwargs.pop("n_items", N_ITEMS), **kwargs)


def _read_all(landing: Path) -> pd.DataFrame:
    return pd.concat([pd.read_csv(path) for path in landed_files(landing).values()],
                     ignore_index=True)


def _file_bytes(landing: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(landing.iterdir())}


@pytest.fixture
def two_store_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "LAND_BLOCK_SERIES", 2 * N_ITEMS)


@pytest.mark.usefixtures("two_store_blocks")
def test_blocked_landing_has_every_series_once_a_day(tmp_path: Path) -> None:
    written = _land(tmp_path)

    days = pd.date_range(START, END, freq="D").date
    assert list(landed_files(tmp_path)) == list(days)
    assert written == list(landed_files(tmp_path).values())
    assert not list(tmp_path.glob("*.tmp"))
    sales = _read_all(tmp_path)
    assert list(sales.columns) == ["date", "store", "item", "sales", "promo"]
    assert len(sales) == len(days) * N_STORES * N_ITEMS
    assert not sales.duplicated(["date", "store", "item"]).any()
    assert set(sales["store"]) == set(range(1, N_STORES + 1))
    assert set(sales["item"]) == set(range(1, N_ITEMS + 1))
    # Within a day, rows run by store then item, as the one-block generator writes them.
    assert sales.equals(sales.sort_values(["date", "store", "item"], ignore_index=True))


@pytest.mark.usefixtures("two_store_blocks")
def test_blocked_labels_cover_every_block_with_distinct_events(tmp_path: Path) -> None:
    _land(tmp_path)

    labels = pd.read_csv(tmp_path / LABELS_FILE)
    assert labels["store"].max() > 2  # beyond the first block
    assert set(labels["store"]) <= set(range(1, N_STORES + 1))
    assert labels.equals(labels.sort_values(["date", "store", "item"], ignore_index=True))
    # An event is one series' run of days: ids of different blocks must not merge.
    assert (labels.groupby("event_id")[["store", "item"]].nunique() == 1).all().all()
    sales = _read_all(tmp_path).merge(labels, on=["date", "store", "item"])
    assert (sales["sales"] == sales["actual"]).all()


@pytest.mark.usefixtures("two_store_blocks")
def test_blocked_landing_is_reproducible(tmp_path: Path) -> None:
    _land(tmp_path / "one")
    _land(tmp_path / "two")

    assert _file_bytes(tmp_path / "one") == _file_bytes(tmp_path / "two")


@pytest.mark.usefixtures("two_store_blocks")
def test_blocked_landing_plants_mistakes_and_keeps_existing_files(tmp_path: Path) -> None:
    first = dt.date(2017, 2, 1)
    kept = tmp_path / f"sales_{first.isoformat()}.csv"
    kept.write_text("date,store,item,sales,promo\n")

    written = _land(tmp_path, n_items=6, start=first)  # 30 series: enough for the mistakes

    assert kept.read_text() == "date,store,item,sales,promo\n"
    assert kept not in written
    assert len(written) == (END - first).days
    text = "".join(path.read_text() for path in written)
    assert ",12a," in text and ",-3," in text


def test_up_to_the_block_size_landing_is_todays_bytes(tmp_path: Path) -> None:
    """Today's landing: the one-block generator's frame, written by ``write_landing_files``."""
    n_items = 6  # 30 series: with the planted mistakes
    config = SyntheticConfig(n_stores=N_STORES, n_items=n_items, start=START, end=END, seed=42)
    sales = generate_sales(config)[0].drop(columns=["holiday"])
    write_landing_files(sales, tmp_path / "plain", "date")
    write_landing_files(registry.with_upstream_mistakes(sales, seed=42), tmp_path / "mistakes",
                        "_file_day", keep_key=False)

    _land(tmp_path / "new_plain", n_items=n_items, mistakes=False)
    _land(tmp_path / "new_mistakes", n_items=n_items)

    for name in ("plain", "mistakes"):
        new = _file_bytes(tmp_path / f"new_{name}")
        new.pop(LABELS_FILE)
        assert new == _file_bytes(tmp_path / name)


def test_writer_matches_pandas_for_unsorted_rows_and_mixed_text(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "date": pd.to_datetime(["2017-01-02", "2017-01-01", "2017-01-02", "2017-01-01"]),
        "store": pd.Series([1, None, 2, 3], dtype=object),
        "sales": pd.Series([5, "12a", -3, None], dtype=object),
        "region": ["A", "B", "A", "B"],
    })
    write_landing_files(frame, tmp_path / "pandas", "date")
    with DailyFileWriter(tmp_path / "arrow") as writer:
        writer.append(frame.iloc[:2], "date")
        writer.append(frame.iloc[2:], "date")
        writer.commit()

    assert _file_bytes(tmp_path / "arrow") == _file_bytes(tmp_path / "pandas")


def test_writer_leaves_no_part_files_when_a_block_fails(tmp_path: Path) -> None:
    frame = pd.DataFrame({"date": pd.to_datetime(["2017-01-01"]), "sales": [1]})
    with pytest.raises(TypeError, match="float64"), DailyFileWriter(tmp_path) as writer:
        writer.append(frame, "date")
        writer.append(frame.assign(sales=[1.5]), "date")

    assert list(tmp_path.iterdir()) == []
