"""The global forecaster: one XGBoost model over every series, P50 plus a P10-P90 band.

A direct model: each row is (series, target date) with features that are safe for the horizon,
so one fit forecasts every day of the horizon at once, with no recursion and no error feedback.

The target is divided by a normaliser, the ``norm`` feature (see ``features/sql.py``): the
expected level of the series on the target date, built from pooled cross-series means (key
shares x the all-series yearly level x the all-series year-over-year growth). The model then only
learns a shared, unit-free calendar shape and how much of the growth to apply, from a handful of
features (``model_features``); the forecast is ``max(prediction x norm, 0)``.

P10/P90 come from the training residuals on a Poisson-like scale: ``z = (y - fit) / sqrt(fit)``
is roughly homoscedastic, so two quantiles of z give the band at any level,
``p50 + q(z) * sqrt(p50)``. The two quantiles are stored with the model.

Weekly data is different (``anchored``): its normaliser is the seasonal recipe computed at the
origin (``forecasting/seasonal.py``), because any feature safe for a 39-week horizon carries a
39-week-old growth. The model keeps the recipe's forecast from the end of its training data
(its ``anchor``), and XGBoost learns a correction factor ``y / recipe_base`` on rows built the
same way: the recipe at past origins inside the training window, each forecasting the weeks
after it. The number of boosting rounds is early-stopped on the last whole horizon of the
training data (trained on what precedes it); when the correction does not beat the recipe alone
there, it is the identity (one round at learning rate 0: every prediction is the base score,
1). ``at_origin`` moves the anchor to a later origin (new weeks landed since training) without
retraining, as the forecasts asset, the serving bundle and drift's P50 do.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb

from forecast_platform.forecasting.engine import LOCAL, FitEngine
from forecast_platform.forecasting.seasonal import (
    ANCHOR_COLUMNS,
    Anchor,
    Panel,
    anchor_at,
    last_anchor,
)

QUANTILES = (0.1, 0.5, 0.9)
HOLIDAY_WEIGHT = 5.0  # weight of a holiday period in the weekly recipe's loss (as in WMAE)
ID_COLUMNS = ("ds", "series_id", "y")
# The recipe's model features, by name: calendar shape and the pooled growth.
CALENDAR_FEATURES = ("dow", "month", "dom", "doy")
GROWTH_FEATURES = ("yoy",)
# Weekly data: the seasonal recipe's parts at the origin (how far ahead, the blended and the
# series' own growth, whether the holiday rule applied), read from the model's anchor, not from
# the feature table; then where this year's holiday falls in the week (features/sql.py).
ANCHOR_FEATURES = ("recipe_h", "recipe_growth", "recipe_own_growth", "recipe_holiday")
WEEKLY_FEATURES = (*ANCHOR_FEATURES, "days_to_holiday", "holiday_in_week")
# The correction's training rows: the recipe at origins this many periods apart, at most this
# many, going back from the end of the training data; fewer rows than MIN_CORRECTION_ROWS (to
# train, or to choose the rounds on): no correction.
CORRECTION_STRIDE = 4
CORRECTION_ORIGINS = 10
MIN_CORRECTION_ROWS = 100
LABEL_CAP = 10.0
EARLY_STOPPING_ROUNDS = 25


# Beyond the recipe: the series' deviation from what its key shares predict, and its own
# weekday shape (daily data). Real series do not all follow the pooled shares (the synthetic
# data and Walmart's departments do not), nor one shared weekday shape: Favorita's stores do
# not, and without dow_profile_13w the model lost to the seven-day seasonal naive on all 54
# stores (figures in docs/benchmarks.md, "Favorita transactions: the weekday profile").
DEFAULT_EXTRA_FEATURES = ("series_dev", "dow_profile_13w")


def default_model_features(names: Sequence[str], frequency: str, known: Sequence[str]
                           ) -> list[str]:
    """What the platform trains on: the recipe, the default extras (daily data: the weekly
    recipe has its own series level) and known covariates."""
    extras = DEFAULT_EXTRA_FEATURES if frequency == "D" else ()
    return model_features(names, frequency, extra=[*extras, *known])


def model_features(names: Sequence[str], frequency: str = "D",
                   extra: Sequence[str] = ()) -> list[str]:
    """The features the forecaster uses, chosen by name from a plan's feature names.

    The calendar (without the day of week for weekly data, where it is constant) and ``yoy``,
    in the recipe's order (column sampling makes the fit depend on it), then the ``extra``
    names (e.g. known-in-advance covariates such as promotions) that the plan has.
    """
    available = set(names)
    recipe = [n for n in (*CALENDAR_FEATURES, *GROWTH_FEATURES)
              if not (n == "dow" and frequency == "W")]
    if frequency == "W":
        # Not the calendar: with a year of training rows (the recipe needs a year and a quarter
        # of history first) it memorises that year's deviations week by week.
        recipe = list(WEEKLY_FEATURES)
        available |= set(ANCHOR_FEATURES)
    chosen = [n for n in recipe if n in available]
    chosen += [n for n in extra if n in available and n not in chosen]
    if not chosen:
        raise ValueError(f"none of the model features {recipe} is in the plan {list(names)}")
    return chosen


@dataclass(frozen=True)
class ForecasterParams:
    """Hyper-parameters; editable per run in the Dagster Launchpad through the asset config."""

    n_estimators: int = 400
    learning_rate: float = 0.05
    max_depth: int = 6
    min_child_weight: float = 50.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    max_bin: int = 256
    scale_feature: str = "norm"  # the target is y / scale_feature; rows without one are skipped
    seed: int = 0
    nthread: int = 2


@dataclass
class Forecaster:
    params: ForecasterParams
    features: list[str]
    horizon: int
    booster: xgb.Booster | None = None
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    train_rows: int = 0
    # Quantiles (P10, P90) of the training residuals z = (y - fit) / sqrt(fit).
    band: tuple[float, float] = (0.0, 0.0)
    info: dict = field(default_factory=dict)
    # Weekly (anchored) models: the seasonal recipe's forecast from the end of the training data.
    anchor: Anchor | None = None
    # Where the booster is fitted (forecasting/engine.py): this process unless a run chose a
    # Dask cluster. Not part of the recipe (the gate's same_recipe ignores it) nor of the bytes.
    engine: FitEngine = field(default=LOCAL, repr=False, compare=False)

    @property
    def anchored(self) -> bool:
        """Whether this is the weekly model on the seasonal recipe (``model_features`` for
        frequency W chose it): its normaliser is the anchor's base, not a feature column."""
        return "recipe_h" in self.features

    # -- training -------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> Forecaster:
        """Fit on rows with a known target and a usable normaliser (finite, > 0)."""
        if self.anchored:
            return self._fit_anchored(frame)
        missing = [c for c in [*self.features, self.params.scale_feature]
                   if c not in frame.columns]
        if missing:
            raise ValueError(f"training frame lacks feature columns {missing}")
        # Row subsampling makes the fit depend on row order, and SQL gives rows in no set
        # order: sort, so the same rows always give the same model.
        frame = _sorted(frame)
        scale = self._scale(frame)
        ok = frame["y"].notna().to_numpy() & (scale > 0)
        usable, scale = frame[ok], scale[ok]
        if len(usable) == 0:
            raise ValueError(
                f"no training rows: of {len(frame)} rows none has both a target and a usable "
                f"normaliser ({self.params.scale_feature} > 0); the history is too short for the "
                "pooled windows (about 1.5 seasons before the first training date) or empty"
            )
        y = usable["y"].to_numpy(dtype=float)
        x = usable[self.features].to_numpy(dtype=np.float32)
        started, cpu_started = time.perf_counter(), time.process_time()
        self.booster = self.engine.train(
            self._booster_params(), x, (y / scale).astype(np.float32), self.params.n_estimators,
            max_bin=self.params.max_bin, nthread=self.params.nthread)
        fitted = np.asarray(self.booster.inplace_predict(x), dtype=float) * scale
        self._finish(y, fitted, len(usable), started, cpu_started)
        return self

    def _booster_params(self, **overrides) -> dict:
        p = self.params
        return {
            # The weekly correction minimises the absolute error in the target's units (WMAE's
            # loss): |y - f x base| = base x |y / base - f|, hence its weights. A squared error
            # on y / base lets the rows with tiny bases (departments selling a few dollars a
            # week) dominate the fit.
            "objective": "reg:absoluteerror" if self.anchored else "reg:squarederror",
            "tree_method": "hist",
            "learning_rate": p.learning_rate,
            "max_depth": p.max_depth,
            "min_child_weight": p.min_child_weight,
            "subsample": p.subsample,
            "colsample_bytree": p.colsample_bytree,
            "lambda": p.reg_lambda,
            "max_bin": p.max_bin,
            "seed": p.seed,
            "nthread": p.nthread,
            **overrides,
        }

    def _finish(self, y: np.ndarray, fitted: np.ndarray, rows: int, started: float,
                cpu_started: float) -> None:
        """Band: quantiles of the Poisson-scaled training residuals; timings."""
        z = (y - fitted) / np.sqrt(np.clip(fitted, 1.0, None))
        lo, hi = np.quantile(z, (QUANTILES[0], QUANTILES[-1]))
        self.band = (float(min(lo, 0.0)), float(max(hi, 0.0)))
        self.train_seconds = time.perf_counter() - started
        self.train_cpu_seconds = time.process_time() - cpu_started
        self.train_rows = rows

    def _fit_anchored(self, frame: pd.DataFrame) -> Forecaster:
        """The recipe at the end of the data (the anchor), and XGBoost's correction to it,
        trained on the recipe's forecasts from earlier origins of the same window."""
        missing = [c for c in ("series_id", "ds", "y", *self.row_features)
                   if c not in frame.columns]
        if missing:
            raise ValueError(f"training frame lacks feature columns {missing}")
        started, cpu_started = time.perf_counter(), time.process_time()
        frame = _sorted(frame.assign(ds=pd.to_datetime(frame["ds"])))
        panel = Panel.from_rows(frame, step_days_of(frame["ds"]))
        last = len(panel.periods) - 1
        self.anchor = last_anchor(panel, self.horizon)
        rounds, evidence = self._choose_rounds(frame, panel, last)
        rows = self._correction_rows(frame, panel, last - CORRECTION_STRIDE, last)
        x, label, weight, base = self._correction_data(rows)
        self.info = {**self.info, "correction_rounds": rounds, **evidence,
                     "anchor_origin": str(self.anchor.origin.date())}
        identity = rounds == 0 or len(x) == 0
        # The identity still is a booster (MLflow logs it, explanations read it): one round at
        # learning rate 0, on one neutral row when there are no correction rows at all.
        fit_x, fit_label, fit_weight = (x, label, weight) if len(x) else (
            np.zeros((1, len(self.features)), np.float32), np.ones(1, np.float32),
            np.ones(1, np.float32))
        # The identity is one round at learning rate 0: nothing a cluster could speed up.
        engine = LOCAL if identity else self.engine
        self.booster = engine.train(
            self._booster_params(base_score=1.0, **({"learning_rate": 0.0} if identity else {})),
            fit_x, fit_label, max(rounds, 1), weight=fit_weight, max_bin=self.params.max_bin,
            nthread=self.params.nthread)
        if len(x):
            fitted = np.asarray(self.booster.inplace_predict(x), dtype=float) * base
            self._finish(rows["y"].to_numpy(dtype=float), fitted, len(x), started, cpu_started)
        else:
            self.train_seconds = time.perf_counter() - started
            self.train_cpu_seconds = time.process_time() - cpu_started
        return self

    @property
    def columns(self) -> list[str] | None:
        """The feature-table columns a fit and a forecast read (None: every column, as a
        weekly model's anchor reads the panel): a reader that selects only these holds a
        third of the table's width."""
        if self.anchored:
            return None
        wanted = ["ds", "series_id", "y", *self.features, self.params.scale_feature,
                  "series_dev"]
        return list(dict.fromkeys(wanted))

    @property
    def row_features(self) -> list[str]:
        """The features read from the rows (a weekly model's others come from its anchor)."""
        return [f for f in self.features if f not in ANCHOR_FEATURES]

    def _correction_rows(self, frame: pd.DataFrame, panel: Panel, first_origin: int, end: int,
                         origins: int = CORRECTION_ORIGINS) -> pd.DataFrame:
        """The recipe's forecasts from ``first_origin`` and up to ``origins - 1`` origins
        ``CORRECTION_STRIDE`` periods apart before it, each for the periods after it up to
        ``end`` (at most a horizon) that have a target, next to the rows' own features and the
        ``origin`` (an index into the panel) they were forecast from."""
        step = pd.Timedelta(days=panel.step_days)
        columns = [c for c in ("series_id", "ds", "y", "is_holiday", *self.row_features)
                   if c in frame.columns]
        parts = []
        for k in range(origins):
            origin = first_origin - k * CORRECTION_STRIDE
            if origin < 0 or origin >= end:
                break
            anchor = anchor_at(panel, origin, min(self.horizon, end - origin))
            if anchor is None:
                break
            o = panel.periods[origin]
            target = frame.loc[(frame["ds"] > o) & (frame["ds"] <= o + anchor.horizon * step)
                               & frame["y"].notna(), columns]
            looked = anchor.lookup(target)
            part = pd.concat([target.reset_index(drop=True), looked.reset_index(drop=True)],
                             axis=1).assign(origin=origin)
            parts.append(part[part["recipe_base"] > 0])
        if not parts:
            return pd.DataFrame(columns=[*columns, *ANCHOR_COLUMNS, "origin"])
        return pd.concat(parts, ignore_index=True)

    def _correction_data(self, rows: pd.DataFrame
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Features, label ``y / recipe_base``, weight (the base, x5 on holiday periods, mean 1)
        and base of correction rows."""
        base = rows["recipe_base"].to_numpy(dtype=float)
        weight = base.copy()
        if "is_holiday" in rows.columns:  # WMAE weighs holiday periods 5
            holiday = pd.to_numeric(rows["is_holiday"]).fillna(0).to_numpy(dtype=float) > 0
            weight = np.where(holiday, HOLIDAY_WEIGHT * weight, weight)
        if len(weight):
            weight = weight / weight.mean()
        # A base of a few cents (an SVD reconstruction of a series that sold nothing) makes
        # y / base explode; such rows weigh nothing in the loss, but XGBoost refuses huge
        # labels: a correction factor is bounded by LABEL_CAP either way.
        label = np.clip(rows["y"].to_numpy(dtype=float) / np.where(base > 0, base, 1.0),
                        -LABEL_CAP, LABEL_CAP)
        return (rows[self.features].to_numpy(dtype=np.float32), label.astype(np.float32),
                weight.astype(np.float32), base)

    def _choose_rounds(self, frame: pd.DataFrame, panel: Panel, last: int
                       ) -> tuple[int, dict[str, float | int]]:
        """Boosting rounds of the correction: early-stopped on the recipe's forecast of the last
        full horizon (from the origin a horizon before the end), trained only on forecasts of
        the periods before that origin. 0 when the correction does not beat the recipe alone on
        that horizon, or there are too few rows to tell: what the correction will face is a
        whole horizon, so it is judged on one, not on its last few weeks (on Walmart the last
        13 weeks are the holiday season, where a correction that won there did worse over the
        next 39 weeks; see docs/benchmarks.md).

        Also returns the evidence, for the model's ``info`` (MLflow, the asset's metadata):
        the rows of each side and, when it was judged, the weighted mean |y / base - 1| of the
        recipe alone and of the best correction on the validation rows.
        """
        valid_origin = last - self.horizon
        # One pass over the origins: validation rows are the targets after valid_origin from it
        # and the CORRECTION_ORIGINS - 1 origins before it, training rows the targets up to it
        # from the CORRECTION_ORIGINS origins before it (each origin's recipe computed once).
        rows = self._correction_rows(frame, panel, valid_origin, last, CORRECTION_ORIGINS + 1)
        after = (rows["ds"] > panel.periods[valid_origin]).to_numpy() if len(rows) \
            else np.zeros(0, dtype=bool)
        oldest_valid = valid_origin - (CORRECTION_ORIGINS - 1) * CORRECTION_STRIDE
        valid = rows[after & (rows["origin"] >= oldest_valid).to_numpy()]
        train = rows[~after]
        evidence: dict[str, float | int] = {"correction_train_rows": len(train),
                                            "correction_valid_rows": len(valid)}
        if len(train) < MIN_CORRECTION_ROWS or len(valid) < MIN_CORRECTION_ROWS:
            return 0, evidence
        x, label, weight, _ = self._correction_data(train)
        vx, vlabel, vweight, _ = self._correction_data(valid)
        p = self.params
        dtrain = xgb.QuantileDMatrix(x, label=label, weight=weight, max_bin=p.max_bin,
                                     nthread=p.nthread)
        dvalid = xgb.DMatrix(vx, label=vlabel, weight=vweight, nthread=p.nthread)
        booster = xgb.train(self._booster_params(base_score=1.0, eval_metric="mae"), dtrain,
                            num_boost_round=p.n_estimators, evals=[(dvalid, "valid")],
                            early_stopping_rounds=EARLY_STOPPING_ROUNDS, verbose_eval=False)
        recipe_alone = float(np.average(np.abs(vlabel - 1.0), weights=vweight))
        best = float(booster.best_score)
        evidence |= {"correction_valid_error_recipe": round(recipe_alone, 6),
                     "correction_valid_error_corrected": round(best, 6)}
        return (booster.best_iteration + 1 if best < recipe_alone else 0), evidence

    def at_origin(self, history: pd.DataFrame) -> Forecaster:
        """The same model, its recipe recomputed at the end of ``history`` (``series_id, ds, y,
        is_holiday`` rows up to the new origin): the forecast from that origin, no retraining.
        A model without an anchor forecasts from any origin: itself."""
        if not self.anchored:
            return self
        frame = history.assign(ds=pd.to_datetime(history["ds"]))
        anchor = last_anchor(Panel.from_rows(frame, step_days_of(frame["ds"])), self.horizon)
        return dataclasses.replace(self, info=dict(self.info), anchor=anchor)

    # -- prediction -----------------------------------------------------------------------
    def _scale(self, frame: pd.DataFrame) -> np.ndarray:
        """The normaliser per row, 0 where it is missing or unusable."""
        scale = pd.to_numeric(frame[self.params.scale_feature], errors="coerce") \
            .to_numpy(dtype=float)
        return np.where(np.isfinite(scale) & (scale > 0), scale, 0.0)

    def _check(self, frame: pd.DataFrame) -> None:
        if self.booster is None or (self.anchored and self.anchor is None):
            raise RuntimeError("the forecaster is not trained")
        needed = self.row_features if self.anchored \
            else [*self.features, self.params.scale_feature]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"feature columns {missing} are missing from the input")

    def _values(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """Per row: each feature's value, the normaliser (0 where unusable) and whether the row
        can be forecast at all (anchored: the anchor covers it; else a usable normaliser)."""
        if not self.anchored:
            scale = self._scale(frame)
            return frame[self.features], scale, scale > 0
        parts = self.anchor.lookup(frame)
        values = pd.DataFrame({c: parts[c] if c in ANCHOR_COLUMNS else frame[c]
                               for c in self.features}, index=frame.index)
        base = parts["recipe_base"].to_numpy(dtype=float)
        known = ~np.isnan(base)
        # A series that sold nothing a season back has a base of 0 (or below, after returns):
        # it is forecast at 0, not left out.
        return values, np.where(known, np.clip(np.nan_to_num(base), 0.0, None), 0.0), known

    def _inputs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``_values`` with the features as the booster's float32 matrix."""
        values, scale, known = self._values(frame)
        return values.to_numpy(dtype=np.float32), scale, known

    def inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The value of each model feature per row (same index): what an explanation shows
        next to each contribution. A weekly model's recipe features come from its anchor (NaN
        where it has no forecast)."""
        self._check(frame)
        return self._values(frame)[0].astype(float)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        """The model's prediction of y / normaliser, per row."""
        if len(x) == 0:
            return np.zeros(0)
        return np.asarray(self.booster.inplace_predict(x), dtype=float).reshape(len(x))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """P10/P50/P90 per row (same index); rows the model cannot forecast come back NaN.

        A series that sold nothing over its last year (``series_dev == 0``: its own yearly mean
        is zero while its keys' shares are not) is forecast at zero: the pooled norm describes
        its store and item, not a discontinued or never-stocked series.
        """
        self._check(frame)
        x, scale, known = self._inputs(frame)
        p50 = np.clip(self._raw(x) * scale, 0.0, None)
        if "series_dev" in frame.columns and not self.anchored:
            p50 = np.where(frame["series_dev"].to_numpy(dtype=float) == 0.0, 0.0, p50)
        root = np.sqrt(np.clip(p50, 1.0, None))
        p10 = np.clip(np.minimum(p50 + self.band[0] * root, p50), 0.0, None)
        p90 = np.maximum(p50 + self.band[1] * root, p50)
        values = np.column_stack([p10, p50, p90])
        values[~known] = np.nan
        return pd.DataFrame(values, columns=["p10", "p50", "p90"], index=frame.index)

    def contributions(self, frame: pd.DataFrame, exact: bool = True) -> pd.DataFrame:
        """Per-feature contributions to the P50 (XGBoost's own ``pred_contribs``), in target
        units (times the normaliser): they sum, with the ``bias`` column, to the P50 before
        clipping. Rows the model cannot forecast come back NaN. For the weekly model the bias
        is the seasonal recipe's base (times the correction's base score, 1).

        ``exact``: TreeSHAP. ``exact=False``: XGBoost's approximate (Saabas) attributions, which
        also sum to the prediction and nearly always agree on the top feature, at a small
        fraction of the cost: what a bulk table of every forecast can afford (figures in
        docs/benchmarks.md).
        """
        self._check(frame)
        x, scale, known = self._inputs(frame)
        matrix = xgb.DMatrix(x, feature_names=self.features)
        contribs = np.asarray(self.booster.predict(matrix, pred_contribs=True,
                                                   approx_contribs=not exact), dtype=float)
        contribs = contribs.reshape(len(frame), len(self.features) + 1)
        usable = scale > 0 if not self.anchored else known
        scaled = contribs * np.where(usable, scale, np.nan)[:, None]
        return pd.DataFrame(scaled, columns=[*self.features, "bias"], index=frame.index)

    def importance(self) -> pd.Series:
        """Total gain per feature (0 for a feature no tree splits on).

        The booster is trained on bare arrays, so XGBoost names its features ``f0, f1, ...``
        in the order of ``features``: mapped back to their names here.
        """
        gain = self.booster.get_score(importance_type="total_gain")
        named = {self.features[int(k[1:])] if k[:1] == "f" and k[1:].isdigit() else k: v
                 for k, v in gain.items()}
        return pd.Series(named, dtype=float).reindex(self.features).fillna(0.0) \
            .sort_values(ascending=False)

    # -- persistence ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        raw = self.booster.save_raw(raw_format="ubj") if self.booster is not None else b""
        anchor = self.anchor.to_bytes() if self.anchor is not None else b""
        header = json.dumps({
            "params": asdict(self.params), "features": self.features, "horizon": self.horizon,
            "train_seconds": self.train_seconds, "train_cpu_seconds": self.train_cpu_seconds,
            "train_rows": self.train_rows, "band": list(self.band), "info": self.info,
            "anchor_bytes": len(anchor),
        }).encode()
        buffer = io.BytesIO()
        buffer.write(len(header).to_bytes(8, "little"))
        buffer.write(header)
        buffer.write(anchor)
        buffer.write(raw)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Forecaster:
        size = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + size])
        if "band" not in header:
            raise ValueError(
                "this model was stored by an older forecaster (multi-quantile objective, no "
                "residual band); it cannot be loaded by this version: retrain it"
            )
        known = ForecasterParams.__dataclass_fields__
        params = ForecasterParams(**{k: v for k, v in header["params"].items() if k in known})
        model = cls(params, header["features"], header["horizon"],
                    train_seconds=header["train_seconds"],
                    train_cpu_seconds=header.get("train_cpu_seconds", 0.0),
                    train_rows=header["train_rows"], band=tuple(header["band"]),
                    info=header.get("info", {}))
        start = 8 + size
        anchor_size = header.get("anchor_bytes", 0)
        if anchor_size:
            model.anchor = Anchor.from_bytes(blob[start:start + anchor_size])
        start += anchor_size
        if model.anchored and model.anchor is None:
            raise ValueError("this weekly model was stored without its seasonal anchor (an "
                             "older forecaster); it cannot be loaded by this version: retrain it")
        if len(blob) > start:
            booster = xgb.Booster()
            booster.load_model(bytearray(blob[start:]))
            booster.set_param({"nthread": model.params.nthread})
            model.booster = booster
        return model


def narrow_features(features: Sequence[str], params: ForecasterParams) -> list[str]:
    """The model features a daily fit can read as float32 without changing the model: the
    booster reads every feature as float32, so only the normaliser (a float64 label divisor)
    and ``series_dev`` (compared with 0 exactly) stay wide. A weekly model, whose
    seasonal recipe is computed from the rows in float64, gets none."""
    model = Forecaster(params, list(features), 1)
    if model.anchored:
        return []
    return [f for f in features if f not in (params.scale_feature, "series_dev")]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by series and date: row subsampling makes a fit depend on row order."""
    order = [c for c in ("series_id", "ds") if c in frame.columns]
    return frame.sort_values(order, kind="stable") if order else frame


def step_days_of(ds: pd.Series) -> int:
    """Days between consecutive periods: the smallest gap between two distinct dates."""
    days = np.diff(np.unique(pd.to_datetime(ds).to_numpy().astype("datetime64[D]")))
    if len(days) == 0:
        raise ValueError("one date only: the period length cannot be told")
    return int(days.astype(int).min())
