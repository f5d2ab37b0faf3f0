"""The Dagster home the CLI uses: created on demand, always with the project's dagster.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from forecast_platform.settings import Settings

PROJECT_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"

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
    "telemetry": {"enabled": False},
}


def ensure_dagster_home(settings: Settings) -> Path:
    """Create the Dagster home with our dagster.yaml and point DAGSTER_HOME at it."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if PROJECT_YAML.is_file():
        if not target.exists() or target.read_bytes() != PROJECT_YAML.read_bytes():
            shutil.copyfile(PROJECT_YAML, target)
    elif not target.exists():
        target.write_text(yaml.safe_dump(FALLBACK_CONFIG, sort_keys=False))
    os.environ["DAGSTER_HOME"] = str(home)
    return home
