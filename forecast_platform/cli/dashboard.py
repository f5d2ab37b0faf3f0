"""``forecast-platform dashboard``: the planner's Streamlit app on 127.0.0.1.

The app reads the published snapshot under ``<data dir>/dashboard`` (never the warehouse), so
it runs beside any run of the graph. It is started like ``ui`` starts ``dagster dev``: in its
own process group, with the settings passed as variables (``child_env``), and stopped as a
whole on Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from forecast_platform.settings import child_env

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
DEFAULT_PORT = 8501


def dashboard_command(host: str, port: int) -> list[str]:
    """``streamlit run`` of the app with this interpreter: headless (no browser opened), no
    usage statistics, no file watcher (the app's code does not change under a planner).

    No "magic" either: the pages write everything explicitly, and magic parses each page
    with ``ast.parse``, which on Python 3.11 can fail with "AST constructor recursion depth
    mismatch" when two threads (two sessions' first renders) parse at once."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer",
            "--runner.magicEnabled", "false"]


def cmd_dashboard(args: argparse.Namespace) -> int:
    from forecast_platform.cli.runs import configure
    from forecast_platform.cli.ui import run_process_group
    from forecast_platform.dashboard.snapshot import MAKE_ONE, SnapshotError, current

    settings = configure(args)
    if args.service_url:
        settings = dataclasses.replace(settings, service_url=args.service_url.rstrip("/"))
    try:
        snap = current(settings.dashboard_dir)
    except SnapshotError as err:
        print(f"warning: {err}", file=sys.stderr)
        snap = None
    if snap is None:
        print(f"No dashboard snapshot in {settings.dashboard_dir} yet: make one with {MAKE_ONE}. "
              "The app starts anyway and says so.", flush=True)
    else:
        print(f"Snapshot of run {snap.run_id[:8]} ({snap.created_at:%Y-%m-%d %H:%M} UTC) in "
              f"{snap.path}", flush=True)
    print(f"Dashboard on http://{args.host}:{args.port} (Ctrl-C stops it); what-if pages call "
          f"the service at {settings.service_url}", flush=True)
    env = child_env(settings, {"DO_NOT_TRACK": "1", "STREAMLIT_BROWSER_GATHER_USAGE_STATS":
                               "false"})
    return run_process_group(dashboard_command(args.host, args.port), cwd=settings.data_dir,
                             env=env)


def add_dashboard_parser(sub, common) -> None:
    """The ``dashboard`` sub-command (registered by cli/parser.py)."""
    p = sub.add_parser("dashboard", help="the planner's web dashboard (Streamlit) on the "
                       "newest published snapshot; never opens the warehouse")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"default {DEFAULT_PORT}")
    p.add_argument("--service-url", help="the forecasting service the what-if page calls "
                                         "(FORECAST_SERVICE_URL, default http://127.0.0.1:3001)")
    p.set_defaults(func=cmd_dashboard)
