"""Plotly figures of the dashboard: interactive (zoom, hover, toggle a trace) and built from
the same frames the pages offer as CSV, so what is drawn is what is downloaded."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import plotly.graph_objects as go

BAND = "rgba(31, 119, 180, 0.18)"
EXPECTED_BAND = "rgba(127, 127, 127, 0.15)"
ACTUAL = "#333333"
FORECAST = "#1f77b4"
ANOMALY = "#d62728"
CLOSED = "#7f7f7f"
PROMO = "#2ca02c"


def _band(fig: go.Figure, x, lo, hi, name: str, color: str, group: str) -> None:
    fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line={"width": 0}, showlegend=False,
                             hoverinfo="skip", legendgroup=group))
    fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line={"width": 0}, fill="tonexty",
                             fillcolor=color, name=name, legendgroup=group,
                             hovertemplate="%{x}: " + name + " low %{y:.1f}<extra></extra>"))


def forecast_figure(frame: pd.DataFrame, title: str, target: str, known: list[str]
                    ) -> go.Figure:
    """History with the expected band, forecast P50 with its P10-P90 band, anomalies, closed
    days and promotions (a known covariate switched on), from ``series.shown``'s frame."""
    fig = go.Figure()
    past = frame[(frame["part"] == "history") & frame["y"].notna()] if "y" in frame else frame[:0]
    future = frame[frame["part"] == "forecast"]
    if len(past) and past.get("exp_p50") is not None and past["exp_p50"].notna().any():
        exp = past[past["exp_p50"].notna()]
        _band(fig, exp["ds"], exp["exp_p10"], exp["exp_p90"], "expected P10-P90",
              EXPECTED_BAND, "expected")
    if len(past):
        fig.add_trace(go.Scatter(x=past["ds"], y=past["y"], mode="lines", name="actual",
                                 line={"color": ACTUAL, "width": 1.3}))
    if len(future):
        _band(fig, future["ds"], future["p10"], future["p90"], "forecast P10-P90", BAND,
              "forecast")
        fig.add_trace(go.Scatter(x=future["ds"], y=future["p50"], mode="lines",
                                 name="forecast P50", line={"color": FORECAST, "width": 2}))
    flagged = past[past["is_anomaly"].astype(bool)] if len(past) else past
    if len(flagged):
        fig.add_trace(go.Scatter(
            x=flagged["ds"], y=flagged["y"], mode="markers", name="anomaly",
            marker={"color": ANOMALY, "size": 10, "symbol": "x"},
            text=flagged["anomaly_type"].astype(str) + ": " + flagged["reason"].astype(str),
            hovertemplate="%{x}<br>%{text}<extra></extra>"))
    closed = frame[frame["note"] == "closed"]
    if len(closed):
        fig.add_trace(go.Scatter(x=closed["ds"], y=[0] * len(closed), mode="markers",
                                 name="closed", marker={"color": CLOSED, "size": 6,
                                                        "symbol": "square"}))
    for cov in known:
        if cov in frame.columns:
            on = frame[pd.to_numeric(frame[cov], errors="coerce").fillna(0) > 0]
            if len(on):
                part = on["part"].map({"history": "", "forecast": " (planned)"})
                fig.add_trace(go.Scatter(
                    x=on["ds"], y=[0] * len(on), mode="markers", name=f"{cov} on",
                    marker={"color": PROMO, "size": 7, "symbol": "triangle-up"},
                    text=cov + part, hovertemplate="%{x}: %{text}<extra></extra>"))
    fig.update_layout(title=title, height=430, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis_title=target, hovermode="x unified",
                      legend={"orientation": "h", "y": -0.15})
    return fig


def anomaly_figure(history: pd.DataFrame, day: dt.date, title: str, target: str
                   ) -> go.Figure:
    """A series around one flagged day: actual, expected band, the day highlighted."""
    fig = go.Figure()
    exp = history[history["exp_p50"].notna()]
    if len(exp):
        _band(fig, exp["ds"], exp["exp_p10"], exp["exp_p90"], "expected P10-P90",
              EXPECTED_BAND, "expected")
        fig.add_trace(go.Scatter(x=exp["ds"], y=exp["exp_p50"], mode="lines", name="expected",
                                 line={"color": CLOSED, "dash": "dot"}))
    fig.add_trace(go.Scatter(x=history["ds"], y=history["y"], mode="lines+markers",
                             name="actual", line={"color": ACTUAL}, marker={"size": 4}))
    flagged = history[history["is_anomaly"].astype(bool)]
    if len(flagged):
        fig.add_trace(go.Scatter(x=flagged["ds"], y=flagged["y"], mode="markers",
                                 name="anomaly", marker={"color": ANOMALY, "size": 11,
                                                         "symbol": "x"}))
    fig.add_vline(x=pd.Timestamp(day).timestamp() * 1000, line={"color": ANOMALY,
                                                                "dash": "dash"})
    fig.update_layout(title=title, height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis_title=target, legend={"orientation": "h", "y": -0.2})
    return fig


def whatif_figure(table: pd.DataFrame, title: str) -> go.Figure:
    fig = go.Figure()
    _band(fig, table["date"], table["p10_whatif"], table["p90_whatif"], "what-if P10-P90",
          BAND, "whatif")
    fig.add_trace(go.Scatter(x=table["date"], y=table["p50_base"], mode="lines",
                             name="as planned P50", line={"color": CLOSED, "dash": "dot"}))
    fig.add_trace(go.Scatter(x=table["date"], y=table["p50_whatif"], mode="lines",
                             name="what-if P50", line={"color": FORECAST, "width": 2}))
    fig.update_layout(title=title, height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def by_figure(table: pd.DataFrame, by: str, value: str, title: str) -> go.Figure:
    """One line (or bar group, for a key) per method of ``value`` against ``by``."""
    fig = go.Figure()
    for method, g in table.groupby("method", sort=False):
        if by == "step":
            fig.add_trace(go.Scatter(x=g[by], y=g[value], mode="lines+markers", name=method))
        else:
            fig.add_trace(go.Bar(x=g[by].astype(str), y=g[value], name=method))
    fig.update_layout(title=title, height=330, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title="periods ahead" if by == "step" else by, yaxis_title=value,
                      legend={"orientation": "h", "y": -0.25})
    return fig


def drift_figure(drift: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=drift["ds"], y=drift["drifted_share"], mode="lines+markers",
                             name="drifted share of columns"))
    retrain = drift[drift["retrain"].astype(bool)]
    if len(retrain):
        fig.add_trace(go.Scatter(x=retrain["ds"], y=retrain["drifted_share"], mode="markers",
                                 name="retrain asked", marker={"color": ANOMALY, "size": 12,
                                                               "symbol": "star"}))
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 20, "b": 10},
                      yaxis_title="share drifted", legend={"orientation": "h", "y": -0.3})
    return fig
