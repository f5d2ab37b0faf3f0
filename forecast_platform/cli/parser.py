"""The ``forecast-platform`` command line: its parser and entry point."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from forecast_platform.cli.commands import (
    cmd_demo,
    cmd_init_dataset,
    cmd_land,
    cmd_query,
    cmd_serve,
)
from forecast_platform.cli.dashboard import add_dashboard_parser
from forecast_platform.cli.plans import cmd_plan, cmd_what_if
from forecast_platform.cli.simulate_drift import cmd_simulate_drift
from forecast_platform.cli.ui import cmd_ui
from forecast_platform.datasets.spec import METRICS

DESCRIPTION = "The forecast-platform command: land data, run the graph, open the UI."


def quiet_known_warnings() -> None:
    """Hide warnings known to be harmless here, each by category, message and module, so that
    a command prints its progress and summary; any other warning still shows.

    - Dagster marks ``backfill_policy=`` of ``@asset`` beta: every partitioned asset uses it on
      purpose (single-run backfills, docs/architecture.md); the pinned Dagster is tested here.
    - dagster-mlflow's ``end_mlflow_on_run_finished`` hook is built with a beta helper when the
      library is imported; the hook is what ends the MLflow run of a train run.
    """
    from dagster_shared.utils.warnings import BetaWarning  # = dagster.BetaWarning, light import

    warnings.filterwarnings(
        "ignore", category=BetaWarning, module=r"dagster\._core\.decorator_utils",
        message=r"Parameter `backfill_policy` of function `asset` is currently in beta")
    warnings.filterwarnings(
        "ignore", category=BetaWarning, module=r"dagster_mlflow\.hooks",
        message=r"Function `_create_mlflow_run_hook` is currently in beta")
    # The MLflow resource is dagster-mlflow's ``MlFlow`` class, beta like its hook.
    warnings.filterwarnings(
        "ignore", category=BetaWarning, module=r"forecast_platform\.defs\.tracking",
        message=r"Class `MlFlow` is currently in beta")
    # MLflow logs at INFO that it creates / migrates its SQLite tables on first use.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


def _end_process_after_exit_handlers(code: list[int]) -> None:
    """End the process once the other exit handlers ran, without the interpreter's module
    teardown.

    Why: after a run, DuckDB's extension (nanobind) prints "nanobind: leaked N instances!" and
    a list of its own module-level objects (its SQL type constants, enums, methods) when the
    interpreter tears modules down in an order that frees DuckDB's module state before them.
    No connection, relation or result of ours is alive by then (every connection is closed by
    its ``with`` block; a ``gc.collect()`` before exit finds no DuckDB object but those module
    constants and does not stop the message): it is a shutdown-order report, not a leak, and
    only appears after some sequences of runs in one process (train, then monitor). Exit
    handlers registered after this one (MLflow's, Dagster's) have run when it runs (LIFO), and
    logging and the standard streams are flushed first.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code[0])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forecast-platform", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="where everything is written (FORECAST_DATA_DIR)")
        p.add_argument("--dataset", help="dataset name (FORECAST_DATASET, default synthetic)")
        p.add_argument("--source-dir", help="a real dataset's files (FORECAST_SOURCE_DIR)")

    for name, func, text in (("demo", cmd_demo, "land data if needed and run the whole graph"),
                             ("land", cmd_land, "only write landing files")):
        p = sub.add_parser(name, help=text)
        common(p)
        p.add_argument("--start", help="synthetic: first landed date (default 2015-01-01)")
        p.add_argument("--end", help="synthetic: last landed date (demo default 2017-11-30, "
                                     "leaving December for simulate-drift)")
        p.add_argument("--stores", type=int, default=10, help="synthetic: number of stores")
        p.add_argument("--items", type=int, default=50, help="synthetic: items per store")
        p.add_argument("--closures", action="store_true",
                       help="the generator with a retailer's calendar: dataset "
                            "synthetic_closures (Sunday and holiday closures, open days only, "
                            "store-wide promotions with a six-week plan)")
        p.set_defaults(func=func)
    p = sub.add_parser("simulate-drift", help="land drifted days after the demo and watch "
                       "drift detection start a retrain")
    common(p)
    p.add_argument("--days", type=int, default=28, help="drifted days to land (default 28)")
    p.set_defaults(func=cmd_simulate_drift)
    p = sub.add_parser("ui", help="start the Dagster UI (dagster dev) on this project; Ctrl-C "
                       "stops it with its daemon and code server")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("serve", help="serve the newest serving bundle over HTTP (bentoml serve)")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3001, help="default 3001 (the Dagster UI has 3000)")
    p.set_defaults(func=cmd_serve)
    add_dashboard_parser(sub, common)
    p = sub.add_parser("query", help="run one read-only SQL query on the warehouse and let "
                       "go of it at once (waits out a run's hold, as writers do)")
    common(p)
    p.add_argument("sql", help='e.g. "SELECT * FROM forecasts LIMIT 5"')
    p.add_argument("--max-rows", type=int, default=50, help="rows to print (default 50)")
    p.add_argument("--csv", help="write the whole result to this CSV file instead")
    p.set_defaults(func=cmd_query)
    p = sub.add_parser("plan", help="land a plan of known covariates (promotions) for future "
                       "dates; a newer plan for the same dates replaces the older one")
    common(p)
    p.add_argument("--csv", required=True, help="the plan: the dataset's date and key columns "
                   "and some of its known covariates, one row per future date and series")
    p.add_argument("--no-refresh", action="store_true",
                   help="only validate the plan; leave the forecasts to the plan sensor")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("what-if", help="print the plan's lift: forecast P50 totals per date with "
                       "the plan and with its covariates off, for a store or an item")
    common(p)
    p.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="keep the series whose key has this value (repeatable), e.g. store=3")
    p.set_defaults(func=cmd_what_if)
    p = sub.add_parser("init-dataset", help="map a CSV of your own onto a dataset spec (YAML "
                       "under <data dir>/datasets), so `demo --dataset NAME` runs on it")
    p.add_argument("--data-dir", help="where everything is written (FORECAST_DATA_DIR)")
    p.add_argument("--csv", required=True, help="the CSV file (one row per date and series)")
    p.add_argument("--name", required=True, help="the dataset's name (--dataset NAME later)")
    p.add_argument("--date", required=True, help="the date column")
    p.add_argument("--keys", required=True, help="the series key columns, comma-separated")
    p.add_argument("--target", required=True, help="the column to forecast")
    p.add_argument("--freq", choices=("D", "W"), help="D or W (default: guessed from the dates)")
    p.add_argument("--known", help="covariates known in advance (promotions), comma-separated")
    p.add_argument("--observed", help="covariates only observed (weather), comma-separated")
    p.add_argument("--static", help="attributes constant per series or per key (a store's type "
                                    "and size), comma-separated")
    p.add_argument("--holiday", help="a 0/1 column flagging holiday periods (known in advance; "
                                     "makes WMAE the default metric)")
    p.add_argument("--metric", choices=METRICS,
                   help="the metric of record the gate compares (default smape, wmae with "
                        "--holiday)")
    p.add_argument("--horizon", type=int, help="periods to forecast (default 28 daily, 13 "
                                               "weekly)")
    p.add_argument("--encoding", default="utf-8", choices=("utf-8", "cp1252"),
                   help="the text encoding of files that are not UTF-8 (Excel on Windows "
                        "writes cp1252); UTF-8 files are always read as UTF-8")
    p.add_argument("--closures", metavar="FILE",
                   help="a closures CSV declaring the days series are closed (columns date, "
                        "yearly, weekday, key columns, note) instead of inferring them from "
                        "the history; a declared closed day with sales is an error")
    p.add_argument("--open", metavar="COLUMN", dest="open_column",
                   help="a 0/1 column flagging open rows: closed rows (0, target 0 or empty) "
                        "become exact closure rules and are not landed as sales")
    p.add_argument("--plan", metavar="FILE",
                   help="a plan of known covariates for the dates after the history (as "
                        "`forecast-platform plan --csv`); validated when the sales are ingested")
    p.add_argument("--force", action="store_true", help="replace an existing spec of that name")
    p.set_defaults(func=cmd_init_dataset)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. With ``argv`` None (the process's own command line: the console script,
    ``python -m forecast_platform.cli``) the process also ends without module teardown once
    the exit handlers ran (see ``_end_process_after_exit_handlers``); called with a list (as
    tests do) nothing about the process changes."""
    args = build_parser().parse_args(argv)
    quiet_known_warnings()
    if argv is not None:
        return int(args.func(args))
    code = [1]
    atexit.register(_end_process_after_exit_handlers, code)
    try:
        code[0] = int(args.func(args))
    except SystemExit as stop:
        code[0] = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        raise
    except KeyboardInterrupt:
        # Ctrl-C outside a run (landing, the summary): one line, not a traceback. A run has
        # its own guard (cli/recovery.py) that cancels it and frees its pool slot.
        print("forecast-platform: interrupted", file=sys.stderr)
        code[0] = 130
    return code[0]


if __name__ == "__main__":
    sys.exit(main())
