"""Runs whose process is gone, waiting for the warehouse pool, and stopping on SIGINT / SIGTERM.

Every warehouse-writing asset is in Dagster's pool ``duckdb`` (limit 1). A slot is freed by the
process that claimed it; a process killed with ``kill -9`` (OOM kill, reboot) frees nothing, and
its run stays NOT_STARTED / STARTING / STARTED forever. So every CLI run, before it starts:

* **recovers dead runs** (``recover_dead_runs``): an in-flight run started by the CLI carries the
  tags ``forecast_platform/pid`` and ``forecast_platform/host``; when that process is gone on this
  host (or the PID now belongs to a process started after the run was created), the run is marked
  failed with the reason and its pool slots and pending claims are freed. A run launched by
  ``dagster dev`` carries only the host tag (set on every job); its run worker's PID is in its
  first engine event. Dagster's code server marks a dead worker's run failed within a second, so
  a run whose worker is gone and that nothing updated for ``DAEMON_GRACE_SECONDS`` lost its code
  server too (``dagster dev`` killed); it is recovered the same way. A daemon run that never
  started is failed after the instance's run-monitoring start timeout (the daemon's own rule, for
  when the daemon is gone). Slots still held by finished runs are freed.
* **waits for the warehouse** (``wait_for_warehouse``): while another run of this instance is in
  flight (every job writes the warehouse), it prints every ``WAIT_REPORT_SECONDS`` which run it
  waits for, and recovers that run if its process dies meanwhile.

``SignalGuard`` makes SIGINT and SIGTERM stop a waiting or running command within seconds.
Dagster swaps the signal handlers while a run executes (it raises in an op's body and only
records the signal elsewhere, e.g. while a step waits for a pool slot), so the guard also
watches the signal wake-up file descriptor from a thread: it marks the run CANCELING at once
(Dagster then ends it as CANCELED when the interrupted op unwinds, or as FAILURE "interrupted"
when its unwinding comes first) and, when the main thread has
not wound the run down within ``STOP_GRACE_SECONDS``, marks the run canceled, frees its slots and
ends the process itself. Every warehouse write is one transaction, so an interrupted write leaves
its partitions as they were.
"""

from __future__ import annotations

import datetime as dt
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forecast_platform.cli.instance import open_instance
from forecast_platform.defs.jobs import HOST_TAG
from forecast_platform.settings import Settings

if TYPE_CHECKING:
    import dagster as dg
    from dagster._core.storage.dagster_run import RunRecord

PID_TAG = "forecast_platform/pid"  # CLI runs; every run has HOST_TAG (defs/jobs.py)
POOL = "duckdb"
WAIT_REPORT_SECONDS = 5.0  # a waiting command says what it waits for this often
POLL_SECONDS = 1.0  # and looks again this often
STOP_GRACE_SECONDS = 3.0  # after a signal, the run's own unwinding gets this long
DAEMON_GRACE_SECONDS = 10.0  # a code server reports a dead run worker within ~0.5 s
PID_SLACK_SECONDS = 2.0  # clock granularity between a process's start time and a run's times

Echo = Callable[[str], None]


def echo_stdout(line: str) -> None:
    print(line, flush=True)


def this_host() -> str:
    return socket.gethostname()


def process_tags() -> dict[str, str]:
    """The tags that let a later command tell whether this run's process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: this_host()}


def process_alive(pid: int, since: float) -> bool:
    """Whether process ``pid`` runs and already ran at time ``since`` (a PID reused by a process
    started later, e.g. after a reboot, is not the same process). A zombie is dead."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return (proc.create_time() <= since + PID_SLACK_SECONDS
                and proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def clock(timestamp: float | None) -> str:
    if timestamp is None:
        return "?"
    return dt.datetime.fromtimestamp(timestamp).strftime("%H:%M:%S")


@dataclass(frozen=True)
class InFlight:
    """An in-flight run of the instance, as the CLI judges it."""

    run_id: str
    job_name: str
    status: str
    pid: int | None
    host: str | None
    by_cli: bool
    created: float
    started: float | None
    updated: float

    def describe(self) -> str:
        who = f"PID {self.pid}" if self.pid else "launched by dagster dev"
        if self.host and self.host != this_host():
            who += f" on {self.host}"
        return (f"{self.run_id[:8]} ({self.job_name}, {who}, "
                f"started {clock(self.started or self.created)})")


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int | None, float]:
    """The PID in a run's first engine event that names one (its run worker or, for the CLI,
    the process running it in-process), and that event's time."""
    from dagster._core.events import DagsterEventType

    for entry in instance.event_log_storage.get_logs_for_run(
            run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=10):
        event = entry.dagster_event
        data = event.event_specific_data if event else None
        metadata = getattr(data, "metadata", None) or {}
        if "pid" in metadata:
            with suppress(TypeError, ValueError):
                return int(metadata["pid"].value), entry.timestamp
    return None, 0.0


def _in_flight(instance: dg.DagsterInstance, record: RunRecord) -> InFlight:
    run = record.dagster_run
    tags = run.tags
    by_cli = PID_TAG in tags
    pid: int | None = None
    if by_cli:
        with suppress(ValueError):
            pid = int(tags[PID_TAG])
    else:
        pid = _worker_pid(instance, run.run_id)[0]
    return InFlight(run.run_id, run.job_name, run.status.value, pid, tags.get(HOST_TAG), by_cli,
                    record.create_timestamp.timestamp(), record.start_time,
                    record.update_timestamp.timestamp())


def in_flight_runs(instance: dg.DagsterInstance, exclude: str | None = None) -> list[InFlight]:
    """Runs of the instance in NOT_STARTED / STARTING / STARTED / CANCELING (queued runs wait for
    the daemon, not for us), those holding a ``duckdb`` pool slot first, then oldest first."""
    from dagster import DagsterRunStatus, RunsFilter

    records = instance.get_run_records(filters=RunsFilter(statuses=[
        DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING]))
    holders = _slot_holders(instance)
    runs = [_in_flight(instance, r) for r in records if r.dagster_run.run_id != exclude]
    return sorted(runs, key=lambda r: (r.run_id not in holders, r.created))


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return set()
    info = storage.get_concurrency_info(POOL)
    return ({slot.run_id for slot in info.claimed_slots if slot.run_id}
            | {step.run_id for step in info.pending_steps})


def dead_reason(instance: dg.DagsterInstance, run: InFlight, now: float | None = None
                ) -> str | None:
    """Why ``run`` cannot be alive, or None when it may be (or is not ours to judge)."""
    now = time.time() if now is None else now
    if run.host is not None and run.host != this_host():
        return None  # another machine's process: not visible from here
    if run.by_cli:
        if run.pid is None or not process_alive(run.pid, run.created):
            return f"its process (PID {run.pid}) is gone"
        return None
    if run.host is None:
        return None  # no host tag: the daemon's business (its run monitoring)
    if run.pid is not None:
        since = _worker_pid(instance, run.run_id)[1] or run.created
        if not process_alive(run.pid, since) and now - run.updated > DAEMON_GRACE_SECONDS:
            return f"its run worker (PID {run.pid}) is gone and no code server reported it"
        return None
    timeout = instance.run_monitoring_start_timeout_seconds
    if run.status in ("NOT_STARTED", "STARTING") and timeout and now - run.created > timeout:
        return f"it did not start within {timeout} s"
    return None


def mark_failed(instance: dg.DagsterInstance, run_id: str, message: str) -> None:
    """Mark the run failed (unless it finished meanwhile) and free its pool slots and claims."""
    from dagster._core.events import JobFailureData, RunFailureReason

    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        instance.report_run_failed(run, message, JobFailureData(
            error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))
    free_slots(instance, run_id)


def free_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def recover_dead_runs(instance: dg.DagsterInstance, echo: Echo = echo_stdout,
                      exclude: str | None = None) -> list[str]:
    """Mark failed every in-flight run whose process is gone and free its slots; free slots
    still held by finished runs. Prints one line per run; returns the recovered run ids."""
    recovered = []
    for run in in_flight_runs(instance, exclude=exclude):
        reason = dead_reason(instance, run)
        if reason is None:
            continue
        mark_failed(instance, run.run_id,
                    f"Marked failed by forecast-platform: {reason} (killed, out of memory or a "
                    "reboot); its concurrency slots were freed.")
        echo(f"recovered dead run {run.describe()}: {reason}; marked failed, warehouse pool "
             "slot freed")
        recovered.append(run.run_id)
    for run_id in sorted(_slot_holders(instance)):
        record = instance.get_run_record_by_id(run_id)
        if run_id != exclude and (record is None or record.dagster_run.is_finished):
            free_slots(instance, run_id)
            state = record.dagster_run.status.value if record else "deleted"
            echo(f"freed the warehouse pool slot still held by run {run_id[:8]} ({state})")
            recovered.append(run_id)
    return recovered


def wait_for_warehouse(instance: dg.DagsterInstance, echo: Echo = echo_stdout,
                       exclude: str | None = None, sleep: Callable[[float], None] = time.sleep,
                       report_every: float = WAIT_REPORT_SECONDS, poll: float = POLL_SECONDS
                       ) -> None:
    """Return once no other run of the instance is in flight, recovering dead ones on the way;
    say every ``report_every`` seconds which run we wait for."""
    reported: float | None = None
    while True:
        recover_dead_runs(instance, echo, exclude=exclude)
        blocking = in_flight_runs(instance, exclude=exclude)
        if not blocking:
            return
        now = time.monotonic()
        if reported is None or now - reported >= report_every:
            more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
            echo(f"waiting for run {blocking[0].describe()}{more} to release the warehouse "
                 "pool ...")
            reported = now
        sleep(poll)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread outside Dagster's own handling."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class SignalGuard:
    """SIGINT / SIGTERM handling for one CLI run; see the module docstring."""

    def __init__(self, settings: Settings, grace: float = STOP_GRACE_SECONDS):
        self.settings = settings
        self.grace = grace
        self.signum: int | None = None
        self.run_id: str | None = None
        self.job_name = ""
        self.instance: dg.DagsterInstance | None = None
        self._lock = threading.Lock()
        self._handling = False
        self._closed = threading.Event()
        self._read_fd: int | None = None
        self._write_fd: int | None = None
        self._previous: dict[int, object] = {}
        self._previous_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stderr_fd: int | None = None
        self._saved_stderr = None

    # -- installation -----------------------------------------------------------------------

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; leave handling to it
        self._stderr_fd = os.dup(2)
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handler)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="forecast-platform-signals",
                                        daemon=True)
        self._thread.start()

    def uninstall(self) -> None:
        if self._thread is None:
            return
        signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._closed.set()
        self._thread.join(timeout=2)
        for fd in (self._read_fd, self._write_fd):
            with suppress(OSError):
                os.close(fd)
        if self._saved_stderr is not None:
            quiet, sys.stderr = sys.stderr, self._saved_stderr
            quiet.close()
            self._saved_stderr = None
        with suppress(OSError, TypeError):
            os.close(self._stderr_fd)
        self._stderr_fd = None
        self._thread = None

    def _handler(self, signum: int, _frame) -> None:
        self.signum = self.signum or signum
        if not self._handling:  # a second signal while we wind down changes nothing
            raise Interrupted(signum)

    # -- the watcher thread -----------------------------------------------------------------

    def _watch(self) -> None:
        deadline: float | None = None
        while not self._closed.is_set():
            timeout = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            ready, _, _ = select.select([self._read_fd], [], [], timeout)
            if ready:
                try:
                    data = os.read(self._read_fd, 64)
                except OSError:
                    return
                signums = [b for b in data if b in (signal.SIGINT, signal.SIGTERM)]
                if signums and deadline is None:
                    self.signum = self.signum or signums[0]
                    deadline = time.monotonic() + self.grace
                    self._quiet_stderr()
                    self._cancel_in_storage()
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    if self._handling or self._closed.is_set():
                        return
                    self._handling = True
                self._force_stop()

    def _instance(self) -> AbstractContextManager[dg.DagsterInstance]:
        """The command's instance (its storages take a connection per operation or from a
        pool, so this thread may use it; opening another costs seconds here), or a new one."""
        if self.instance is not None:
            return nullcontext(self.instance)
        return open_instance(self.settings)

    def _quiet_stderr(self) -> None:
        """From the signal on, what reaches stderr is Dagster reporting the interruption (a step
        failure with its traceback) while the run unwinds: Python-level stderr goes to
        /dev/null (Dagster's console logger writes to ``sys.stderr`` of the moment; its compute
        log capture swaps file descriptor 2 itself), and our one line goes to the original
        stderr, duplicated when the guard was installed."""
        self._saved_stderr = sys.stderr
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (closed in uninstall)

    def _say(self, line: str) -> None:
        with suppress(Exception):
            sys.stdout.flush()
        with suppress(OSError):
            os.write(self._stderr_fd if self._stderr_fd is not None else 2,
                     (line + "\n").encode())

    def _cancel_in_storage(self) -> None:
        """Mark the run CANCELING at once (own instance: this is not the main thread)."""
        with self._lock:  # not while the main thread records the run's end
            if self.run_id is None or self._handling:
                return
            with suppress(Exception), self._instance() as instance:
                run = instance.get_run_by_id(self.run_id)
                if run is not None and not run.is_finished:
                    instance.report_run_canceling(run, f"{self.signal_name} received: "
                                                       "canceling.")

    def _force_stop(self) -> None:
        """The main thread did not wind the run down in time (e.g. a step waiting for a pool
        slot, or a long SQL statement): record the outcome and end the process."""
        status = None
        try:
            if self.run_id is not None:
                with self._instance() as instance:
                    status = self._record_stop(instance)
        finally:
            self._say(self.message(status))
            os._exit(self.exit_code)

    # -- the outcome --------------------------------------------------------------------------

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "an interrupt"

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    def message(self, status: str | None = None) -> str:
        if self.run_id is None or status is None:
            return (f"forecast-platform: stopped by {self.signal_name} before its run started "
                    "(nothing was written).")
        return (f"forecast-platform: stopped by {self.signal_name}; run {self.run_id[:8]} "
                f"({self.job_name}) marked {status.lower()}, its warehouse pool slot freed (each "
                "write is one transaction: no partition is half-written; run the command again "
                "to finish).")

    def _record_stop(self, instance: dg.DagsterInstance) -> str | None:
        """Mark the run canceled unless Dagster ended it already; free its slots; its status."""
        run = instance.get_run_by_id(self.run_id) if self.run_id else None
        if run is None:
            return None
        if not run.is_finished:
            instance.report_run_canceled(run, f"Stopped by {self.signal_name}.")
        free_slots(instance, run.run_id)
        run = instance.get_run_by_id(run.run_id)
        return run.status.value if run else None

    def stop(self, instance: dg.DagsterInstance) -> None:
        """In the main thread, after a signal: record the run's end, print one line, exit."""
        with self._lock:
            watcher_stopping = self._handling
            self._handling = True
        if watcher_stopping:  # the watcher records the end and ends the process
            time.sleep(60)
        self.signum = self.signum or signal.SIGINT
        self._say(self.message(self._record_stop(instance)))
        raise SystemExit(self.exit_code)


@contextmanager
def signal_guard(settings: Settings, grace: float = STOP_GRACE_SECONDS
                 ) -> Iterator[SignalGuard]:
    guard = SignalGuard(settings, grace)
    guard.install()
    try:
        yield guard
    finally:
        guard.uninstall()
