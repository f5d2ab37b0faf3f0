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
from types import TracebackType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

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


# Arrow refuses (rather than quotes) a value holding a comma, quote or line break, so a text
# value that would need quoting fails loudly instead of being written differently from pandas.
_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="none")


class DailyFileWriter:
    """Daily landing files built from row blocks, published together when all blocks are in.

    A dataset too large to hold in memory arrives block by block (a few stores at a time), yet
    each day's file must appear whole: rows go to ``sales_DAY.csv.tmp`` part files, and only
    ``commit`` renames them (os.replace), so a reader never sees a day with some blocks only.
    The text matches ``write_landing_files`` (pandas ``to_csv``) byte for byte for integer,
    date and text columns, at a fraction of its time: Arrow formats each block in one pass.
    Existing day files are kept unless ``overwrite``, as there: landing is append-only.
    """

    def __init__(self, landing_dir: Path, overwrite: bool = False) -> None:
        landing_dir.mkdir(parents=True, exist_ok=True)
        self.landing_dir = landing_dir
        self.overwrite = overwrite
        self._parts: dict[dt.date, Path] = {}
        self._kept: set[dt.date] = set()

    def __enter__(self) -> DailyFileWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None:
            self.discard()

    def append(self, frame: pd.DataFrame, date_column: str, keep_key: bool = True) -> None:
        """Add a block's rows to their days' files, after the rows of earlier blocks.

        ``date_column`` picks each row's file; with ``keep_key=False`` it is a helper column
        that is not written. Rows keep their order within a day.
        """
        days = pd.to_datetime(frame[date_column]).to_numpy(dtype="datetime64[D]")
        # A row without a date has no file (pandas' groupby drops it in write_landing_files).
        dated = ~np.isnat(days)
        if not dated.all():
            frame, days = frame[dated], days[dated]
        if frame.empty:
            return
        if (days[1:] < days[:-1]).any():
            order = np.argsort(days, kind="stable")
            frame, days = frame.iloc[order], days[order]
        columns = [c for c in frame.columns if keep_key or c != date_column]
        table = pa.table({c: pa.array(days) if c == date_column else _csv_column(frame[c])
                          for c in columns})
        header = (",".join(map(str, columns)) + "\n").encode()
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        stops = np.r_[starts[1:], len(days)]
        for first, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            self._write_day(days[first].item(), table.slice(first, stop - first), header)

    def commit(self) -> list[Path]:
        """Publish every day's file, by date; the files written (kept ones are not)."""
        written = []
        for day in sorted(self._parts):
            path = landing_file(self.landing_dir, day)
            os.replace(self._parts.pop(day), path)
            written.append(path)
        return written

    def discard(self) -> None:
        """Remove the unpublished part files, so a failed landing leaves no debris."""
        for part in self._parts.values():
            part.unlink(missing_ok=True)
        self._parts.clear()

    def _write_day(self, day: dt.date, rows: pa.Table, header: bytes) -> None:
        if day in self._kept:
            return
        part = self._parts.get(day)
        first_block = part is None
        if part is None:
            path = landing_file(self.landing_dir, day)
            if path.exists() and not self.overwrite:
                self._kept.add(day)
                return
            part = path.with_suffix(".csv.tmp")
            self._parts[day] = part
        # "wb" on a day's first block: a part file left by a crashed landing is replaced.
        with open(part, "wb" if first_block else "ab") as handle:
            if first_block:
                handle.write(header)
            pa_csv.write_csv(rows, handle, _CSV_OPTIONS)

def _csv_column(values: pd.Series) -> pa.Array:
    """One column for Arrow to write as pandas ``to_csv`` does: dates (midnight) as
    YYYY-MM-DD, integers without a decimal point, missing values as empty fields.

    A column mixing types (a planted mistake: a text sale among integers) is written by each
    value's ``str``, as pandas does. Floats and booleans are refused: Arrow spells them
    differently from pandas (``1`` for ``1.0``, ``true`` for ``True``).
    """
    dtype = values.dtype
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return pa.Array.from_pandas(values)
    if dtype == np.dtype("datetime64[ns]"):
        days = values.to_numpy(dtype="datetime64[D]")
        if (values.dropna() != values.dropna().dt.normalize()).any():
            raise TypeError(f"column {values.name!r} holds times of day: DailyFileWriter "
                            "writes dates only; use write_landing_files")
        return pa.array(days, mask=np.isnat(days))
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return _text_column(values)
    raise TypeError(f"column {values.name!r} of dtype {dtype}: DailyFileWriter writes "
                    "integers, dates and text only (write_landing_files writes any column)")


def _text_column(values: pd.Series) -> pa.Array:
    """Text and mixed object columns as strings; None and NaN as missing."""
    objects = values.to_numpy(dtype=object)
    missing = pd.isna(objects)
    kinds = {type(v) for v in objects[~missing]}
    if any(issubclass(k, float | bool | np.floating | np.bool_) for k in kinds):
        raise TypeError(f"column {values.name!r} holds floats or booleans: DailyFileWriter "
                        "spells them differently from pandas; use write_landing_files")
    return pa.array(objects.astype(str), type=pa.string(), mask=missing)
