"""Landed plan files: one CSV per plan version, kept as it came, with the dates it plans.

A plan is a file of future rows (the dataset's date column, its keys and some of its known
covariates). ``forecast-platform plan`` stores it under ``plans/<dataset>/`` as
``plan_<version>.csv``, the version being the landing time in UTC (``YYYYMMDDTHHMMSSffffff``),
so versions sort like time and a newer plan is simply a later name. Beside it, a small
``.dates`` file lists the partition dates its rows fall in, so the ``covariate_plan`` asset finds
the newest file of each date without reading every older file again.

Which partition a row belongs to: its own date when that date is one of the dataset's plan
partitions; otherwise (no readable date, before the dataset's start, off the weekly grid or past
the last plannable date) the file's first such date, so every row of a file is landed somewhere
and reaches the quarantine with its reason. A file with no row on a plan partition is refused
whole, before it is stored: there is nothing it could plan.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecast_platform.datasets.spec import (
    DatasetSpec,
    csv_delimiter,
    decode,
    flags_as_numbers,
)
from forecast_platform.ingestion.text import clip

PLAN_NAME = re.compile(r"^plan_(\d{8}T\d{12})\.csv$")
LINE_COLUMN = "_source_line"


class PlanFileError(ValueError):
    """A plan file that cannot be landed at all; the message says what to change."""


@dataclass(frozen=True, order=True)
class PlanFile:
    version: str  # the landing time, UTC: YYYYMMDDTHHMMSSffffff
    path: Path

    @property
    def dates_path(self) -> Path:
        return self.path.with_suffix(".dates")

    def dates(self) -> list[dt.date]:
        """The partition dates this file's rows fall in."""
        return [dt.date.fromisoformat(d) for d in json.loads(self.dates_path.read_text())]


@dataclass(frozen=True)
class PlanRange:
    """The dates a plan may fall in: the plan partitions, ``start .. last``."""

    start: dt.date
    last: dt.date
    step_days: int

    def holds(self, day: dt.date) -> bool:
        return (self.start <= day <= self.last
                and (day - self.start).days % self.step_days == 0)


def plan_range(spec: DatasetSpec) -> PlanRange:
    """The dataset's plan partitions: its sales partitions and a season beyond its end (a
    year of days or 52 weeks), so a plan can look a year ahead of the newest sales."""
    ahead = dt.timedelta(days=spec.season_length * spec.step_days)
    return PlanRange(spec.start, spec.end + ahead, spec.step_days)


def plan_files(folder: Path) -> list[PlanFile]:
    """Every stored plan file of a dataset, oldest version first."""
    if not folder.is_dir():
        return []
    found = [PlanFile(m.group(1), Path(e.path)) for e in os.scandir(folder)
             if (m := PLAN_NAME.match(e.name)) and Path(e.path).with_suffix(".dates").exists()]
    return sorted(found)


def read_plan(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    """A plan file's rows, every value as text, with each row's line number in the file.

    Raises ``PlanFileError`` for a file that is not CSV text in the spec's encoding or lacks
    the date, a key, or every known covariate.
    """
    try:
        text, _ = decode(path.read_bytes(), spec.encoding)
    except UnicodeDecodeError as error:
        raise PlanFileError(f"{path.name}: byte {error.start} is not {spec.encoding} text; "
                            "a plan is a CSV file") from None
    try:
        frame = pd.read_csv(io.StringIO(text), sep=csv_delimiter(text), dtype=str,
                            keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no header"
        raise PlanFileError(f"{path.name}: not readable as CSV ({first})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    required = [spec.date_column, *spec.keys]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise PlanFileError(f"{path.name}: columns {missing} are missing; a plan of dataset "
                            f"{spec.name!r} has {required} and some of its known covariates "
                            f"{list(spec.known)} (found {[clip(c, 40) for c in frame.columns]})")
    if not any(c in frame.columns for c in spec.known):
        raise PlanFileError(
            f"{path.name}: no known covariate among its columns; expected some of "
            f"{list(spec.known)}" if spec.known else
            f"{path.name}: dataset {spec.name!r} has no known covariates, so there is nothing "
            "to plan")
    frame = flags_as_numbers(frame, spec.flags)
    # Header is line 1, so the first row is line 2 (as a spreadsheet shows it).
    return frame.assign(**{LINE_COLUMN: range(2, len(frame) + 2)})


ISO_DATE = "%Y-%m-%d"


def parse_dates(values: pd.Series, date_format: str = ISO_DATE) -> pd.Series:
    """Dates as ``datetime.date`` (None where a value is not one): ISO (YYYY-MM-DD) or the
    dataset's own ``date_format`` (a plan exported by the system that exports the sales writes
    its dates the same way), blanks around allowed."""
    text = values.str.strip()
    parsed = pd.to_datetime(text, format=ISO_DATE, errors="coerce")
    ok = parsed.notna() & text.str.fullmatch(r"\d{4}-\d{2}-\d{2}")
    if date_format != ISO_DATE:
        own = pd.to_datetime(text, format=date_format, errors="coerce")
        parsed, ok = parsed.where(ok, own), ok | own.notna()
    return pd.Series([d.date() if k else None for d, k in zip(parsed, ok, strict=True)],
                     index=values.index, dtype=object)


def date_formats(spec: DatasetSpec) -> str:
    """The date formats a plan of ``spec`` may use, as a person writes them."""
    def readable(fmt: str) -> str:
        for code, text in (("%Y", "YYYY"), ("%m", "MM"), ("%d", "DD"), ("%H", "hh"),
                           ("%M", "mm"), ("%S", "ss")):
            fmt = fmt.replace(code, text)
        return fmt

    own = [] if spec.date_format == ISO_DATE else [readable(spec.date_format)]
    return " or ".join([*own, readable(ISO_DATE)])


def partitions_of(frame: pd.DataFrame, spec: DatasetSpec, plan_range: PlanRange) -> pd.Series:
    """Each row's partition date (see the module docstring); raises ``PlanFileError`` when no
    row of the file falls on a plan partition."""
    days = parse_dates(frame[spec.date_column], spec.date_format)
    inside = days.map(lambda d: d is not None and plan_range.holds(d))
    if not inside.any():
        shown = sorted({str(v) for v in frame[spec.date_column].head(1000)})[:5]
        raise PlanFileError(
            f"no row has a {spec.date_column} the plan can hold: expected dates "
            f"{plan_range.start} .. {plan_range.last}"
            + (f" every {plan_range.step_days} days" if plan_range.step_days > 1 else "")
            + f" written {date_formats(spec)}; found {', '.join(clip(s, 30) for s in shown)}")
    fallback = min(d for d, i in zip(days, inside, strict=True) if i)
    return days.where(inside, fallback)


def store_plan(source: Path, folder: Path, spec: DatasetSpec, plan_range: PlanRange,
               now: dt.datetime | None = None) -> PlanFile:
    """Copy a plan file into the dataset's plans folder as a new version.

    The file is checked first (readable, with the needed columns, some row on a plan
    partition) so a plan that cannot land is refused with its reason and nothing is stored.
    The copy and its dates list are written under temporary names and renamed, dates list
    last: a reader sees a version whole or not at all.
    """
    frame = read_plan(source, spec)
    dates = sorted(set(partitions_of(frame, spec, plan_range)))
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%f")
    while (folder / f"plan_{stamp}.csv").exists():  # two plans in one microsecond
        stamp = str(int(stamp.replace("T", "")) + 1)
        stamp = f"{stamp[:8]}T{stamp[8:]}"
    plan = PlanFile(stamp, folder / f"plan_{stamp}.csv")
    tmp = plan.path.with_suffix(".csv.tmp")
    tmp.write_bytes(source.read_bytes())
    tmp.replace(plan.path)
    tmp_dates = plan.path.with_suffix(".dates.tmp")
    tmp_dates.write_text(json.dumps([d.isoformat() for d in dates]))
    tmp_dates.replace(plan.dates_path)
    return plan


def owners(files: list[PlanFile], first: dt.date, last: dt.date) -> dict[dt.date, PlanFile]:
    """The newest plan file of each partition date in ``first .. last`` that has one: a newer
    plan for a date replaces the older one whole."""
    found: dict[dt.date, PlanFile] = {}
    for plan in files:  # oldest first: a newer file overwrites
        for day in plan.dates():
            if first <= day <= last:
                found[day] = plan
    return dict(sorted(found.items()))
