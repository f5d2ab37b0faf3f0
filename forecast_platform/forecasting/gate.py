"""The champion gate: a challenger is promoted only if it beats the champion and every baseline
on the same backtest points.

"Same points" against the champion depends on what changed:

* a changed recipe (parameters, features) whose features are still computed: the champion's
  recipe is refit at the challenger's backtest origins on the same rows (``CHAMPION`` in the
  backtest), so both are scored on the same points, each trained up to the same origin. This is
  the fair comparison, and the one the forecaster asset runs whenever it can;
* otherwise (the champion's features are gone, or no model is passed): the challenger's
  backtest forecasts on the dates after the champion's training end, which the stored champion
  forecasts out of sample too. That favours the champion, which was trained later than the
  challenger's backtest fits; when the champion was trained on the same data, its recorded
  backtest covers the very same points and is compared instead;
* a retrain of the champion's own recipe on newer data: see ``evaluate``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import pandas as pd

from forecast_platform.forecasting import metrics
from forecast_platform.forecasting.backtest import CHAMPION, MODEL, BacktestResult
from forecast_platform.forecasting.forecaster import Forecaster

METRICS = {"smape": metrics.smape, "mae": metrics.mae, "rmse": metrics.rmse}


@dataclass
class GateVerdict:
    passed: bool
    metric: str
    margin: float
    challenger: float
    champion: float | None = None
    champion_version: int | None = None
    compared_on: str = ""
    baselines: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def summary(self) -> str:
        head = ("promoted" if self.passed else "kept the champion"
                if self.champion is not None or self.champion_version is not None
                else "not promoted")
        return f"{head}: " + "; ".join(self.reasons)


def same_recipe(a: Forecaster, b: Forecaster) -> bool:
    """Same parameters, features and horizon: two fits of one recipe on different data."""
    return a.params == b.params and list(a.features) == list(b.features) \
        and a.horizon == b.horizon


def _metric(name: str, y, pred, is_holiday=None) -> float:
    if name == "wmae":
        return metrics.wmae(y, pred, is_holiday)
    return METRICS[name](y, pred)


def evaluate(
    backtest: BacktestResult,
    metric: str,
    margin: float,
    features: pd.DataFrame | None = None,
    champion: Forecaster | None = None,
    champion_version: int | None = None,
    champion_train_end: dt.date | None = None,
    champion_recorded: float | None = None,
    challenger_train_end: dt.date | None = None,
    challenger_model: Forecaster | None = None,
) -> GateVerdict:
    """Compare the challenger with every baseline and, if there is one, the champion.

    ``features`` are the feature rows of the backtest window (for the champion's forecasts).

    A challenger with the champion's recipe (same parameters, features and horizon) trained on
    newer data is the champion's retrain: the backtest of that recipe on these origins is the
    champion's own backtest, so they tie by construction, and the only other comparison (the
    challenger's backtest fits, trained up to each origin, against a champion trained later)
    would favour the older model exactly when the data has moved. It is promoted when it beats
    every baseline; the recipe comparison below is for a changed recipe.
    """
    overall = backtest.overall(MODEL)
    verdict = GateVerdict(True, metric, margin, round(overall[metric], 4))
    for method in backtest.methods:
        if method in (MODEL, CHAMPION):
            continue
        base = backtest.overall(method)[metric]
        verdict.baselines[method] = round(base, 4)
        if overall[metric] < base * (1 - margin):
            verdict.reasons.append(f"beats {method} ({overall[metric]:.3f} vs {base:.3f})")
        else:
            verdict.passed = False
            verdict.reasons.append(
                f"does not beat {method}{f' by {margin:.0%}' if margin else ''}: {metric} "
                f"{overall[metric]:.3f} vs {base:.3f} ({overall[metric] / base - 1:+.1%})"
            )
    if champion is None and champion_recorded is None:
        verdict.reasons.append("no champion yet")
        return verdict

    verdict.champion_version = champion_version
    if (champion is not None and challenger_model is not None
            and same_recipe(champion, challenger_model) and champion_train_end is not None
            and challenger_train_end is not None and challenger_train_end > champion_train_end):
        verdict.champion = verdict.challenger
        verdict.compared_on = (f"the champion's own recipe on the same backtest (a retrain: "
                               f"same parameters and features, data to {challenger_train_end} "
                               f"instead of {champion_train_end})")
        verdict.reasons.append(
            f"retrains champion v{champion_version}'s recipe on newer data (to "
            f"{challenger_train_end}, the champion to {champion_train_end}): replaces it if it "
            "beats every baseline")
        return verdict
    preds = backtest.predictions
    if CHAMPION in backtest.methods:
        challenger, champion_score = overall[metric], backtest.overall(CHAMPION)[metric]
        points = int(backtest.metrics.loc[backtest.metrics["origin"] == "all", "points"].iloc[0])
        verdict.compared_on = (f"champion v{champion_version}'s recipe refit at the same "
                               f"{len(backtest.origins)} origins, on the same {points} points")
        return _against_champion(verdict, challenger, champion_score)
    unseen = preds[preds["ds"] > pd.Timestamp(champion_train_end)] if champion_train_end \
        else preds.iloc[0:0]
    if champion is not None and features is not None and not unseen.empty:
        # Score both on the latest origin's forecast of each unseen point.
        unseen = unseen.sort_values("origin").drop_duplicates(["series_id", "ds"], keep="last")
        rows = unseen[["series_id", "ds"]].merge(
            features.assign(ds=pd.to_datetime(features["ds"])), on=["series_id", "ds"],
            how="left",
        )
        champ = champion.predict(rows)["p50"].to_numpy()
        ok = ~pd.isna(champ)
        challenger = _metric(metric, unseen["y"][ok], unseen["p50"][ok],
                             unseen["is_holiday"][ok])
        champion_score = _metric(metric, unseen["y"][ok], champ[ok], unseen["is_holiday"][ok])
        verdict.challenger = round(challenger, 4)
        verdict.compared_on = (f"{int(ok.sum())} backtest points after the champion's training "
                               f"end {champion_train_end}")
    elif champion_recorded is not None and champion_train_end == challenger_train_end:
        challenger, champion_score = overall[metric], champion_recorded
        verdict.compared_on = "the same backtest (both trained on the same data)"
    else:
        verdict.passed = False
        verdict.reasons.append("no backtest points the champion has not seen: cannot compare")
        return verdict
    return _against_champion(verdict, challenger, champion_score)


def _against_champion(verdict: GateVerdict, challenger: float, champion_score: float
                      ) -> GateVerdict:
    metric, margin, champion_version = verdict.metric, verdict.margin, verdict.champion_version
    verdict.challenger = round(challenger, 4)
    verdict.champion = round(champion_score, 4)
    if challenger < champion_score * (1 - margin):
        verdict.reasons.append(
            f"beats champion v{champion_version} ({challenger:.3f} vs {champion_score:.3f})")
    else:
        verdict.passed = False
        verdict.reasons.append(
            f"does not beat champion v{champion_version} by {margin:.0%}: {metric} "
            f"{challenger:.3f} vs {champion_score:.3f} ({challenger / champion_score - 1:+.1%})"
        )
    return verdict
