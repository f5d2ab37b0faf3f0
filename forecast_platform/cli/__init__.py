"""The ``forecast-platform`` command: land data, run the graph, open the UI.

``parser`` (arguments and ``main``), ``runs`` (settings from flags, landing, runs on the
persistent instance), ``summary`` (what a run prints at its end), ``commands`` (demo, land,
serve, init-dataset, query), ``simulate_drift``, ``ui`` (``dagster dev`` in its own process
group), ``recovery`` (dead runs marked failed and their pool slots freed, waiting for the
warehouse pool, SIGINT/SIGTERM) and ``instance`` (the Dagster home).
"""

from __future__ import annotations

from forecast_platform.cli.parser import build_parser, main
from forecast_platform.cli.runs import configure, land, run_range, scoring_range
from forecast_platform.cli.summary import summarize

__all__ = ["build_parser", "configure", "land", "main", "run_range", "scoring_range",
           "summarize"]
