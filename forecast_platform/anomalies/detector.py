"""The anomaly detector: PyOD scoring of context features (``context.py``) against the
training distribution, with a threshold calibrated for a target false-alarm rate.

Pure core (no Dagster): the ``anomaly_model`` asset fits and stores an ``AnomalyDetector``,
the ``sales_anomalies`` asset and the serving bundle load it and ``score`` rows with it.
"""

from __future__ import annotations

import io
import json
import pickle
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecast_platform.anomalies.context import FEATURE_VERSION, ContextFeatures

# The detector's default inputs, chosen by benchmarks/anomalies.py (see docs/benchmarks.md).
DETECTOR_FEATURES = ("nb_tail", "run_stat", "zero_expected")
KINDS = ("ecod", "copod", "iforest", "ensemble")
CALIBRATIONS = ("tail", "quantile")
TAILS = ("exponential", "empirical")
DEFAULT_KIND = "ecod"
BULK_QUANTILES = (0.80, 0.95)  # the "clean bulk" tails and thresholds are extrapolated from


def anomaly_model_name(spec) -> str:
    """The model_registry name of a dataset's detector (``<dataset>_anomaly``): the
    anomaly_model asset registers under it, the serving bundle packs its champion."""
    return f"{spec.name}_anomaly"


class _FrozenTails:
    """ECOD / COPOD scoring against the TRAINING distribution only, with modelled tails.

    PyOD's ECOD and COPOD score new rows by re-estimating the empirical CDFs on the training
    rows plus the new batch: a batch full of anomalies (or a whole backfill at once) then
    fattens its own tails and lowers its own scores, and the calibrated threshold no longer
    means what it did. Here the CDFs are frozen at fit time.

    Inside the bulk (between the 5 % and 95 % quantiles of a feature) the tail probability is
    the empirical one, as in PyOD (+1 smoothing). Beyond it, each side's tail is an exponential
    fitted to that side's bulk (the 80 % -> 95 % quantile span), anchored at the 95 % quantile.
    Why: the training window is never known to be clean (the synthetic demo's has ~2 % labelled
    anomalies, production's whatever happened). With empirical tails, a few per cent of
    anomalies in the training rows own the extreme tail: a clean value at the clean 99.8 %
    quantile gets a tail probability of ~1 % instead of 0.2 %, every score beyond the bulk is
    compressed, and no threshold on the sum separates clean tails from anomalies well. The bulk
    is where a few per cent of contamination barely moves the quantiles; the modelled tail
    then gives clean extremes and anomalies the scores a clean training window would have given
    them (and an anomaly beyond the training range keeps growing instead of saturating at
    log(n)). A side whose bulk has no spread (e.g. ``zero_expected``, 0 on almost every row)
    keeps the empirical tail.
    """

    def __init__(self, x: np.ndarray, kind: str, tails: str = "exponential"):
        from scipy.stats import skew

        self.kind = kind
        self.tails = tails
        self.sorted = np.sort(x, axis=0)
        self.skew_sign = np.nan_to_num(np.sign(skew(x, axis=0)))  # constant column: 0
        lo, hi = BULK_QUANTILES
        q = np.quantile(x, [1 - hi, 1 - lo, lo, hi], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            decades = np.log((1 - lo) / (1 - hi))
            self.right_rate = np.where(q[3] > q[2], decades / (q[3] - q[2]), np.nan)
            self.left_rate = np.where(q[1] > q[0], decades / (q[1] - q[0]), np.nan)
        self.right_anchor, self.left_anchor = q[3], q[0]
        self.right_p = self._empirical(q[3][None, :])[1][0]
        self.left_p = self._empirical(q[0][None, :])[0][0]

    def _empirical(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.sorted.shape[0]
        left = np.empty_like(x, dtype=float)
        right = np.empty_like(x, dtype=float)
        for j in range(x.shape[1]):
            col = self.sorted[:, j]
            left[:, j] = (np.searchsorted(col, x[:, j], side="right") + 1) / (n + 1)
            right[:, j] = (n - np.searchsorted(col, x[:, j], side="left") + 1) / (n + 1)
        return left, right

    def tail_probabilities(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(X <= x) and P(X >= x) per feature under the frozen (modelled) training CDF."""
        left, right = self._empirical(x)
        # Detectors pickled before tails were modelled have no tail attributes: empirical.
        if getattr(self, "tails", "empirical") == "exponential":
            beyond = (x > self.right_anchor) & np.isfinite(self.right_rate)
            modelled = self.right_p * np.exp(-np.nan_to_num(self.right_rate)
                                             * (x - self.right_anchor))
            right = np.where(beyond, modelled, right)
            beyond = (x < self.left_anchor) & np.isfinite(self.left_rate)
            modelled = self.left_p * np.exp(-np.nan_to_num(self.left_rate)
                                            * (self.left_anchor - x))
            left = np.where(beyond, modelled, left)
        return left, right

    def score(self, x: np.ndarray) -> np.ndarray:
        left, right = self.tail_probabilities(x)
        tiny = np.finfo(float).tiny
        u_l, u_r = -np.log(np.maximum(left, tiny)), -np.log(np.maximum(right, tiny))
        s = self.skew_sign
        u_skew = u_l * -np.sign(s - 1) + u_r * np.sign(s + 1)
        if self.kind == "ecod":
            out = np.maximum(np.maximum(u_l, u_r), u_skew)
        else:  # copod
            out = np.maximum(u_skew, (u_l + u_r) / 2)
        return out.sum(axis=1)


def tail_threshold(scores: np.ndarray, target: float, bulk: tuple[float, float] = BULK_QUANTILES,
                   iterations: int = 3) -> tuple[float, dict]:
    """The score a CLEAN window exceeds with probability ``target``, from a possibly
    contaminated sample of scores: an exponential fitted to the bulk of the sample's survival
    curve (16 quantiles from ``bulk[0]`` to ``bulk[1]``), extrapolated to ``target``.

    Why not the sample's ``1 - target`` quantile: with a share c of anomalies in the sample,
    that quantile sits inside the anomalies as soon as c > target (2 % of anomalies vs a 0.2 %
    target: the threshold then flags only the strongest tenth of them). The bulk is where
    contamination of a few per cent barely moves the curve, and the ECOD score of clean rows is
    a sum of -log tail probabilities, whose survival curve is close to exponential from the
    bulk on (a near-constant number of score units per decade; docs/benchmarks.md records
    it). The anomalies' own mass in the bulk is corrected for: the share of the
    sample above the threshold beyond ``target`` is taken as contamination and removed from
    the bulk's survival, and the fit repeated (``iterations`` times).

    The extrapolation errs on the high side (fewer false alarms than targeted) whenever the
    clean scores' log-survival bends down beyond the bulk, as it does for sums of
    log-concave parts (the false-alarm rates reached are in docs/benchmarks.md).
    The sample's plain quantile errs on the high side too, by the contamination: with a share
    c of anomalies, clean rows exceed it with probability at most target / (1 - c). So the
    detector uses the lower of the two: the quantile on a clean window, the extrapolation on
    a contaminated one.
    """
    if not 0 < target < 1 - bulk[1]:
        raise ValueError(f"tail calibration extrapolates beyond the bulk's top quantile "
                         f"{bulk[1]}: target false-alarm rate {target} must be below "
                         f"{1 - bulk[1]:.2f}")
    qs = np.linspace(bulk[0], bulk[1], 16)
    values = np.quantile(scores, qs)
    if not np.ptp(values) > 0:
        raise ValueError("the training scores have no spread in their bulk "
                         f"({bulk[0]:.0%}..{bulk[1]:.0%} quantiles): cannot extrapolate a tail")
    contamination = 0.0
    for _ in range(iterations):
        survival = np.clip(((1 - qs) - contamination) / (1 - contamination), 1e-6, None)
        slope, intercept = np.polyfit(values, np.log(survival), 1)
        if slope >= 0:
            raise ValueError("the training scores' survival does not fall over their bulk: "
                             "cannot extrapolate a tail")
        threshold = float((np.log(target) - intercept) / slope)
        excess = float((scores > threshold).mean()) - target
        contamination = min(max(excess, 0.0), 0.5 * (1 - qs[-1]))  # keeps survival > 0
    return threshold, {
        "method": "tail", "bulk_quantiles": list(bulk),
        "score_units_per_decade": float(-np.log(10) / slope),
        "estimated_contamination": round(contamination, 5),
        "empirical_quantile_threshold": float(np.quantile(scores, 1 - target)),
    }


def _tail_score(train: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """-log10 of the share of training scores at or above each score: puts detectors with
    different score scales on one scale before they are averaged."""
    ordered = np.sort(train)
    n = len(ordered)
    above = n - np.searchsorted(ordered, scores, side="left")
    return -np.log10((above + 1) / (n + 1))


@dataclass
class AnomalyDetector:
    """A PyOD detector on context features, with a threshold calibrated for a false-alarm rate.

    ``kind``: ``ecod`` (default; deterministic, parameter-free, scored against the frozen
    training distribution), ``copod`` (same), ``iforest`` (``random_state`` fixed) or
    ``ensemble`` (the mean of the three, each first turned into a training tail score).

    ``calibration``: how the threshold is set from the training scores. ``tail`` (default): the
    lower of the training scores' ``1 - target_false_alarm_rate`` quantile and the score a
    clean window exceeds with that probability, extrapolated from the bulk of the training
    scores (``tail_threshold``), so a training window with a few per cent of anomalies does not
    drag the threshold into them. ``quantile``: the plain
    ``1 - target_false_alarm_rate`` quantile of the training scores (right only when the
    training window is clean). Either way no contamination share is guessed.
    ``tails``: ``exponential`` (default) or ``empirical`` tails of the ECOD / COPOD CDFs beyond
    their bulk (see ``_FrozenTails``).
    """

    kind: str = DEFAULT_KIND
    features: tuple[str, ...] = DETECTOR_FEATURES
    target_false_alarm_rate: float = 0.002
    random_state: int = 0
    threshold: float | None = None
    info: dict = field(default_factory=dict)
    calibration: str = "tail"
    tails: str = "exponential"
    _models: dict = field(default_factory=dict, repr=False)
    _train_scores: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown detector kind {self.kind!r}: expected one of {KINDS}")
        if not 0 < self.target_false_alarm_rate < 0.5:
            raise ValueError("target_false_alarm_rate must be in (0, 0.5)")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {self.calibration!r}: expected one of "
                             f"{CALIBRATIONS}")
        if self.tails not in TAILS:
            raise ValueError(f"unknown tails {self.tails!r}: expected one of {TAILS}")
        if self.calibration == "tail" and self.target_false_alarm_rate >= 1 - BULK_QUANTILES[1]:
            raise ValueError(f"target_false_alarm_rate {self.target_false_alarm_rate} is inside "
                             f"the bulk (>= {1 - BULK_QUANTILES[1]:.2f}): use calibration="
                             "'quantile' for such a high rate")
        self.features = tuple(self.features)

    # -- inputs ---------------------------------------------------------------------------
    def incompatibility(self, features: ContextFeatures | pd.DataFrame) -> str | None:
        """Why this detector cannot score these features (None when it can): features of
        another version than it was trained on, or lacking one of its columns. The asset
        skips (and counts) the rows instead of scoring them wrongly."""
        rows = features.rows if isinstance(features, ContextFeatures) else features
        if isinstance(features, ContextFeatures) and self.info.get("feature_version") not in (
                None, features.version):
            return (f"features are {features.version!r} but the detector was trained on "
                    f"{self.info['feature_version']!r}: retrain the detector on the current "
                    "features")
        missing = [c for c in self.features if c not in rows.columns]
        if missing:
            return (f"features lack columns {missing} the detector was trained on "
                    f"({list(self.features)}): the feature code changed since training; "
                    "retrain")
        return None

    def _matrix(self, features: ContextFeatures | pd.DataFrame) -> np.ndarray:
        rows = features.rows if isinstance(features, ContextFeatures) else features
        problem = self.incompatibility(features)
        if problem:
            raise ValueError(problem)
        x = rows[list(self.features)].to_numpy(dtype=float)
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or infinite values: build them with "
                             "context_features, which skips rows it cannot compute")
        return x

    # -- training -------------------------------------------------------------------------
    def fit(self, features: ContextFeatures | pd.DataFrame, info: dict | None = None
            ) -> AnomalyDetector:
        """Fit on a (mostly clean) history window and calibrate the threshold on it.

        ``info``: what the detector was built from, stored in ``metadata`` (e.g. the
        forecaster version, so a check can tell when the two drift apart).
        """
        x = self._matrix(features)
        if len(x) < 100:
            raise ValueError(f"{len(x)} training rows: too few to calibrate a "
                             f"{self.target_false_alarm_rate:.2%} false-alarm threshold")
        started = time.perf_counter()
        members = ("ecod", "copod", "iforest") if self.kind == "ensemble" else (self.kind,)
        self._models, self._train_scores = {}, {}
        for name in members:
            self._models[name] = self._fit_one(name, x)
            self._train_scores[name] = self._models[name].score(x) if name != "iforest" \
                else self._models[name].decision_function(x)
        train = self._combine(self._raw_member_scores(x, fitted=True))
        if self.calibration == "tail":
            # Both are upper bounds of the clean threshold (see tail_threshold): take the
            # tighter. Clean window: the quantile; contaminated: the extrapolation.
            extrapolated, calibration = tail_threshold(train, self.target_false_alarm_rate)
            quantile = calibration["empirical_quantile_threshold"]
            self.threshold = min(extrapolated, quantile)
            calibration.update(extrapolated_threshold=extrapolated,
                               used="quantile" if quantile <= extrapolated else "extrapolated")
        else:
            self.threshold = float(np.quantile(train, 1 - self.target_false_alarm_rate))
            calibration = {"method": "quantile"}
        rows = features.rows if isinstance(features, ContextFeatures) else features
        self.info = {
            **(info or {}),
            "feature_version": features.version if isinstance(features, ContextFeatures)
            else FEATURE_VERSION,
            "training_rows": int(len(x)),
            "training_window": [str(pd.Timestamp(rows["ds"].min()).date()),
                                str(pd.Timestamp(rows["ds"].max()).date())]
            if "ds" in rows.columns else None,
            "training_flagged_share": float((train > self.threshold).mean()),
            "calibration": calibration,
            "fit_seconds": time.perf_counter() - started,
        }
        return self

    def _fit_one(self, name: str, x: np.ndarray):
        if name in ("ecod", "copod"):
            # PyOD's ECOD / COPOD formulas with frozen training CDFs (see _FrozenTails).
            return _FrozenTails(x, name, self.tails)
        from pyod.models.iforest import IForest

        return IForest(n_estimators=200, random_state=self.random_state, n_jobs=1).fit(x)

    def _raw_member_scores(self, x: np.ndarray, fitted: bool = False) -> dict[str, np.ndarray]:
        if fitted:
            return dict(self._train_scores)
        return {name: (m.score(x) if name != "iforest" else m.decision_function(x))
                for name, m in self._models.items()}

    def _combine(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        if self.kind != "ensemble":
            return next(iter(scores.values()))
        return np.mean([_tail_score(self._train_scores[n], s) for n, s in scores.items()],
                       axis=0)

    # -- scoring --------------------------------------------------------------------------
    def score(self, features: ContextFeatures | pd.DataFrame) -> pd.DataFrame:
        """``score`` (higher = stranger) and ``is_anomaly`` (score above the calibrated
        threshold) per row, on the rows' index."""
        if self.threshold is None:
            raise RuntimeError("the detector is not trained: call fit first")
        rows = features.rows if isinstance(features, ContextFeatures) else features
        x = self._matrix(features)
        if len(x) == 0:
            return pd.DataFrame({"score": [], "is_anomaly": []}, index=rows.index)
        s = self._combine(self._raw_member_scores(x))
        return pd.DataFrame({"score": s, "is_anomaly": s > self.threshold}, index=rows.index)

    @property
    def metadata(self) -> dict:
        """What the detector is, for the model table, MLflow and the version check."""
        return {
            "detector": self.kind,
            "features": list(self.features),
            "threshold": self.threshold,
            "target_false_alarm_rate": self.target_false_alarm_rate,
            "random_state": self.random_state,
            "calibration_method": self.calibration,
            "tails": self.tails,
            **self.info,
        }

    @property
    def version(self) -> dict:
        return self.metadata

    # -- persistence ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """A JSON header (readable without unpickling) then the pickled fitted models.

        Pickle: the blob must come from the platform's own warehouse, never from outside.
        """
        header = json.dumps({
            "kind": self.kind, "features": list(self.features),
            "target_false_alarm_rate": self.target_false_alarm_rate,
            "random_state": self.random_state, "threshold": self.threshold, "info": self.info,
            "calibration": self.calibration, "tails": self.tails,
        }).encode()
        buffer = io.BytesIO()
        buffer.write(len(header).to_bytes(8, "little"))
        buffer.write(header)
        pickle.dump({"models": self._models, "train_scores": self._train_scores}, buffer,
                    protocol=pickle.HIGHEST_PROTOCOL)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> AnomalyDetector:
        size = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + size])
        # Blobs written before calibration / tails existed were quantile-calibrated with
        # empirical tails; their stored threshold is what they score with either way.
        detector = cls(header["kind"], tuple(header["features"]),
                       header["target_false_alarm_rate"], header["random_state"],
                       header["threshold"], header["info"],
                       calibration=header.get("calibration", "quantile"),
                       tails=header.get("tails", "empirical"))
        state = pickle.loads(blob[8 + size:])  # noqa: S301 - our own warehouse's blob
        detector._models, detector._train_scores = state["models"], state["train_scores"]
        return detector

