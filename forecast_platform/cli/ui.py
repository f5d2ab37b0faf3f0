"""``forecast-platform ui``: ``dagster dev`` of this interpreter's environment on the project's
workspace, in its own process group, shut down as a whole on Ctrl-C.

``dagster dev`` starts a webserver, a daemon and a code server. Started in its own session, a
terminal's Ctrl-C reaches only this process; it forwards SIGINT (SIGTERM, SIGHUP) to the whole
group, waits a bounded time for every process of the group to end, then kills what is left
and says what that was, so no daemon outlives the command.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from forecast_platform.settings import Settings, child_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE_YAML = PROJECT_ROOT / "workspace.yaml"
# Used when the package is installed without its source tree; a test keeps it equal to
# workspace.yaml. The location is named as the UI shows it (not the module's dotted path).
FALLBACK_WORKSPACE = """load_from:
  - python_module:
      module_name: forecast_platform.definitions
      location_name: forecast_platform
"""
SHUTDOWN_SECONDS = 15.0
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def dagster_executable() -> list[str]:
    """``dagster`` of the environment this interpreter runs in (the venv need not be on PATH)."""
    exe = Path(sys.executable).with_name("dagster")  # not resolved: a venv's python is a link
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "dagster"]


def workspace_file(settings: Settings) -> Path:
    if WORKSPACE_YAML.is_file():
        return WORKSPACE_YAML
    path = settings.dagster_home / "workspace.yaml"
    if not path.is_file() or path.read_text() != FALLBACK_WORKSPACE:
        path.write_text(FALLBACK_WORKSPACE)
    return path


def ui_command(settings: Settings, host: str, port: int) -> list[str]:
    return [*dagster_executable(), "dev", "-w", str(workspace_file(settings)), "-h", host,
            "-p", str(port)]


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in process group ``pgid``."""
    import psutil

    members = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or os.getpgid(proc.pid) != pgid:
                continue
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
        members.append((proc.pid, " ".join(proc.info["cmdline"] or [])))
    return members


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _wait_for_group(pgid: int, deadline: float) -> list[tuple[int, str]]:
    """Wait until no process of the group is left or ``deadline``; return those left."""
    while True:
        left = group_members(pgid)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def run_process_group(cmd: Sequence[str], *, cwd: Path, env: dict[str, str],
                      grace: float = SHUTDOWN_SECONDS) -> int:
    """Run ``cmd`` as the leader of a new session; forward SIGINT/SIGTERM/SIGHUP to its group;
    after a signal (or the leader's own exit) give the group ``grace`` seconds to end, then
    SIGKILL what is left, naming it."""
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, start_new_session=True)
    pgid = proc.pid
    received: list[tuple[int, float]] = []

    def forward(signum: int, _frame) -> None:
        received.append((signum, time.monotonic()))
        _signal_group(pgid, signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if received and time.monotonic() - received[0][1] > grace:
                    break  # the leader hangs: the group is killed below
        started = received[0][1] if received else time.monotonic()
        if proc.poll() is None or group_members(pgid):
            if not received:  # the leader ended on its own and left children behind
                _signal_group(pgid, signal.SIGTERM)
            left = _wait_for_group(pgid, started + grace)
            if left:
                print(f"forecast-platform ui: still running {grace:.0f} s after the shutdown "
                      f"began, killed:", file=sys.stderr)
                for pid, cmdline in left:
                    print(f"  pid {pid}: {cmdline}", file=sys.stderr)
                _signal_group(pgid, signal.SIGKILL)
                _wait_for_group(pgid, time.monotonic() + 5)
        code = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        return 0 if received[0][0] == signal.SIGINT else 128 + received[0][0]
    return code


def cmd_ui(args: argparse.Namespace) -> int:
    from forecast_platform.cli.runs import configure

    settings = configure(args)
    cmd = ui_command(settings, args.host, args.port)
    print(f"DAGSTER_HOME={settings.dagster_home} {' '.join(cmd)}", flush=True)
    print(f"Dagster UI on http://{args.host}:{args.port} (Ctrl-C stops it and its daemon)",
          flush=True)
    # cwd: the Dagster home, where dagster.yaml is (dagster dev warns about one elsewhere).
    return run_process_group(cmd, cwd=settings.dagster_home, env=child_env(settings))
