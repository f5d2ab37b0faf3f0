"""Data quality: the data-quality checks' results and the rows per partition (raw, valid,
quarantined, unreadable files); a chosen partition's checks and quarantined rows; every
quarantined row with its reason."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from forecast_platform.dashboard import context


def covering(checks: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """Check results whose run covered ``day`` (a range run covers every day in it)."""
    if not len(checks):
        return checks
    start = pd.to_datetime(checks["partition_start"]).dt.date
    end = pd.to_datetime(checks["partition_end"]).dt.date
    return checks[(start <= day) & (end >= day)]


def latest(checks: pd.DataFrame) -> pd.DataFrame:
    """The newest result of each check."""
    if not len(checks):
        return checks
    ordered = checks.sort_values("evaluated_at", ascending=False)
    return ordered.drop_duplicates(["asset", "check"]).sort_values(["passed", "asset", "check"])


def render() -> None:
    snap = context.snapshot()
    st.title("Data quality")
    checks = context.table(snap, "checks")
    partitions = context.table(snap, "partitions")
    rejects = context.table(snap, "rejects")
    files = context.table(snap, "file_rejects")

    st.subheader("Check results (newest of each check)")
    if len(checks):
        newest = latest(checks)
        failed = int((~newest["passed"].astype(bool)).sum())
        st.caption(f"{len(newest) - failed} passing, {failed} failing; each result covers "
                   "the partitions of the run that evaluated it.")
        st.dataframe(newest, hide_index=True, key="dq_checks")
    else:
        st.info("No check results in this snapshot (they come from the Dagster instance of "
                "the runs; a snapshot made outside a Dagster run has none).")

    if len(partitions):
        st.subheader("Rows per partition")
        frame = partitions.assign(partition_date=pd.to_datetime(partitions["partition_date"]))
        st.bar_chart(frame.set_index("partition_date")[["rejected_rows", "rejected_files"]],
                     height=220)
        days = frame["partition_date"].dt.date
        with_rejects = frame.loc[(frame["rejected_rows"] + frame["rejected_files"]) > 0,
                                 "partition_date"]
        default = with_rejects.max().date() if len(with_rejects) else days.max()
        day = st.date_input("Partition", value=default, min_value=days.min(),
                            max_value=days.max(), key="dq_partition")
        one = frame[days == day]
        c = st.columns(4)
        for col, name in zip(c, ("raw_rows", "valid_rows", "rejected_rows", "rejected_files"),
                             strict=True):
            col.metric(name.replace("_", " "), int(one[name].sum()) if len(one) else 0)
        if len(checks):
            st.caption(f"Check results covering {day}:")
            st.dataframe(covering(checks, day).sort_values("evaluated_at", ascending=False),
                         hide_index=True, key="dq_partition_checks")
        if len(rejects):
            that_day = rejects[pd.to_datetime(rejects["partition_date"]).dt.date == day]
            st.caption(f"{len(that_day)} quarantined rows on {day}.")
            if len(that_day):
                st.dataframe(that_day, hide_index=True, key="dq_partition_rejects")

    st.subheader("Quarantined rows")
    if len(rejects):
        rules = sorted({r for v in rejects["rules"].dropna() for r in str(v).split(",")})
        chosen = st.multiselect("Rule", rules, default=rules, key="dq_rules")
        shown = rejects[rejects["rules"].fillna("").apply(
            lambda v: any(r in str(v).split(",") for r in chosen))]
        st.caption(f"{len(shown)} of {snap.rows('rejects'):,} rows (the newest "
                   f"{len(rejects):,} are in the snapshot).")
        st.dataframe(shown, hide_index=True, key="dq_rejects")
    else:
        st.success("No row is quarantined.")
    if len(files):
        st.subheader("Unreadable landing files")
        st.dataframe(files, hide_index=True, key="dq_files")


render()
