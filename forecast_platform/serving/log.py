"""The prediction log: every served forecast and score, as JSON lines, one file per UTC day.

The service must never open the DuckDB warehouse (one writer per file), so it appends to plain
files under ``<data_dir>/prediction_log/``; the daily ``prediction_log`` asset loads a day's
file into the warehouse for monitoring. Each line is one series of one request:

    {"request_id", "logged_at", "endpoint", "bundle", "forecaster_version", "series_id",
     "series", "inputs", "outputs": {"ds": [...], "p10": [...], "p50": [...], "p90": [...],
                                     "is_open": [...], "actual": [...], "score": [...],
                                     "is_anomaly": [...]}}

``is_open`` is false on a day the closure rules close (its forecast is 0); performance
monitoring skips those days. Lines served before it existed load it as NULL.

``forecaster_version`` is the registry version of the forecaster that served the line (lines
written before the rename say ``model_version``; the loader reads either).

``outputs`` is columnar (parallel lists): a 500-series, 90-day batch stays a few MB, and the
asset unnests the lists side by side. A request's lines go out in one ``write`` on a file opened
with O_APPEND, so concurrent workers never interleave within a line.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic_core import to_json

OUTPUT_FIELDS = ("ds", "p10", "p50", "p90", "is_open", "actual", "score", "is_anomaly")


def new_request_id() -> str:
    return uuid.uuid4().hex


def log_file(directory: Path, day: dt.date) -> Path:
    return Path(directory) / f"{day.isoformat()}.jsonl"


class PredictionLog:
    """Appends records to the day's file; safe across threads and processes."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def write(self, records: Iterable[dict[str, Any]], now: dt.datetime | None = None) -> Path:
        """Append ``records`` (already holding request id, inputs, outputs) stamped ``now``."""
        now = now or dt.datetime.now(dt.UTC)
        stamp = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
        # pydantic_core's Rust encoder: the stdlib one was a third of a 500-series batch's
        # server CPU. Compact JSON, NaN as null (DuckDB's JSON reader rejects NaN literals).
        data = b"".join(to_json({"logged_at": stamp, **r}, inf_nan_mode="null", fallback=str)
                        + b"\n" for r in records)
        path = log_file(self.directory, now.date())
        if not data:
            return path
        with self._lock:
            # The directory is created only when the open fails (first write, or it was
            # removed): a mkdir per request showed up in the service's profile.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except FileNotFoundError:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:  # a regular file takes it all at once; loop for the rare short write
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        return path


# -- loading into the warehouse (used by the prediction_log asset) ---------------------------

_JSON_COLUMNS = (
    "{logged_at: 'VARCHAR', request_id: 'VARCHAR', endpoint: 'VARCHAR', bundle: 'VARCHAR', "
    "forecaster_version: 'INTEGER', model_version: 'INTEGER', series_id: 'VARCHAR', "
    "series: 'JSON', inputs: 'JSON', "
    "outputs: 'STRUCT(ds DATE[], p10 DOUBLE[], p50 DOUBLE[], p90 DOUBLE[], is_open BOOLEAN[], "
    "actual DOUBLE[], score DOUBLE[], is_anomaly BOOLEAN[])'}"
)
_EMPTY = (
    "(SELECT NULL::VARCHAR AS logged_at, NULL::VARCHAR AS request_id, NULL::VARCHAR AS endpoint, "
    "NULL::VARCHAR AS bundle, NULL::INTEGER AS forecaster_version, "
    "NULL::INTEGER AS model_version, NULL::VARCHAR AS series_id, "
    "NULL::JSON AS series, NULL::JSON AS inputs, NULL::STRUCT(ds DATE[], p10 DOUBLE[], "
    "p50 DOUBLE[], p90 DOUBLE[], is_open BOOLEAN[], actual DOUBLE[], score DOUBLE[], "
    "is_anomaly BOOLEAN[]) "
    "AS outputs, NULL::VARCHAR AS filename WHERE false)"
)


def log_select(files: list[Path]) -> str:
    """SQL with one row per served value (request x series x date) of the given log files.

    Columns are fixed (an empty day still creates the right table); lines that are not valid
    JSON (a torn last line after a crash) are skipped rather than failing the day.
    """
    if files:
        paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
        source = (f"read_json([{paths}], format = 'newline_delimited', columns = {_JSON_COLUMNS}, "
                  "ignore_errors = true, filename = true)")
    else:
        source = _EMPTY
    return f"""
SELECT CAST(ts AS DATE) AS log_date, ts AS logged_at, request_id, endpoint, bundle,
       forecaster_version, series_id, ds, p10, p50, p90, is_open, actual, score, is_anomaly,
       CAST(series AS VARCHAR) AS series, CAST(inputs AS VARCHAR) AS inputs,
       filename AS _source_file
FROM (
  SELECT CAST(replace(logged_at, 'Z', '') AS TIMESTAMP) AS ts, request_id, endpoint, bundle,
         -- lines written before the rename say model_version
         coalesce(forecaster_version, model_version) AS forecaster_version,
         series_id, series, inputs, filename,
         unnest(outputs.ds) AS ds, unnest(outputs.p10) AS p10, unnest(outputs.p50) AS p50,
         unnest(outputs.p90) AS p90, unnest(outputs.is_open) AS is_open,
         unnest(outputs.actual) AS actual,
         unnest(outputs.score) AS score, unnest(outputs.is_anomaly) AS is_anomaly
  FROM {source}
  WHERE logged_at IS NOT NULL
)
"""
