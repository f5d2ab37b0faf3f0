"""Data drift (Evidently 0.7) and forecast degradation: the pure core of the monitoring loop.

``drift_report`` compares a recent window of feature rows (the *current* data) with the rows the
champion was trained on (the *reference*) and returns a ``DriftSummary``: the verdict, one row
per column, and the Evidently snapshot for the self-contained HTML report. Column types are
declared (``DataDefinition``), never guessed: a 0/1 promotion flag guessed as numerical would be
tested with a distance on a two-point distribution, and a float feature with few distinct values
in a short window could be guessed categorical.

Bounded cost: each side is sampled (deterministically, without replacement) to at most
``max_rows`` rows, 10,000 by default. With more than 1,000 reference rows Evidently's default
tests are distances (normed Wasserstein for numerical, Jensen-Shannon for categorical;
threshold 0.1), which do not depend on the sample size the way p-value tests do, so sampling
changes the scores by a little noise, well below the threshold, not the verdict
(``benchmarks/monitoring.py`` compares 10k with 20k rows; figures in docs/benchmarks.md). The
report's time then no longer grows with the number of series or the length of the reference
window: most of it is Evidently building plotly figures per column, and more rows per side
only add to it.

``performance_degradation`` is the other signal: once actuals arrive, the rolling error of the
forecasts made for those days against the error the backtest promised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecast_platform.features.sql import KNOWN_IN_ADVANCE, FeaturePlan
from forecast_platform.settings import disable_telemetry

DEFAULT_MAX_ROWS = 10_000
DEFAULT_SEED = 0
# Normed Wasserstein distance (in reference standard deviations) above which a numerical column
# drifts. Evidently's default, 0.1, flags ordinary year-over-year growth: on clean synthetic data
# (5 % mean annual growth) the target scores 0.08-0.105 against the same weeks a year earlier,
# while the generator's drift (level x1.6) scores 0.86-1.03. 0.2 keeps a 2x margin on both sides.
DEFAULT_NUM_THRESHOLD = 0.2

# Date-derived features: a 28-day window always differs from a year of reference in day of
# year, month, week or holiday proximity, so monitoring them would flag every report.
CALENDAR_FEATURES = frozenset({
    "dow", "dom", "doy", "week", "month", "year", "dow_sin", "dow_cos", "doy_sin", "doy_cos",
    "is_holiday", "days_to_holiday",
})
# Pooled all-series levels: one value per date shared by every series, so a 28-day window holds
# 28 values of a slow curve and its distance to a year of that curve is large even on clean data
# (normed Wasserstein 1.5-1.9 on the synthetic set). Their inputs (the target) are monitored.
DATE_LEVEL_FEATURES = frozenset({"level_all", "level_all_yearly", "yoy"})

COLUMN_FIELDS = (
    "column", "kind", "method", "score", "threshold", "drifted", "reference_mean", "current_mean",
)


def monitored_columns(
    plan: FeaturePlan, target: str = "y", extra_numerical: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """``(numerical, categorical)`` columns worth watching for a feature plan.

    The target, every history-derived feature, and the dataset's known covariates; calendar
    features and per-date pooled levels are left out (see ``CALENDAR_FEATURES`` and
    ``DATE_LEVEL_FEATURES``). Known covariates of type int, bool or str
    (promotion flags, holiday codes) are categorical, float ones numerical. ``extra_numerical``
    adds e.g. the champion's prediction columns (``p50``).
    """
    known = plan.spec.known
    numerical = [target]
    categorical: list[str] = []
    for feature in plan.features:
        if feature.name in CALENDAR_FEATURES | DATE_LEVEL_FEATURES:
            continue
        if feature.safe_horizon == KNOWN_IN_ADVANCE and feature.name in known:
            if known[feature.name] == "float":
                numerical.append(feature.name)
            else:
                categorical.append(feature.name)
        elif feature.safe_horizon != KNOWN_IN_ADVANCE:
            numerical.append(feature.name)
    numerical += [c for c in extra_numerical if c not in numerical]
    return numerical, categorical


def seasonal_reference(
    frame: pd.DataFrame,
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    years: int = 1,
    season_days: int = 364,
    date_column: str = "ds",
) -> pd.DataFrame:
    """The rows of ``frame`` in the current window ``[start, end]`` moved back 1..``years``
    seasons: the part of the training data that is comparable with the current window.

    Retail data is seasonal: a clean September sits ~10 % above the yearly mean and a clean
    December far above it, so a 28-day window compared with a whole training year drifts every
    summer and every Christmas (normed Wasserstein of the target 0.1-0.8 on clean synthetic
    data). The same weeks of earlier years, 364 days back so weekdays line up, differ only by
    growth. ``frame`` is the champion's training rows; pass ``years`` > 1 for more rows.
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    dates = pd.to_datetime(frame[date_column])
    keep = np.zeros(len(frame), dtype=bool)
    for k in range(1, years + 1):
        shift = pd.Timedelta(days=k * season_days)
        keep |= ((dates >= start - shift) & (dates <= end - shift)).to_numpy()
    return frame[keep]


def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """At most ``max_rows`` rows, the same ones for the same input (reports are reproducible)."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index()


@dataclass
class DriftSummary:
    """What one drift report found, small enough for DuckDB rows and Dagster metadata.

    ``columns`` has one row per monitored column: ``column``, ``kind`` (numerical or
    categorical), ``method`` (Evidently's test), ``score`` (a distance, or a p-value for the
    p-value tests Evidently picks on small samples), ``threshold``, ``drifted`` and the two
    means (the share of 1s for a 0/1 flag; NaN for text categories), so a reader sees the
    direction of the change, not only that there is one.
    """

    dataset_drift: bool
    drifted_share: float
    drifted_count: int
    drift_share: float
    columns: pd.DataFrame
    reference_rows: int  # rows compared, after sampling
    current_rows: int
    reference_rows_total: int  # rows given, before sampling
    current_rows_total: int
    seconds: float  # time of drift_report (sampling, Evidently run, parsing)
    snapshot: Any = field(repr=False, default=None)  # evidently Snapshot, for HTML

    @property
    def drifted_columns(self) -> list[str]:
        return self.columns.loc[self.columns["drifted"], "column"].tolist()

    def drifted_among(self, columns: Sequence[str]) -> list[str]:
        """The drifted ones of ``columns``: for a retrain rule on the columns that can move
        within a short window (the target, known covariates, predictions). History features
        lag the target by 91+ days and ratio features ignore level shifts, so the share rule
        over every feature reacts months late to a level drift (see benchmarks/monitoring.py).
        """
        return [c for c in self.drifted_columns if c in set(columns)]

    def top(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` most telling rows: drifted columns first, then by score relative to its
        threshold (a p-value test counts the other way round)."""
        ratio = self.columns["score"] / self.columns["threshold"].where(
            self.columns["threshold"] > 0)
        p_value = self.columns["method"].str.contains("p_value", case=False, regex=False)
        ratio = ratio.where(~p_value, 1.0 / ratio.where(ratio > 0))
        order = self.columns.assign(_r=ratio.fillna(0.0)).sort_values(
            ["drifted", "_r"], ascending=[False, False], kind="stable")
        return order.drop(columns="_r").head(n).reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-column rows): for metadata, alerts and run tags."""
        return {
            "dataset_drift": self.dataset_drift,
            "drifted_share": round(self.drifted_share, 4),
            "drifted_count": self.drifted_count,
            "n_columns": len(self.columns),
            "drift_share": self.drift_share,
            "drifted_columns": self.drifted_columns,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "reference_rows_total": self.reference_rows_total,
            "current_rows_total": self.current_rows_total,
            "seconds": round(self.seconds, 3),
        }

    def save_html(self, path: str | Path) -> Path:
        """Evidently's self-contained report (scripts inline, so a few MB): it opens from disk
        with no server, which is how people reach it from the Dagster UI's path metadata."""
        if self.snapshot is None:
            raise ValueError("this summary has no Evidently snapshot to render")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.snapshot.save_html(str(path))
        return path

    def save_json(self, path: str | Path) -> Path:
        """The summary and the per-column rows as a small JSON file (readable without
        Evidently), next to the HTML."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = json.loads(self.columns.to_json(orient="records"))
        path.write_text(json.dumps({**self.to_dict(), "columns": rows}, indent=1))
        return path


def _numeric_mean(series: pd.Series) -> float:
    values = pd.to_numeric(series, errors="coerce")
    return float(values.mean()) if values.notna().any() else float("nan")


SIGNIFICANT_DIGITS = 12  # numerical values are compared to this many significant digits


def _prepare(frame: pd.DataFrame, numerical: list[str], categorical: list[str]) -> pd.DataFrame:
    """Only the monitored columns, numerical ones as float64 (DuckDB hands over int32, Int64 or
    decimals; Evidently wants one plain dtype per column), to ``SIGNIFICANT_DIGITS`` digits.

    Why round: a feature that is constant up to float noise (``series_dev`` of a one-key
    dataset is the series' mean over itself, 1 +- 1e-16) has a range too small for finite
    histogram bins, and Evidently's binning raises on it ("Too many bins for data range").
    Rounded, it is exactly constant, which Evidently handles. Non-finite values become NaN.
    """
    out = frame[numerical + categorical].copy()
    for col in numerical:
        values = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype="float64")
        out[col] = _round_significant(np.where(np.isfinite(values), values, np.nan))
    return out


def _round_significant(values: np.ndarray) -> np.ndarray:
    """``values`` to ``SIGNIFICANT_DIGITS`` significant digits (NaN and 0 stay as they are)."""
    magnitude = np.abs(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.where(magnitude > 0, np.floor(np.log10(magnitude)), 0.0)
        scale = 10.0 ** (SIGNIFICANT_DIGITS - 1 - exponent)
        return np.round(values * scale) / scale


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    drift_share: float = 0.5,
    *,
    categorical: Sequence[str] = (),
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = DEFAULT_SEED,
    num_method: str = "wasserstein",
    cat_method: str = "jensenshannon",
    num_threshold: float | None = DEFAULT_NUM_THRESHOLD,
    cat_threshold: float | None = None,
) -> DriftSummary:
    """Evidently's ``DataDriftPreset`` over ``columns``: is ``current`` unlike ``reference``?

    ``categorical`` names the columns (a subset of ``columns``) to test as categories; all others
    are numerical. The dataset drifts when at least ``drift_share`` of the columns drift
    (Evidently's rule). ``num_threshold`` / ``cat_threshold`` override Evidently's per-method
    default thresholds (None keeps it; see ``DEFAULT_NUM_THRESHOLD`` for ours). Pass a
    seasonally comparable reference (``seasonal_reference``), not a whole year.

    Columns with no values on either side cannot be tested: they are reported with method
    ``"no values"`` and never count as drifted, so an empty feature cannot raise (or hide) a
    drift alarm. The tests are fixed (Evidently's own choice for over 1,000 reference rows:
    normed Wasserstein, Jensen-Shannon) rather than left to Evidently, which switches to p-value
    tests on small samples: there a threshold means a significance level, and our 0.2 would
    turn into a 20 % false-alarm rate for a short window of few series.
    """
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"columns missing from the reference or current data: {missing}")
    unknown = sorted(set(categorical) - set(columns))
    if unknown:
        raise ValueError(f"categorical columns {unknown} are not among the monitored columns")
    if reference.empty or current.empty:
        raise ValueError(
            f"drift needs rows on both sides: reference {len(reference)}, current {len(current)}")
    if not 0.0 < drift_share <= 1.0:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")

    disable_telemetry()  # before Evidently is imported
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    started = time.perf_counter()
    ref = sample_rows(reference, max_rows, seed)
    cur = sample_rows(current, max_rows, seed)
    empty = [c for c in columns if ref[c].notna().sum() == 0 or cur[c].notna().sum() == 0]
    tested = [c for c in columns if c not in empty]
    cats = [c for c in tested if c in set(categorical)]
    nums = [c for c in tested if c not in set(categorical)]

    rows: list[dict[str, Any]] = []
    snapshot = None
    count = 0
    if tested:
        definition = DataDefinition(numerical_columns=nums, categorical_columns=cats)
        report = Report(
            [DataDriftPreset(columns=tested, drift_share=drift_share, num_method=num_method,
                             cat_method=cat_method, num_threshold=num_threshold,
                             cat_threshold=cat_threshold)],
            include_tests=True,
        )
        # Evidently correlates the columns with each other: a column constant in the window (a
        # price that did not change) has no correlation, and numpy would print a warning block
        # for its 0 / 0. Its drift test is unaffected.
        with np.errstate(divide="ignore", invalid="ignore"):
            snapshot = report.run(
                current_data=Dataset.from_pandas(_prepare(cur, nums, cats),
                                                 data_definition=definition),
                reference_data=Dataset.from_pandas(_prepare(ref, nums, cats),
                                                   data_definition=definition),
            )
        count, _, rows = _parse(snapshot.dict(), set(cats))
    for col in empty:
        rows.append({"column": col, "kind": "categorical" if col in cats else "numerical",
                     "method": "no values", "score": float("nan"), "threshold": float("nan"),
                     "drifted": False})
    by_column = {r["column"]: r for r in rows}
    table = pd.DataFrame([by_column[c] for c in columns if c in by_column],
                         columns=list(COLUMN_FIELDS[:6]))
    table["reference_mean"] = [_numeric_mean(ref[c]) for c in table["column"]]
    table["current_mean"] = [_numeric_mean(cur[c]) for c in table["column"]]
    table["drifted"] = table["drifted"].astype(bool)
    # Evidently's share is over the columns it tested; ours is over all monitored columns.
    n_columns = max(len(columns), 1)
    drifted_count = int(table["drifted"].sum())
    if tested and drifted_count != count:
        raise RuntimeError(f"Evidently counted {count} drifted columns, its tests {drifted_count}")
    drifted_share = drifted_count / n_columns
    return DriftSummary(
        dataset_drift=drifted_share >= drift_share,
        drifted_share=drifted_share,
        drifted_count=drifted_count,
        drift_share=drift_share,
        columns=table,
        reference_rows=len(ref),
        current_rows=len(cur),
        reference_rows_total=len(reference),
        current_rows_total=len(current),
        seconds=time.perf_counter() - started,
        snapshot=snapshot,
    )


# Evidently reports a method by the name it was given: ours are short names, its auto-chosen
# ones display names. Report display names either way, so the column reads the same.
_METHOD_NAMES = {"wasserstein": "Wasserstein distance (normed)",
                 "jensenshannon": "Jensen-Shannon distance"}


def _parse(
    snap: dict[str, Any], categorical: set[str]
) -> tuple[int, float, list[dict[str, Any]]]:
    """Evidently 0.7 snapshot dict -> (drifted count, share, per-column rows).

    One ``DriftedColumnsCount`` metric (``value = {count, share}``) and one ``ValueDrift`` per
    column (``value`` = score, ``config`` = column, method, threshold); each ``ValueDrift`` has a
    test whose status is ``FAIL`` exactly when Evidently detected drift, which is the flag we
    use: it stays right for p-value tests, where a *small* score means drift.
    """
    status = {t["metric_config"]["metric_id"]: t["status"] for t in snap.get("tests", [])}
    count, share, rows = 0, 0.0, []
    for metric in snap["metrics"]:
        kind = metric["config"]["type"].rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
        elif kind == "ValueDrift":
            config = metric["config"]
            score, threshold = float(metric["value"]), float(config["threshold"])
            test = status.get(metric["id"])
            if test is None:  # no test recorded: decide as Evidently's stattests do
                is_p_value = "p_value" in str(config["method"]).lower()
                drifted = score < threshold if is_p_value else score >= threshold
            else:
                drifted = test == "FAIL"
            rows.append({
                "column": config["column"],
                "kind": "categorical" if config["column"] in categorical else "numerical",
                "method": _METHOD_NAMES.get(str(config["method"]), str(config["method"])),
                "score": score,
                "threshold": threshold,
                "drifted": bool(drifted),
            })
    return count, share, rows


# --------------------------------------------------------------------------- degradation

_METRICS = ("smape", "mae", "rmse", "mape")


def _point_terms(y: np.ndarray, f: np.ndarray, metric: str) -> np.ndarray:
    """Per-point terms whose mean is the metric (rmse: of squares), as in forecasting.metrics,
    so the rolling error is the same number the backtest reports over those points."""
    if metric == "smape":
        denom = np.abs(y) + np.abs(f)
        return np.where(denom == 0, 0.0, 200.0 * np.abs(f - y) / np.where(denom == 0, 1.0, denom))
    if metric == "mae":
        return np.abs(f - y)
    if metric == "rmse":
        return (f - y) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y == 0, np.nan, 100.0 * np.abs((f - y) / y))  # mape: skip zero actuals


def performance_degradation(
    errors: pd.DataFrame,
    expected_error: float | Mapping[Any, float],
    factor: float,
    window: int,
    *,
    metric: str = "smape",
    min_days: int | None = None,
) -> pd.DataFrame:
    """Rolling error of forecasts against the backtest's promise; one row per day (and model).

    ``errors``: forecast points with actuals: ``ds``, ``y`` (actual), ``p50`` (the forecast),
    and optionally ``forecaster_version`` (each version is judged on its own forecasts: a
    retrained model does not inherit the old one's bad weeks). ``expected_error`` is the
    backtest's ``metric`` for the served model, or one per forecaster version (each version is
    held to its own backtest's promise; every version in ``errors`` must have one). A day is
    ``degraded`` when the error over the ``window`` calendar days ending on it exceeds
    ``expected_error * factor`` and at least ``min_days`` (default ``window``) of those days
    have points: a single bad day is noise, not degradation.

    The rolling error pools the window's points (sum of per-point terms / their count), so it
    equals ``forecasting.metrics.<metric>`` over those points. Returns ``ds``,
    [``forecaster_version``], ``points``, ``error`` (the day's), ``rolling_error``,
    ``rolling_days``, ``expected_error``, ``threshold``, ``ratio`` (rolling / expected) and
    ``degraded``.
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    if window < 1:
        raise ValueError(f"window must be at least 1 day, got {window}")
    promised = dict(expected_error) if isinstance(expected_error, Mapping) else None
    bad = [v for v in (promised.values() if promised is not None else [expected_error])
           if not np.isfinite(v) or v <= 0]
    if factor <= 0 or bad:
        raise ValueError(f"need factor > 0 and expected_error > 0, got {factor}, {expected_error}")
    min_days = window if min_days is None else min_days
    missing = {"ds", "y", "p50"} - set(errors.columns)
    if missing:
        raise ValueError(f"errors is missing columns {sorted(missing)}")
    by_version = "forecaster_version" in errors.columns
    keys = ["forecaster_version"] if by_version else []
    out_columns = ["ds", *keys, "points", "error", "rolling_error", "rolling_days",
                   "expected_error", "threshold", "ratio", "degraded"]
    points = errors.dropna(subset=["y", "p50"])
    if points.empty:
        return pd.DataFrame(columns=out_columns)

    terms = _point_terms(points["y"].to_numpy(float), points["p50"].to_numpy(float), metric)
    frame = points[keys].assign(ds=pd.to_datetime(points["ds"]).dt.normalize(), term=terms)
    frame = frame[np.isfinite(frame["term"])]
    daily = frame.groupby([*keys, "ds"], sort=True)["term"].agg(["sum", "count"]).reset_index()

    parts = []
    for _, group in (daily.groupby(keys, sort=True) if keys else [(None, daily)]):
        g = group.set_index("ds").sort_index()
        roll = g[["sum", "count"]].rolling(f"{window}D").sum()
        g = g.assign(roll_sum=roll["sum"], roll_count=roll["count"],
                     rolling_days=g["count"].rolling(f"{window}D").count().astype(int))
        parts.append(g.reset_index())
    daily = pd.concat(parts, ignore_index=True)

    def finish(total: pd.Series, count: pd.Series) -> pd.Series:
        mean = total / count
        return np.sqrt(mean) if metric == "rmse" else mean

    if promised is None:
        expected = pd.Series(float(expected_error), index=daily.index)
    else:
        if not by_version:
            raise ValueError("expected_error per forecaster version needs a forecaster_version "
                             "column")
        missing_versions = sorted(set(daily["forecaster_version"]) - set(promised))
        if missing_versions:
            raise ValueError(f"no expected_error for forecaster versions {missing_versions}")
        expected = daily["forecaster_version"].map(promised).astype(float)
    result = pd.DataFrame({
        "ds": daily["ds"],
        **{k: daily[k] for k in keys},
        "points": daily["count"].astype(int),
        "error": finish(daily["sum"], daily["count"]),
        "rolling_error": finish(daily["roll_sum"], daily["roll_count"]),
        "rolling_days": daily["rolling_days"],
        "expected_error": expected,
        "threshold": expected * factor,
    })
    result["ratio"] = result["rolling_error"] / result["expected_error"]
    result["degraded"] = (result["rolling_error"] > result["threshold"]) & (
        result["rolling_days"] >= min_days)
    return result.sort_values(["ds", *keys], ignore_index=True)[out_columns]
