"""The model registry in DuckDB: every trained model is a versioned row, bytes included.

The warehouse is the system of record: MLflow mirrors the versions and aliases for people, but
serving and the gate read this table, so a model is never lost with an MLflow store.
Status moves challenger -> champion (promoted) or challenger -> rejected; a champion that is
replaced becomes retired. Only one champion per model name, enforced in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb

from forecast_platform.warehouse.store import table_exists
from forecast_platform.warehouse.tables import REGISTRY

DDL = f"""
CREATE TABLE IF NOT EXISTS {REGISTRY} (
    model_name VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    horizon INTEGER,
    train_start DATE,
    train_end DATE,
    features VARCHAR,
    params VARCHAR,
    metrics VARCHAR,
    gate VARCHAR,
    mlflow_run_id VARCHAR,
    mlflow_model_version VARCHAR,
    dagster_run_id VARCHAR,
    trigger VARCHAR,
    model_bytes BLOB,
    PRIMARY KEY (model_name, version)
)
"""


@dataclass(frozen=True)
class ModelRecord:
    model_name: str
    version: int
    status: str
    created_at: dt.datetime
    horizon: int
    train_start: dt.date
    train_end: dt.date
    features: list[str]
    params: dict
    metrics: dict
    gate: dict
    mlflow_run_id: str | None
    mlflow_model_version: str | None
    dagster_run_id: str | None
    trigger: str | None
    model_bytes: bytes


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def register(con: duckdb.DuckDBPyConnection, *, model_name: str, horizon: int,
             train_start: dt.date, train_end: dt.date, features: list[str], params: dict,
             metrics: dict, model_bytes: bytes, mlflow_run_id: str | None = None,
             mlflow_model_version: str | None = None, dagster_run_id: str | None = None,
             trigger: str | None = None) -> int:
    """Add a challenger row; returns its version (1, 2, ...)."""
    ensure(con)
    version = con.execute(
        f"SELECT coalesce(max(version), 0) + 1 FROM {REGISTRY} WHERE model_name = ?", [model_name]
    ).fetchone()[0]
    con.execute(
        f"INSERT INTO {REGISTRY} VALUES "
        "(?, ?, 'challenger', ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
        [model_name, version, dt.datetime.now(), horizon, train_start, train_end,
         json.dumps(features), json.dumps(params), json.dumps(metrics), mlflow_run_id,
         mlflow_model_version, dagster_run_id, trigger, model_bytes],
    )
    return int(version)


def _record(row: tuple, columns: list[str]) -> ModelRecord:
    data = dict(zip(columns, row, strict=True))
    for key in ("features", "params", "metrics", "gate"):
        data[key] = json.loads(data[key]) if data[key] else ({} if key != "features" else [])
    data["model_bytes"] = bytes(data["model_bytes"]) if data["model_bytes"] is not None else b""
    return ModelRecord(**data)


def get(con: duckdb.DuckDBPyConnection, model_name: str, version: int | None = None,
        status: str | None = None) -> ModelRecord | None:
    """A version, or the newest row with a status, or None (also on a read-only connection)."""
    if not table_exists(con, REGISTRY):
        return None
    where, params = "model_name = ?", [model_name]
    if version is not None:
        where += " AND version = ?"
        params.append(version)
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    cur = con.execute(f"SELECT * FROM {REGISTRY} WHERE {where} ORDER BY version DESC LIMIT 1",
                      params)
    # fetchall, not fetchone: DuckDB 2.0 keeps a half-read result open, and the connection's
    # next register() then fails with "unfinished result".
    rows = cur.fetchall()
    return _record(rows[0], [d[0] for d in cur.description]) if rows else None


def champion(con: duckdb.DuckDBPyConnection, model_name: str) -> ModelRecord | None:
    return get(con, model_name, status="champion")


def decide(con: duckdb.DuckDBPyConnection, model_name: str, version: int, promote: bool,
           gate: dict) -> None:
    """Record the gate's verdict; on promotion retire the old champion in the same transaction."""
    ensure(con)
    con.execute("BEGIN TRANSACTION")
    try:
        if promote:
            con.execute(f"UPDATE {REGISTRY} SET status = 'retired' WHERE model_name = ? "
                        "AND status = 'champion'", [model_name])
        con.execute(f"UPDATE {REGISTRY} SET status = ?, gate = ? "
                    "WHERE model_name = ? AND version = ?",
                    ["champion" if promote else "rejected", json.dumps(gate), model_name, version])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def history(con: duckdb.DuckDBPyConnection, model_name: str):
    """Every version without the bytes: what the UI and the CLI show."""
    if not table_exists(con, REGISTRY):
        ensure(con)
    return con.execute(
        f"SELECT version, status, created_at, train_start, train_end, trigger, mlflow_run_id, "
        f"metrics, gate FROM {REGISTRY} WHERE model_name = ? ORDER BY version", [model_name]
    ).df()
