"""Forecasts: one series or an aggregate (a store total, a department, all series): its
history with the expected band, the champion's P50 and P10-P90 band over the horizon,
anomalies, closed days and promotions (planned ones too), and the shown data as CSV."""

from __future__ import annotations

import re

import streamlit as st

from forecast_platform.dashboard import charts, context
from forecast_platform.dashboard import series as series_lib
from forecast_platform.dashboard.extract import series_keys


def render() -> None:
    snap = context.snapshot()
    m = snap.manifest
    st.title("Forecasts")
    sid = context.series_picker(snap, "forecasts")
    if sid is None:
        return
    index_row = series_lib.lookup(context.table(snap, "series"), sid)
    label = str(index_row["label"]) if index_row is not None else sid
    history = context.rows_of(snap, "history", sid)
    forecasts = context.rows_of(snap, "forecasts", sid)
    plan = context.rows_of(snap, "plan", sid)
    if not len(history) and not len(forecasts):
        st.warning(f"The snapshot holds no history and no forecast for {label}.")
        return
    step = int(m.get("step_days", 1))
    end = context.as_date(history["ds"].max()) if len(history) else \
        context.as_date(forecasts["ds"].min())
    first = context.as_date(history["ds"].min()) if len(history) else end
    default = max(first, series_lib.default_window(end, step))
    start = st.date_input("Show history from", value=default, min_value=first, max_value=end,
                          key="forecasts_from")
    known = list(m.get("known", {}))
    missing = series_lib.missing_days(history, start, end, step)
    closed: set = set()
    if not series_lib.is_total(sid):
        spec = context.dataset_spec(snap.dataset) if m.get("has_closure_rules") else None
        closed = series_lib.closed_days(spec, series_keys(sid, list(m["keys"])), missing)
    frame = series_lib.shown(history, forecasts, plan, start, known, closed, missing)

    cols = st.columns(4)
    if len(history):
        last = history.iloc[-1]
        cols[0].metric(f"Last actual ({context.as_date(last['ds'])})", f"{last['y']:,.1f}")
    if len(forecasts):
        cols[1].metric(f"Forecast P50, next {len(forecasts)} periods",
                       f"{forecasts['p50'].sum():,.0f}")
        cols[2].metric("P10-P90 of the first period",
                       f"{forecasts['p10'].iloc[0]:,.1f} - {forecasts['p90'].iloc[0]:,.1f}")
        cols[3].metric("Forecaster version", f"v{int(forecasts['forecaster_version'].max())}")
    else:
        cols[1].info("No forecast in this snapshot: train a champion (forecast-platform demo).")
    if series_lib.is_total(sid) and len(forecasts):
        st.caption("An aggregate's band is the sum of its series' P10s and P90s: wider than "
                   "the aggregate's own 80 % interval, since series do not all miss together.")
    title = f"{label} — {m.get('target', '')}"
    st.plotly_chart(charts.forecast_figure(frame, title, m.get("target", ""), known),
                    key="forecasts_chart")
    flagged = int(frame["is_anomaly"].sum()) if "is_anomaly" in frame else 0
    n_closed = int((frame["note"] == "closed").sum()) if "note" in frame else 0
    st.caption(f"{flagged} anomalies and {n_closed} closed days in the shown range; "
               f"{len(missing) - len(closed)} periods without data.")
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", sid)
    st.download_button("Download the shown data (CSV)", frame.to_csv(index=False),
                       file_name=f"forecast_{safe}.csv", mime="text/csv",
                       key="forecasts_csv")
    with st.expander("Shown data", expanded=False):
        st.dataframe(frame, hide_index=True, key="forecasts_table")
    if len(plan) and plan["plan_version"].notna().any():
        st.caption(f"Planned covariates: plan version {plan['plan_version'].dropna().iloc[-1]}.")


render()
