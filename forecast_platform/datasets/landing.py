"""Landing files: the platform's boundary with upstream systems.

Upstream drops one CSV per partition date, named ``sales_YYYY-MM-DD.csv``. The file name, not
its content, says which partition a row belongs to: a row whose date cannot be parsed still has
a partition, and so is quarantined with its partition instead of disappearing.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pandas as pd

FILE_PATTERN = re.compile(r"^sales_(\d{4}-\d{2}-\d{2})\.csv$")


def landing_file(landing_dir: Path, day: dt.date) -> Path:
    return landing_dir / f"sales_{day.isoformat()}.csv"


def partition_of(path: Path) -> dt.date | None:
    """The partition date a landing file belongs to, or None if it is not a landing file.

    A name of the landing pattern whose date does not exist (``sales_2017-02-30.csv``) is not a
    landing file either: ``stray_files`` names it, so it is reported instead of crashing every
    listing of the folder.
    """
    match = FILE_PATTERN.match(path.name)
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def stray_files(landing_dir: Path) -> list[tuple[str, str]]:
    """Files that look like landing files but name no real date: (name, reason) each."""
    if not landing_dir.is_dir():
        return []
    stray = []
    for entry in os.scandir(landing_dir):
        match = FILE_PATTERN.match(entry.name)
        if match and partition_of(Path(entry.name)) is None:
            stray.append((entry.name, f"{match.group(1)!r} is not a calendar date "
                                      "(expected sales_YYYY-MM-DD.csv with a real date)"))
    return sorted(stray)


def contiguous_ranges(days: list[dt.date], step_days: int) -> list[tuple[dt.date, dt.date]]:
    """Group dates into runs of consecutive periods: one range is one single-run backfill
    (the landing sensor's new files, days to validate again)."""
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if ranges and (day - ranges[-1][1]).days == step_days:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def landed_files(landing_dir: Path) -> dict[dt.date, Path]:
    """Every landing file in the directory, by partition date."""
    if not landing_dir.is_dir():
        return {}
    found = {}
    for entry in os.scandir(landing_dir):
        day = partition_of(Path(entry.name))
        if day is not None:
            found[day] = Path(entry.path)
    return dict(sorted(found.items()))


def write_landing_files(
    frame: pd.DataFrame, landing_dir: Path, date_column: str, overwrite: bool = False,
    keep_key: bool = True,
) -> list[Path]:
    """Write one CSV per date, atomically (temp file + rename) so a reader never sees half a file.

    ``date_column`` picks each row's file; with ``keep_key=False`` it is a helper column that is
    not written. Existing files are kept unless ``overwrite``: landing is append-only.
    """
    landing_dir.mkdir(parents=True, exist_ok=True)
    dates = pd.to_datetime(frame[date_column])
    out = frame.assign(**{date_column: dates.dt.strftime("%Y-%m-%d")})
    if not keep_key:
        out = out.drop(columns=[date_column])
    written = []
    for day, part in out.groupby(dates.dt.date, sort=True):
        path = landing_file(landing_dir, day)
        if path.exists() and not overwrite:
            continue
        tmp = path.with_suffix(".csv.tmp")
        part.to_csv(tmp, index=False)
        os.replace(tmp, path)
        written.append(path)
    return written
