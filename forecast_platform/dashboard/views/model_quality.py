"""Model quality: the champion and the history of versions; the backtest against the
baselines; forecast value added over the seasonal naive; accuracy and bias by horizon and by
key; P10-P90 coverage; and a safety-stock view at a chosen service level and lead time."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from forecast_platform.dashboard import charts, context, quality

SERVICE_LEVELS = (0.8, 0.85, 0.9, 0.95, 0.975, 0.99)


@st.cache_data(max_entries=8, show_spinner=False)
def backtest_points(path: str, keys: tuple[str, ...]) -> pd.DataFrame:
    points = context.read(path, "backtest")
    return quality.with_keys(points, list(keys)) if len(points) else points


def render() -> None:
    snap = context.snapshot()
    m = snap.manifest
    st.title("Model quality")
    registry = context.table(snap, "registry")
    metric = m.get("metric", "smape")
    model_name = m.get("forecaster_model", "")
    versions = quality.forecaster_versions(registry, model_name, metric) if len(registry) \
        else pd.DataFrame()
    champion = versions[versions["status"] == "champion"] if len(versions) else versions
    if not len(champion):
        st.info("No champion forecaster in this snapshot yet: `forecast-platform demo` trains "
                "one (or materialize `train_job`), then a new snapshot is published.")
        if len(versions):
            st.dataframe(versions, hide_index=True, key="quality_versions")
        return
    top = champion.iloc[0]
    c = st.columns(4)
    c[0].metric("Champion", f"v{top['version']}")
    c[1].metric(f"Backtest {metric}", f"{top[metric]:.3f}" if top[metric] is not None else "?")
    c[2].metric("Trained on", str(top["train_window"]))
    c[3].metric("Trigger", str(top["trigger"] or "manual"))
    st.subheader("Versions")
    st.dataframe(versions, hide_index=True, key="quality_versions")

    row = registry[(registry["model_name"] == model_name)
                   & (registry["version"] == top["version"])].iloc[0]
    backtest = quality.backtest_table(row["metrics"])
    st.subheader("Backtest against the baselines (same points)")
    st.dataframe(backtest, hide_index=True, key="quality_backtest")
    baseline = quality.seasonal_naive(backtest["method"].tolist())
    if baseline:
        fva = quality.value_added(backtest, baseline)
        mine = fva[fva["metric"] == metric]
        if len(mine):
            st.metric(f"Forecast value added over {baseline} ({metric})",
                      f"{mine['value_added'].iloc[0] * 100:.1f} %",
                      help="1 - model error / seasonal-naive error: the share of the simple "
                           "rule's error the model removes.")
        st.dataframe(fva, hide_index=True, key="quality_fva")

    points = backtest_points(str(snap.path), tuple(m["keys"])) if snap.has("backtest") \
        else pd.DataFrame()
    if not len(points):
        st.info("This snapshot has no backtest points (a model trained before the dashboard "
                "existed): retrain to see accuracy by horizon and key, coverage and safety "
                "stock.")
        return
    methods = ["model", *([baseline] if baseline else [])]
    st.subheader("Accuracy and bias by horizon")
    by_step = quality.accuracy_by(points, "step", methods)
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.by_figure(by_step, "step", "mae", "MAE by periods ahead"),
                    key="quality_mae_step")
    c2.plotly_chart(charts.by_figure(by_step, "step", "bias",
                                     "Bias (forecast - actual) by periods ahead"),
                    key="quality_bias_step")
    key = st.selectbox("By key", list(m["keys"]), key="quality_key")
    by_key = quality.accuracy_by(points, key, methods)
    st.plotly_chart(charts.by_figure(by_key, key, "mae", f"MAE by {key}"),
                    key="quality_mae_key")
    st.dataframe(by_key, hide_index=True, key="quality_by_key")
    cover = quality.coverage(points)
    st.metric("P10-P90 coverage on the backtest", f"{cover * 100:.1f} %",
              f"{(cover - quality.NOMINAL_COVERAGE) * 100:+.1f} pts vs 80 % nominal")

    st.subheader("Safety stock")
    c1, c2 = st.columns(2)
    level = c1.select_slider("Service level", SERVICE_LEVELS, value=0.95,
                             key="quality_service_level")
    horizon = int(row["horizon"] or by_step["step"].max())
    lead = int(c2.number_input("Lead time (periods)", min_value=1, max_value=horizon,
                               value=min(7, horizon), key="quality_lead_time"))
    held = quality.service_level_on_backtest(points, level)
    st.markdown(
        f"At a {level:.1%} service level the quantiles imply z = {held['z']:.2f}. On the "
        f"backtest that stock covered **{held['achieved']:.1%}** of periods "
        f"({held['points']:,} points); the backtest's own errors call for z = "
        f"{held['calibrated_z']:.2f} (the *calibrated* columns).")
    forecasts = context.table(snap, "forecasts")
    index = context.table(snap, "series")
    series_only = forecasts[forecasts["series_id"].isin(
        index.loc[index["kind"] == "series", "series_id"])] if len(forecasts) else forecasts
    stock = quality.safety_stock(series_only, lead, held["z"], held["calibrated_z"])
    if len(stock):
        stock = stock.merge(index[["series_id", "label"]], on="series_id", how="left")
        st.dataframe(stock.sort_values("stock_to_hold", ascending=False), hide_index=True,
                     key="quality_stock")
        st.download_button("Download safety stock (CSV)", stock.to_csv(index=False),
                           file_name=f"safety_stock_{level}_{lead}.csv", mime="text/csv",
                           key="quality_stock_csv")


render()
