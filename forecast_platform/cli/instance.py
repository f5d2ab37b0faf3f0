"""The Dagster home the CLI uses: created on demand, always with the project's dagster.yaml.

The project's dagster.yaml names its storage folder ``{env: DAGSTER_HOME}`` so that ``dagster
dev`` started by hand works. The copy in a Dagster home has that home's path written in, so the
CLI opens the instance from the folder itself (``DagsterInstance.from_config``) and never needs
``DAGSTER_HOME`` in its own environment; ``dagster dev`` gets the variable from ``child_env``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from forecast_platform.settings import Settings

if TYPE_CHECKING:
    import dagster as dg

PROJECT_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
HOME_VARIABLE = "DAGSTER_HOME"

# Used when the package is installed without its source tree (no dagster.yaml beside it);
# a test keeps it equal to the project's dagster.yaml.
FALLBACK_CONFIG = {
    "event_log_storage": {
        "module": "forecast_platform.defs.instance_storage",
        "class": "TunedSqliteEventLogStorage",
        "config": {"base_dir": {"env": "DAGSTER_HOME"}, "synchronous": "NORMAL",
                   "connections": "pooled"},
    },
    "concurrency": {"pools": {"default_limit": 1}},
    "run_monitoring": {"enabled": True, "start_timeout_seconds": 180,
                       "cancel_timeout_seconds": 60, "max_resume_run_attempts": 0,
                       "poll_interval_seconds": 10, "free_slots_after_run_end_seconds": 10},
    "telemetry": {"enabled": False},
}

HEADER = ("# Written by forecast-platform from the project's dagster.yaml, with this Dagster "
          "home's\n# path in place of {env: DAGSTER_HOME}. Edit the project's file, not this "
          "one: it is\n# rewritten whenever they differ.\n")


def with_home(value: Any, home: Path) -> Any:
    """``value`` with every ``{env: DAGSTER_HOME}`` replaced by the path of ``home``."""
    if isinstance(value, dict):
        if value == {"env": HOME_VARIABLE}:
            return str(home)
        return {k: with_home(v, home) for k, v in value.items()}
    if isinstance(value, list):
        return [with_home(v, home) for v in value]
    return value


def instance_config(home: Path) -> dict:
    """The instance configuration for the Dagster home ``home``: the project's dagster.yaml (or
    FALLBACK_CONFIG without a source tree) with ``home`` written in."""
    config = yaml.safe_load(PROJECT_YAML.read_text()) if PROJECT_YAML.is_file() \
        else FALLBACK_CONFIG
    return with_home(config, home)


def ensure_dagster_home(settings: Settings) -> Path:
    """Create the Dagster home with our dagster.yaml (concrete paths); return the home."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    text = HEADER + yaml.safe_dump(instance_config(home), sort_keys=False)
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
    return home


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent Dagster instance of ``settings``' Dagster home (created if needed), opened
    from the folder, not from ``DAGSTER_HOME``. Use it as a context manager."""
    import dagster as dg

    return dg.DagsterInstance.from_config(str(ensure_dagster_home(settings)))
