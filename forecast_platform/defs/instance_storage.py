"""Dagster's consolidated SQLite event log, tuned for single-run backfills.

A single-run backfill writes events for every partition of every asset (materializations,
planned events, check evaluations): thousands of small write transactions. Dagster's
``ConsolidatedSqliteEventLogStorage`` (WAL mode, SQLite's default ``synchronous=FULL``) builds a
new engine and opens a new connection for every transaction and closes it afterwards. Closing the
last connection to a WAL database checkpoints the WAL into the main file and deletes it (fsyncs),
and every commit fsyncs the WAL: ~10-30 ms per event on this machine's disk. This subclass keeps
Dagster's file, schema and queries and changes only how connections are made:

* ``connections: pooled`` (default): one SQLAlchemy engine with a small connection pool
  (QueuePool), so connections are reused instead of opened, schema-parsed and checkpointed per
  transaction. Each connection is used by one thread at a time (the pool hands it out); nothing
  is shared across processes (each Dagster process builds its own instance and engine; the run
  launcher and the multiprocess executor start new interpreters, not forks of this one).
  ``keep_one_open`` (per-transaction connections, plus one idle connection so the WAL is not
  checkpointed on every close) and ``per_transaction`` (Dagster's behaviour, engine reused) are
  kept for benchmarks/backfill.py's comparison.
* ``synchronous: NORMAL`` (default) on every connection. In WAL mode, NORMAL fsyncs at
  checkpoints instead of at every commit: a power loss or OS crash can lose the last committed
  events before it (the run in progress), but cannot corrupt the database; a crash of the Python
  process loses nothing. ``FULL`` is Dagster's behaviour. ``OFF`` is for measurements only (an OS
  crash at the wrong moment can corrupt the file).
* makes sure the database is in WAL mode: readers (``dagster dev``'s webserver and daemon) and
  the writer never block each other.
* the UI's live run logs: Dagster's SQLite storage notices new events by watching event_log.db for
  file modifications; with connections kept open commits land in event_log.db-wal and the main
  file changes only at checkpoints, so ``watch`` polls the table instead (Dagster's own
  ``SqlPollingEventWatcher``, which its MySQL storage uses).

Switching back to ``ConsolidatedSqliteEventLogStorage`` in dagster.yaml needs no migration.
Measurements: docs/benchmarks.md (``python benchmarks/backfill.py --floor-variants``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster import Field, StringSource
from dagster._config import Enum, EnumValue
from dagster._core.storage.event_log import (
    ConsolidatedSqliteEventLogStorage,
    SqlPollingEventWatcher,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy.pool import NullPool, QueuePool

SYNCHRONOUS_MODES = ("NORMAL", "FULL", "OFF")
CONNECTION_MODES = ("per_transaction", "keep_one_open", "pooled")


class TunedSqliteEventLogStorage(ConsolidatedSqliteEventLogStorage):
    """``ConsolidatedSqliteEventLogStorage`` with reused connections and ``synchronous=NORMAL``."""

    def __init__(self, base_dir: str, synchronous: str = "NORMAL",
                 connections: str = "pooled",
                 inst_data: ConfigurableClassData | None = None):
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        if connections not in CONNECTION_MODES:
            raise ValueError(f"connections must be one of {CONNECTION_MODES}, not {connections!r}")
        self._synchronous = synchronous.upper()
        self._connections = connections
        self._anchor = None
        self._event_watcher: SqlPollingEventWatcher | None = None
        self._engine_lock = threading.Lock()
        self._engine: db.engine.Engine | None = None
        super().__init__(base_dir, inst_data=inst_data)
        with self._get_engine().connect() as conn:
            # Persistent in the file; Dagster's _init_db sets it too, but only for new databases.
            conn.execute(db.text("PRAGMA journal_mode=WAL"))

    @classmethod
    def config_type(cls):
        return {
            "base_dir": StringSource,
            "synchronous": Field(
                Enum("SqliteSynchronous", [EnumValue(m) for m in SYNCHRONOUS_MODES]),
                is_required=False, default_value="NORMAL",
                description="SQLite PRAGMA synchronous for event-log connections (WAL mode).",
            ),
            "connections": Field(str, is_required=False, default_value="pooled"),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData,
                          config_value: Mapping[str, Any]) -> TunedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _get_engine(self) -> db.engine.Engine:
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    if self._connections == "pooled":
                        engine = create_engine(
                            self._conn_string, poolclass=QueuePool,
                            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                                          "check_same_thread": False},
                        )
                    else:
                        engine = create_engine(
                            self._conn_string,
                            poolclass=NullPool,
                            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                        )
                    pragma = f"PRAGMA synchronous={self._synchronous}"

                    @db.event.listens_for(engine, "connect")
                    def _set_pragmas(dbapi_connection, _record):
                        cursor = dbapi_connection.cursor()
                        cursor.execute(pragma)
                        cursor.close()

                    self._engine = engine
                    if self._connections == "keep_one_open":
                        self._anchor = engine.raw_connection()
        return self._engine

    @contextmanager
    def _connect(self):
        with self._get_engine().connect() as conn, conn.begin():
            yield conn

    def has_table(self, table_name: str) -> bool:
        engine = self._get_engine()
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    # Dagster's SQLite storage learns of new events (the UI's live run logs) by watching
    # event_log.db for modifications. In WAL mode with connections kept open, commits go to
    # event_log.db-wal and the main file changes only at checkpoints, so poll the table instead,
    # as Dagster's MySQL storage does.
    def watch(self, run_id, cursor, callback):
        if self._event_watcher is None:
            self._event_watcher = SqlPollingEventWatcher(self)
        self._event_watcher.watch_run(run_id, cursor, callback)

    def end_watch(self, run_id, handler):
        if self._event_watcher is not None:
            self._event_watcher.unwatch_run(run_id, handler)

    def dispose(self):
        if self._event_watcher is not None:
            self._event_watcher.close()
            self._event_watcher = None
        super().dispose()
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None
        self._event_watcher: SqlPollingEventWatcher | None = None
        if self._engine is not None:
            self._engine.dispose()
