"""A loaded bundle's served rows, and the offline SQL over its snapshot for exact what-ifs.

The bundle carries the feature rows of every active series for the served dates (the recent
observed dates, as ``sales_features`` holds them, and the horizon after the origin, by the
``forecasts`` asset's SQL) and the horizon's P10/P50/P90, all written at build time
(``serving.bundle.write_served_rows``). At load
only their numbers, series and dates are read, into a series x date grid of row numbers: a
forecast with the plan (the bundle's ``covariate_plan``, as offline; "nothing planned" where it
has no row) is an array lookup, and a request that needs feature rows (an explanation, a
what-if) reads just its rows from the file, by number.

What-if scenarios set known-in-advance covariates (e.g. ``promo = 1``, or ``promo = 0`` to see a
planned promotion's day without it) on future dates, over the plan. In the
plan those covariates are pure pass-through columns (``src."promo"``) that no other feature
reads, which ``known_passthrough`` verifies at load; a scenario then only overwrites those
columns of the served rows (``overlay``). When that does not hold, or when asked, the
scenario goes into the SQL source instead and the whole query runs again (``exact_rows``) over
the bundle's history, calendar and plan, which DuckDB reads from their files under the
warehouse's own table names; a test shows both agree.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from forecast_platform.anomalies.detector import AnomalyDetector
from forecast_platform.features.offline import HOLIDAYS_SOURCE
from forecast_platform.features.sql import features_select, known_passthrough
from forecast_platform.forecasting.future import future_params, future_source
from forecast_platform.planning.store import SQL_TYPES as PLAN_SQL_TYPES
from forecast_platform.serving.anomaly import AnomalyContext, check_detector
from forecast_platform.serving.bundle import Bundle, empty_plan
from forecast_platform.warehouse.store import quote
from forecast_platform.warehouse.tables import CALENDAR, COVARIATE_PLAN, VALIDATED

SERVED = "served_features"

Scenario = dict[dt.date, dict[str, float | str]]


def scenario_source(bundle: Bundle) -> str:
    """``future_source`` with known covariates of future rows taken from ``_scenario`` if set.

    Same parameters as ``future_source``; ``_scenario`` holds ``series_id, ds`` and one
    column per known covariate (NULL where the scenario leaves it alone).
    """
    spec = bundle.spec
    keys = ", ".join(f"b.{quote(k)}" for k in spec.keys)
    known = "".join(f", coalesce(sc.{quote(c)}, b.{quote(c)}) AS {quote(c)}" for c in spec.known)
    return (f"SELECT b.ds, b.series_id, {keys}, b.y{known} "
            f"FROM ({future_source(spec, bundle.plan.horizon, planned=True)}) b "
            "LEFT JOIN _scenario sc ON sc.series_id = b.series_id AND sc.ds = b.ds "
            "AND b.y IS NULL")


def load_anomaly(bundle: Bundle
                 ) -> tuple[AnomalyDetector | None, AnomalyContext | None, str | None]:
    """The detector and its context, or why anomaly scoring is not available."""
    if bundle.anomaly_bytes is None:
        return None, None, (f"bundle {bundle.tag} holds no anomaly detector. Materialize "
                            "anomaly_model, then serving_bundle, then reload.")
    info = bundle.manifest.get("anomaly", {})
    if bundle.anomaly_context is None or "score_dates" not in info:
        return None, None, (f"bundle {bundle.tag} holds an anomaly detector but not the "
                            "context it scores with (built by an older version): "
                            "re-materialize serving_bundle, then reload.")
    detector = AnomalyDetector.from_bytes(bundle.anomaly_bytes)
    problem = check_detector(detector)
    if problem is not None:
        return None, None, problem
    first, last = (dt.date.fromisoformat(d) for d in info["score_dates"])
    context = AnomalyContext(bundle.anomaly_context, info["context_days"], first, last,
                             step_days=bundle.spec.step_days)
    return detector, context, None


class Snapshot:
    """The served rows' grid and predictions, and the bundle's files as DuckDB views."""

    def __init__(self, bundle: Bundle, memory_limit: str | None = None):
        self.bundle = bundle
        self.spec = bundle.spec
        self.plan = bundle.plan
        self.windows = bundle.windows
        self.passthrough = known_passthrough(bundle.plan)
        for path in (bundle.served_features_file, bundle.served_forecasts_file):
            if not path.is_file():
                raise ValueError(f"bundle {bundle.tag} lacks {path.name}: rebuild it "
                                 "(materialize serving_bundle)")
        self.con = duckdb.connect(":memory:")
        # An exact what-if runs the feature SQL over every series' lookback: capped like the
        # warehouse (``FORECAST_DUCKDB_MEMORY_LIMIT``), spilling to a folder of its own rather
        # than to the working directory, instead of DuckDB's default of most of RAM.
        self._spill = tempfile.TemporaryDirectory(prefix="forecast-snapshot-")
        self.con.execute("SET temp_directory = ?", [self._spill.name])
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute("SET parquet_metadata_cache = true")
        date = quote(self.spec.date_column)
        # Views over the files (nothing is loaded until a query reads it); dates are cast as
        # bundles of every age stored them.
        self._view(VALIDATED, f"SELECT * REPLACE (CAST({date} AS DATE) AS {date})",
                   bundle.history_file)
        self._view(CALENDAR, "SELECT CAST(ds AS DATE) AS ds, is_holiday, days_to_holiday",
                   bundle.holidays_file)
        plan_select = (
            "SELECT CAST(ds AS DATE) AS ds, CAST(series_id AS VARCHAR) AS series_id"
            + "".join(f", CAST({quote(c)} AS {PLAN_SQL_TYPES[t]}) AS {quote(c)}"
                      for c, t in self.spec.known.items())
            + ", CAST(plan_version AS VARCHAR) AS plan_version")
        if bundle.plan_file is not None:
            self._view(COVARIATE_PLAN, plan_select, bundle.plan_file)
        else:
            self.con.register("_plan", empty_plan(self.spec))
            self.con.execute(f"CREATE TABLE {COVARIATE_PLAN} AS {plan_select} FROM _plan")
            self.con.unregister("_plan")
        self._view(SERVED, "SELECT *", bundle.served_features_file)

        step = self.spec.step_days
        n_dates = (self.windows.future_end - self.windows.recent_start).days // step + 1
        self.dates = [self.windows.recent_start + dt.timedelta(days=i * step)
                      for i in range(n_dates)]
        self.date_text = [d.isoformat() for d in self.dates]
        self.first_future = self.dates.index(self.windows.future_start)
        # Row numbers are positions: the file is numbered 0..n-1 in order.
        index = pq.read_table(bundle.served_features_file, columns=["series_id", "ds"],
                              read_dictionary=["series_id"])
        n_rows = index.num_rows
        ids = index.column("series_id").combine_chunks()
        names = np.asarray(ids.dictionary.to_pylist(), dtype=object)
        codes = ids.indices.to_numpy(zero_copy_only=False)
        days = pc.cast(index.column("ds"), pa.date32()).to_numpy().astype("datetime64[D]")
        date_pos = (days - np.datetime64(self.windows.recent_start, "D")).astype(np.int64) // step
        # Served series: the active ones, i.e. those with horizon rows (as offline forecasts).
        future = date_pos >= self.first_future
        self.series_ids = sorted(names[np.unique(codes[future])].tolist())
        self.series_index = {sid: i for i, sid in enumerate(self.series_ids)}
        position = np.array([self.series_index.get(n, -1) for n in names], dtype=np.int64)
        pos = position[codes] if len(codes) else np.zeros(0, np.int64)
        served = pos >= 0
        self.grid = np.full((len(self.series_ids), n_dates), -1, dtype=np.int64)
        self.grid[pos[served], date_pos[served]] = np.flatnonzero(served)
        del index, ids, codes, days, date_pos, pos
        # The horizon's predictions, by row number (NaN / open elsewhere).
        forecasts = pq.read_table(bundle.served_forecasts_file)
        rn = forecasts.column("rn").to_numpy()
        self.p10, self.p50, self.p90 = (np.full(n_rows, np.nan) for _ in range(3))
        for name, target in (("p10", self.p10), ("p50", self.p50), ("p90", self.p90)):
            target[rn] = forecasts.column(name).to_numpy()
        self.closed = np.zeros(n_rows, dtype=bool)
        self.closed[rn] = ~forecasts.column("is_open").to_numpy(zero_copy_only=False)

    def _view(self, name: str, select: str, path) -> None:
        literal = str(path).replace("'", "''")
        self.con.execute(f"CREATE VIEW {name} AS {select} FROM read_parquet('{literal}')")

    def frame(self, rows: Sequence[int]) -> pd.DataFrame:
        """The served feature rows numbered ``rows``, in that order.

        Read from the file by number (its row groups are small and numbered in order, so
        DuckDB reads only the groups holding them).
        """
        rows = np.asarray(rows, dtype=np.int64)
        wanted = pa.table({"rn": np.unique(rows)})
        cur = self.con.cursor()
        try:
            cur.register("_wanted", wanted)
            got = cur.execute(f"SELECT * FROM {SERVED} WHERE rn BETWEEN ? AND ? "
                              "AND rn IN (SELECT rn FROM _wanted)",
                              [int(rows.min()), int(rows.max())]).df()
        finally:
            cur.close()
        got = got.set_index("rn").loc[rows].reset_index(drop=True)
        got["ds"] = pd.to_datetime(got["ds"])
        return got

    def compute_features(self, start: dt.date, end: dt.date,
                         scenario: pd.DataFrame | None = None) -> pd.DataFrame:
        """Feature rows for ``start..end`` by the offline SQL over the snapshot.

        With ``scenario`` (``series_id, ds, <known covariates>``) the known covariates of those
        future rows are set before the features are computed: the exact what-if path. Ranges
        of forecast dates read the forecasts asset's lookback (``origin - lookback_days``).
        """
        w = self.windows
        history_start = w.history_start if start <= w.origin \
            else w.origin - dt.timedelta(days=self.plan.lookback_days)
        params = [*future_params(history_start, w.origin), start, end]
        cur = self.con.cursor()
        try:
            if scenario is None:
                source = future_source(self.spec, self.plan.horizon, planned=True)
            else:
                cur.register("_scenario", scenario)
                source = scenario_source(self.bundle)
            rows = cur.execute(features_select(self.plan, source, HOLIDAYS_SOURCE), params).df()
        finally:
            cur.close()
        rows["ds"] = pd.to_datetime(rows["ds"])
        return rows

    def rows_for(self, positions: Sequence[int], date_positions: Sequence[int]) -> np.ndarray:
        """Row numbers of the precomputed features, series-major; -1 where no row exists."""
        return self.grid[np.asarray(positions)[:, None], np.asarray(date_positions)[None, :]] \
            .reshape(-1)

    def exact_rows(self, series_ids: list[str], dates: list[dt.date], plan: Scenario
                   ) -> pd.DataFrame:
        """Feature rows of the series and dates (series-major) recomputed by the SQL with the
        scenario in its source."""
        scenario = pd.DataFrame(
            [{"series_id": sid, "ds": d, **values} for sid in series_ids
             for d, values in plan.items()],
            columns=["series_id", "ds", *self.spec.known],
        ).astype({c: "object" if c in self.spec.categories else "float64"
                  for c in self.spec.known})
        scenario["ds"] = pd.to_datetime(scenario["ds"]).dt.date
        rows = self.compute_features(min(dates), max(dates), scenario)
        stamps = [pd.Timestamp(d) for d in dates]
        rows = rows[rows["series_id"].isin(series_ids) & rows["ds"].isin(stamps)]
        order = {(sid, d): i for i, (sid, d) in
                 enumerate((s, d) for s in series_ids for d in stamps)}
        rows = rows.assign(_order=[order[(s, d)] for s, d in zip(rows["series_id"], rows["ds"],
                                                                   strict=True)])
        return rows.sort_values("_order").drop(columns="_order").reset_index(drop=True)

    @staticmethod
    def overlay(frame: pd.DataFrame, plan: Scenario) -> pd.DataFrame:
        """Overwrite the known covariates of the scenario's dates (pass-through columns)."""
        if not plan:
            return frame
        frame = frame.copy()
        ds = frame["ds"]
        for day, values in plan.items():
            hit = (ds == pd.Timestamp(day)).to_numpy()
            for col, value in values.items():
                frame.loc[hit, col] = value
        return frame
