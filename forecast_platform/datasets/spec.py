"""What a dataset is, said once: everything downstream reads the spec, never a column name.

A spec names the date column, the series keys, the target, the frequency and the covariates
(known in advance, such as promotions and holidays, or observed only, such as customers), and
how its source is landed as one file per partition. Validation rules, feature SQL, partitions
and models are all derived from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Frequency = Literal["D", "W"]
ColumnType = Literal["int", "float", "str", "bool"]

# A lander writes the dataset's landing files (one CSV per partition date) and returns them.
Lander = Callable[["DatasetSpec", Path, "Path | None"], list[Path]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    frequency: Frequency
    date_column: str
    keys: tuple[str, ...]
    target: str
    start: dt.date
    end: dt.date
    key_types: dict[str, ColumnType] = field(default_factory=dict)
    known: dict[str, ColumnType] = field(default_factory=dict)
    observed: dict[str, ColumnType] = field(default_factory=dict)
    allow_negative_target: bool = False
    horizon: int = 90
    metric: str = "smape"  # the metric of record: what the champion gate compares
    description: str = ""
    lander: Lander | None = None

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError(f"dataset {self.name!r}: keys must name at least one column")
        if self.frequency not in ("D", "W"):
            raise ValueError(
                f"dataset {self.name!r}: frequency {self.frequency!r} is not supported, "
                "expected 'D' (daily) or 'W' (weekly)"
            )
        if self.end < self.start:
            raise ValueError(f"dataset {self.name!r}: end {self.end} is before start {self.start}")
        names = self.columns
        dupes = {c for c in names if names.count(c) > 1}
        if dupes:
            raise ValueError(f"dataset {self.name!r}: columns named twice: {sorted(dupes)}")

    @property
    def columns(self) -> list[str]:
        """The landing file's columns, in their canonical order."""
        return [self.date_column, *self.keys, self.target, *self.known, *self.observed]

    @property
    def covariates(self) -> dict[str, ColumnType]:
        return {**self.known, **self.observed}

    @property
    def step_days(self) -> int:
        """Days between two consecutive periods: the unit every lag and window is counted in."""
        return 7 if self.frequency == "W" else 1

    @property
    def season_length(self) -> int:
        """Periods in one weekday-aligned year (364 days, or 52 weeks)."""
        return 52 if self.frequency == "W" else 364

    def key_type(self, key: str) -> ColumnType:
        return self.key_types.get(key, "str")
