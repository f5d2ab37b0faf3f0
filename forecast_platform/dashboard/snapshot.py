"""A dashboard snapshot on disk: published whole or not at all, read without ever blocking.

Layout under ``Settings.dashboard_dir``::

    CURRENT                      the name of the snapshot the app shows (one line)
    snapshots/<stamp>-<run>/     one folder per published snapshot
        manifest.json            run id, time, dataset facts, row counts of every table
        <table>.parquet          one file per table (see extract.py)

Why this shape:

- *Never half a snapshot.* A writer fills ``snapshots/.tmp-...`` and renames it into place
  (a rename within one file system is atomic), then replaces ``CURRENT`` with ``os.replace``.
  A reader sees the old pointer or the new one, and both name complete folders.
- *Never a mix.* The app resolves ``CURRENT`` once per script run and reads every table of
  that run from the folder it named, so a page is all old or all new.
- *Never an error mid-page.* Older folders are kept (the newest ``KEEP`` and any younger than
  ``KEEP_SECONDS``), so a page that resolved the previous snapshot a moment before a publish
  can still read it to the end.
- *Cheap single-series reads.* Tables with a ``series_id`` are sorted by it and written in
  small row groups, so reading one series of 50,000 touches one or two row groups (Parquet
  min/max statistics prune the rest).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

CURRENT = "CURRENT"
SNAPSHOTS = "snapshots"
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
KEEP = 3  # newest snapshots always kept
KEEP_SECONDS = 600.0  # and any published within this long (a page may still be reading it)
STALE_TMP_SECONDS = 3600.0  # a writer's temporary folder this old belongs to a dead writer
FORMAT_VERSION = 1
MAKE_ONE = ("`forecast-platform demo` (it ends with a snapshot), or materialize the "
            "`dashboard_snapshot` asset (job `dashboard_job`) in `forecast-platform ui`")


class SnapshotError(RuntimeError):
    """A snapshot folder that cannot be read (missing manifest, unknown format)."""


@dataclass(frozen=True)
class Snapshot:
    """One published snapshot: its folder and its manifest. Immutable once published, so
    anything read from it may be cached by its path."""

    path: Path
    manifest: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or "")

    @property
    def created_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.manifest["created_at"])

    @property
    def dataset(self) -> str:
        return str(self.manifest.get("dataset", ""))

    def rows(self, table: str) -> int:
        """Rows of ``table`` in this snapshot (0 when it has none)."""
        return int(self.manifest.get("tables", {}).get(table, 0))

    def file(self, table: str) -> Path:
        return self.path / f"{table}.parquet"

    def has(self, table: str) -> bool:
        return table in self.manifest.get("tables", {}) and self.file(table).is_file()

    def read(self, table: str, columns: list[str] | None = None,
             filters: list[tuple] | None = None) -> pd.DataFrame:
        """A table as a DataFrame; an empty frame when the snapshot has no such table (the
        warehouse had nothing for it yet: no model trained, no drift report run)."""
        if not self.has(table):
            return pd.DataFrame()
        return pq.read_table(self.file(table), columns=columns, filters=filters).to_pandas()

    def series_rows(self, table: str, series_id: str) -> pd.DataFrame:
        """One series' rows of a table sorted by series: a pruned read, not a scan."""
        return self.read(table, filters=[("series_id", "==", series_id)])


def snapshots_dir(root: Path) -> Path:
    return root / SNAPSHOTS


def current(root: Path) -> Snapshot | None:
    """The snapshot ``CURRENT`` names, or None when nothing was published yet.

    Resolved once per page load by the app. Should ``CURRENT`` name a folder that is gone (a
    hand-deleted folder), the newest complete folder is used instead of failing.
    """
    pointer = root / CURRENT
    name = None
    with contextlib.suppress(FileNotFoundError):
        name = pointer.read_text().strip()
    if name:
        path = snapshots_dir(root) / name
        if (path / MANIFEST).is_file():
            return load(path)
    published = complete_snapshots(root)
    return load(published[-1]) if published else None


def load(path: Path) -> Snapshot:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise SnapshotError(f"snapshot {path} has no readable {MANIFEST}: {err}") from err
    if manifest.get("format") != FORMAT_VERSION:
        raise SnapshotError(f"snapshot {path} has format {manifest.get('format')!r}, this "
                            f"dashboard reads format {FORMAT_VERSION}: publish a new one")
    return Snapshot(path, manifest)


def complete_snapshots(root: Path) -> list[Path]:
    """Published snapshot folders, oldest first (names start with their UTC time)."""
    folder = snapshots_dir(root)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(TMP_PREFIX)
                  and (p / MANIFEST).is_file())


def publish(root: Path, run_id: str, write: Callable[[Path], dict[str, Any]],
            now: dt.datetime | None = None) -> Snapshot:
    """Write a snapshot with ``write(folder)`` (which fills the folder and returns the
    manifest's fields, ``tables`` included) and make it current atomically.

    On any failure the temporary folder is removed and the previous snapshot stays current.
    """
    now = now or dt.datetime.now(dt.UTC)
    name = f"{now:%Y%m%dT%H%M%S%fZ}-{(run_id or 'manual')[:8]}"
    folder = snapshots_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{TMP_PREFIX}{name}-{os.getpid()}"
    tmp.mkdir()
    try:
        fields = write(tmp)
        manifest = {"format": FORMAT_VERSION, "run_id": run_id,
                    "created_at": now.isoformat(timespec="seconds"), **fields}
        _write_durably(tmp / MANIFEST, json.dumps(manifest, indent=1, default=str))
        final = folder / name
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer_tmp = root / f"{CURRENT}{TMP_PREFIX}{os.getpid()}"
    _write_durably(pointer_tmp, name + "\n")
    os.replace(pointer_tmp, root / CURRENT)
    prune(root)
    return Snapshot(final, manifest)


def prune(root: Path, keep: int = KEEP, keep_seconds: float = KEEP_SECONDS,
          now: float | None = None) -> list[Path]:
    """Remove old snapshots (never the current one, never a young one) and dead writers'
    temporary folders; returns what was removed."""
    now = now or time.time()
    published = complete_snapshots(root)
    current_name = ""
    with contextlib.suppress(FileNotFoundError):
        current_name = (root / CURRENT).read_text().strip()
    removed = []
    for path in published[:-keep] if keep else published:
        if path.name == current_name or now - path.stat().st_mtime < keep_seconds:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    folder = snapshots_dir(root)
    for path in folder.glob(f"{TMP_PREFIX}*") if folder.is_dir() else []:
        if now - path.stat().st_mtime > STALE_TMP_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
