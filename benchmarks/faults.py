"""Benchmark: how the platform behaves when things go wrong (bad files, kills, locks, bad requests).

    python benchmarks/faults.py                  # the whole matrix, ~5-15 minutes on 2 cores
    python benchmarks/faults.py --no-append      # the same, without writing docs/benchmarks.md
    python benchmarks/faults.py --phases files,lock --keep /tmp/faults   # some phases, kept

Why: the fault handling (file quarantine, dead-run recovery, lock waits, the service's body
limit and bounded errors) is only worth what it does on real files, real processes and a real
server. Every phase runs on fresh data directories under a temporary folder, on loopback and
local files only, through the platform's own entry points; every subprocess and HTTP call has
a bound, and a step past its bound is killed and counted as a hang.

1. **Bad files.** Synthetic landing files (``land_synthetic``, no planted mistakes; 6 stores x
   5 items, 2017-11-01..28), then, each on its own day, the day's file replaced by: a gzip
   saved as .csv (binary), Windows-1252 text with non-ASCII characters (the spec says nothing
   of an encoding), a row with too many fields, a line over 2 MB, a UTF-8 byte-order mark, an
   empty file, a header-only file, and good-but-unusual files (CRLF line endings, quoted commas
   and quotes in a value, duplicated rows); plus the stray names ``sales_2017-02-30.csv`` and
   ``sales_2099-01-01.csv``. One ingest run over the landed range, through the CLI's run path
   (``cli/runs.py: run_range`` on the persistent instance, as ``demo`` runs it). Measured:
   ``rows_lost`` = sum over the landing files *not* in ``file_rejects`` of
   |data rows (Python's csv module) - (validated + rejected rows from that file)|;
   ``good_rows_not_validated`` = rows of the good and unusual days that are not in
   ``validated_sales`` with their value; unclear errors = ``file_rejects`` reasons that are empty
   or do not say what is wrong (binary, encoding, fields, line length, empty, header only) +
   failing checks whose text (description and metadata, as the UI shows them) does not name
   every file (or date, for volume) it is about; the largest reason and check text in bytes.
   Stray names are not landing files: they must be named by ``landing_file_names`` and never
   ingested, so they are left out of ``rows_lost``.
2. **kill -9 of an ingest.** For each ``--kill-points`` point, a fresh data directory with
   ~13 months of landed days (6 x 5 series, 2016-11-01..2017-11-30): the ingest run is started
   as a CLI process (its own session), its process group gets SIGKILL at the point, then the
   same command runs again (bounded by ``--recovery-timeout``). Points are 1.5 s and 4 s after
   the start (start-up, before the run exists) and a fraction of a second after the run
   started ``raw_sales``, ``validate_sales`` and ``sales_features`` (a read-only look at
   Dagster's SQLite event log; each step lasts only 1-2 s, so fixed delays on a shared machine
   would hit them by chance). What the killed run was doing is read from its events.
   Recovered = it exits 0, ``unbalanced_partitions`` is empty (raw = validated + rejected on
   every partition), every landed row is in ``raw_sales`` and the dead run is no longer in
   flight. ``demo`` itself is
   not the command: on 13 months the forecaster has no training rows (it needs ~1.5 years),
   so ``demo`` exits 1 whatever the ingest did; the ingest is the part a kill can break.
3. **A reader holding the warehouse.** A process holds ``duckdb.connect(path,
   read_only=True)`` for ``--reader-hold`` seconds (8) while an ingest run starts: the run
   must wait and succeed. With ``FORECAST_LOCK_WAIT_SECONDS=2`` and a 20 s reader it must fail,
   in bounded time, with a message naming the reader's PID; after the reader leaves, the same
   run must succeed.
4. **Service probes.** A small champion bundle (as ``test_serving.py``'s fixtures build it:
   2 stores x 3 items, 2013-01-01..2016-03-31, 20 trees, an anomaly detector) served by a real
   ``bentoml serve`` on 127.0.0.1; ~40 bad requests (2 MB and 10 MB bodies, declared and
   chunked, 900 KB bodies with an invalid value, malformed JSON, bytes that are not UTF-8,
   deep nesting, unknown series and fields, wrong types, huge and out-of-int64 numbers,
   negative/NaN/infinite actuals, oversized batches, ...). Measured: 5xx answers, the largest
   error body, transport errors, and 4xx bodies that are not a JSON object whose ``error`` or
   ``field`` names the field or limit at fault; afterwards the server must still answer.

Goals: rows_lost = 0, good_rows_not_validated = 0, hangs = 0, unclear_errors = 0,
server_errors = 0, max_error_bytes <= 10,000, recovered_after_kill true. Prints the details,
appends a section to docs/benchmarks.md unless ``--no-append``, and prints a last line of JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import gzip
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from results import append_section, machine  # noqa: E402

PYTHON = sys.executable
MAX_ERROR_GOAL = 10_000
STORES, ITEMS = 6, 5
FILES_START, FILES_END = dt.date(2017, 11, 1), dt.date(2017, 11, 28)
FAULTS_FROM = dt.date(2017, 11, 15)  # 14 clean days of history first
KILL_START, KILL_END = dt.date(2016, 11, 1), dt.date(2017, 11, 30)
# Faults whose file must land in file_rejects, with the words its reason must contain (any).
REJECTED_KINDS = {
    "binary": ("binary",), "cp1252": ("encoding", "utf-8"), "too_many_fields": ("fields",),
    "long_line": ("line",), "empty": ("empty",), "header_only": ("header",),
}
GOOD_KINDS = ("bom", "crlf", "quoted_commas", "duplicate_rows")
KINDS = [*REJECTED_KINDS, *GOOD_KINDS]
STRAY = ("sales_2017-02-30.csv", "sales_2099-01-01.csv")
QUARANTINE_CATEGORIES = {"keys_and_dates_present": "keys_and_dates", "target_valid": "target",
                         "unique_date_keys": "duplicates", "covariates_valid": "covariates"}

# The CLI's ingest path (cli/runs.py: run_range, with dead-run recovery and signal handling) over
# every landed day within the dataset's partitions, as `demo` runs it, without the training.
INGEST_DRIVER = r'''
import argparse, sys
print("stage: importing", flush=True)
from forecast_platform.cli.runs import configure, run_range
from forecast_platform.datasets.landing import landed_files
from forecast_platform.datasets.registry import get_spec
from forecast_platform.defs.jobs import INGEST_JOB
settings = configure(argparse.Namespace(data_dir=sys.argv[1], dataset="synthetic",
                                        source_dir=None))
spec = get_spec(settings.dataset, settings.datasets_dir)
days = [d for d in landed_files(settings.landing_dir()) if spec.start <= d <= spec.end]
print(f"stage: running ingest_job {min(days)}..{max(days)}", flush=True)
result = run_range(settings, INGEST_JOB, min(days), max(days))
print(f"stage: finished success={result.success} run_id={result.run_id}", flush=True)
sys.exit(0 if result.success else 1)
'''

READER = r'''
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SELECT count(*) FROM raw_sales").fetchone()
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
print("released", flush=True)
'''


# -- shared ---------------------------------------------------------------------------------

@dataclass
class Tally:
    """What every phase adds to: the headline figures and the evidence behind them."""

    probes: int = 0
    hangs: list[str] = field(default_factory=list)
    unclear: list[str] = field(default_factory=list)
    max_error_bytes: int = 0
    max_error_where: str = ""
    server_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a phase that could not run, etc.

    def error_text(self, where: str, text: str | bytes) -> None:
        size = len(text.encode() if isinstance(text, str) else text)
        if size > self.max_error_bytes:
            self.max_error_bytes, self.max_error_where = size, where


@dataclass
class Proc:
    rc: int | None
    seconds: float
    hung: bool
    out: str
    err: str


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the platform's settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORECAST_", "DAGSTER_", "MLFLOW_", "BENTOML_"))}
    env.update({"DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "1", "PYTHONWARNINGS": "ignore"})
    env.update(extra or {})
    return env


def logfile(log: Path, ext: str) -> Path:
    return log.parent / f"{log.name}.{ext}"


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A subprocess in its own session (so its whole group can be killed), output to files."""
    out, err = open(logfile(log, "out"), "wb"), open(logfile(log, "err"), "wb")  # noqa: SIM115
    try:
        return subprocess.Popen(cmd, cwd=ROOT, env=env or clean_env(), stdout=out, stderr=err,
                                start_new_session=True)
    finally:
        out.close()
        err.close()


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)


def finish(proc: subprocess.Popen, log: Path, timeout: float, started: float) -> Proc:
    """Wait for ``proc`` at most ``timeout`` s from ``started``; past it, kill it (a hang)."""
    hung = False
    try:
        proc.wait(timeout=max(0.1, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        hung = True
        kill_group(proc)
    return Proc(None if hung else proc.returncode, time.monotonic() - started, hung,
                logfile(log, "out").read_text(errors="replace"),
                logfile(log, "err").read_text(errors="replace"))


def run_bounded(cmd: list[str], log: Path, timeout: float,
                env: dict[str, str] | None = None) -> Proc:
    started = time.monotonic()
    return finish(start(cmd, log, env), log, timeout, started)


def ingest_cmd(data_dir: Path) -> list[str]:
    return [PYTHON, "-c", INGEST_DRIVER, str(data_dir)]


def wait_for_line(path: Path, text: str, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def land(data_dir: Path, first: dt.date, last: dt.date) -> Path:
    from forecast_platform.datasets.registry import get_spec, land_synthetic

    landing = data_dir / "landing" / "synthetic"
    land_synthetic(get_spec("synthetic"), landing, start=first, end=last, n_stores=STORES,
                   n_items=ITEMS, mistakes=False)
    return landing


def settings_of(data_dir: Path):
    from forecast_platform.settings import load_settings

    return load_settings({"FORECAST_DATA_DIR": str(data_dir), "FORECAST_DATASET": "synthetic"})


def run_records(data_dir: Path) -> list[dict[str, Any]]:
    """Every run of a data directory's Dagster instance: id, status, failure message, the steps
    it started and did not finish, and the steps it finished."""
    from dagster._core.events import DagsterEventType

    from forecast_platform.cli.instance import open_instance

    out = []
    with open_instance(settings_of(data_dir)) as instance:
        for run in instance.get_runs(ascending=True):
            started, finished, message = [], [], ""
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type == DagsterEventType.STEP_START:
                    started.append(event.step_key)
                elif event.event_type in (DagsterEventType.STEP_SUCCESS,
                                          DagsterEventType.STEP_FAILURE):
                    finished.append(event.step_key)
                elif event.event_type == DagsterEventType.RUN_FAILURE:
                    message = event.message or ""
            out.append({"run_id": run.run_id, "status": run.status.value, "message": message,
                        "in_flight_steps": [s for s in started if s not in finished],
                        "finished_steps": finished})
    return out


def check_evaluations(data_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """The asset check results of one run: name, passed, and the text the UI shows."""
    from dagster._core.events import DagsterEventType

    from forecast_platform.cli.instance import open_instance

    out = []
    with open_instance(settings_of(data_dir)) as instance:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
            data = entry.dagster_event.event_specific_data
            meta = "\n".join(f"{k}: {getattr(v, 'value', v)}" for k, v in data.metadata.items())
            out.append({"check": f"{data.asset_key.to_user_string()}.{data.check_name}",
                        "passed": data.passed, "description": data.description or "",
                        "text": f"{data.description or ''}\n{meta}"})
    return out


def run_id_of(out: str) -> str | None:
    match = re.search(r"run_id=([0-9a-f-]{36})", out)
    return match.group(1) if match else None


# -- 1. bad files -----------------------------------------------------------------------------

def fault_bytes(kind: str, good: bytes) -> bytes:
    """The day's good file (``good``, as the lander wrote it) turned into fault ``kind``."""
    lines = good.decode().splitlines()
    header, rows = lines[0], lines[1:]
    mid = len(rows) // 2

    def joined(parts: list[str], sep: str = "\n") -> str:
        return sep.join(parts) + sep

    if kind == "binary":  # a compressed export saved under the .csv name
        return gzip.compress(good)
    if kind == "cp1252":  # Excel on Windows: a text column in Windows-1252
        return joined([header + ",store_name"]
                      + [r + ",Bäckerei Müller – Café" for r in rows]).encode("cp1252")
    if kind == "too_many_fields":
        rows = [*rows[:mid], rows[mid] + ",EXTRA", *rows[mid + 1:]]
        return joined([header, *rows]).encode()
    if kind == "long_line":  # one value of 2.2 MB on one line
        d, s, i, y, _ = rows[mid].split(",")
        rows = [*rows[:mid], f'{d},{s},{i},{y},"{"x" * 2_200_000}"', *rows[mid + 1:]]
        return joined([header, *rows]).encode()
    if kind == "bom":
        return b"\xef\xbb\xbf" + good
    if kind == "empty":
        return b""
    if kind == "header_only":
        return joined([header]).encode()
    if kind == "crlf":
        return joined([header, *rows], "\r\n").encode()
    if kind == "quoted_commas":
        return joined([header + ",note"]
                      + [r + ',"end-cap, aisle 3, ""autumn"" display"' for r in rows]).encode()
    if kind == "duplicate_rows":
        return joined([header, *rows, *rows[3:5]]).encode()
    raise ValueError(kind)


def csv_rows(path: Path) -> list[list[str]] | None:
    """A file's data rows (header excluded, blank lines skipped) by Python's csv module, or None
    when it does not parse."""
    csv.field_size_limit(2**31 - 1)
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            rows = [r for r in csv.reader(handle) if r]
    except csv.Error:
        return None
    return rows[1:]


def names_all(text: str, names: list[str]) -> list[str]:
    """The ``names`` missing from ``text``."""
    return [n for n in names if n not in text]


def phase_files(root: Path, args: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    import duckdb

    from forecast_platform.warehouse import tables

    data = root / "files"
    landing = land(data, FILES_START, FILES_END)
    kinds: dict[str, str] = {}  # file name -> fault kind ("good" for the untouched days)
    truth: dict[dt.date, dict[tuple[int, int], float]] = {}
    for offset in range((FILES_END - FILES_START).days + 1):
        day = FILES_START + dt.timedelta(days=offset)
        path = landing / f"sales_{day}.csv"
        good = path.read_bytes()
        index = (day - FAULTS_FROM).days
        kind = KINDS[index] if 0 <= index < len(KINDS) else "good"
        kinds[path.name] = kind
        if kind != "good":
            path.write_bytes(fault_bytes(kind, good))
        if kind == "good" or kind in GOOD_KINDS:
            truth[day] = {(int(r[1]), int(r[2])): float(r[3]) for r in
                          csv.reader(good.decode().splitlines()[1:])}
    stray_content = (landing / f"sales_{FILES_START}.csv").read_bytes()
    for name in STRAY:
        (landing / name).write_bytes(stray_content)
    landed_rows = {name: csv_rows(landing / name) for name in kinds}
    tally.probes += len(kinds) - sum(k == "good" for k in kinds.values()) + len(STRAY)

    proc = run_bounded(ingest_cmd(data), root / "files-ingest", args.run_timeout)
    out: dict[str, Any] = {"rc": proc.rc, "seconds": round(proc.seconds, 1), "files": {},
                           "checks": [], "kinds": kinds}
    if proc.hung:
        tally.hangs.append(f"bad files: the ingest run passed its {args.run_timeout:.0f} s bound")
        return out
    run_id = run_id_of(proc.out)
    if run_id is None:
        tally.problems.append("bad files: the ingest run did not report a run id: "
                              + proc.err[-500:])
        return out

    with duckdb.connect(str(settings_of(data).warehouse_path), read_only=True) as con:
        rejects = {Path(f).name: r for f, r in con.execute(
            f"SELECT file, reason FROM {tables.FILE_REJECTS}").fetchall()}
        valid = {Path(f).name: n for f, n in con.execute(
            f"SELECT _source_file, count(*) FROM {tables.VALIDATED} GROUP BY 1").fetchall()}
        rejected = {Path(f).name: n for f, n in con.execute(
            f"SELECT _source_file, count(*) FROM {tables.REJECTS} GROUP BY 1").fetchall()}
        validated = {(d, int(s), int(i)): float(y) for d, s, i, y in con.execute(
            f"SELECT date, store, item, sales FROM {tables.VALIDATED}").fetchall()}
        noted = sorted({Path(f).name for (f,) in con.execute(
            f"SELECT DISTINCT _source_file FROM {tables.RAW} "
            "WHERE _schema_note IS NOT NULL").fetchall()})
        reject_rules = con.execute(
            f"SELECT _source_file, rules FROM {tables.REJECTS}").fetchall()
        raw_stray = con.execute(
            f"SELECT count(*) FROM {tables.RAW} WHERE _source_file LIKE '%2017-02-30%' "
            "OR _source_file LIKE '%2099-01-01%'").fetchone()[0]
        by_day = dict(con.execute(
            f"SELECT date, count(*) FROM {tables.VALIDATED} GROUP BY 1").fetchall())
        heavy_days = [str(d) for (d,) in con.execute(
            f"SELECT r.partition_date FROM (SELECT partition_date, count(*) AS n FROM "
            f"{tables.RAW} GROUP BY 1) r JOIN (SELECT partition_date, count(*) AS n FROM "
            f"{tables.REJECTS} GROUP BY 1) j USING (partition_date) WHERE j.n > 0.05 * r.n "
            "ORDER BY 1").fetchall()]

    rows_lost = 0
    for name, kind in kinds.items():
        rows = landed_rows[name]
        landed = len(rows) if rows is not None else 0
        accounted = valid.get(name, 0) + rejected.get(name, 0)
        lost = 0 if name in rejects else abs(landed - accounted)
        rows_lost += lost
        reason = rejects.get(name)
        clear = None
        if reason is not None:
            tally.error_text(f"file_rejects reason of {name}", reason)
            words = REJECTED_KINDS.get(kind, ())
            clear = bool(reason.strip()) and (
                not words or any(w in reason.lower() for w in words))
            if not clear:
                tally.unclear.append(f"file_rejects reason of {name} ({kind}) does not say "
                                     f"what is wrong: {reason[:200]!r}")
        elif kind in REJECTED_KINDS:
            tally.problems.append(f"{name} ({kind}) is not in file_rejects")
        if kind != "good" or lost:
            out["files"][name] = {"kind": kind, "landed_rows": None if rows is None else len(rows),
                                  "validated": valid.get(name, 0),
                                  "rejected": rejected.get(name, 0), "lost": lost,
                                  "reason": reason}
    missing_good = []
    for day, rows in truth.items():
        for (store, item), y in rows.items():
            if validated.get((day, store, item)) != y:
                missing_good.append(f"{day} store {store} item {item}")
    out["rows_lost"] = rows_lost
    out["good_rows_not_validated"] = len(missing_good)
    out["good_rows_missing_examples"] = missing_good[:5]
    out["stray_rows_ingested"] = int(raw_stray)
    if raw_stray:
        tally.problems.append(f"{raw_stray} rows of the stray files were ingested")

    # Failing checks: each must name what it is about.
    no_rows_files = sorted(rejects)
    days = [FILES_START + dt.timedelta(days=o) for o in range((FILES_END - FILES_START).days + 1)]
    thin_days = [str(d) for d in days if by_day.get(d, 0) < 0.5 * STORES * ITEMS]
    expected_names: dict[str, list[str]] = {
        "raw_sales.files_readable": no_rows_files,
        "validated_sales.completeness": no_rows_files,
        "raw_sales.landing_file_names": list(STRAY),
        "raw_sales.columns_match_spec": noted,
        "validated_sales.volume": thin_days,
        "validated_sales.quarantine_rate": heavy_days,
    }
    for check, category in QUARANTINE_CATEGORIES.items():
        expected_names[f"sales_rejects.{check}"] = sorted(
            {Path(f).name for f, rules in reject_rules if category in rules.split(",")})
    evaluations = check_evaluations(data, run_id)
    for ev in evaluations:
        tally.error_text(f"check {ev['check']}", ev["text"])
        if ev["passed"]:
            continue
        missing = names_all(ev["text"], expected_names.get(ev["check"], []))
        if ev["check"] == "raw_sales.files_readable" and missing \
                and tables.FILE_REJECTS in ev["text"] and re.search(r"and \d+ more", ev["text"]):
            # The summary lists five and points to the table for the rest: named, by reference.
            ev["named_by_reference"] = missing
            missing = []
        ev["missing_names"] = missing
        if missing or not ev["description"].strip():
            tally.unclear.append(f"failing check {ev['check']} does not name "
                                 f"{', '.join(missing) or 'anything'}")
        out["checks"].append({k: v for k, v in ev.items() if k != "text"}
                             | {"bytes": len(ev["text"].encode())})
    out["passed_checks"] = sorted(ev["check"] for ev in evaluations if ev["passed"])
    return out


# -- 2. kill -9 ---------------------------------------------------------------------------------

def step_started(data_dir: Path, step: str) -> bool:
    """Whether a run of the data directory's instance has started ``step``: a read-only look at
    Dagster's SQLite event log (WAL mode: it never blocks the run writing it)."""
    db = settings_of(data_dir).dagster_home / "event_log.db"
    if not db.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True,
                                                timeout=0.5)) as con:
            return con.execute("SELECT 1 FROM event_logs WHERE dagster_event_type = "
                               "'STEP_START' AND step_key = ? LIMIT 1", [step]).fetchone() \
                is not None
    except sqlite3.Error:
        return False


def kill_when(proc: subprocess.Popen, data: Path, step: str | None, delay: float,
              bound: float) -> bool:
    """SIGKILL ``proc``'s group ``delay`` s after its start (no ``step``) or after ``step``
    started; False when the process ended before that (nothing to kill)."""
    if step is not None:
        deadline = time.monotonic() + bound
        while not step_started(data, step):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    try:
        proc.wait(timeout=delay)
        return False  # it ended before the kill
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return True


def phase_kill(root: Path, args: argparse.Namespace, tally: Tally) -> list[dict[str, Any]]:
    import duckdb

    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.ingestion.checks import unbalanced_partitions
    from forecast_platform.warehouse import tables

    spec = get_spec("synthetic")
    points = []
    for label, step, delay in args.kill_points:
        tally.probes += 1
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower())
        data = root / f"kill-{slug}"
        landing = land(data, KILL_START, KILL_END)
        landed = sum(len(csv_rows(p) or []) for p in landing.glob("sales_*.csv"))
        log = root / f"kill-{slug}-first"
        started = time.monotonic()
        proc = start(ingest_cmd(data), log)
        finished_first = not kill_when(proc, data, step, delay, args.run_timeout)
        killed_at = time.monotonic() - started
        stages = re.findall(r"stage: (.+)", logfile(log, "out").read_text(errors="replace"))
        warehouse = settings_of(data).warehouse_path
        after_kill = None  # partitions left unbalanced by the kill, before any recovery
        if warehouse.is_file():
            try:
                with duckdb.connect(str(warehouse), read_only=True) as con:
                    after_kill = len(unbalanced_partitions(con, spec))
            except duckdb.Error as exc:
                after_kill = f"unreadable: {str(exc)[:100]}"
        recovery = run_bounded(ingest_cmd(data), root / f"kill-{slug}-recovery",
                               args.recovery_timeout)
        point: dict[str, Any] = {
            "point": label, "killed_at_s": round(killed_at, 2),
            "finished_before_kill": finished_first,
            "stage_when_killed": stages[-1] if stages else "python start-up (no output yet)",
            "unbalanced_after_kill": after_kill,
            "recovery_rc": recovery.rc, "recovery_s": round(recovery.seconds, 1),
            "recovered_lines": re.findall(r"(recovered dead run .+|freed the warehouse pool .+)",
                                          recovery.out),
        }
        if recovery.hung:
            tally.hangs.append(f"kill {label}: the recovery run passed its "
                               f"{args.recovery_timeout:.0f} s bound")
        recovery_id = run_id_of(recovery.out)
        runs = run_records(data)
        dead = [r for r in runs if r["run_id"] != recovery_id]
        point["dead_runs"] = [{"status": r["status"], "in_flight_steps": r["in_flight_steps"],
                               "finished_steps": r["finished_steps"],
                               "message": r["message"][:300]} for r in dead]
        point["still_in_flight"] = [r["run_id"][:8] for r in runs if r["status"] in (
            "NOT_STARTED", "STARTING", "STARTED", "CANCELING")]
        unbalanced: list = ["no warehouse"]
        raw = None
        if warehouse.is_file():
            with duckdb.connect(str(warehouse), read_only=True) as con:
                unbalanced = unbalanced_partitions(con, spec)
                raw = con.execute(f"SELECT count(*) FROM {tables.RAW}").fetchone()[0]
        point.update({"unbalanced_partitions": len(unbalanced), "raw_rows": raw,
                      "landed_rows": landed})
        point["recovered"] = (recovery.rc == 0 and not unbalanced and raw == landed
                              and not point["still_in_flight"])
        if not point["recovered"]:
            tally.problems.append(f"kill {label} not recovered: rc {recovery.rc}, "
                                  f"{len(unbalanced)} unbalanced partitions, raw {raw} of "
                                  f"{landed}, in flight {point['still_in_flight']}: "
                                  + recovery.err[-300:])
        print(f"kill {label}: {point}", flush=True)
        points.append(point)
    return points


# -- 3. a reader holding the warehouse ------------------------------------------------------

def with_reader(root: Path, data: Path, name: str, hold: float, lock_wait: float | None,
                args: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    warehouse = settings_of(data).warehouse_path
    log = root / f"{name}-reader"
    reader = start([PYTHON, "-c", READER, str(warehouse), str(hold)], log)
    try:
        if not wait_for_line(logfile(log, "out"), "holding", 60, reader):
            tally.problems.append(f"{name}: the reader did not start: "
                                  + logfile(log, "err").read_text(errors="replace")[-300:])
            return {"reader_started": False}
        held_since = time.monotonic()
        extra = {"FORECAST_LOCK_WAIT_SECONDS": str(lock_wait)} if lock_wait is not None else {}
        proc = run_bounded(ingest_cmd(data), root / f"{name}-ingest", args.run_timeout,
                           clean_env(extra))
        reader_left = reader.poll() is not None
        reader_done = finish(reader, log, hold + 30, held_since)
    finally:
        if reader.poll() is None:
            kill_group(reader)
    if proc.hung:
        tally.hangs.append(f"{name}: the ingest run passed its {args.run_timeout:.0f} s bound")
    if reader_done.hung:
        tally.hangs.append(f"{name}: the reader passed its bound")
    waits = re.findall(r"waiting for the warehouse .*?\((\d+) s of at most", proc.err)
    held_by = re.findall(r"[^\n]*is held by[^\n]*", proc.err)
    return {"reader_pid": reader.pid, "hold_s": hold, "lock_wait_s": lock_wait,
            "rc": proc.rc, "seconds": round(proc.seconds, 1),
            "reader_left_before_run_ended": reader_left,
            "wait_messages": len(waits), "max_reported_wait_s": max(map(int, waits), default=0),
            "names_pid": f"PID {reader.pid}" in proc.err,
            "failure_message": held_by[0].strip()[:400] if held_by else proc.err[-400:].strip()
            if proc.rc else ""}


def phase_lock(root: Path, args: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    import duckdb

    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.ingestion.checks import unbalanced_partitions

    data = root / "lock"
    land(data, dt.date(2017, 9, 1), dt.date(2017, 11, 30))
    base = run_bounded(ingest_cmd(data), root / "lock-baseline", args.run_timeout)
    out: dict[str, Any] = {"baseline_rc": base.rc, "baseline_s": round(base.seconds, 1)}
    if base.rc != 0:
        tally.problems.append("lock: the baseline ingest failed: " + base.err[-300:])
        return out
    tally.probes += 2
    wait = with_reader(root, data, "lock-wait", args.reader_hold, None, args, tally)
    out["wait"] = wait
    if wait.get("rc") != 0:
        tally.problems.append(f"lock: with a {args.reader_hold:g} s reader the run did not "
                              f"succeed (rc {wait.get('rc')}): {wait.get('failure_message')}")
    fail = with_reader(root, data, "lock-fail", 20.0, 2.0, args, tally)
    out["fail"] = fail
    if fail.get("rc") == 0:
        tally.problems.append("lock: with FORECAST_LOCK_WAIT_SECONDS=2 and a 20 s reader the "
                              "run succeeded instead of failing")
    elif fail.get("reader_started", True) and not fail.get("names_pid"):
        tally.unclear.append("lock: the failure does not name the reader's PID: "
                             f"{fail.get('failure_message', '')[:300]!r}")
    if fail.get("failure_message"):
        tally.error_text("lock failure message", fail["failure_message"])
    again = run_bounded(ingest_cmd(data), root / "lock-again", args.run_timeout)
    with duckdb.connect(str(settings_of(data).warehouse_path), read_only=True) as con:
        unbalanced = unbalanced_partitions(con, get_spec("synthetic"))
    out["after"] = {"rc": again.rc, "seconds": round(again.seconds, 1),
                    "unbalanced_partitions": len(unbalanced)}
    if again.hung:
        tally.hangs.append("lock: the run after the reader left passed its bound")
    if again.rc != 0 or unbalanced:
        tally.problems.append(f"lock: the run after the reader left: rc {again.rc}, "
                              f"{len(unbalanced)} unbalanced partitions")
    return out


# -- 4. service probes --------------------------------------------------------------------------

SERVE_START, SERVE_END = dt.date(2013, 1, 1), dt.date(2016, 3, 31)
S12 = {"store": 1, "item": 2}
FUTURE = str(SERVE_END + dt.timedelta(days=3))
DAY_AFTER = str(SERVE_END + dt.timedelta(days=1))
MAX_BATCH = 50


@dataclass(frozen=True)
class Probe:
    name: str
    endpoint: str
    body: bytes | None  # None: a chunked 10 MB body
    names: tuple[str, ...]  # an error body is clear when it names one of these
    expect: tuple[int, ...]  # the statuses the fault should get (informational)
    content_type: str = "application/json"


def _j(value: Any) -> bytes:
    return json.dumps(value).encode()


def padded(value: Any, size: int) -> bytes:
    raw = _j(value)
    return raw + b" " * (size - len(raw))


def probes() -> list[Probe]:
    big_keys = {f"day{i}": {"promo": 1} for i in range(35_000)}
    deep = 100_000
    limit = ("limit", "body")
    return [
        Probe("body_2MB", "forecast", padded({"series": S12, "horizon": 2}, 2_000_000), limit,
              (413,)),
        Probe("body_10MB", "forecast", padded({"series": S12, "horizon": 2}, 10_000_000), limit,
              (413,)),
        Probe("body_10MB_chunked", "forecast", None, limit, (413,)),
        Probe("scenario_900KB_bad_dates", "forecast", _j({"series": S12, "scenario": big_keys}),
              ("scenario",), (400,)),
        Probe("scenario_900KB_bad_value", "forecast",
              _j({"series": S12, "scenario": {FUTURE: {"promo": "x" * 900_000}}}),
              ("scenario",), (400,)),
        Probe("store_900KB_string", "forecast",
              _j({"series": {"store": "s" * 900_000, "item": 2}}), ("series.store",), (422,)),
        Probe("malformed_json", "forecast", b'{"series": {"store": 1, "item": 2}, "horizon": ',
              ("json", "body"), (400,)),
        Probe("not_utf8", "forecast", b'{"series": {"store": 1, "item": "\xff\xfe"}}',
              ("json", "utf", "body", "series"), (400,)),
        Probe("empty_body", "forecast", b"", ("body", "series", "json"), (400,)),
        Probe("json_array", "forecast", b"[1, 2, 3]", ("body", "series", "object"), (400,)),
        Probe("deep_nesting_100k", "forecast",
              b'{"series": ' + b"[" * deep + b"]" * deep + b"}",
              ("series", "body", "json", "nest", "depth"), (400,)),
        Probe("unknown_series", "forecast", _j({"series": {"store": 99, "item": 99}}),
              ("series",), (404,)),
        Probe("unknown_top_field", "forecast",
              _j({"series": S12, "horizon": 2, "colour": "red"}), ("colour",), (200, 400, 422)),
        Probe("unknown_series_key", "forecast", _j({"series": {**S12, "color": "red"}}),
              ("color",), (422,)),
        Probe("missing_series", "forecast", _j({"horizon": 3}), ("series",), (400,)),
        Probe("horizon_as_string", "forecast", _j({"series": S12, "horizon": "3"}),
              ("horizon",), (400,)),
        Probe("store_as_float", "forecast", _j({"series": {"store": 1.5, "item": 2}}),
              ("series.store",), (400,)),
        Probe("series_as_list", "forecast", _j({"series": [S12]}), ("series",), (400,)),
        Probe("horizon_1e9", "forecast", _j({"series": S12, "horizon": 10**9}), ("horizon",),
              (422,)),
        Probe("horizon_beyond_int64", "forecast",
              b'{"series": {"store": 1, "item": 2}, "horizon": 1' + b"0" * 40 + b"}",
              ("horizon",), (400, 422)),
        Probe("horizon_negative", "forecast", _j({"series": S12, "horizon": -5}), ("horizon",),
              (400,)),
        Probe("horizon_infinity", "forecast",
              b'{"series": {"store": 1, "item": 2}, "horizon": Infinity}', ("horizon",), (400,)),
        Probe("store_beyond_int64", "forecast", _j({"series": {"store": 10**30, "item": 2}}),
              ("series",), (404, 422)),
        Probe("store_nul_char", "forecast", _j({"series": {"store": "\x00", "item": 2}}),
              ("series",), (404, 422)),
        Probe("scenario_year_9999", "forecast",
              _j({"series": S12, "scenario": {"9999-12-31": {"promo": 1}}}), ("scenario",),
              (422,)),
        Probe("scenario_impossible_date", "forecast",
              _j({"series": S12, "scenario": {"2016-02-30": {"promo": 1}}}), ("scenario",),
              (400,)),
        Probe("scenario_unknown_covariate", "forecast",
              _j({"series": S12, "scenario": {FUTURE: {"price": 1}}}), ("price", "scenario"),
              (422,)),
        Probe("duplicate_json_keys", "forecast",
              b'{"series": {"store": 1, "item": 2}, "series": {"store": 99, "item": 99}}',
              ("series",), (200, 404)),
        Probe("batch_over_limit", "forecast_batch", _j({"series": [S12] * (MAX_BATCH + 1)}),
              ("series",), (413,)),
        Probe("batch_30k_series", "forecast_batch", _j({"series": [S12] * 30_000}),
              ("series",), (413,)),
        Probe("batch_empty", "forecast_batch", _j({"series": []}), ("series",), (422,)),
        Probe("explain_bad_date", "explain", _j({"series": S12, "date": "tomorrow"}),
              ("date",), (400,)),
        Probe("explain_top_1000", "explain", _j({"series": S12, "date": FUTURE, "top": 1000}),
              ("top",), (400,)),
        Probe("score_negative_actual", "score_anomaly",
              _j({"series": S12, "date": DAY_AFTER, "actual": -5}), ("actual",), (422,)),
        Probe("score_nan_actual", "score_anomaly",
              f'{{"series": {{"store": 1, "item": 2}}, "date": "{DAY_AFTER}", '
              '"actual": NaN}'.encode(), ("actual",), (422,)),
        Probe("score_infinite_actual", "score_anomaly",
              f'{{"series": {{"store": 1, "item": 2}}, "date": "{DAY_AFTER}", '
              '"actual": -Infinity}'.encode(), ("actual",), (422,)),
        Probe("score_actual_1e308", "score_anomaly",
              _j({"series": S12, "date": DAY_AFTER, "actual": 1e308}), ("actual",), (422,)),
        Probe("score_actual_as_string", "score_anomaly",
              _j({"series": S12, "date": DAY_AFTER, "actual": "12"}), ("actual",), (400,)),
        Probe("score_date_out_of_range", "score_anomaly",
              _j({"series": S12, "date": str(SERVE_END + dt.timedelta(days=30)), "actual": 1}),
              ("date",), (422,)),
        Probe("score_unknown_series", "score_anomaly",
              _j({"series": {"store": 9, "item": 9}, "date": DAY_AFTER, "actual": 1}),
              ("series",), (404,)),
        Probe("wrong_content_type", "forecast", _j({"series": S12, "horizon": 2}),
              ("content", "type", "json"), (200, 400, 415), content_type="text/plain"),
        Probe("reload_without_admin_key", "reload", b"", ("admin",), (403,)),
    ]


def chunks() -> Iterator[bytes]:
    yield _j({"series": S12})
    for _ in range(160):  # 10 MB, no Content-Length
        yield b" " * 65_536


def build_bundle(root: Path) -> dict[str, str]:
    """A small champion, its anomaly detector and the serving bundle, as test_serving builds
    them; returns the server's environment."""
    from forecast_platform.datasets.registry import get_spec
    from forecast_platform.defs.bentoml_store import save_bundle
    from forecast_platform.defs.harness import add_anomaly_detector
    from forecast_platform.forecasting.forecaster import ForecasterParams
    from forecast_platform.serving.harness import build_champion_warehouse
    from forecast_platform.settings import load_settings
    from forecast_platform.warehouse.store import connect

    env = {"FORECAST_DATA_DIR": str(root / "serve" / "data"),
           "BENTOML_HOME": str(root / "serve" / "bentoml"), "FORECAST_DATASET": "synthetic",
           "FORECAST_MAX_BATCH": str(MAX_BATCH), "DO_NOT_TRACK": "1",
           "BENTOML_DO_NOT_TRACK": "1", "FORECAST_API_KEY": "", "FORECAST_ADMIN_KEY": "",
           "FORECAST_BUNDLE": "", "MLFLOW_TRACKING_URI": "", "DAGSTER_HOME": ""}
    settings = load_settings(env)
    spec = get_spec("synthetic")
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    build_champion_warehouse(settings.warehouse_path, spec, "synthetic_forecaster",
                             n_stores=2, n_items=3, start=SERVE_START, end=SERVE_END, seed=3,
                             params=ForecasterParams(n_estimators=20))
    add_anomaly_detector(settings, spec, SERVE_START, SERVE_END,
                         {"target_false_alarm_rate": 0.02})
    with connect(settings.warehouse_path) as con:
        save_bundle(con, spec, "synthetic_forecaster", settings)
    return env


def clear_answer(body: bytes, names: tuple[str, ...]) -> bool:
    """A JSON object whose ``error`` (a non-empty string) or ``field`` names one of ``names``."""
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), str) \
            or not answer["error"].strip():
        return False
    said = (answer["error"] + " " + str(answer.get("field", ""))).lower()
    return any(n.lower() in said for n in names)


def phase_serve(root: Path, args: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    import httpx

    from forecast_platform.serving.harness import bentoml_server

    t0 = time.monotonic()
    with open(root / "bundle.log", "w") as quiet, contextlib.redirect_stdout(quiet), \
            contextlib.redirect_stderr(quiet):  # Dagster's debug log of the in-process build
        env = build_bundle(root)
    out: dict[str, Any] = {"bundle_s": round(time.monotonic() - t0, 1), "probes": []}
    t0 = time.monotonic()
    with bentoml_server(env, stderr_path=root / "server.log",
                        ready_timeout=args.server_ready_timeout) as server:
        out["server_ready_s"] = round(time.monotonic() - t0, 1)
        base = server.url
        timeout = httpx.Timeout(args.http_timeout)
        ok = httpx.post(f"{base}/forecast", json={"series": S12, "horizon": 2}, timeout=timeout)
        out["sanity_status"] = ok.status_code
        for probe in probes():
            tally.probes += 1
            content = probe.body if probe.body is not None else chunks()
            size = len(probe.body) if probe.body is not None else 65_536 * 160
            started = time.monotonic()
            row: dict[str, Any] = {"name": probe.name, "endpoint": probe.endpoint,
                                   "sent_bytes": size}
            try:
                r = httpx.post(f"{base}/{probe.endpoint}", content=content, timeout=timeout,
                               headers={"Content-Type": probe.content_type})
                row.update(status=r.status_code, bytes=len(r.content))
                body = r.content
            except httpx.TimeoutException:
                row.update(status="timeout", bytes=0)
                tally.hangs.append(f"probe {probe.name}: no answer within "
                                   f"{args.http_timeout:g} s")
                body = b""
            except httpx.HTTPError as exc:
                row.update(status=f"transport error: {type(exc).__name__}", bytes=0)
                tally.unclear.append(f"probe {probe.name}: no answer to read "
                                     f"({type(exc).__name__}: {str(exc)[:120]})")
                body = b""
            row["seconds"] = round(time.monotonic() - started, 2)
            status = row["status"]
            if isinstance(status, int):
                row["expected"] = status in probe.expect
                if status >= 500:
                    tally.server_errors.append(f"{probe.name}: {status} {body[:200]!r}")
                if status >= 400:
                    tally.error_text(f"probe {probe.name}", body)
                    row["clear"] = clear_answer(body, probe.names)
                    if not row["clear"]:
                        tally.unclear.append(f"probe {probe.name}: {status} does not name "
                                             f"{' / '.join(probe.names)}: {body[:200]!r}")
            row["answer"] = body[:160].decode("utf-8", "replace")
            out["probes"].append(row)
        try:
            alive = httpx.get(f"{base}/livez", timeout=timeout).status_code == 200 and \
                httpx.post(f"{base}/forecast", json={"series": S12, "horizon": 2},
                           timeout=timeout).status_code == 200
        except httpx.HTTPError:
            alive = False
        out["alive_after"] = alive
        if not alive:
            tally.problems.append("serve: the server no longer answers after the probes")
    return out


# -- report -------------------------------------------------------------------------------------

def md_cell(value: Any, limit: int = 110) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def report(args: argparse.Namespace, command: str, figures: dict[str, Any],
           phases: dict[str, Any], tally: Tally) -> str:
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    goals = [
        ("rows_lost", figures["rows_lost"], "0", figures["rows_lost"] == 0),
        ("good_rows_not_validated", figures["good_rows_not_validated"], "0",
         figures["good_rows_not_validated"] == 0),
        ("hangs", figures["hangs"], "0", figures["hangs"] == 0),
        ("unclear_errors", figures["unclear_errors"], "0", figures["unclear_errors"] == 0),
        ("server_errors", figures["server_errors"], "0", figures["server_errors"] == 0),
        ("max_error_bytes", f"{figures['max_error_bytes']:,}", "<= 10,000",
         figures["max_error_bytes"] <= MAX_ERROR_GOAL),
        ("recovered_after_kill", figures["recovered_after_kill"], "true",
         figures["recovered_after_kill"] is True),
    ]
    lines = [
        f"## Fault-handling benchmark, {now}", "",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        f"- {figures['probes']} fault probes in {figures['seconds']:.0f} s (phases: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in figures["phase_seconds"].items()) + "); "
        "every subprocess and HTTP call bounded, a step past its bound killed and counted as "
        "a hang",
        f"- largest error text: {tally.max_error_where or 'none'}", "",
        "| figure | value | goal | met |", "|---|---:|---|---|",
        *[f"| {n} | {v} | {g} | {'yes' if m else '**no**'} |" for n, v, g, m in goals], "",
    ]
    files = phases.get("files")
    if files:
        lines += [f"**Bad files** (one ingest run over {FILES_START}..{FILES_END}, 6 x 5 "
                  f"series, through the CLI's run path: rc {files['rc']}"
                  + (" (blocking checks fail on the bad days, as they should)"
                     if files["rc"] == 1 else "") + f", {files['seconds']} s):", "",
                  "| file | fault | data rows (csv) | validated | rejected | lost | "
                  "file_rejects reason |", "|---|---|---:|---:|---:|---:|---|"]
        for name, f in files["files"].items():
            lines.append(f"| {name} | {f['kind']} | {f['landed_rows']} | {f['validated']} | "
                         f"{f['rejected']} | {f['lost']} | {md_cell(f['reason'] or '-')} |")
        lines += ["", f"Stray names {', '.join(STRAY)}: {files.get('stray_rows_ingested')} "
                      "rows ingested. Failing checks (each must name its files / dates):", ""]
        for c in files["checks"]:
            named = "names all" if not c["missing_names"] else \
                "**misses** " + ", ".join(c["missing_names"])
            if c.get("named_by_reference"):
                named += f" ({', '.join(c['named_by_reference'])} by reference to file_rejects)"
            lines.append(f"- `{c['check']}` ({c['bytes']:,} bytes): {named}: "
                         f"{md_cell(c['description'], 300)}")
        lines.append("")
    kills = phases.get("kill")
    if kills:
        lines += ["**kill -9 of an ingest run** (13 months x 30 series, a fresh data directory "
                  "per point; then the same command again):", "",
                  "| kill | stage of the killed process | dead run (status, steps in "
                  "flight) | unbalanced after the kill | recovery rc | recovery s | unbalanced "
                  "after | raw rows | recovered |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---|"]
        for p in kills:
            dead = "; ".join(f"{d['status']}, {d['in_flight_steps'] or 'none'}"
                             for d in p["dead_runs"]) or "no run created"
            when = f"{p['point']} (at {p['killed_at_s']:.1f} s)" + (
                ", ended before the kill" if p["finished_before_kill"] else "")
            after = "no warehouse" if p["unbalanced_after_kill"] is None \
                else p["unbalanced_after_kill"]
            lines.append(f"| {when} | {md_cell(p['stage_when_killed'])} | "
                         f"{md_cell(dead)} | {after} | "
                         f"{p['recovery_rc']} | {p['recovery_s']} | "
                         f"{p['unbalanced_partitions']} | {p['raw_rows']} / "
                         f"{p['landed_rows']} | {'yes' if p['recovered'] else '**no**'} |")
        lines.append("")
    lock = phases.get("lock")
    if lock and "wait" in lock:
        w, f, a = lock["wait"], lock["fail"], lock.get("after", {})
        lines += [
            f"**A reader holding the warehouse** (baseline ingest {lock['baseline_s']} s): a "
            f"{w.get('hold_s')} s read-only reader: run rc {w.get('rc')} in {w.get('seconds')} s "
            f"(about {(w.get('seconds') or 0) - lock['baseline_s']:.1f} s more than the "
            f"baseline; {w.get('wait_messages')} \"waiting for the warehouse\" messages naming "
            f"the holder); a 20 s reader with FORECAST_LOCK_WAIT_SECONDS=2: rc {f.get('rc')} in "
            f"{f.get('seconds')} s, names the reader's PID: {f.get('names_pid')} "
            f"(\"{md_cell(f.get('failure_message', ''), 300)}\"); after the reader left: rc "
            f"{a.get('rc')}, {a.get('unbalanced_partitions')} unbalanced partitions.", ""]
    serve = phases.get("serve")
    if serve and serve.get("probes"):
        lines += [f"**Service probes** (real `bentoml serve` on 127.0.0.1, bundle built in "
                  f"{serve['bundle_s']} s, ready in {serve.get('server_ready_s')} s; "
                  f"FORECAST_MAX_BATCH={MAX_BATCH}; server alive afterwards: "
                  f"{serve.get('alive_after')}):", "",
                  "| probe | sent bytes | status | answer bytes | s | names the field / limit "
                  "|", "|---|---:|---|---:|---:|---|"]
        for p in serve["probes"]:
            clear = {True: "yes", False: "**no**", None: "-"}[p.get("clear")]
            lines.append(f"| {p['name']} | {p['sent_bytes']:,} | {p['status']} | "
                         f"{p['bytes']:,} | {p['seconds']} | {clear} |")
        odd = [f"{p['name']} got {p['status']} ({md_cell(p['answer'], 100)})"
               for p in serve["probes"] if p.get("expected") is False]
        lines += ["", "Statuses other than the fault's expected one (not a goal): "
                  + ("; ".join(odd) if odd else "none") + ".", ""]
        lines.append("")
    misses = tally.unclear + tally.hangs + tally.server_errors + tally.problems
    if misses:
        lines += ["Missed or noted:", "", *[f"- {md_cell(m, 400)}" for m in misses], ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    keep = args.keep is not None
    root = Path(args.keep) if keep else Path(tempfile.mkdtemp(prefix="faults-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    phases: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    started = time.monotonic()
    steps = {"files": phase_files, "kill": phase_kill, "lock": phase_lock,
             "serve": phase_serve}
    try:
        for name in args.phases:
            t0 = time.monotonic()
            print(f"-- phase {name} ...", flush=True)
            try:
                phases[name] = steps[name](root, args, tally)
            except Exception as exc:  # a phase that breaks is a finding, not the end
                tally.problems.append(f"phase {name} raised {type(exc).__name__}: "
                                      f"{str(exc)[:500]}")
                phases[name] = None
            seconds[name] = round(time.monotonic() - t0, 1)
            print(f"-- phase {name}: {seconds[name]} s", flush=True)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    files = phases.get("files") or {}
    kills = phases.get("kill") or []
    lock = phases.get("lock") or {}
    figures = {
        "probes": tally.probes,
        "rows_lost": files.get("rows_lost", 0),
        "good_rows_not_validated": files.get("good_rows_not_validated", 0),
        "unclear_errors": len(tally.unclear),
        "hangs": len(tally.hangs),
        "server_errors": len(tally.server_errors),
        "max_error_bytes": tally.max_error_bytes,
        "recovered_after_kill": all(p["recovered"] for p in kills) if kills else None,
        "kill_recovery_s": [p["recovery_s"] for p in kills],
        "lock_wait_run_s": (lock.get("wait") or {}).get("seconds"),
        "lock_baseline_s": lock.get("baseline_s"),
        "lock_fail_names_pid": (lock.get("fail") or {}).get("names_pid"),
        "problems": len(tally.problems),
        "phase_seconds": seconds,
        "seconds": round(time.monotonic() - started, 1),
    }
    command = ("python benchmarks/faults.py " + " ".join(sys.argv[1:])).strip()
    text = report(args, command, figures, phases, tally)
    print(text)
    if not args.no_append:
        append_section(text)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", default="files,kill,lock,serve",
                        help="comma-separated subset of files,kill,lock,serve")
    parser.add_argument("--kill-points",
                        default="1.5,4,raw_sales+0.3,validate_sales+0.5,sales_features+0.3",
                        help="when to kill each ingest: seconds after its start, or STEP+SECONDS "
                             "after the run started that step")
    parser.add_argument("--recovery-timeout", type=float, default=600.0)
    parser.add_argument("--run-timeout", type=float, default=300.0,
                        help="bound of every other ingest run")
    parser.add_argument("--reader-hold", type=float, default=8.0)
    parser.add_argument("--http-timeout", type=float, default=30.0)
    parser.add_argument("--server-ready-timeout", type=float, default=180.0)
    parser.add_argument("--keep", help="work in this directory and keep it (debugging)")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - {"files", "kill", "lock", "serve"}
    if unknown or not args.phases:
        parser.error(f"--phases: unknown {sorted(unknown)}; use files,kill,lock,serve")
    points = []
    for item in (p.strip() for p in args.kill_points.split(",") if p.strip()):
        step, _, seconds = item.rpartition("+")
        try:
            delay = float(seconds)
        except ValueError:
            parser.error(f"--kill-points: {item!r} is not SECONDS or STEP+SECONDS")
        if not 0 <= delay <= 600:
            parser.error("--kill-points: delays must be in [0, 600] seconds")
        label = f"{step} started + {delay:g} s" if step else f"{delay:g} s after start"
        points.append((label, step or None, delay))
    args.kill_points = points
    for name in ("recovery_timeout", "run_timeout", "http_timeout", "server_ready_timeout"):
        if not 0 < getattr(args, name) <= 3600:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 3600] seconds")
    figures = run(args)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
