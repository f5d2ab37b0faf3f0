"""Research for issue #7: a seasonal recipe for Walmart's weekly sales, found and scored honestly.

    python benchmarks/walmart_recipe.py [--data-dir ../shared/data/walmart_recruiting] [--no-append]

Why this exists. The platform's weekly forecaster (``benchmarks/accuracy.py --dataset walmart``)
reaches WMAE 1,748 on the Kaggle holdout (train to 2012-01-27, forecast the 39 weeks
2012-02-03..2012-10-26); the goal is 1,530. Its features must be safe for the whole horizon, so
its growth terms end 39 weeks before the target. Measured here, freshness is most of the gap:
the same seasonal base x growth scores 1,889 with a growth 39 weeks stale and 1,633 with a growth
measured at the origin. This script keeps the recipe that wins, computed at the origin, as the
reference the forecaster will port (a model fit at an origin, like the baselines, rather than a
feature row per target), and records how each of its parameters was chosen.

The recipe, at origin ``o`` for target week ``t`` (sales up to ``o`` only; a missing week is 0):

1. denoise: per department, the stores x weeks matrix up to ``o`` keeps its first ``RANK``
   SVD components (the Kaggle winner's step: a department's stores share one seasonal shape);
2. source week: ``t - 52``, except around Easter, which moves (2011-04-24, 2012-04-08): the
   ``EASTER_BLOCK`` weeks ending with the week that holds Easter Sunday take last year's
   matching weeks, and the weeks they displace fill the gap (a swap);
3. seasonal base: the source week smoothed 1/4-1/2-1/4 over its neighbours, unsmoothed on a
   holiday-flagged target week (a holiday's peak is one week; smoothing halves it);
4. growth: for windows of 8 and 13 weeks, the sum of the last n weeks / the same n weeks a year
   earlier, clipped to 0.5..2, for the series, for its department (pooled over stores) and for
   its store (pooled over departments); blended on the log scale 0.55 / 0.15 / 0.30 (a series'
   own growth is noisy, its store's and department's are not), then the geometric mean over the
   two windows;
5. forecast = seasonal base x growth.

Honesty. Every parameter was chosen without the holdout: on two validation origins inside the
training file, 2011-04-29 (39 weeks) and 2011-07-29 (26 weeks), scored on February-October
target weeks (the holdout's months; scoring the whole window picks the same family and 1,512 on
the holdout), with data up to each origin; the Easter block on origin 2011-01-28. No target of a
validation window is after 2012-01-27. The holdout is scored once, last. A two-year-ago blend
scores better on the holdout (1,490 at a fixed 0.5/0.5) but cannot be validated (every target
with a week two years back is in the holdout), so it is not part of the recipe. An XGBoost
correction on top, trained on origin-fresh rows, won on validation and gave nothing on the
holdout (1,532): not part of it either.

The last line printed is JSON: recipe_wmae (holdout), validation_wmae, recipe_wmae_no_svd (the
part DuckDB SQL can express alone), wmae_seasonal_naive_52 (same points), seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import numpy as np
from dateutil.easter import easter
from results import ROOT, append_section, default_source_dir, machine  # noqa: E402

from forecast_platform.models import metrics

HOLDOUT_ORIGIN = dt.date(2012, 1, 27)
HORIZON = 39
# (origin, weeks) of the validation windows, and the months scored there (the holdout's).
VALIDATION = ((dt.date(2011, 4, 29), 39), (dt.date(2011, 7, 29), 26))
VALIDATION_MONTHS = tuple(range(2, 11))
SEASON = 52


@dataclass(frozen=True)
class Recipe:
    rank: int = 10  # a stated default; validation is flat from 8 to 12
    easter_block: int = 2  # chosen on origin 2011-01-28 (0/1/2/3: 1808/1798/1771/1774)
    holiday_unsmoothed: bool = True
    windows: tuple[int, ...] = (8, 13)
    weight_dept: float = 0.15
    weight_store: float = 0.30
    kernel: tuple[float, float, float] = (0.25, 0.5, 0.25)
    clip: tuple[float, float] = (0.5, 2.0)


@dataclass(frozen=True)
class Sales:
    """Weekly sales as a series x week matrix (NaN where a series has no row)."""

    y: np.ndarray
    weeks: list[dt.date]
    store: np.ndarray
    dept: np.ndarray
    holiday: np.ndarray  # 1 on holiday weeks (the data's IsHoliday)

    def index(self, day: dt.date) -> int:
        return self.weeks.index(day)

    def easter_weeks(self) -> list[int]:
        """Index of the week (labelled by its Friday) that holds Easter Sunday, per year."""
        out = []
        for year in sorted({w.year for w in self.weeks}):
            friday = easter(year) + dt.timedelta(days=5)
            if friday in self.weeks:
                out.append(self.index(friday))
        return out


def load(data_dir: Path) -> Sales:
    path = data_dir / "train.csv.gz"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: pass --data-dir (the Walmart Recruiting folder)")
    frame = duckdb.sql(f"""
        SELECT Store, Dept, CAST(Date AS DATE) AS d, sum(Weekly_Sales) AS y,
               max(CAST(IsHoliday = 'TRUE' AS INTEGER)) AS h
        FROM read_csv('{path}', header = true, types = {{'IsHoliday': 'VARCHAR'}})
        GROUP BY ALL""").df()
    weeks = sorted(frame["d"].dt.date.unique())
    week_index = {w: i for i, w in enumerate(weeks)}
    keys = frame[["Store", "Dept"]].drop_duplicates().sort_values(["Store", "Dept"]).to_numpy()
    key_index = {(int(s), int(d)): i for i, (s, d) in enumerate(keys)}
    y = np.full((len(keys), len(weeks)), np.nan)
    rows = [key_index[(int(s), int(d))] for s, d in zip(frame["Store"], frame["Dept"],
                                                         strict=True)]
    cols = [week_index[w] for w in frame["d"].dt.date]
    y[rows, cols] = frame["y"].to_numpy()
    holiday = frame.groupby(frame["d"].dt.date)["h"].max().reindex(weeks).to_numpy()
    return Sales(y, weeks, keys[:, 0], keys[:, 1], holiday)


def denoise(sales: Sales, origin: int, rank: int) -> np.ndarray:
    """Sales up to the origin (gaps 0), each department's stores x weeks matrix cut to ``rank``
    SVD components."""
    filled = np.nan_to_num(sales.y[:, :origin + 1])
    if rank == 0:
        return filled
    out = filled.copy()
    for dept in np.unique(sales.dept):
        rows = np.flatnonzero(sales.dept == dept)
        if len(rows) <= rank:
            continue
        u, s, vt = np.linalg.svd(filled[rows], full_matrices=False)
        out[rows] = (u[:, :rank] * s[:rank]) @ vt[:rank]
    return out


def source_weeks(sales: Sales, origin: int, horizon: int, block: int) -> np.ndarray:
    """For targets origin..origin+horizon+1 (the neighbours included): the week a year back
    each one copies; Easter's ``block`` weeks swap with last year's Easter weeks."""
    targets = np.arange(origin, origin + horizon + 2)
    source = targets - SEASON
    if block == 0:
        return source
    easters = sales.easter_weeks()
    for e in easters:
        earlier = [x for x in easters if x < e]
        if not earlier or not targets[0] <= e <= targets[-1]:
            continue
        last = earlier[-1]
        wanted = list(range(last - block + 1, last + 1))  # last year's Easter weeks
        aligned = list(range(e - SEASON - block + 1, e - SEASON + 1))  # what t-52 would copy
        span = range(min(wanted + aligned), max(wanted + aligned) + 1)
        block_targets = list(range(e - block + 1, e + 1))
        pairs = list(zip(block_targets, wanted, strict=True))
        pairs += list(zip([x + SEASON for x in span if x + SEASON not in block_targets],
                          [x for x in span if x not in wanted], strict=True))
        for target, src in pairs:
            if targets[0] <= target <= targets[-1]:
                source[target - targets[0]] = src
    return source


def ratio(num: np.ndarray, den: np.ndarray, clip: tuple[float, float]) -> np.ndarray:
    safe = np.where(den > 0, den, 1.0)
    return np.clip(np.where(den > 0, num / safe, 1.0), *clip)


def pooled_ratio(num: np.ndarray, den: np.ndarray, groups: np.ndarray,
                 clip: tuple[float, float]) -> np.ndarray:
    out = np.ones(len(num))
    for g in np.unique(groups):
        rows = groups == g
        out[rows] = ratio(np.array([num[rows].sum()]), np.array([den[rows].sum()]), clip)[0]
    return out


def growth(sales: Sales, filled: np.ndarray, origin: int, r: Recipe) -> np.ndarray:
    logs = []
    for n in r.windows:
        num = filled[:, origin - n + 1:origin + 1].sum(axis=1)
        den = filled[:, origin - n + 1 - SEASON:origin + 1 - SEASON].sum(axis=1)
        own = 1 - r.weight_dept - r.weight_store
        logs.append(own * np.log(ratio(num, den, r.clip))
                    + r.weight_dept * np.log(pooled_ratio(num, den, sales.dept, r.clip))
                    + r.weight_store * np.log(pooled_ratio(num, den, sales.store, r.clip)))
    return np.exp(np.mean(logs, axis=0))


def forecast(sales: Sales, origin: int, horizon: int, r: Recipe) -> np.ndarray:
    """Series x horizon forecasts from the sales up to ``origin`` (an index into the weeks)."""
    smooth = denoise(sales, origin, r.rank)
    base = smooth[:, source_weeks(sales, origin, horizon, r.easter_block)]
    centre = base[:, 1:-1]
    k = r.kernel
    seasonal = k[0] * base[:, :-2] + k[1] * centre + k[2] * base[:, 2:]
    if r.holiday_unsmoothed:
        holiday = sales.holiday[origin + 1:origin + horizon + 1] == 1
        seasonal[:, holiday] = centre[:, holiday]
    filled = np.nan_to_num(sales.y[:, :origin + 1])
    return seasonal * growth(sales, filled, origin, r)[:, None]


def seasonal_naive(sales: Sales, origin: int, horizon: int) -> np.ndarray:
    targets = np.arange(origin + 1, origin + horizon + 1)
    return np.nan_to_num(sales.y[:, targets - SEASON])


def wmae(sales: Sales, origin: int, horizon: int, pred: np.ndarray,
         months: tuple[int, ...] | None = None) -> float:
    """WMAE over the window's points with actuals (holiday weeks weigh 5)."""
    targets = np.arange(origin + 1, origin + horizon + 1)
    y = sales.y[:, targets].copy()
    if months is not None:
        y[:, ~np.isin([sales.weeks[t].month for t in targets], months)] = np.nan
    scored = ~np.isnan(y)
    holiday = np.broadcast_to(sales.holiday[targets] == 1, y.shape)
    return metrics.wmae(y[scored], np.nan_to_num(pred)[scored], holiday[scored])


def validation_score(sales: Sales, r: Recipe) -> float:
    return float(np.mean([
        wmae(sales, sales.index(o), h, forecast(sales, sales.index(o), h, r), VALIDATION_MONTHS)
        for o, h in VALIDATION]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=default_source_dir("walmart_recruiting"))
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sales = load(Path(args.data_dir).resolve())
    origin = sales.index(HOLDOUT_ORIGIN)
    recipe = Recipe()
    variants = {
        "recipe": recipe,
        "without the SVD step (DuckDB SQL alone)": replace(recipe, rank=0),
        "without the Easter swap": replace(recipe, easter_block=0),
        "without the holiday rule": replace(recipe, holiday_unsmoothed=False),
        "own growth only (no store, department pools)": replace(recipe, weight_dept=0.0,
                                                                  weight_store=0.0),
    }
    rows = []
    for name, r in variants.items():
        rows.append((name, validation_score(sales, r),
                     wmae(sales, origin, HORIZON, forecast(sales, origin, HORIZON, r))))
    naive_val = float(np.mean([
        wmae(sales, sales.index(o), h, seasonal_naive(sales, sales.index(o), h),
             VALIDATION_MONTHS) for o, h in VALIDATION]))
    naive = wmae(sales, origin, HORIZON, seasonal_naive(sales, origin, HORIZON))
    rows.append(("seasonal naive (52)", naive_val, naive))
    seconds = time.perf_counter() - started

    print(f"{'method':<46} {'validation':>10} {'holdout':>8}")
    for name, val, hold in rows:
        print(f"{name:<46} {val:>10.1f} {hold:>8.1f}")
    print(f"{seconds:.1f} s for every variant (load, SVD per origin, scoring)")
    if not args.no_append:
        lines = [
            f"## Walmart seasonal recipe (research for #7), {dt.datetime.now():%Y-%m-%d %H:%M}",
            "",
            f"- machine: {machine()}",
            f"- command: `{' '.join(['python', 'benchmarks/walmart_recipe.py', *sys.argv[1:]])}`",
            f"- holdout: origin {HOLDOUT_ORIGIN}, {HORIZON} weeks; validation: origins "
            + ", ".join(f"{o} ({h} weeks)" for o, h in VALIDATION)
            + ", February-October targets; every point with an actual (3,331 series)",
            "",
            "| method | validation WMAE | holdout WMAE |",
            "|---|---:|---:|",
            *(f"| {name} | {val:.1f} | {hold:.1f} |" for name, val, hold in rows),
            "",
            f"{seconds:.1f} s for all variants. The recipe, its parameters and how each was "
            "chosen are in the script's docstring. Not yet the platform's forecaster: see the "
            "closing note of #7's session for the port.",
        ]
        print(f"appended to {append_section(chr(10).join(lines)).relative_to(ROOT)}")
    print(json.dumps({
        "recipe_wmae": round(rows[0][2], 2), "validation_wmae": round(rows[0][1], 2),
        "recipe_wmae_no_svd": round(rows[1][2], 2),
        "wmae_seasonal_naive_52": round(naive, 2), "seconds": round(seconds, 2),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
