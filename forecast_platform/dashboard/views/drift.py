"""Drift: the drift summary per report day with its retrain verdict and reason, the columns
that drifted, and a link to each day's Evidently HTML report (opened on this page)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from forecast_platform.dashboard import charts, context

REPORT_PARAM = "report"


def render() -> None:
    snap = context.snapshot()
    st.title("Drift")
    drift = context.table(snap, "drift")
    if not len(drift):
        st.info("No drift report in this snapshot yet: `forecast-platform demo` makes one for "
                "its last day (monitor_job), and `forecast-platform simulate-drift` shows the "
                "retrain loop.")
        return
    drift = drift.assign(ds=pd.to_datetime(drift["ds"]).dt.date)
    table = drift.assign(report=[f"./drift?{REPORT_PARAM}={d}" for d in drift["ds"]])[
        ["ds", "retrain", "reason", "drifted_share", "drifted_count", "n_columns",
         "forecaster_version", "retrain_columns", "report", "html_path"]]
    retrains = int(drift["retrain"].astype(bool).sum())
    st.caption(f"{len(drift)} report days; retrain asked on {retrains}.")
    st.dataframe(table, hide_index=True, key="drift_table", column_config={
        "ds": st.column_config.DateColumn("day"),
        "drifted_share": st.column_config.NumberColumn("drifted share", format="%.2f"),
        "report": st.column_config.LinkColumn("Evidently report", display_text="open"),
    })
    if len(drift) > 1:
        st.plotly_chart(charts.drift_figure(drift), key="drift_chart")

    days = [str(d) for d in drift["ds"]]
    wanted = st.query_params.get(REPORT_PARAM)
    day = st.selectbox("Report of", days, index=days.index(wanted) if wanted in days else 0,
                       key="drift_day")
    row = drift[drift["ds"].astype(str) == day].iloc[0]
    verdict = "retrain asked" if bool(row["retrain"]) else "no retrain"
    st.markdown(f"**{day}: {verdict}.** {row['reason']}")
    columns = context.table(snap, "drift_columns")
    if len(columns):
        mine = columns[pd.to_datetime(columns["ds"]).dt.date.astype(str) == day]
        st.dataframe(mine, hide_index=True, key="drift_columns")
    path = Path(str(row["html_path"])) if row["html_path"] else None
    if path is None or not path.is_file():
        st.warning(f"The report's HTML is not on disk any more ({path}).")
        return
    html = path.read_text(errors="replace")
    st.download_button("Download the report (HTML)", html, file_name=path.name,
                       mime="text/html", key="drift_download")
    if wanted == day or st.toggle("Show the report here", key="drift_show"):
        components.html(html, height=900, scrolling=True)


render()
