"""Anomalies: the inbox of flagged series-days, newest first, each with its type, score,
reason and expected interval; filters by type, key and date; the chosen one is shown in its
series around the day."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from forecast_platform.dashboard import charts, context

AROUND_PERIODS = 42  # periods shown either side of the chosen anomaly
LISTED = 200  # most inbox rows offered in the "open" list


@st.cache_data(max_entries=16, show_spinner=False)
def inbox(path: str) -> pd.DataFrame:
    """Flagged rows with their series' labels, newest first."""
    snap_rows = context.read(path, "anomalies")
    if not len(snap_rows):
        return snap_rows
    index = context.read(path, "series")[["series_id", "label"]]
    out = snap_rows.merge(index, on="series_id", how="left")
    out["label"] = out["label"].fillna(out["series_id"])
    out["ds"] = pd.to_datetime(out["ds"]).dt.date
    return out.sort_values(["ds", "score"], ascending=[False, False]).reset_index(drop=True)


def render() -> None:
    snap = context.snapshot()
    st.title("Anomalies")
    if not snap.has("anomalies"):
        st.info("No anomalies in this snapshot: the anomaly detector has not scored any day "
                "yet (`forecast-platform demo` trains it and scores the recent days).")
        return
    rows = inbox(str(snap.path))
    if not len(rows):
        st.success("No series-day is flagged in the scored range.")
        return
    c1, c2, c3 = st.columns([1, 1, 1])
    types = sorted(rows["anomaly_type"].dropna().unique())
    chosen_types = c1.multiselect("Type", types, default=types, key="anomalies_types")
    key_text = c2.text_input("Key contains", key="anomalies_key",
                             placeholder="store 2, item 7, 2|7")
    lo, hi = rows["ds"].min(), rows["ds"].max()
    span = c3.date_input("Dates", value=(lo, hi), min_value=lo, max_value=hi,
                         key="anomalies_dates")
    first, last = (span[0], span[-1]) if isinstance(span, tuple | list) and span else (lo, hi)
    shown = rows[rows["anomaly_type"].isin(chosen_types) & (rows["ds"] >= first)
                 & (rows["ds"] <= last)]
    for word in key_text.lower().split():
        shown = shown[(shown["label"].str.lower() + " " + shown["series_id"])
                      .str.contains(word, regex=False)]
    st.caption(f"{len(shown)} of {len(rows)} flagged series-days.")
    if not len(shown):
        st.warning("No anomaly matches these filters.")
        return
    table = shown.assign(
        expected_interval=shown["p10"].round(1).astype(str) + " - "
        + shown["p90"].round(1).astype(str))[
        ["ds", "label", "anomaly_type", "score", "y", "expected", "expected_interval", "reason",
         "series_id"]].reset_index(drop=True)
    event = st.dataframe(table, hide_index=True, on_select="rerun",
                         selection_mode="single-row", key="anomalies_table",
                         column_config={"ds": st.column_config.DateColumn("date"),
                                        "score": st.column_config.NumberColumn(format="%.2f"),
                                        "expected": st.column_config.NumberColumn(
                                            format="%.1f")})
    listed = table.head(LISTED)
    picked_rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    options = list(range(len(listed)))
    default = picked_rows[0] if picked_rows and picked_rows[0] < len(listed) else 0
    pick = st.selectbox("Open", options, index=default, key="anomalies_open",
                        format_func=lambda i: f"{listed.loc[i, 'ds']} · {listed.loc[i, 'label']}"
                                              f" · {listed.loc[i, 'anomaly_type']}")
    row = listed.loc[pick]
    st.subheader(f"{row['label']} on {row['ds']}")
    st.markdown(f"**{row['anomaly_type']}** (score {row['score']:.2f}): {row['reason']}")
    st.caption(f"Actual {row['y']:,.1f}; expected {row['expected']:,.1f}, interval "
               f"{row['expected_interval']}.")
    history = context.rows_of(snap, "history", row["series_id"])
    step = int(snap.manifest.get("step_days", 1))
    around = dt.timedelta(days=AROUND_PERIODS * step)
    day = pd.Timestamp(row["ds"])
    window = history[(history["ds"] >= day - around) & (history["ds"] <= day + around)]
    if len(window):
        st.plotly_chart(charts.anomaly_figure(window, row["ds"], str(row["label"]),
                                              snap.manifest.get("target", "")),
                        key="anomalies_chart")


render()
