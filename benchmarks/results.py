"""What every benchmark shares: the machine's description and docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
DOC_HEADER = """# Benchmarks

Measured figures for the platform, newest last. Each section says when, on which machine and
with which command it was measured; rerun the command to compare.
"""


def default_source_dir(name: str) -> str:
    """A benchmark's default source folder: ``FORECAST_SOURCE_DIR``, else ../shared/data/<name>."""
    return os.environ.get("FORECAST_SOURCE_DIR") or str(ROOT.parent / "shared" / "data" / name)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {ram_gb:.0f} GiB RAM, " \
           f"{cpu}, Python {platform.python_version()}"


def append_section(text: str) -> Path:
    """Append a section to docs/benchmarks.md (never rewriting the others)."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    existing = DOC.read_text() if DOC.exists() else DOC_HEADER
    DOC.write_text(existing.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")
    return DOC
