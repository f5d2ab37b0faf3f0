"""Monitoring core: data drift (Evidently 0.7), forecast degradation and alerts.

Pure functions and dataclasses, no Dagster imports, so that assets, sensors, the CLI and the
benchmarks share one implementation and the tests need no Dagster instance. Evidently is
imported lazily inside ``drift_report`` (it is slow to import), so importing this package
keeps Dagster code loading fast.
"""

from forecast_platform.monitoring.alerts import (
    ALERT_KINDS,
    SEVERITIES,
    Alert,
    post_webhook,
    raise_alert,
    record_alert,
    slack_payload,
)
from forecast_platform.monitoring.drift import (
    DEFAULT_MAX_ROWS,
    DEFAULT_NUM_THRESHOLD,
    DriftSummary,
    drift_report,
    monitored_columns,
    performance_degradation,
    sample_rows,
    seasonal_reference,
)

__all__ = [
    "ALERT_KINDS",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_NUM_THRESHOLD",
    "SEVERITIES",
    "Alert",
    "DriftSummary",
    "drift_report",
    "monitored_columns",
    "performance_degradation",
    "post_webhook",
    "raise_alert",
    "record_alert",
    "sample_rows",
    "seasonal_reference",
    "slack_payload",
]
