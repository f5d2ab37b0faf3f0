"""Rows computed in pieces, parked as Parquet and published to the warehouse in one statement.

An asset that works through the series block by block (expected values, anomaly scores) must
neither hold every block's rows in memory nor hold the warehouse while it computes: the file
has one writer, and the dashboard, the CLI and the next run queue behind it. So each block's
rows go to a Parquet part in a scratch folder of the data directory, and the table is replaced
from all parts at once, briefly and atomically (a failed run leaves the table as it was). The
folder is removed whatever happens.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


class Staging:
    """The Parquet parts of one run's rows."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.parts = 0
        self.rows = 0
        self.placeholder = False  # the only part is an empty frame's schema

    def add(self, frame: pd.DataFrame) -> None:
        """Park ``frame``'s rows (every part must have the same columns and types). An empty
        frame is parked only as the first part, for its schema: publishing nothing must still
        replace the table's rows by none."""
        if frame.empty and self.parts:
            return
        if self.placeholder:
            (self.folder / "part-00000.parquet").unlink()
            self.parts, self.placeholder = 0, False
        self.folder.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(self.folder / f"part-{self.parts:05d}.parquet", index=False)
        self.parts += 1
        self.rows += len(frame)
        self.placeholder = frame.empty

    def select(self) -> str:
        """SQL reading every part; refused when nothing was staged."""
        if not self.parts:
            raise ValueError("nothing was staged: there is no row to publish")
        pattern = str(self.folder / "part-*.parquet").replace("'", "''")
        return f"SELECT * FROM read_parquet('{pattern}')"


@contextmanager
def staging(root: Path, name: str) -> Iterator[Staging]:
    """A fresh folder ``root/<name>-<random>`` for one run's parts, removed on the way out."""
    folder = root / f"{name}-{uuid.uuid4().hex[:12]}"
    try:
        yield Staging(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
