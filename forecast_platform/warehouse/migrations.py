"""Schema steps that keep an existing data directory working after a column is renamed or
added in the code.

Each step is idempotent: it looks at the warehouse's columns and does nothing when its change is
already there (or its table does not exist yet). ``migrate`` runs them all on a writable
connection; ``open_warehouse`` calls it on every writable connect, so it reads the catalogue once
(one ``information_schema`` query) and writes only when a step applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from forecast_platform.warehouse import tables

logger = logging.getLogger(__name__)

# table -> its columns, as information_schema lists them for the main schema.
Columns = dict[str, set[str]]


@dataclass(frozen=True)
class RenameColumn:
    """``ALTER TABLE table RENAME old TO new`` when the table has ``old`` and not ``new``."""

    table: str
    old: str
    new: str

    @property
    def name(self) -> str:
        return f"{self.table}: rename {self.old} -> {self.new}"

    def applies(self, columns: Columns) -> bool:
        have = columns.get(self.table, set())
        return self.old in have and self.new not in have

    def apply(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"ALTER TABLE {_quote(self.table)} "
                    f"RENAME COLUMN {_quote(self.old)} TO {_quote(self.new)}")


@dataclass(frozen=True)
class AddColumn:
    """``ALTER TABLE table ADD COLUMN column type DEFAULT default`` when the table lacks it:
    rows written before the column existed read the default."""

    table: str
    column: str
    type_and_default: str

    @property
    def name(self) -> str:
        return f"{self.table}: add {self.column}"

    def applies(self, columns: Columns) -> bool:
        have = columns.get(self.table)
        return have is not None and self.column not in have

    def apply(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"ALTER TABLE {_quote(self.table)} "
                    f"ADD COLUMN {_quote(self.column)} {self.type_and_default}")


Step = RenameColumn | AddColumn

# "One vocabulary for versions": what the forecaster produced or is judged on says
# forecaster_version (was model_version). Closed days are kept as forecast rows with
# is_open false (rows written before were all open); the prediction log says it per value
# (unknown, NULL, for lines served before).
STEPS: tuple[Step, ...] = (
    *(RenameColumn(table, "model_version", "forecaster_version")
      for table in (tables.FORECASTS, tables.EXPLANATIONS, tables.DRIFT_SUMMARY,
                    tables.DRIFT_COLUMNS, tables.PERFORMANCE, tables.PREDICTION_LOG)),
    AddColumn(tables.FORECASTS, "is_open", "BOOLEAN DEFAULT true"),
    AddColumn(tables.PREDICTION_LOG, "is_open", "BOOLEAN"),
)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def columns(con: duckdb.DuckDBPyConnection, names: set[str]) -> Columns:
    """The columns of the tables ``names`` in the connection's main schema, in one query."""
    found: Columns = {}
    if not names:
        return found
    rows = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_catalog = current_database() "
        "AND table_name IN (SELECT unnest(?))", [sorted(names)]).fetchall()
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


def migrate(con: duckdb.DuckDBPyConnection, steps: tuple[Step, ...] = STEPS,
            log: Callable[[str], None] | None = None) -> list[str]:
    """Apply the steps that are due on a writable connection; return their names.

    All due steps run in one transaction: a failure leaves the warehouse as it was, and the next
    connect tries again.
    """
    found = columns(con, {step.table for step in steps})
    due = [step for step in steps if step.applies(found)]
    if not due:
        return []
    con.execute("BEGIN TRANSACTION")
    try:
        for step in due:
            step.apply(con)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    for step in due:
        (log or logger.info)(f"warehouse migrated: {step.name}")
    return [step.name for step in due]
