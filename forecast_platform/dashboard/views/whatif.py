"""What-if: switch known covariates (promotions) on or off for a series on chosen forecast
dates and see the forecast change, computed by the running forecasting service over HTTP
(the production code path); when the service is not running the page says how to start it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from forecast_platform.dashboard import charts, context, whatif
from forecast_platform.dashboard.extract import series_keys

DEFAULT_DAYS = 7  # periods switched by default, from the first forecast date


def render() -> None:
    snap = context.snapshot()
    m = snap.manifest
    settings = context.settings()
    st.title("What-if")
    known = dict(m.get("known", {}))
    if not known:
        st.info(f"Dataset {snap.dataset} has no known-in-advance covariates (promotions, "
                "prices) to switch: a what-if has nothing to change here.")
        return
    sid = context.series_picker(snap, "whatif", aggregates=False)
    if sid is None:
        return
    keys = whatif.typed_keys(series_keys(sid, list(m["keys"])), m.get("key_types", {}))
    url = settings.service_url
    base = whatif.forecast(url, keys, api_key=settings.api_key)
    if not base.ok:
        st.error(base.message)
        return
    dates = [pd.Timestamp(r["date"]).date() for r in base.data.get("forecast", [])]
    if not dates:
        st.warning("The service answered without forecast dates.")
        return
    st.caption(f"Service {url}: bundle {base.data.get('bundle')}, forecaster "
               f"v{base.data.get('forecaster_version')}, origin {base.data.get('origin')}.")
    c1, c2 = st.columns(2)
    first = c1.date_input("From", value=dates[0], min_value=dates[0], max_value=dates[-1],
                          key="whatif_from")
    last = c2.date_input("To", value=dates[min(DEFAULT_DAYS, len(dates)) - 1],
                         min_value=dates[0], max_value=dates[-1], key="whatif_to")
    chosen = [d for d in dates if first <= d <= last]
    values: dict[str, float | str] = {}
    cols = st.columns(max(1, len(known)))
    for i, (cov, _kind) in enumerate(known.items()):
        codes = m.get("categories", {}).get(cov)
        if codes:
            values[cov] = cols[i].selectbox(cov, codes, key=f"whatif_{cov}")
        else:
            values[cov] = 1.0 if cols[i].toggle(f"{cov} on", value=True,
                                                key=f"whatif_{cov}") else 0.0
    if not chosen:
        st.warning(f"No forecast date between {first} and {last}.")
        return
    answer = whatif.forecast(url, keys, whatif.scenario_for(chosen, values),
                             api_key=settings.api_key)
    if not answer.ok:
        st.error(answer.message)
        return
    table = whatif.compare(base.data, answer.data)
    in_range = table[table["date"].isin(chosen)]
    before, after = in_range["p50_base"].sum(), in_range["p50_whatif"].sum()
    c1, c2, c3 = st.columns(3)
    c1.metric(f"P50 as planned, {len(chosen)} periods", f"{before:,.1f}")
    c2.metric("P50 with the what-if", f"{after:,.1f}", f"{after - before:+,.1f}")
    c3.metric("Change", f"{(after / before - 1) * 100:+.1f} %" if before else "n/a")
    switched = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                         for k, v in values.items())
    st.plotly_chart(charts.whatif_figure(table, f"{sid}: {switched} from {first} to {last}"),
                    key="whatif_chart")
    st.dataframe(table, hide_index=True, key="whatif_table")
    st.download_button("Download (CSV)", table.to_csv(index=False),
                       file_name=f"whatif_{sid.replace('|', '_')}.csv", mime="text/csv",
                       key="whatif_csv")


render()
