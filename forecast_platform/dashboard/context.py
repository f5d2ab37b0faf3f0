"""What every page shares: the snapshot of this script run, cached reads, the series picker.

Why the snapshot is resolved once per run (in ``app.py``, kept in the session's state for the
page that run executes): a snapshot published while a page loads must not mix into it. Every
read below is keyed by the snapshot's folder, which never changes once published, so the caches
are exact and a new snapshot simply misses them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import streamlit as st

from forecast_platform.dashboard import series as series_lib
from forecast_platform.dashboard.snapshot import MAKE_ONE, Snapshot, SnapshotError, current
from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.settings import Settings, load_settings

STATE_KEY = "_dashboard_snapshot"
# (title, file under views/, url path, icon): the navigation, in order.
PAGES = (
    ("Forecasts", "forecasts.py", "forecasts", ":material/show_chart:"),
    ("Anomalies", "anomalies.py", "anomalies", ":material/warning:"),
    ("What-if", "whatif.py", "what-if", ":material/tune:"),
    ("Model quality", "model_quality.py", "model-quality", ":material/verified:"),
    ("Data quality", "data_quality.py", "data-quality", ":material/rule:"),
    ("Drift", "drift.py", "drift", ":material/trending_up:"),
)
PAGES_DIR = Path(__file__).resolve().parent / "views"


def settings() -> Settings:
    """The settings the CLI handed this process (``child_env``); cheap to resolve, and not
    cached, so that tests pointing the process at another data directory are obeyed."""
    return load_settings()


def resolve() -> Snapshot | None:
    """Resolve the current snapshot for this script run (called by app.py only)."""
    try:
        snap = current(settings().dashboard_dir)
    except SnapshotError as err:
        st.session_state[STATE_KEY] = None
        st.error(str(err))
        return None
    st.session_state[STATE_KEY] = snap
    return snap


def snapshot() -> Snapshot:
    """This run's snapshot; a page stops with the command that makes one when there is none."""
    snap = st.session_state.get(STATE_KEY)
    if snap is None:
        snap = resolve()  # a page run on its own (tests of one page)
    if snap is None:
        no_snapshot()
        st.stop()
    return snap


def no_snapshot() -> None:
    st.info(f"No dashboard snapshot yet in `{settings().dashboard_dir}`. Make one with "
            f"{MAKE_ONE}; this page then shows it (reload).")


@st.cache_data(max_entries=64, show_spinner=False)
def read(path: str, table: str) -> pd.DataFrame:
    """A whole table of the snapshot at ``path`` (tables the pages read whole are small, or
    read once and kept)."""
    return Snapshot(Path(path), {"tables": {table: 1}, "format": 1}).read(table)


@st.cache_data(max_entries=512, show_spinner=False)
def series_rows(path: str, table: str, series_id: str) -> pd.DataFrame:
    """One series' rows of a table sorted by series: a pruned Parquet read, then cached."""
    return Snapshot(Path(path), {"tables": {table: 1}, "format": 1}).series_rows(table,
                                                                                 series_id)


def table(snap: Snapshot, name: str) -> pd.DataFrame:
    return read(str(snap.path), name) if snap.has(name) else pd.DataFrame()


def rows_of(snap: Snapshot, name: str, series_id: str) -> pd.DataFrame:
    if not snap.has(name):
        return pd.DataFrame()
    frame = series_rows(str(snap.path), name, series_id)
    if "ds" in frame.columns:
        frame = frame.assign(ds=pd.to_datetime(frame["ds"]))
    return frame


@st.cache_resource
def dataset_spec(name: str) -> DatasetSpec | None:
    """The dataset's spec (its closure rules), read from the spec files, not the warehouse."""
    from forecast_platform.datasets.registry import get_spec

    try:
        return get_spec(name, settings().datasets_dir)
    except (KeyError, ValueError, FileNotFoundError):
        return None


def header(snap: Snapshot) -> None:
    """The snapshot's run id and time, on every page: a planner must know how fresh it is."""
    m = snap.manifest
    champion = m.get("champion_version")
    parts = [f"Snapshot of run `{snap.run_id[:8] or 'manual'}` published "
             f"{snap.created_at:%Y-%m-%d %H:%M} UTC",
             f"dataset **{snap.dataset}** ({'daily' if m.get('step_days') == 1 else 'weekly'}, "
             f"{m.get('series_count', 0):,} series)"]
    if m.get("history_end"):
        parts.append(f"data to {str(m['history_end'])[:10]}")
    parts.append(f"champion v{champion}" if champion is not None else "no champion yet")
    st.caption(" · ".join(parts))


def series_picker(snap: Snapshot, key: str, aggregates: bool = True) -> str | None:
    """Search box + a short list of matches; returns the chosen series id (or aggregate id),
    or None with a message when nothing matches. ``?series=ID`` preselects one."""
    index = table(snap, "series")
    if not len(index):
        st.info("The snapshot has no series yet: ingest data and publish a snapshot.")
        return None
    if not aggregates:
        index = index[index["kind"] == "series"]
    wanted = st.query_params.get("series", "")
    query = st.text_input("Find a series", value=wanted, key=f"{key}_query",
                          placeholder="words of its keys: store 3 item 12, 3|12, store=3",
                          help="Every word must occur in the series' id or label. The first "
                               f"{series_lib.MATCHES} matches are listed.")
    matches = series_lib.search(index, query)
    if not len(matches):
        st.warning(f"No series matches {query!r}. Try fewer words, or a key value such as "
                   f"{index['series_id'].iloc[0]!r}.")
        return None
    labels = dict(zip(matches["series_id"], matches["label"], strict=True))
    options = list(labels)
    chosen = st.session_state.get(f"{key}_series")
    if chosen not in labels:
        st.session_state.pop(f"{key}_series", None)
    return st.selectbox(f"Series ({len(options)} listed)", options, key=f"{key}_series",
                        format_func=lambda s: labels.get(s, s))


def as_date(value: object) -> dt.date:
    return pd.Timestamp(value).date()
