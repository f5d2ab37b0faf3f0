"""Alerts raised outside a run wait in a spool file until a run records them in DuckDB.

Sensors run in the daemon, beside runs that hold the warehouse open for writing; DuckDB allows
one writing process, so a sensor that opened it could fail a run (or fail itself). A sensor
therefore POSTs the webhook itself (that needs no warehouse), appends the alert to a JSON-lines
spool under the data directory, and requests a small run of the ``alerts`` asset, which goes
through the ``duckdb`` pool like every other writer and moves the spool into the table.

Draining renames the spool first, so alerts appended while a drain runs land in a new file
and are never lost or recorded twice.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import duckdb

from forecast_platform.monitoring.alerts import Alert, record_alert
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.store import table_exists

SPOOL = "spool.jsonl"


def alert_from_dict(data: dict[str, Any]) -> Alert:
    created = dt.datetime.fromisoformat(str(data["created_at"]).replace("Z", "+00:00"))
    return Alert(kind=data["kind"], severity=data["severity"], title=data["title"],
                 details=data.get("details") or {}, created_at=created,
                 run_id=data.get("run_id"), asset_key=data.get("asset_key"),
                 partition_key=data.get("partition_key"), alert_id=data["alert_id"])


def spool_alert(directory: Path, alert: Alert, webhook_delivered: bool | None) -> Path:
    """Append the alert (and whether the webhook took it) to the spool; one line, one write."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SPOOL
    line = json.dumps({**alert.to_dict(), "webhook_delivered": webhook_delivered}, default=str)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    return path


def drain_spool(con: duckdb.DuckDBPyConnection, directory: Path) -> list[Alert]:
    """Record every spooled alert in the ``alerts`` table (skipping ids already there) and
    delete the spool files it read. A line that is not a valid alert stops the drain with the
    file and line named, and the file is kept for a person to fix."""
    if not directory.exists():
        return []
    live = directory / SPOOL
    if live.exists():
        live.rename(directory / f"draining-{uuid.uuid4().hex}.jsonl")
    recorded: list[Alert] = []
    known = {row[0] for row in con.execute(f"SELECT alert_id FROM {tables.ALERTS}").fetchall()} \
        if table_exists(con, tables.ALERTS) else set()
    for path in sorted(directory.glob("draining-*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                alert = alert_from_dict(data)
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path} line {number} is not a spooled alert: {err}") from err
            if alert.alert_id not in known:
                record_alert(con, alert, data.get("webhook_delivered"))
                known.add(alert.alert_id)
                recorded.append(alert)
        path.unlink()
    return recorded
