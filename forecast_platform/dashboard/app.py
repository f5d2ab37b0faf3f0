"""The planner's dashboard (``forecast-platform dashboard`` runs ``streamlit run`` on this file).

Six pages in the navigation; the snapshot is resolved here, once per script run, before the
page runs, so a page never mixes two snapshots. The app reads only the published snapshot
(and the drift reports' HTML files); it never opens the warehouse.
"""

from __future__ import annotations

import streamlit as st

from forecast_platform.dashboard import context

st.set_page_config(page_title="Forecast platform", page_icon=":material/show_chart:",
                   layout="wide")
navigation = st.navigation([
    st.Page(str(context.PAGES_DIR / file), title=title, url_path=url, icon=icon,
            default=(i == 0))
    for i, (title, file, url, icon) in enumerate(context.PAGES)
])
snap = context.resolve()
if snap is None:
    context.no_snapshot()
else:
    context.header(snap)
    navigation.run()
