"""What the dashboard shows, selected from the warehouse into a snapshot folder as Parquet.

Runs inside the ``dashboard_snapshot`` asset (in the ``duckdb`` pool, so never beside a
writer). DuckDB writes the big tables straight to Parquet (``COPY ... TO``), sorted by
``series_id`` in small row groups so that the app reads one series without scanning the
rest. Every table is optional: a warehouse before its first training run still gives a
snapshot (history and data quality), and the pages say what is missing and why.

Tables written (name -> what):
    series       the series index: id, kind (series / aggregate), label, key values, counts
    history      per series (and aggregate) and period: actual, known covariates, the
                 out-of-sample expected band and the anomaly score, flag, type and reason
    forecasts    per series (and aggregate) and future period: P10/P50/P90, open or closed
    plan         planned known covariates of future periods (``covariate_plan``), if any
    anomalies    flagged series-periods only, newest first
    registry     every model version without its bytes
    backtest     the champion's backtest points (long form: model and baselines)
    partitions   per partition: raw, valid and rejected rows, rejected files
    rejects      quarantined rows with their reasons (newest first, capped)
    file_rejects landing files that could not be read, with the reason
    checks       data-quality check results (given by the asset: they live in Dagster)
    drift        the drift summary per report day; drift_columns the per-column tests
    performance  forecast performance per day and model version
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.warehouse import tables
from forecast_platform.warehouse.store import (
    copy_to_parquet,
    quote,
    table_columns,
    table_exists,
)

ROW_GROUP_ROWS = 16_384  # a series is a few hundred rows: one read touches one or two groups
MAX_REJECTS = 20_000  # the quarantine's newest rows; the warehouse keeps them all
TOTAL = "all series"  # the aggregate of every series
KEY_SEP = "|"  # series_id = key values joined by this (validation's convention)


def aggregate_id(key: str, value: object) -> str:
    """The id of the aggregate of every series with ``key == value`` (a store total)."""
    return f"{key}={value}"


def _copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path, params: list | None = None
          ) -> int:
    """Write a query's result to Parquet; returns its rows."""
    return copy_to_parquet(con, sql, path, params, ROW_GROUP_ROWS)


def _write_frame(frame: pd.DataFrame, path: Path) -> int:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                   row_group_size=ROW_GROUP_ROWS, compression="zstd")
    return len(frame)


def write_tables(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, folder: Path,
                 checks: pd.DataFrame | None = None) -> dict[str, Any]:
    """Fill ``folder`` with the snapshot's Parquet files; returns the manifest's fields."""
    counts: dict[str, int] = {}
    exists = {t: table_exists(con, t) for t in (
        tables.VALIDATED, tables.RAW, tables.REJECTS, tables.FILE_REJECTS, tables.FORECASTS,
        tables.EXPECTED, tables.ANOMALIES, tables.REGISTRY, tables.BACKTEST,
        tables.DRIFT_SUMMARY, tables.DRIFT_COLUMNS, tables.PERFORMANCE, tables.COVARIATE_PLAN)}
    keys = list(spec.keys)
    numeric_known = [c for c, kind in spec.known.items() if kind != "str"]
    text_known = [c for c, kind in spec.known.items() if kind == "str"]
    info: dict[str, Any] = {
        "dataset": spec.name, "frequency": spec.frequency, "step_days": spec.step_days,
        "keys": keys, "key_types": {k: spec.key_type(k) for k in keys}, "target": spec.target,
        "known": dict(spec.known), "categories": {k: list(v) for k, v in spec.categories.items()
                                                  if k in spec.known},
        "metric": spec.metric, "has_closure_rules": bool(spec.rules),
        "aggregate_keys": keys if len(keys) > 1 else [],
    }
    if exists[tables.VALIDATED]:
        counts.update(_series_and_history(con, spec, folder, exists, numeric_known,
                                          text_known, info))
    if exists[tables.FORECASTS]:
        counts["forecasts"] = _forecasts(con, spec, folder, info)
    if exists[tables.COVARIATE_PLAN]:
        counts["plan"] = _plan(con, spec, folder, numeric_known, text_known)
    if exists[tables.ANOMALIES]:
        counts["anomalies"] = _copy(con, f"""
            SELECT CAST(ds AS DATE) AS ds, series_id, y, p10, p50 AS expected, p90, score,
                   anomaly_type, reason, detector_version
            FROM {tables.ANOMALIES} WHERE is_anomaly ORDER BY ds DESC, score DESC""",
            folder / "anomalies.parquet")
    if exists[tables.REGISTRY]:
        counts["registry"] = _copy(con, f"""
            SELECT model_name, version, status, created_at, horizon, train_start, train_end,
                   features, params, metrics, gate, mlflow_run_id, mlflow_model_version,
                   dagster_run_id, trigger
            FROM {tables.REGISTRY} ORDER BY model_name, version""", folder / "registry.parquet")
        info.update(_champion(con, spec))
    if exists[tables.BACKTEST] and info.get("champion_version") is not None:
        counts["backtest"] = _copy(con, f"""
            SELECT * FROM {tables.BACKTEST} WHERE forecaster_version = ?
            ORDER BY series_id, origin, ds, method""", folder / "backtest.parquet",
            [info["champion_version"]])
    counts.update(_quality(con, spec, folder, exists))
    if checks is not None and len(checks):
        counts["checks"] = _write_frame(checks, folder / "checks.parquet")
    if exists[tables.DRIFT_SUMMARY]:
        counts["drift"] = _copy(con, f"SELECT * FROM {tables.DRIFT_SUMMARY} ORDER BY ds DESC",
                                folder / "drift.parquet")
    if exists[tables.DRIFT_COLUMNS]:
        counts["drift_columns"] = _copy(
            con, f"SELECT * FROM {tables.DRIFT_COLUMNS} ORDER BY ds DESC, drifted DESC, score",
            folder / "drift_columns.parquet")
    if exists[tables.PERFORMANCE] and table_columns(con, tables.PERFORMANCE):
        counts["performance"] = _copy(con, f"SELECT * FROM {tables.PERFORMANCE}",
                                      folder / "performance.parquet")
    return {**info, "tables": counts}


def _series_and_history(con, spec: DatasetSpec, folder: Path, exists: dict[str, bool],
                        numeric_known: list[str], text_known: list[str], info: dict
                        ) -> dict[str, int]:
    keys = list(spec.keys)
    date, target = quote(spec.date_column), quote(spec.target)
    known_sel = "".join(f", v.{quote(c)}" for c in (*numeric_known, *text_known))
    expected = (f"""LEFT JOIN (SELECT series_id, CAST(ds AS DATE) AS ds,
                        arg_max(p10, origin) AS p10, arg_max(p50, origin) AS p50,
                        arg_max(p90, origin) AS p90
                    FROM {tables.EXPECTED} GROUP BY ALL) e
                ON e.series_id = v.series_id AND e.ds = CAST(v.{date} AS DATE)"""
                if exists[tables.EXPECTED] else "")
    anomalies = (f"""LEFT JOIN {tables.ANOMALIES} a
                 ON a.series_id = v.series_id AND CAST(a.ds AS DATE) = CAST(v.{date} AS DATE)"""
                 if exists[tables.ANOMALIES] else "")
    e = (lambda col: f"e.{col}") if expected else (lambda col: "CAST(NULL AS DOUBLE)")
    a = (lambda col, kind="DOUBLE": f"a.{col}") if anomalies else \
        (lambda col, kind="DOUBLE": f"CAST(NULL AS {kind})")
    band = (f"coalesce({a('p10')}, {e('p10')}) AS exp_p10, "
            f"coalesce({a('p50')}, {e('p50')}) AS exp_p50, "
            f"coalesce({a('p90')}, {e('p90')}) AS exp_p90")
    series_hist = f"""
        SELECT v.series_id, CAST(v.{date} AS DATE) AS ds, CAST(v.{target} AS DOUBLE) AS y
               {known_sel}, {band}, {a('score')} AS score,
               coalesce({a('is_anomaly', 'BOOLEAN')}, false) AS is_anomaly,
               {a('anomaly_type', 'VARCHAR')} AS anomaly_type, {a('reason', 'VARCHAR')} AS reason
        FROM {tables.VALIDATED} v {expected} {anomalies}"""
    # Aggregates: sums of the actuals; a covariate is "on" when it is on for any series.
    agg_known = "".join(f", max(v.{quote(c)}) AS {quote(c)}" for c in numeric_known) + "".join(
        f", CAST(NULL AS VARCHAR) AS {quote(c)}" for c in text_known)
    empty = ("CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), "
             "CAST(NULL AS DOUBLE), false, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR)")
    parts = [series_hist]
    for k in info["aggregate_keys"]:
        parts.append(f"""
            SELECT '{k}=' || CAST(v.{quote(k)} AS VARCHAR), CAST(v.{date} AS DATE),
                   sum(CAST(v.{target} AS DOUBLE)) {agg_known}, {empty}
            FROM {tables.VALIDATED} v GROUP BY 1, 2""")
    parts.append(f"""
        SELECT '{TOTAL}', CAST(v.{date} AS DATE), sum(CAST(v.{target} AS DOUBLE)) {agg_known},
               {empty}
        FROM {tables.VALIDATED} v GROUP BY 2""")
    history_sql = " UNION ALL ".join(parts) + " ORDER BY series_id, ds"
    counts = {"history": _copy(con, history_sql, folder / "history.parquet")}

    key_text = ", ".join(f"CAST({quote(k)} AS VARCHAR) AS {quote(k)}" for k in keys)
    index = con.execute(f"""
        SELECT series_id, {key_text}, count(*) AS periods, min(CAST({date} AS DATE)) AS first,
               max(CAST({date} AS DATE)) AS last, avg(CAST({target} AS DOUBLE)) AS mean
        FROM {tables.VALIDATED} GROUP BY ALL ORDER BY series_id""").df()
    index.insert(1, "kind", "series")
    index["label"] = index[keys].astype(str).apply(
        lambda row: " · ".join(f"{k} {v}" for k, v in zip(keys, row, strict=True)), axis=1) \
        if len(index) else pd.Series(dtype=str)
    aggregates = []
    for k in info["aggregate_keys"]:
        grouped = index.groupby(k, sort=True).agg(
            periods=("periods", "max"), first=("first", "min"), last=("last", "max"),
            members=("series_id", "size"), mean=("mean", "sum")).reset_index()
        # Records, not itertuples: a key named like "Store Name" is no attribute.
        for row in grouped.to_dict("records"):
            value = row[k]
            aggregates.append({"series_id": aggregate_id(k, value), "kind": "aggregate",
                               k: value, "periods": row["periods"], "first": row["first"],
                               "last": row["last"], "mean": row["mean"],
                               "label": f"{k} {value} (total of {row['members']} series)"})
    if len(index):
        aggregates.append({"series_id": TOTAL, "kind": "aggregate",
                           "periods": int(index["periods"].max()), "first": index["first"].min(),
                           "last": index["last"].max(), "mean": float(index["mean"].sum()),
                           "label": f"{TOTAL} (total of {len(index)} series)"})
    index = pd.concat([index, pd.DataFrame(aggregates)], ignore_index=True) \
        if aggregates else index
    index["search"] = (index["series_id"] + " " + index["label"]).str.lower()
    index = index.sort_values("series_id", kind="stable").reset_index(drop=True)
    counts["series"] = _write_frame(index, folder / "series.parquet")
    info["series_count"] = int((index["kind"] == "series").sum())
    info["history_end"] = str(index["last"].max()) if len(index) else None
    return counts


def _forecasts(con, spec: DatasetSpec, folder: Path, info: dict) -> int:
    cols = table_columns(con, tables.FORECASTS)
    is_open = "coalesce(is_open, true)" if "is_open" in cols else "true"
    keys_sel = "".join(f", {quote(k)}" for k in spec.keys)
    latest = f"""
        SELECT series_id {keys_sel}, CAST(ds AS DATE) AS ds, origin, forecaster_version,
               p10, p50, p90, {is_open} AS is_open
        FROM {tables.FORECASTS}
        QUALIFY origin = max(origin) OVER (PARTITION BY series_id)"""
    parts = ["SELECT series_id, ds, origin, forecaster_version, p10, p50, p90, is_open "
             "FROM latest"]
    for k in info["aggregate_keys"]:
        parts.append(f"""SELECT '{k}=' || CAST({quote(k)} AS VARCHAR), ds, max(origin),
                                max(forecaster_version), sum(p10), sum(p50), sum(p90),
                                bool_or(is_open)
                         FROM latest GROUP BY 1, 2""")
    parts.append(f"""SELECT '{TOTAL}', ds, max(origin), max(forecaster_version), sum(p10),
                            sum(p50), sum(p90), bool_or(is_open) FROM latest GROUP BY 2""")
    sql = f"WITH latest AS ({latest}) " + " UNION ALL ".join(parts) + " ORDER BY series_id, ds"
    rows = _copy(con, sql, folder / "forecasts.parquet")
    first, last, origin = con.execute(
        f"SELECT min(CAST(ds AS DATE)), max(CAST(ds AS DATE)), max(origin) "
        f"FROM {tables.FORECASTS}").fetchone()
    info.update(forecast_start=str(first) if first else None,
                forecast_end=str(last) if last else None,
                forecast_origin=str(origin) if origin else None)
    return rows


def _plan(con, spec: DatasetSpec, folder: Path, numeric_known: list[str],
          text_known: list[str]) -> int:
    cols = set(table_columns(con, tables.COVARIATE_PLAN))
    covs = [c for c in (*numeric_known, *text_known) if c in cols]
    if "series_id" not in cols or "ds" not in cols or not covs:
        return 0
    version = "plan_version" if "plan_version" in cols else "CAST(NULL AS VARCHAR)"
    sel = "".join(f", {quote(c)}" for c in covs)
    agg = "".join(f", max({quote(c)})" if c in numeric_known else
                  ", CAST(NULL AS VARCHAR)" for c in covs)
    keys = [k for k in spec.keys if k in cols] if len(spec.keys) > 1 else []
    parts = [f"SELECT series_id, CAST(ds AS DATE) AS ds {sel}, "
             f"CAST({version} AS VARCHAR) AS plan_version FROM {tables.COVARIATE_PLAN}"]
    for k in keys:
        parts.append(f"SELECT '{k}=' || CAST({quote(k)} AS VARCHAR), CAST(ds AS DATE) {agg}, "
                     f"CAST(max({version}) AS VARCHAR) FROM {tables.COVARIATE_PLAN} GROUP BY 1, 2")
    parts.append(f"SELECT '{TOTAL}', CAST(ds AS DATE) {agg}, CAST(max({version}) AS VARCHAR) "
                 f"FROM {tables.COVARIATE_PLAN} GROUP BY 2")
    return _copy(con, " UNION ALL ".join(parts) + " ORDER BY series_id, ds",
                 folder / "plan.parquet")


def _champion(con, spec: DatasetSpec) -> dict[str, Any]:
    from forecast_platform.forecasting.forecast import model_name

    row = con.execute(
        f"SELECT version, train_start, train_end FROM {tables.REGISTRY} "
        "WHERE model_name = ? AND status = 'champion' ORDER BY version DESC LIMIT 1",
        [model_name(spec)]).fetchall()
    if not row:
        return {"champion_version": None, "forecaster_model": model_name(spec)}
    version, start, end = row[0]
    return {"champion_version": int(version), "forecaster_model": model_name(spec),
            "champion_train_window": f"{start} .. {end}"}


def _quality(con, spec: DatasetSpec, folder: Path, exists: dict[str, bool]) -> dict[str, int]:
    counts: dict[str, int] = {}
    parts = []
    if exists[tables.RAW]:
        parts.append(f"SELECT CAST(partition_date AS DATE) AS d, count(*) AS raw_rows, 0 AS "
                     f"valid_rows, 0 AS rejected_rows, 0 AS rejected_files FROM {tables.RAW} "
                     "GROUP BY 1")
    if exists[tables.VALIDATED]:
        parts.append(f"SELECT CAST({quote(spec.date_column)} AS DATE), 0, count(*), 0, 0 "
                     f"FROM {tables.VALIDATED} GROUP BY 1")
    if exists[tables.REJECTS]:
        parts.append(f"SELECT CAST(partition_date AS DATE), 0, 0, count(*), 0 "
                     f"FROM {tables.REJECTS} GROUP BY 1")
    if exists[tables.FILE_REJECTS]:
        parts.append(f"SELECT CAST(partition_date AS DATE), 0, 0, 0, count(*) "
                     f"FROM {tables.FILE_REJECTS} GROUP BY 1")
    if parts:
        counts["partitions"] = _copy(con, f"""
            SELECT d AS partition_date, CAST(sum(raw_rows) AS BIGINT) AS raw_rows,
                   CAST(sum(valid_rows) AS BIGINT) AS valid_rows,
                   CAST(sum(rejected_rows) AS BIGINT) AS rejected_rows,
                   CAST(sum(rejected_files) AS BIGINT) AS rejected_files
            FROM ({' UNION ALL '.join(parts)})
                 AS t(d, raw_rows, valid_rows, rejected_rows, rejected_files)
            GROUP BY 1 ORDER BY 1 DESC""",
            folder / "partitions.parquet")
    if exists[tables.REJECTS]:
        cols = [c for c in table_columns(con, tables.REJECTS) if c != "_ingested_at"]
        sel = ", ".join(f"CAST({quote(c)} AS VARCHAR) AS {quote(c)}"
                        if c not in ("partition_date", "_rejected_at", "_source_line")
                        else quote(c) for c in cols)
        counts["rejects"] = _copy(con, f"""
            SELECT {sel} FROM {tables.REJECTS}
            ORDER BY partition_date DESC, _source_line LIMIT {MAX_REJECTS}""",
            folder / "rejects.parquet")
    if exists[tables.FILE_REJECTS]:
        counts["file_rejects"] = _copy(con, f"SELECT * FROM {tables.FILE_REJECTS} "
                                            "ORDER BY partition_date DESC",
                                       folder / "file_rejects.parquet")
    return counts


def series_keys(series_id: str, keys: list[str]) -> dict[str, str]:
    """A series id's key values by key name (as text), e.g. "1|7" -> {store: 1, item: 7}."""
    values = series_id.split(KEY_SEP)
    if len(values) != len(keys):
        raise ValueError(f"series id {series_id!r} does not have one value per key {keys}")
    return dict(zip(keys, values, strict=True))

