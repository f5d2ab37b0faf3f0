"""What a dataset is, said once: everything downstream reads the spec, never a column name.

A spec names the date column, the series keys, the target, the frequency and the covariates
(known in advance, such as promotions and holidays, or observed only, such as customers), and
how its source is landed as one file per partition. Validation rules, feature SQL, partitions
and models are all derived from it.

Static attributes (a store's type and size) are columns that do not change over time for a group
of series (``static_keys``, e.g. the store). They travel in every landed row (joined at landing,
like the covariates), are validated like any column, and the feature SQL reads one value per
group from ``validated_sales`` and joins it on the group's keys, so future rows (which carry only
keys) get them too. Text codes (``A``, ``B``, ``C``) become integer categories through
``categories``: the code's 1-based position in the listed values, NULL for an unlisted code, so
the encoding never depends on which values happen to be in a training window.

Gaps: a period with no row for a series means missing (closed, not stocked, not reported), never
zero sales. Lags and windows are RANGE frames over dates, so a gap stays a NULL, and pooled means
average the rows that exist. A spec whose source writes zeros for closed periods keeps them.

Closures: days a series is closed by rule (a store's Sundays, national and regional holidays,
a refurbishment) are ``ClosureRule``s, kept in a CSV beside the spec's YAML (``closures_file``)
and parsed into ``closure_rules``; ``rules`` adds the built-in ``closed_dates`` (yearly or
one-day rules for every series). The ingest checks expect no row from a closed series
(datasets/closures.py says them in SQL).
"""

from __future__ import annotations

import codecs
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # frames are only passed through here
    import pandas as pd

Frequency = Literal["D", "W"]
# Metrics of record the backtest computes and the champion gate compares (forecasting/metrics.py).
METRICS = ("smape", "mae", "rmse", "wmae")
ColumnType = Literal["int", "float", "str", "bool"]

# Encodings a spec may declare for its landing files (canonical codec names). UTF-8 (with or
# without Excel's byte-order mark) is always read as UTF-8; a declared legacy encoding reads the
# files that are not valid UTF-8 (see ``decode``).
ENCODINGS = ("utf-8", "cp1252")
ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252"}

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class ClosureRule:
    """Series closed on a day: exactly one of ``date`` (YYYY-MM-DD, one day), ``yearly``
    (MM-DD, that day of every year) or ``weekday`` (ISO 1-7, Monday = 1, every week), for the
    series whose key columns hold ``match``'s values (text; empty = every series)."""

    date: str | None = None
    yearly: str | None = None
    weekday: int | None = None
    match: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        given = [k for k in ("date", "yearly", "weekday") if getattr(self, k) not in (None, "")]
        if len(given) != 1:
            raise ValueError(f"closure rule {self.describe()}: give exactly one of date, yearly "
                             f"or weekday, got {given or 'none'}")
        try:
            if self.date not in (None, ""):
                if len(str(self.date)) != 10:
                    raise ValueError
                dt.date.fromisoformat(str(self.date))
            elif self.yearly not in (None, ""):
                if len(str(self.yearly)) != 5:
                    raise ValueError
                dt.date.fromisoformat(f"2000-{self.yearly}")
            elif not 1 <= int(self.weekday) <= 7 or str(int(self.weekday)) != str(
                    self.weekday).strip():
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"closure rule {self.describe()}: date must be YYYY-MM-DD, yearly "
                             "MM-DD and weekday 1-7 (Monday = 1)") from None
        object.__setattr__(self, "date", None if self.date in (None, "") else str(self.date))
        object.__setattr__(self, "yearly",
                           None if self.yearly in (None, "") else str(self.yearly))
        object.__setattr__(self, "weekday",
                           None if self.weekday in (None, "") else int(self.weekday))
        object.__setattr__(self, "match", {str(k): str(v) for k, v in self.match.items()})

    @property
    def kind(self) -> str:
        return "date" if self.date else "yearly" if self.yearly else "weekday"

    @property
    def value(self) -> str:
        return self.date or self.yearly or str(self.weekday)

    def applies(self, day: dt.date) -> bool:
        """Whether the rule's day pattern holds on ``day`` (whatever the series)."""
        if self.date:
            return day.isoformat() == self.date
        if self.yearly:
            return day.strftime("%m-%d") == self.yearly
        return day.isoweekday() == self.weekday

    def describe(self) -> str:
        if self.date:
            what = f"on {self.date}"
        elif self.yearly:
            what = f"every {self.yearly}"
        else:
            day = str(self.weekday).strip()
            what = f"every {WEEKDAYS[int(day) - 1]}" if day.isdigit() and 1 <= int(day) <= 7 \
                else f"on weekday {self.weekday!r}"
        who = ", ".join(f"{k}={v}" for k, v in self.match.items()) or "every series"
        return f"{who} closed {what}"


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
    # Per-group attributes constant over time (see the module docstring).
    static: dict[str, ColumnType] = field(default_factory=dict)
    static_keys: tuple[str, ...] = ()  # the keys a static attribute is constant for; () = all
    # Text codes of static or known columns, in a fixed order: encoded as 1-based positions.
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A known covariate flagging holiday periods in the data itself (Walmart's IsHoliday): it
    # becomes the ``is_holiday`` feature, hence the holiday weights of WMAE, instead of the
    # platform calendar's flag.
    holiday_column: str | None = None
    # Known covariates the forecaster trains on; None = all of them. Covariates that are not
    # really planned (weather, CPI) are landed and featured but not trained on: in the future
    # they are unknown (the forecast rows carry 0 for them).
    model_covariates: tuple[str, ...] | None = None
    allow_negative_target: bool = False
    # Completeness tolerance: the share of a date's expected series that may have no row.
    # Walmart's departments come and go week to week (a gap means closed, not zero sales).
    max_missing_share: float = 0.05
    # Days with no (or few) rows by design, so completeness and volume do not count them:
    # "MM-DD" for a day the business is closed every year (Favorita: Christmas), "YYYY-MM-DD"
    # for one day (a known outage of the source). The rows those days do have are kept.
    closed_dates: tuple[str, ...] = ()
    # Closures by rule (see the module docstring): the CSV beside the YAML they were read from
    # (its file name, resolved in the YAML's folder) and its rules.
    closures_file: str | None = None
    closure_rules: tuple[ClosureRule, ...] = ()
    # Plausibility bound of the target: a larger value is quarantined (a unit mix-up, an
    # overflow such as 1e308), never trained on. None = no bound (only finite values pass).
    max_target: float | None = None
    # The encoding of landing files that are not UTF-8: 'utf-8' (default: such a file is
    # quarantined as a file) or 'cp1252' (Windows-1252, what Excel on Windows writes).
    encoding: str = "utf-8"
    # How the data's own files write dates (strftime): a plan file written by the same
    # system may use it; ISO (YYYY-MM-DD) is always read too.
    date_format: str = "%Y-%m-%d"
    # Flag columns the data writes as words (TRUE/FALSE, yes/no, as spreadsheets export them):
    # read as 1/0 wherever its files are read (the lander, plan files).
    flags: tuple[str, ...] = ()
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
        if self.metric not in METRICS:
            raise ValueError(f"dataset {self.name!r}: metric {self.metric!r} is not one of "
                             f"{list(METRICS)}")
        if self.metric == "wmae" and self.holiday_column is None:
            raise ValueError(f"dataset {self.name!r}: metric 'wmae' weighs holiday periods, so "
                             "it needs a holiday_column (a known 0/1 covariate)")
        if self.end < self.start:
            raise ValueError(f"dataset {self.name!r}: end {self.end} is before start {self.start}")
        if not 0 <= self.max_missing_share < 1:
            raise ValueError(f"dataset {self.name!r}: max_missing_share must be in [0, 1), got "
                             f"{self.max_missing_share}")
        if self.max_target is not None and not (
                isinstance(self.max_target, int | float) and math.isfinite(self.max_target)
                and self.max_target > 0):
            raise ValueError(f"dataset {self.name!r}: max_target must be a positive finite "
                             f"number or None, got {self.max_target!r}")
        try:
            encoding = codecs.lookup(str(self.encoding)).name
        except LookupError:
            encoding = None
        if encoding not in ENCODINGS:
            raise ValueError(f"dataset {self.name!r}: encoding {self.encoding!r} is not "
                             f"supported, expected one of {list(ENCODINGS)}")
        object.__setattr__(self, "encoding", encoding)  # the canonical name ('utf8' -> 'utf-8')
        for day in self.closed_dates:
            try:
                dt.date.fromisoformat(day if len(str(day)) == 10 else f"2000-{day}")
            except (TypeError, ValueError):
                raise ValueError(f"dataset {self.name!r}: closed_dates entry {day!r} is not a "
                                 "day of every year 'MM-DD' or a date 'YYYY-MM-DD'") from None
        for rule in self.closure_rules:
            stray = [k for k in rule.match if k not in self.keys]
            if stray:
                raise ValueError(f"dataset {self.name!r}: closure rule {rule.describe()} matches "
                                 f"{stray}, which are not among the keys {list(self.keys)}")
        names = self.columns
        dupes = {c for c in names if names.count(c) > 1}
        if dupes:
            raise ValueError(f"dataset {self.name!r}: columns named twice: {sorted(dupes)}")
        unknown_keys = [k for k in self.static_keys if k not in self.keys]
        if unknown_keys:
            raise ValueError(f"dataset {self.name!r}: static_keys {unknown_keys} are not among "
                             f"the keys {list(self.keys)}")
        coded = {**self.static, **self.known, **self.observed}
        for col, values in self.categories.items():
            if coded.get(col) != "str":
                raise ValueError(f"dataset {self.name!r}: categories given for {col!r}, which "
                                 "is not a text ('str') static, known or observed column")
            if not values or len(set(values)) != len(values):
                raise ValueError(f"dataset {self.name!r}: categories of {col!r} must be "
                                 f"distinct and non-empty, got {list(values)}")
        uncoded = [c for c, t in self.static.items() if t == "str" and c not in self.categories]
        if uncoded:
            raise ValueError(f"dataset {self.name!r}: text static attributes {uncoded} need "
                             "their categories (the codes, in a fixed order)")
        if self.holiday_column is not None and self.holiday_column not in self.known:
            raise ValueError(f"dataset {self.name!r}: holiday_column {self.holiday_column!r} "
                             f"must be a known covariate, got known={list(self.known)}")
        stray = [c for c in (self.model_covariates or ()) if c not in self.known]
        if stray:
            raise ValueError(f"dataset {self.name!r}: model_covariates {stray} are not known "
                             f"covariates {list(self.known)}")

    @property
    def rules(self) -> tuple[ClosureRule, ...]:
        """Every closure rule: the built-in ``closed_dates`` (for every series) and the
        ``closure_rules`` of the closures file."""
        builtin = tuple(ClosureRule(yearly=d) if len(d) == 5 else ClosureRule(date=d)
                        for d in self.closed_dates)
        return builtin + tuple(self.closure_rules)

    @property
    def columns(self) -> list[str]:
        """The landing file's columns, in their canonical order."""
        return [self.date_column, *self.keys, self.target, *self.known, *self.observed,
                *self.static]

    @property
    def covariates(self) -> dict[str, ColumnType]:
        """Every non-key column besides the target: covariates and static attributes."""
        return {**self.known, **self.observed, **self.static}

    @property
    def group_keys(self) -> tuple[str, ...]:
        """The keys static attributes are constant for."""
        return self.static_keys or self.keys

    @property
    def trained_covariates(self) -> list[str]:
        """The known covariates the forecaster trains on."""
        return list(self.known if self.model_covariates is None else self.model_covariates)

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


DELIMITERS = (",", ";", "\t", "|")


def csv_delimiter(text: str) -> str:
    """The delimiter of a CSV's text: the candidate its header line holds most of (a comma
    when it holds none). Spreadsheets in much of Europe export with semicolons, some systems
    with tabs or pipes; the files a user brings are read as they are."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


FLAG_WORDS = {"true": "1", "false": "0", "yes": "1", "no": "0"}


def flags_as_numbers(frame: pd.DataFrame, flags: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with the flag columns' words as "1"/"0" (other text is left for the checks to
    name)."""
    present = [c for c in flags if c in frame.columns]
    if not present:
        return frame
    return frame.assign(**{c: frame[c].map(lambda v: FLAG_WORDS.get(v.strip().lower(), v)
                                           if isinstance(v, str) else v) for c in present})


def decode(data: bytes, encoding: str = "utf-8") -> tuple[str, str]:
    """A landing file's bytes as text, and the encoding that read them.

    What can be decoded with certainty: valid UTF-8 is UTF-8 (a byte-order mark is dropped);
    otherwise the declared legacy encoding, strictly. Raises ``UnicodeDecodeError`` (of the
    declared encoding, so its offset names the first byte that does not decode).
    """
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        if encoding == "utf-8":
            raise
    return data.decode(encoding), encoding
