"""The house rules, kept by a test so a newcomer's change cannot quietly break them.

- Dagster is imported only by the wiring (``defs/``, ``cli/``, ``definitions.py``); BentoML only
  by the wiring and ``bentos/``: the core stays a library of plain functions.
- Only ``settings.py`` reads or writes the environment.
- Every asset group has a core folder and a ``defs/`` module of the same name, so the UI's
  groups and the tree read the same.
- The README's settings table lists every variable ``settings.py`` reads.
"""

from __future__ import annotations

import re
from pathlib import Path

from forecast_platform.definitions import build_definitions
from forecast_platform.settings import VARIABLES
from forecast_platform_tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "forecast_platform"
WIRING = ("defs", "cli")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_wiring(path: Path) -> bool:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] in WIRING or relative.name == "definitions.py"


def _importers(pattern: str) -> list[str]:
    found = re.compile(pattern, re.M)
    return [str(p.relative_to(ROOT)) for p in _modules()
            if not _is_wiring(p) and found.search(p.read_text())]


def test_the_core_imports_neither_dagster_nor_bentoml():
    assert _importers(r"^\s*(import|from) dagster") == []
    assert _importers(r"^\s*(import|from) bentoml") == []


def test_only_settings_reads_the_environment():
    readers = [str(p.relative_to(ROOT)) for p in [*_modules(), *(ROOT / "bentos").glob("*.py")]
               if p.name != "settings.py" and re.search(r"os\.environ|os\.getenv", p.read_text())]
    assert readers == []


def test_every_group_has_a_core_folder_and_a_defs_module(tmp_path):
    graph = build_definitions(make_settings(tmp_path)).resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert {"ingestion", "features", "forecasting", "planning", "anomalies", "serving",
            "monitoring"} <= groups
    for group in groups:
        assert (PACKAGE / group / "__init__.py").is_file(), group
        assert (PACKAGE / "defs" / f"{group}.py").is_file(), group


def test_the_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `([A-Z_]+)` \|", readme, re.M)}
    assert set(VARIABLES) <= table, sorted(set(VARIABLES) - table)
