"""The serving bundle: everything the online service needs, as files in one folder.

The service never opens the DuckDB warehouse (one writer per file, and serving must not queue
behind a backfill), so the bundle carries a small, self-sufficient snapshot:

    manifest.json      what the bundle is: dataset spec, feature plan, model facts, windows
    forecaster.bin     the champion forecaster (``Forecaster.to_bytes``)
    history.parquet    validated_sales of every series over the feature lookback before the
                       origin (plus one horizon of recent dates, for explaining and scoring them)
    holidays.parquet   holiday_calendar over the same window and the horizon after the origin
    plan.parquet       covariate_plan over the horizon: the planned known covariates the
                       service answers with by default (a request's scenario overrides them)
    served_features.parquet
                       the feature rows of every served series and date: the recent observed
                       dates' from sales_features, the horizon's by the very SQL of the
                       ``forecasts`` asset over the warehouse; ordered by series and date and
                       numbered (``rn``) in small row groups, so the service reads a request's
                       rows by number instead of computing or holding them all
    served_forecasts.parquet
                       ``rn``, P10/P50/P90 and ``is_open`` of every horizon row, predicted here
                       by the packed forecaster with the closure rules applied
    anomaly/           the anomaly detector's slot: ``model.bin`` + ``info.json`` when one exists,
                       and ``context.parquet``: per series, the actuals and the expected
                       P10/P50/P90 the ``sales_anomalies`` asset reads (``expected_with_actuals``)
                       over the detector's context window before every scorable date

The served rows are the offline features and forecasts, computed once at build time a batch of
rows at a time (the service used to compute them at load: minutes and gigabytes at 50,000
series). History, calendar and plan stay for exact what-ifs: ``snapshot`` runs the same SQL
over them with a scenario in its source.

The spec itself is packed (not only its name): the bundle must keep serving what its model was
trained on even if the dataset registry changes after it was built.

Only folders here: which folder (a BentoML model in its store) is the wiring's business
(``defs/bentoml_store.py``, ``bentos/service.py``), so this module is testable and packable
without BentoML.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from forecast_platform.anomalies.context import INPUT_COLUMNS, day_factors_of, with_day_factors
from forecast_platform.anomalies.detector import anomaly_model_name
from forecast_platform.anomalies.expected import (
    CONTEXT_PERIODS,
    EXPECTED,
    context_days,
    day_factor_inputs,
    expected_with_actuals,
)
from forecast_platform.datasets.spec import ClosureRule, DatasetSpec
from forecast_platform.features.offline import HOLIDAYS_SOURCE
from forecast_platform.features.sql import FeaturePlan, features_select, plan_features
from forecast_platform.forecasting import registry
from forecast_platform.forecasting.closed import apply_closures
from forecast_platform.forecasting.forecaster import Forecaster
from forecast_platform.forecasting.future import at_origin, future_params, future_source
from forecast_platform.warehouse.blocks import DEFAULT_BLOCK_ROWS, series_blocks
from forecast_platform.warehouse.store import copy_to_parquet, quote, table_exists
from forecast_platform.warehouse.tables import CALENDAR, COVARIATE_PLAN, FEATURES, VALIDATED

# 2: the served rows are computed at build time (served_features / served_forecasts).
BUNDLE_FORMAT = 2
MANIFEST_FILE = "manifest.json"
FORECASTER_FILE = "forecaster.bin"
HISTORY_FILE = "history.parquet"
PLAN_FILE = "plan.parquet"
HOLIDAYS_FILE = "holidays.parquet"
ANOMALY_DIR = "anomaly"
ANOMALY_MODEL_FILE = "model.bin"
ANOMALY_INFO_FILE = "info.json"
ANOMALY_CONTEXT_FILE = "context.parquet"
SERVED_FEATURES_FILE = "served_features.parquet"
SERVED_FORECASTS_FILE = "served_forecasts.parquet"
# Rows per row group of the served features: a request reads the groups holding its rows
# (a series' horizon spans one or two), so small groups keep a lookup to a few milliseconds.
SERVED_ROW_GROUP_ROWS = 8_192
# Rows predicted at a time while packing: bounded memory whatever the number of series.
SERVED_BATCH_ROWS = 262_144


# -- spec (de)serialization -------------------------------------------------------------------

def spec_to_dict(spec: DatasetSpec) -> dict[str, Any]:
    """The spec as JSON: every field but the lander (code, not data)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if callable(value):
            continue
        if isinstance(value, dt.date):
            value = value.isoformat()
        elif f.name == "closure_rules":
            value = [dataclasses.asdict(rule) for rule in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def spec_from_dict(data: dict[str, Any]) -> DatasetSpec:
    known = {f.name for f in dataclasses.fields(DatasetSpec)}
    kwargs = {k: v for k, v in data.items() if k in known}
    for key in ("start", "end"):
        kwargs[key] = dt.date.fromisoformat(kwargs[key])
    kwargs["keys"] = tuple(kwargs["keys"])
    # The closure rules: the service marks the same closed days as the forecasts asset.
    kwargs["closure_rules"] = tuple(ClosureRule(**rule)
                                    for rule in kwargs.get("closure_rules") or ())
    for key in ("closed_dates", "static_keys"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return DatasetSpec(**kwargs)


def plan_info(plan: FeaturePlan) -> dict[str, Any]:
    return {
        "horizon": plan.horizon,
        "lookback_days": plan.lookback_days,
        "features": [{"name": f.name, "safe_horizon": f.safe_horizon,
                      "description": f.description} for f in plan.features],
    }


# -- windows ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Windows:
    """The dates a bundle serves, all derived from the origin (the last date with data).

    ``recent_start..origin`` are observed dates (explain and anomaly scoring), ``origin + 1 step
    .. future_end`` the forecast horizon; ``history_start`` is the lookback the features of
    ``recent_start`` need.
    """

    origin: dt.date
    recent_start: dt.date
    future_start: dt.date
    future_end: dt.date
    history_start: dt.date

    @classmethod
    def for_origin(cls, origin: dt.date, plan: FeaturePlan) -> Windows:
        step = plan.spec.step_days
        recent_start = origin - dt.timedelta(days=(plan.horizon - 1) * step)
        return cls(
            origin=origin,
            recent_start=recent_start,
            future_start=origin + dt.timedelta(days=step),
            future_end=origin + dt.timedelta(days=plan.horizon * step),
            history_start=recent_start - dt.timedelta(days=plan.lookback_days),
        )

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in dataclasses.asdict(self).items()}


# -- building -----------------------------------------------------------------------------------

def snapshot_files(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, windows: Windows,
                   folder: Path) -> dict[str, Any]:
    """The validated_sales, holiday_calendar and covariate_plan rows the service needs, as
    Parquet files in ``folder`` (``HISTORY_FILE``, ``HOLIDAYS_FILE``, ``PLAN_FILE``) written by
    DuckDB itself; returns the manifest's counts.

    The history is every series over the lookback (23 M rows at 50,000 daily series), so it
    never passes through pandas. The static attributes (store type, size) are packed with the
    rows: the feature SQL reads them from ``validated_sales``, which in serving is this
    snapshot. The calendar starts one period early: a weekly period is labelled by its last
    day and joins the calendar row of its first day (``features_select``), ``step_days - 1``
    days before the label. Raises ValueError when the calendar ends before the horizon does.
    """
    date = quote(spec.date_column)
    calendar_window = [windows.history_start - dt.timedelta(days=spec.step_days - 1),
                       windows.future_end]
    last_day = con.execute(f"SELECT max(ds) FROM {CALENDAR} WHERE ds BETWEEN ? AND ?",
                           calendar_window).fetchall()[0][0]
    if last_day is None or last_day < windows.future_end:
        raise ValueError(f"{CALENDAR} ends before {windows.future_end}, the last forecast date: "
                         "re-materialize holiday_calendar")
    columns = [spec.date_column, "series_id", *spec.keys, spec.target, *spec.known,
               *(c for c in spec.static if c not in spec.known)]
    window = f"FROM {VALIDATED} WHERE {date} BETWEEN ? AND ?"
    history_window = [windows.history_start, windows.origin]
    rows = copy_to_parquet(
        con, f"SELECT {', '.join(quote(c) for c in columns)} {window} "
             f"ORDER BY series_id, {date}", folder / HISTORY_FILE, history_window)
    series = con.execute(f"SELECT count(DISTINCT series_id) {window}",
                         history_window).fetchall()[0][0]
    copy_to_parquet(con, f"SELECT ds, is_holiday, days_to_holiday FROM {CALENDAR} "
                         "WHERE ds BETWEEN ? AND ? ORDER BY ds", folder / HOLIDAYS_FILE,
                    calendar_window)
    plan_rows, versions = bundle_plan(con, spec, windows, folder / PLAN_FILE)
    return {"series": int(series), "history_rows": rows,
            "covariate_plan": {"rows": plan_rows, "versions": versions}}


def write_anomaly_context(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, windows: Windows,
                          path: Path, block_rows: int = DEFAULT_BLOCK_ROWS) -> dict[str, Any]:
    """What online anomaly scoring needs besides the detector, the asset's own inputs, as a
    Parquet file at ``path``; returns what the manifest says of it.

    ``sales_anomalies`` scores day D from ``expected_with_actuals(D - context_days, D)`` (the
    actuals with the latest out-of-sample expectation made before each day) with each day's
    common factor (``with_day_factors``). The same query and factors are packed here for every
    scorable day's context, so the service computes the very features the asset computes,
    without the warehouse. Scorable days: the recent observed dates (``recent_start ..
    origin``, as ``explain``) and the first date after the origin, whose expectation is the
    champion's forecast from the origin (what ``forecasts`` holds and the asset reads for it).
    Later dates are not scorable: their context would lack the actuals of the days between the
    origin and them, which the asset would have.

    As the asset does, the rows are read a block of series at a time (15 M rows at 50,000
    daily series) with the factors of each day's whole cross-section, so the file holds the
    values of one pass over every series in one block's memory.
    """
    if not table_exists(con, EXPECTED):
        raise ValueError(f"an anomaly detector champion exists but {EXPECTED} does not: "
                         f"materialize {EXPECTED} (and anomaly_model) before the serving bundle")
    first = windows.recent_start
    last = windows.origin + dt.timedelta(days=spec.step_days)
    days = context_days(spec)  # CONTEXT_PERIODS periods of the data, in days
    read_from = first - dt.timedelta(days=days)
    factors = day_factors_of(day_factor_inputs(con, spec, read_from, windows.origin))
    blocks = series_blocks(con, VALIDATED, f"{quote(spec.date_column)} BETWEEN ? AND ?",
                           [read_from, windows.origin], block_rows)
    rows, writer = 0, None
    try:
        for block in blocks:
            frame = with_day_factors(
                expected_with_actuals(con, spec, read_from, windows.origin, block)
                [list(INPUT_COLUMNS)], factors=factors,
            ).assign(ds=lambda f: pd.to_datetime(f["ds"]),
                     series_id=lambda f: f["series_id"].astype(str))
            table = pa.Table.from_pandas(frame, preserve_index=False,
                                         schema=writer.schema if writer else None)
            writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
            rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    return {"context_days": days, "context_periods": CONTEXT_PERIODS,
            "step_days": spec.step_days, "score_dates": [first.isoformat(), last.isoformat()],
            "context_rows": rows,
            "expected": (f"{EXPECTED} / forecasts (latest origin before the day) up to "
                         f"{windows.origin}; the champion's forecast from {windows.origin} for "
                         f"{last}")}


def served_queries(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, plan: FeaturePlan,
                   windows: Windows) -> list[tuple[str, list[dt.date]]]:
    """The feature rows the service serves, each query with its parameters: the recent
    observed dates as ``sales_features`` holds them (the offline features themselves), and
    the horizon's by the ``forecasts`` asset's query (history from ``origin - lookback_days``,
    so the same window frames and floating-point sums; known covariates from
    ``covariate_plan`` when it exists). Raises ValueError when ``sales_features`` lacks some
    of the recent dates ``validated_sales`` has."""
    recent = [windows.recent_start, windows.origin]
    date = quote(spec.date_column)
    have = con.execute(f"SELECT count(DISTINCT ds) FROM {FEATURES} WHERE ds BETWEEN ? AND ?",
                       recent).fetchall()[0][0] if table_exists(con, FEATURES) else 0
    want = con.execute(f"SELECT count(DISTINCT {date}) FROM {VALIDATED} "
                       f"WHERE {date} BETWEEN ? AND ?", recent).fetchall()[0][0]
    if have < want:
        raise ValueError(f"{FEATURES} holds {have} of the {want} dates with sales from "
                         f"{windows.recent_start} to {windows.origin}: materialize its "
                         "partitions before the serving bundle")
    future = features_select(plan, future_source(spec, plan.horizon, planned=table_exists(
        con, COVARIATE_PLAN)), HOLIDAYS_SOURCE)
    future_history = windows.origin - dt.timedelta(days=plan.lookback_days)
    return [(f"SELECT * FROM {FEATURES} WHERE ds BETWEEN ? AND ?", recent),
            (future, [*future_params(future_history, windows.origin),
                      windows.future_start, windows.future_end])]


def write_served_rows(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, plan: FeaturePlan,
                      windows: Windows, forecaster: Forecaster, folder: Path,
                      batch_rows: int = SERVED_BATCH_ROWS) -> dict[str, int]:
    """``SERVED_FEATURES_FILE`` and ``SERVED_FORECASTS_FILE`` in ``folder``; returns their rows.

    DuckDB writes the rows (no pandas: 9 M rows at 50,000 daily series): each query to a file
    of its own, then every row sorted by series and date (a series' rows are then contiguous:
    a request reads one or two row groups). They are read back ``batch_rows`` at a time,
    numbered, and the horizon's rows predicted by ``forecaster`` (moved to the origin) with
    the closure rules applied, as ``forecasts`` does.
    """
    parts = []
    for i, (sql, params) in enumerate(served_queries(con, spec, plan, windows)):
        parts.append(folder / f"_served_part_{i}.parquet")
        copy_to_parquet(con, sql, parts[-1], params)
    scratch = folder / "_served_rows.parquet"
    files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parts)
    copy_to_parquet(con, f"SELECT * FROM read_parquet([{files}], union_by_name = true) "
                         "ORDER BY series_id, ds", scratch)
    for part in parts:
        part.unlink()
    origin = pd.Timestamp(windows.origin)
    rows = forecast_rows = 0
    features_out = forecasts_out = None
    try:
        source = pq.ParquetFile(scratch)
        for batch in source.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([batch])
            numbers = pa.array(range(rows, rows + len(table)), pa.int64())
            table = table.add_column(0, "rn", numbers)
            if features_out is None:
                features_out = pq.ParquetWriter(folder / SERVED_FEATURES_FILE, table.schema,
                                                compression="zstd")
            features_out.write_table(table, row_group_size=SERVED_ROW_GROUP_ROWS)
            rows += len(table)
            frame = table.to_pandas(date_as_object=False)
            frame["ds"] = pd.to_datetime(frame["ds"])
            frame = frame[frame["ds"] > origin]
            if not len(frame):
                continue
            preds = apply_closures(spec, frame, forecaster.predict(frame))
            out = pa.table({"rn": frame["rn"].to_numpy(),
                            **{q: preds[q].to_numpy(dtype=float) for q in ("p10", "p50", "p90")},
                            "is_open": preds["is_open"].to_numpy(dtype=bool)})
            if forecasts_out is None:
                forecasts_out = pq.ParquetWriter(folder / SERVED_FORECASTS_FILE, out.schema,
                                                 compression="zstd")
            forecasts_out.write_table(out)
            forecast_rows += len(out)
    finally:
        for writer in (features_out, forecasts_out):
            if writer is not None:
                writer.close()
        scratch.unlink(missing_ok=True)
    if forecast_rows == 0:
        raise ValueError(f"no series has sales in the 28 periods up to {windows.origin} (the "
                         "active series the forecasts asset forecasts): there is nothing to "
                         "serve forecasts for")
    return {"rows": rows, "forecast_rows": forecast_rows}


@dataclass(frozen=True)
class PackedBundle:
    """A bundle ready to be written: its small parts, the folder holding its Parquet files,
    and what a store records about it.

    Packing (reading the warehouse) and writing are apart so that where the folder lives (a
    BentoML model, a test's temporary folder) is decided by the caller, and so the warehouse
    is closed while the files are stored. The Parquet files are written while packing, by
    DuckDB, into ``files`` (a scratch folder that ``write`` empties and removes).
    """

    manifest: dict[str, Any]
    labels: dict[str, str]
    metadata: dict[str, Any]
    forecaster: bytes
    anomaly_info: dict[str, Any]
    anomaly_model: bytes | None
    files: Path

    def write(self, root: Path) -> None:
        """The bundle's files in ``root`` (an existing, empty folder); the manifest last."""
        root = Path(root)
        try:
            for part in sorted(self.files.rglob("*.parquet")):
                target = root / part.relative_to(self.files)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(part, target)
            (root / FORECASTER_FILE).write_bytes(self.forecaster)
            slot = root / ANOMALY_DIR
            slot.mkdir(exist_ok=True)
            (slot / ANOMALY_INFO_FILE).write_text(json.dumps(self.anomaly_info, indent=2,
                                                             default=str))
            if self.anomaly_model is not None:
                (slot / ANOMALY_MODEL_FILE).write_bytes(self.anomaly_model)
            (root / MANIFEST_FILE).write_text(json.dumps(self.manifest, indent=2, default=str))
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the scratch folder (``write`` does it; a caller that does not write must)."""
        shutil.rmtree(self.files, ignore_errors=True)


def pack_bundle(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, model_name: str,
                extra_metadata: dict[str, Any] | None = None, scratch: Path | None = None
                ) -> PackedBundle:
    """Pack the champion of ``model_name`` and its feature snapshot.

    Reads the warehouse only (``validated_sales``, ``holiday_calendar``, ``covariate_plan``,
    ``model_registry``, and ``sales_features``: the recent dates' served rows and, for a
    weekly model, the history its seasonal recipe moves to the bundle's origin from). The
    snapshot's files go to a new folder under ``scratch`` (the system's temporary folder by
    default; the asset uses the data directory's staging folder, on the file system of the
    model store, so storing them is a rename).
    Raises ValueError with what to do when there is nothing to pack.
    """
    champion = registry.champion(con, model_name)
    if champion is None:
        raise ValueError(f"no champion {model_name} in model_registry: train the forecaster and "
                         "let it pass the champion gate before building the serving bundle")
    for table in (VALIDATED, CALENDAR):
        if not table_exists(con, table):
            raise ValueError(f"{table} does not exist: materialize it before the serving bundle")
    plan = plan_features(spec, champion.horizon)
    origin = con.execute(f"SELECT max({quote(spec.date_column)}) FROM {VALIDATED}"
                         ).fetchall()[0][0]
    if origin is None:
        raise ValueError(f"{VALIDATED} is empty: there is no history to serve forecasts from")
    windows = Windows.for_origin(origin, plan)
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="serving-bundle-", dir=scratch))
    try:
        counts = snapshot_files(con, spec, windows, folder)
        # Optional: a bundle without a detector serves forecasts and answers score_anomaly
        # with a clear "not available".
        anomaly = registry.champion(con, anomaly_model_name(spec))
        anomaly_info: dict[str, Any] = {"present": False, "reason": (
            "no anomaly detector champion was available when the bundle was built")}
        if anomaly is not None:
            (folder / ANOMALY_DIR).mkdir()
            context_info = write_anomaly_context(con, spec, windows,
                                                 folder / ANOMALY_DIR / ANOMALY_CONTEXT_FILE)
            anomaly_info = {"present": True, "name": anomaly.model_name,
                            "version": anomaly.version,
                            "train_start": anomaly.train_start.isoformat(),
                            "train_end": anomaly.train_end.isoformat(),
                            "metrics": anomaly.metrics, "params": anomaly.params,
                            "features": anomaly.features,
                            "mlflow_run_id": anomaly.mlflow_run_id, **context_info}
        # A weekly model's seasonal recipe moves to the bundle's origin (forecasting/future.py).
        forecaster = at_origin(con, spec, Forecaster.from_bytes(champion.model_bytes), origin)
        served = write_served_rows(con, spec, plan, windows, forecaster, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    model = {
        "name": model_name,
        "version": champion.version,
        "horizon": champion.horizon,
        "features": champion.features,
        "train_start": champion.train_start.isoformat(),
        "train_end": champion.train_end.isoformat(),
        "metrics": champion.metrics,
        "gate": champion.gate,
        "mlflow_run_id": champion.mlflow_run_id,
        "mlflow_model_version": champion.mlflow_model_version,
        "created_at": champion.created_at.isoformat(),
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "created_at": created.isoformat(),
        "dataset": spec.name,
        "spec": spec_to_dict(spec),
        "plan": plan_info(plan),
        "windows": windows.as_dict(),
        "series": counts["series"],
        "history_rows": counts["history_rows"],
        "served_rows": served,
        "model": model,
        "anomaly": anomaly_info,
        "covariate_plan": counts["covariate_plan"],
        **(extra_metadata or {}),
    }
    # Versions: what the forecaster and the detector are (``forecaster_version``,
    # ``detector_version``). No detector: no ``detector_version`` at all (BentoML's labels are
    # strings and its metadata refuses None, so "none" or -1 would be the only other spelling).
    no_detector = anomaly is None
    labels = {"dataset": spec.name, "model": model_name,
              "forecaster_version": str(champion.version), "origin": origin.isoformat(),
              **({} if no_detector else {"detector_version": str(anomaly.version)})}
    metadata = {"dataset": spec.name, "model_name": model_name,
                "forecaster_version": champion.version, "origin": origin.isoformat(),
                "train_window": f"{model['train_start']} .. {model['train_end']}",
                "mlflow_run_id": champion.mlflow_run_id or "", "created_at": created.isoformat(),
                "backtest_metrics": json.dumps(champion.metrics),
                **({} if no_detector else {"detector_version": anomaly.version})}
    return PackedBundle(
        manifest=manifest, labels=labels, metadata=metadata, forecaster=forecaster.to_bytes(),
        anomaly_info=anomaly_info,
        anomaly_model=anomaly.model_bytes if anomaly is not None else None, files=folder)


def bundle_plan(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, windows: Windows,
                path: Path) -> tuple[int, list[str]]:
    """The plan rows of the bundle's horizon (typed, possibly none) as Parquet at ``path``:
    ds, series_id, the known covariates and the plan version; returns the rows and the plan
    versions they come from."""
    if not table_exists(con, COVARIATE_PLAN):
        empty_plan(spec).to_parquet(path, index=False)
        return 0, []
    columns = ["series_id", *spec.known, "plan_version"]
    horizon = [windows.future_start, windows.future_end]
    rows = copy_to_parquet(
        con, f"SELECT ds, {', '.join(quote(c) for c in columns)} FROM {COVARIATE_PLAN} "
             "WHERE ds BETWEEN ? AND ? ORDER BY series_id, ds", path, horizon)
    versions = con.execute(f"SELECT DISTINCT plan_version FROM {COVARIATE_PLAN} "
                           "WHERE ds BETWEEN ? AND ? ORDER BY 1", horizon).fetchall()
    return rows, [str(v) for (v,) in versions]


def empty_plan(spec: DatasetSpec) -> pd.DataFrame:
    """No plan: the columns of ``bundle_plan``, no rows."""
    kinds = {"int": "Int64", "float": "float64", "str": "string", "bool": "boolean"}
    return pd.DataFrame({"ds": pd.Series(dtype="datetime64[ns]"),
                         "series_id": pd.Series(dtype="string"),
                         **{c: pd.Series(dtype=kinds[t]) for c, t in spec.known.items()},
                         "plan_version": pd.Series(dtype="string")})


# -- loading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: what ``online.OnlineModel`` computes from."""

    tag: str
    path: Path
    manifest: dict[str, Any]
    spec: DatasetSpec
    plan: FeaturePlan
    windows: Windows
    forecaster: Forecaster
    anomaly_bytes: bytes | None
    # Per-series actuals and expected values for anomaly scoring (None: an older bundle).
    anomaly_context: pd.DataFrame | None = None

    # The snapshot's tables stay files: the service reads them into its DuckDB directly.
    @property
    def history_file(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def holidays_file(self) -> Path:
        return self.path / HOLIDAYS_FILE

    @property
    def served_features_file(self) -> Path:
        return self.path / SERVED_FEATURES_FILE

    @property
    def served_forecasts_file(self) -> Path:
        return self.path / SERVED_FORECASTS_FILE

    @property
    def plan_file(self) -> Path | None:
        """The plan rows of the horizon; None for a bundle packed before plans."""
        path = self.path / PLAN_FILE
        return path if path.is_file() else None

    @property
    def forecaster_version(self) -> int:
        """The registry version of the forecaster this bundle serves."""
        return int(self.manifest["model"]["version"])

    @property
    def detector_version(self) -> int | None:
        """The registry version of the packed anomaly detector; None without one."""
        anomaly = self.manifest.get("anomaly") or {}
        return int(anomaly["version"]) if anomaly.get("present") else None

    @property
    def created_at(self) -> str:
        return str(self.manifest["created_at"])


def read_manifest(root: Path) -> dict[str, Any]:
    """A bundle's manifest, without loading the model or the snapshot."""
    return json.loads((Path(root) / MANIFEST_FILE).read_text())


def load_bundle(root: str | Path, tag: str | None = None) -> Bundle:
    """Load the bundle written in folder ``root``; ``tag`` names it (default: the folder's name).

    Refuses a bundle whose feature plan no longer matches the feature code: the model would
    be fed columns that mean something else.
    """
    root = Path(root)
    tag = tag or root.name
    manifest = read_manifest(root)
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"bundle {tag} has format {manifest.get('format')}, this code reads "
                         f"format {BUNDLE_FORMAT}: rebuild the bundle (materialize serving_bundle)")
    spec = spec_from_dict(manifest["spec"])
    packed = manifest["plan"]
    plan = plan_features(spec, packed["horizon"])
    if plan.names != [f["name"] for f in packed["features"]] \
            or plan.lookback_days != packed["lookback_days"]:
        raise ValueError(f"bundle {tag} was built with a different feature plan than this code "
                         "computes: rebuild the bundle (materialize serving_bundle)")
    w = {k: dt.date.fromisoformat(v) for k, v in manifest["windows"].items()}
    anomaly_file = root / ANOMALY_DIR / ANOMALY_MODEL_FILE
    context_file = root / ANOMALY_DIR / ANOMALY_CONTEXT_FILE
    return Bundle(
        tag=tag, path=root, manifest=manifest, spec=spec, plan=plan, windows=Windows(**w),
        forecaster=Forecaster.from_bytes((root / FORECASTER_FILE).read_bytes()),
        anomaly_bytes=anomaly_file.read_bytes() if anomaly_file.is_file() else None,
        anomaly_context=pd.read_parquet(context_file) if context_file.is_file() else None,
    )
