"""Alerts: a row in DuckDB, a log line, and a Slack-compatible webhook POST.

Every alert (drift, degradation, a failed check, a failed run) is first of all data: a row in the
warehouse's ``alerts`` table that the UI, the CLI and tests can query. The webhook is a courtesy
on top: it uses only the standard library (no new dependency), has a short timeout, and never
raises. A monitoring pipeline that fails because Slack is down would turn one problem into two.

The payload is what a Slack incoming webhook accepts (``text`` as the fallback and notification
line, ``blocks`` for the message), plus the alert itself under ``forecast_platform`` for
receivers that are not Slack (a generic JSON consumer reads that key and ignores the rest).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import duckdb

from forecast_platform.warehouse import tables

ALERT_KINDS = ("drift", "degradation", "failed_check", "failed_run")
SEVERITIES = ("info", "warning", "critical")

_LOG = logging.getLogger(__name__)

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {tables.ALERTS} (
    alert_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,  -- UTC
    kind VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    title VARCHAR NOT NULL,
    details JSON,
    run_id VARCHAR,
    asset_key VARCHAR,
    partition_key VARCHAR,
    webhook_delivered BOOLEAN  -- NULL: no webhook configured
)
"""

_SLACK_HEADER_MAX = 150  # Slack's limit for a header block's plain text
_SLACK_SECTION_MAX = 3000  # and for a section's text


class _Logger(Protocol):
    """Both ``logging.Logger`` and Dagster's ``context.log`` fit."""

    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...
    def error(self, msg: str, *args: Any) -> Any: ...


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Alert:
    """One thing a person should know about, with the ids to find where it came from.

    ``details`` must be JSON-serializable (numbers, strings, lists, dicts): it goes into the
    table's JSON column and the webhook as is. ``created_at`` is UTC.
    """

    kind: str
    severity: str
    title: str
    details: dict[str, Any] = field(default_factory=dict)
    created_at: dt.datetime = field(default_factory=_utc_now)
    run_id: str | None = None
    asset_key: str | None = None
    partition_key: str | None = None
    alert_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert kind must be one of {ALERT_KINDS}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware (UTC), not naive")

    @property
    def created_utc(self) -> dt.datetime:
        """``created_at`` in UTC without tzinfo: what a DuckDB TIMESTAMP column stores."""
        return self.created_at.astimezone(dt.UTC).replace(tzinfo=None)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.astimezone(dt.UTC).isoformat().replace(
            "+00:00", "Z")
        return out

    def summary_line(self) -> str:
        where = " ".join(f"{k}={v}" for k, v in (("asset", self.asset_key),
                                                 ("partition", self.partition_key),
                                                 ("run", self.run_id)) if v)
        return f"[{self.severity.upper()}] {self.kind}: {self.title}" + (f" ({where})"
                                                                            if where else "")


def record_alert(
    con: duckdb.DuckDBPyConnection, alert: Alert, webhook_delivered: bool | None = None
) -> None:
    """Append the alert to the ``alerts`` table, creating the table on first use."""
    con.execute(_CREATE)
    con.execute(
        f"INSERT INTO {tables.ALERTS} (alert_id, created_at, kind, severity, title, details, "
        "run_id, asset_key, partition_key, webhook_delivered) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [alert.alert_id, alert.created_utc, alert.kind, alert.severity, alert.title,
         json.dumps(alert.details, default=str), alert.run_id, alert.asset_key,
         alert.partition_key, webhook_delivered],
    )


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack incoming-webhook message (``text`` + ``blocks``) plus the alert as data."""
    detail_lines = [f"*{k}*: {json.dumps(v, default=str) if not isinstance(v, str) else v}"
                    for k, v in alert.details.items()]
    context = [f"kind: {alert.kind}", f"severity: {alert.severity}"]
    context += [f"{name}: {value}" for name, value in (("asset", alert.asset_key),
                                                        ("partition", alert.partition_key),
                                                        ("run", alert.run_id)) if value]
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _truncate(alert.title, _SLACK_HEADER_MAX)}},
    ]
    if detail_lines:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": _truncate("\n".join(detail_lines), _SLACK_SECTION_MAX)}})
    blocks.append({"type": "context",
                   "elements": [{"type": "mrkdwn", "text": _truncate(" · ".join(context),
                                                                      _SLACK_SECTION_MAX)}]})
    return {"text": alert.summary_line(), "blocks": blocks, "forecast_platform": alert.to_dict()}


def post_webhook(url: str, alert: Alert, timeout: float = 3.0,
                 log: _Logger | None = None) -> bool:
    """POST the alert as JSON; True on a 2xx answer. Never raises: failures are logged.

    Only http(s) URLs are accepted (``urllib`` would also open ``file://``).
    """
    log = log or _LOG
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        log.warning(f"alert webhook not sent: URL scheme {scheme!r} is not http(s)")
        return False
    body = json.dumps(slack_payload(alert), default=str).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "forecast-platform-alerts"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # a non-2xx answer
        log.warning(f"alert webhook answered HTTP {exc.code} for alert {alert.alert_id}")
        return False
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        log.warning(f"alert webhook failed for alert {alert.alert_id}: {exc}")
        return False
    if not 200 <= status < 300:
        log.warning(f"alert webhook answered HTTP {status} for alert {alert.alert_id}")
        return False
    return True


def raise_alert(
    con: duckdb.DuckDBPyConnection,
    alert: Alert,
    webhook_url: str | None = None,
    log: _Logger | None = None,
    timeout: float = 3.0,
) -> bool | None:
    """Log the alert, POST it when a webhook is configured, and record it with the outcome.

    Returns whether the webhook took it (None when there is no webhook). The POST goes first so
    the row says whether it was delivered; it is bounded by ``timeout``, and a failed POST never
    stops the row from being written.
    """
    log = log or _LOG
    line = alert.summary_line()
    if alert.severity == "critical":
        log.error(line)
    elif alert.severity == "warning":
        log.warning(line)
    else:
        log.info(line)
    delivered = post_webhook(webhook_url, alert, timeout, log) if webhook_url else None
    record_alert(con, alert, delivered)
    return delivered
