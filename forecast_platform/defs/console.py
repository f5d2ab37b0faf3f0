"""The console logger of the CLI's runs: a run's warnings and errors, one line each.

Dagster's own console logger prints an event's whole message, and a failed step's message is
its stack trace, also when the failure is an answer: a blocking check (``champion_gate``) that
refused a model. The CLI prints its summary at the end of every command, with each failed check's
verdict and each failed step's first line, so the run's failures are not printed twice here and
never as a stack trace; the whole error stays in the run's event log (the Dagster UI). Warnings
and other errors keep their first line, with the step they came from.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg
from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata

# Reported by the command's summary (cli/summary.py), not here.
SUMMARIZED_EVENTS = frozenset({dg.DagsterEventType.STEP_FAILURE.value,
                               dg.DagsterEventType.RUN_FAILURE.value})
# Dagster's "Dependencies for step X failed: [...]. Not executing.": the summary's tables say
# what was not built, and the failed step is named once.
SKIPPED_STEP = "Dependencies for step "


def _meta(record: logging.LogRecord) -> dict:
    return dict(get_log_record_metadata(record)) if has_log_record_metadata(record) else {}


def _shown(record: logging.LogRecord) -> bool:
    meta = _meta(record)
    event = meta.get("dagster_event")
    if event is not None and event.event_type_value in SUMMARIZED_EVENTS:
        return False
    return not str(meta.get("orig_message", "")).startswith(SKIPPED_STEP)


class OneLine(logging.Formatter):
    """``  warning: <step>: <first line>``."""

    def format(self, record: logging.LogRecord) -> str:
        meta = _meta(record)
        lines = str(meta.get("orig_message") or record.getMessage()).strip().splitlines()
        where = meta.get("step_key") or meta.get("job_name")
        return (f"  {record.levelname.lower()}: {f'{where}: ' if where else ''}"
                f"{lines[0] if lines else ''}")


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="WARNING"),
                   "name": dg.Field(str, is_required=False, default_value="forecast_platform")},
    description="A CLI run's warnings and errors, one line each, on stderr; failed steps and "
                "checks are left to the command's summary.",
)
def cli_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger(init_context.logger_config["name"],
                            level=logging.getLevelNamesMapping()[
                                init_context.logger_config["log_level"].upper()])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    handler.addFilter(_shown)
    logger.addHandler(handler)
    return logger
