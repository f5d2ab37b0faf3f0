"""Anomaly types and one-line reasons a planner can act on, for rows the detector flagged.
"""

from __future__ import annotations

import pandas as pd

from forecast_platform.anomalies.context import period_name

LEVEL_SHIFT_PERIODS = 3  # a run this long (same sign, |z| > RUN_Z) reads as a level shift


def _fmt(v: float) -> str:
    """A value as a reason quotes it: whole units, one decimal when small, and three
    significant digits when huge (a reason must stay one short line whatever the value)."""
    if abs(v) >= 1e7:
        return f"{v:.3g}"
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"


def classify(rows: pd.DataFrame, step_days: int = 1) -> pd.DataFrame:
    """``anomaly_type`` and a one-line ``reason`` per row (rows from ``context_features``).

    zero_run: no sales (a stock-out, or a feed that stopped); level_shift: the period ends a run
    of at least ``LEVEL_SHIFT_PERIODS`` periods on the same side of the expectation; otherwise
    spike (above) or dip (below). ``step_days`` names the period in the reasons (day, week):
    runs are counted in the data's periods.
    """
    unit = period_name(step_days)
    out_type, out_reason = [], []
    for r in rows.itertuples(index=False):
        y, p50 = float(r.y), float(r.p50)
        if y == 0 and r.zero_run >= 1:
            kind = "zero_run"
            periods = int(r.zero_run)
            reason = (f"no sales for {periods} {unit}{'s' if periods > 1 else ''} vs expected "
                      f"{_fmt(p50)} a {unit} ({_fmt(r.zero_expected)} in all): stock-out?")
        elif abs(r.run_len) >= LEVEL_SHIFT_PERIODS:
            kind = "level_shift"
            side, band = ("above", f"P90 {_fmt(r.p90)}") if r.run_len > 0 \
                else ("below", f"P10 {_fmt(r.p10)}")
            reason = (f"{unit} {int(abs(r.run_len))} in a row {side} expectation: sales {_fmt(y)} "
                      f"vs expected {_fmt(p50)} ({band}); the run is at {r.run_ratio:.2f}x "
                      "the usual")
        elif y >= p50:
            kind = "spike"
            reason = (f"sales {_fmt(y)} vs expected {_fmt(p50)} (P90 {_fmt(r.p90)}), "
                      f"{r.ratio:.1f}x the usual")
        else:
            kind = "dip"
            reason = (f"sales {_fmt(y)} vs expected {_fmt(p50)} (P10 {_fmt(r.p10)}), "
                      f"{r.ratio:.2f}x the usual")
        out_type.append(kind)
        out_reason.append(reason)
    return pd.DataFrame({"anomaly_type": out_type, "reason": out_reason}, index=rows.index)
