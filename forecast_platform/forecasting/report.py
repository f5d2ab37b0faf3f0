"""The forecast report: one self-contained HTML page per training run (plots embedded as PNG).

People would rather look at this than read tables: the backtest against the baselines, the
forecasts with their intervals for a few representative series, and what the model relies on.
"""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from forecast_platform.forecasting.backtest import BacktestResult  # noqa: E402

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{padding:.3rem .7rem;border-bottom:1px solid #ddd;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.best{font-weight:bold;color:#0a6}.verdict{padding:.8rem;border-radius:6px;background:#eef6ff}
"""


def figure_png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "<img src='data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode() + "'>"


def representative_series(predictions: pd.DataFrame, n: int = 4) -> list[str]:
    """The best seller, a median series, the slowest seller and one in between."""
    level = predictions.groupby("series_id")["y"].mean().sort_values()
    if level.empty:
        return []
    picks = [level.index[-1], level.index[len(level) // 2], level.index[0],
             level.index[(3 * len(level)) // 4]]
    return list(dict.fromkeys(picks))[:n]


def backtest_plot(predictions: pd.DataFrame, series: list[str]) -> str:
    latest = predictions[predictions["origin"] == predictions["origin"].max()]
    fig, axes = plt.subplots(len(series), 1, figsize=(11, 2.6 * len(series)), squeeze=False)
    for ax, sid in zip(axes[:, 0], series, strict=True):
        s = latest[latest["series_id"] == sid].sort_values("ds")
        ax.fill_between(s["ds"], s["p10"], s["p90"], alpha=0.25, label="P10-P90")
        ax.plot(s["ds"], s["y"], color="black", lw=1, label="actual")
        ax.plot(s["ds"], s["p50"], color="C0", lw=1.5, label="P50")
        if "seasonal_naive_7" in s:
            ax.plot(s["ds"], s["seasonal_naive_7"], color="C3", lw=0.8, ls="--",
                    label="seasonal naive (7)")
        ax.set_title(f"series {sid}: last backtest origin", fontsize=10)
        ax.legend(loc="upper left", fontsize=8, ncol=4)
    return figure_png(fig)


def importance_figure(importance: pd.Series, top: int = 20):
    """Feature importance as a bar chart (share of total gain); MLflow logs it as a PNG too."""
    top_features = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(top_features) + 1))
    ax.barh(top_features.index, top_features.to_numpy() / max(top_features.sum(), 1e-12))
    ax.set_xlabel("share of total gain")
    return fig


def importance_plot(importance: pd.Series, top: int = 20) -> str:
    return figure_png(importance_figure(importance, top))


def metrics_table(result: BacktestResult, metric: str) -> str:
    overall = result.metrics[result.metrics["origin"] == "all"].set_index("method")
    cols = [c for c in ("smape", "mae", "rmse", "wmae", "mape", "rmspe", "bias", "r2",
                        "coverage") if c in overall.columns]
    best = overall[metric].idxmin()
    rows = []
    for method, row in overall.iterrows():
        cls = " class='best'" if method == best else ""
        cells = "".join(f"<td>{row[c]:.3f}</td>" if pd.notna(row[c]) else "<td></td>"
                        for c in cols)
        rows.append(f"<tr><td{cls}>{html.escape(str(method))}</td>{cells}</tr>")
    head = "".join(f"<th>{c}</th>" for c in ["method", *cols])
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def per_origin_table(result: BacktestResult, metric: str) -> str:
    table = result.metrics[result.metrics["origin"] != "all"].pivot(
        index="origin", columns="method", values=metric)
    return table.round(3).to_html(classes="origins")


def render(*, title: str, result: BacktestResult, metric: str, importance: pd.Series,
           verdict_text: str, facts: dict[str, object]) -> str:
    series = representative_series(result.predictions)
    fact_rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                        for k, v in facts.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="verdict">Champion gate: {html.escape(verdict_text)}</p>
<table>{fact_rows}</table>
<h2>Backtest: model against baselines (metric of record: {metric})</h2>
<p>Rolling origins {", ".join(str(o) for o in result.origins)}; every method is scored on exactly
the same points. P10-P90 coverage should be near 0.80.</p>
{metrics_table(result, metric)}
<h3>{metric} per origin</h3>{per_origin_table(result, metric)}
<h2>Forecasts with intervals</h2>{backtest_plot(result.predictions, series) if series else ""}
<h2>What the model relies on</h2>{importance_plot(importance)}
</body></html>"""

