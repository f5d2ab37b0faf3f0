"""Plan rows -> the plan in force and the quarantine, with the discipline of sales rows.

A plan row is refused, with a reason naming the field, the value and what was expected, when:
- its date is not a date, is not in the future (sales are landed up to it), is past the last
  plannable date, or is off the weekly dataset's period grid;
- a key is empty or of the wrong type, or the series has no landed sales (a plan is for series
  the platform knows: an unknown code is far more often a typo than a new store);
- a covariate is empty or not of its type (an int flag such as ``promo`` must be an integer, a
  category one of its codes);
- its date and keys appear on more than one row of the file: which row to believe is ambiguous,
  so every such row is refused, not just the later ones.

A known covariate the file has no column for stays NULL in the plan: "nothing planned", the
forecasts' default. Nothing is lost: every row read is in the plan or in the quarantine.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast_platform.datasets.spec import WEEKDAYS, ColumnType, DatasetSpec
from forecast_platform.ingestion.text import clip
from forecast_platform.planning.files import LINE_COLUMN, PlanRange, date_formats, parse_dates

REJECT_COLUMNS = ["partition_date", "plan_version", "plan_file", "source_line", "rule",
                  "reason", "raw_values"]
TYPE_WORDS: dict[ColumnType, str] = {"int": "an integer", "float": "a finite number",
                                     "str": "text", "bool": "0 or 1 (or true/false)"}
BOOL_WORDS = {"0": False, "1": True, "false": False, "true": True}


@dataclass(frozen=True)
class PlanSplit:
    valid: pd.DataFrame  # ds, series_id, keys, known covariates, plan_version, source_line
    rejected: pd.DataFrame  # REJECT_COLUMNS

    @property
    def landed(self) -> int:
        return len(self.valid) + len(self.rejected)


def parse_value(text: str, kind: ColumnType, codes: tuple[str, ...] | None = None):
    """A plan value of type ``kind``, or raise ``ValueError``: the same types as sales rows."""
    text = text.strip()
    if text == "":
        raise ValueError
    if kind == "int":
        number = float(text)
        if not math.isfinite(number) or number != int(number):
            raise ValueError
        return int(number)
    if kind == "float":
        number = float(text)
        if not math.isfinite(number):
            raise ValueError
        return number
    if kind == "bool":
        return BOOL_WORDS[text.lower()]
    if codes and text not in codes:
        raise ValueError
    return text


def _expected(spec: DatasetSpec, column: str, kind: ColumnType) -> str:
    codes = spec.categories.get(column)
    if codes:
        return f"one of {list(codes)}"
    return TYPE_WORDS[kind]


def validate_plan(frame: pd.DataFrame, partitions: pd.Series, spec: DatasetSpec, version: str,
                  file_name: str, known_series: set[str], last_sales: dt.date | None,
                  plan_range: PlanRange) -> PlanSplit:
    """Split a plan file's rows (text, from ``read_plan``) into plan rows and rejects.

    ``partitions`` is each row's partition date (``partitions_of``); ``last_sales`` the
    newest sales date landed, None when no sales are.
    """
    n = len(frame)
    reasons: list[str | None] = [None] * n
    rules: list[str | None] = [None] * n

    def refuse(mask: np.ndarray, rule: str, reason) -> None:
        for i in np.flatnonzero(mask):
            if reasons[i] is None:
                reasons[i], rules[i] = (reason(i) if callable(reason) else reason), rule

    date_col = spec.date_column
    raw_dates = frame[date_col].to_numpy()
    days = parse_dates(frame[date_col], spec.date_format).to_numpy()
    no_date = np.array([d is None for d in days])
    refuse(no_date, "dates", lambda i: f"column '{date_col}': value {clip(raw_dates[i])} is not "
                                       f"a date; expected {date_formats(spec)}")
    if last_sales is None:
        refuse(~no_date, "dates", "no sales are landed yet, so no date is known to be in the "
                                  "future: ingest sales before validating a plan")
    else:
        past = np.array([d is not None and d <= last_sales for d in days])
        refuse(past, "dates", lambda i: f"column '{date_col}': {days[i]} is not in the future; "
                                        f"sales are landed up to {last_sales}, so a plan starts "
                                        f"{last_sales + dt.timedelta(days=spec.step_days)}")
    late = np.array([d is not None and d > plan_range.last for d in days])
    refuse(late, "dates", lambda i: f"column '{date_col}': {days[i]} is after the last "
                                    f"plannable date {plan_range.last}")
    if spec.step_days > 1:
        grid = WEEKDAYS[plan_range.start.weekday()]
        off = np.array([d is not None and not plan_range.holds(d) and d <= plan_range.last
                        for d in days])
        refuse(off, "dates", lambda i: f"column '{date_col}': {days[i]} is a "
                                       f"{WEEKDAYS[days[i].weekday()]}; this weekly dataset's "
                                       f"periods start on a {grid}")

    keys: dict[str, list] = {}
    for key in spec.keys:
        kind = spec.key_type(key)
        raw = frame[key].to_numpy()
        values, bad = [], np.zeros(n, dtype=bool)
        for i, text in enumerate(raw):
            try:
                values.append(parse_value(text, kind))
            except (ValueError, KeyError):
                values.append(None)
                bad[i] = True
        keys[key] = values
        refuse(bad, "series", lambda i, key=key, raw=raw, kind=kind: (
            f"column '{key}' is empty; a key is required" if not str(raw[i]).strip() else
            f"column '{key}': value {clip(raw[i])} is not {TYPE_WORDS[kind]}"))
    series = ["|".join(str(keys[k][i]) for k in spec.keys)
              if all(keys[k][i] is not None for k in spec.keys) else None for i in range(n)]
    unknown = np.array([s is not None and s not in known_series for s in series])
    refuse(unknown, "series", lambda i: (
        "unknown series " + ", ".join(f"{k}={clip(frame[k].iat[i])}" for k in spec.keys)
        + ": no sales of it are landed; a plan is for series with sales"))

    known = {}
    for column, kind in spec.known.items():
        if column not in frame.columns:
            known[column] = [None] * n
            continue
        raw = frame[column].to_numpy()
        codes = spec.categories.get(column)
        values, bad = [], np.zeros(n, dtype=bool)
        for i, text in enumerate(raw):
            try:
                values.append(parse_value(text, kind, codes))
            except (ValueError, KeyError):
                values.append(None)
                bad[i] = True
        known[column] = values
        refuse(bad, "covariates", lambda i, c=column, raw=raw, kind=kind: (
            f"column '{c}' is empty; expected {_expected(spec, c, kind)} (give 0 for nothing "
            "planned)" if not str(raw[i]).strip() else
            f"column '{c}': value {clip(raw[i])} is not {_expected(spec, c, kind)}"))

    # Duplicates among rows whose date and series can be read.
    pairs = pd.Series([(d, s) if d is not None and s is not None else None
                       for d, s in zip(days, series, strict=True)])
    counted = pairs[pairs.notna()]
    repeats = counted[counted.duplicated(keep=False)]
    lines = frame[LINE_COLUMN].to_numpy()
    if len(repeats):
        groups = repeats.groupby(repeats.map(str)).groups
        names = ", ".join([date_col, *spec.keys])
        for members in groups.values():
            at = [int(lines[i]) for i in members]
            for i in members:
                reasons[i] = (f"duplicate ({names}): {len(at)} rows of this file plan "
                              f"{days[i]} for series {series[i]} (lines "
                              f"{', '.join(map(str, at[:10]))}); which one holds is ambiguous")
                rules[i] = "duplicates"

    ok = np.array([r is None for r in reasons], dtype=bool)
    valid = pd.DataFrame({
        "ds": pd.to_datetime(pd.Series(days[ok], dtype=object)),
        "series_id": pd.Series(series, dtype=object)[ok].to_numpy(),
        **{k: pd.Series(keys[k], dtype=object)[ok].to_numpy() for k in spec.keys},
        **{c: pd.Series(v, dtype=object)[ok].to_numpy() for c, v in known.items()},
        "plan_version": version,
        "source_line": lines[ok].astype(np.int64),
    })
    for key in spec.keys:
        valid[key] = valid[key].astype(_DTYPES[spec.key_type(key)])
    for column, kind in spec.known.items():
        valid[column] = valid[column].astype(_DTYPES[kind])
    shown = [c for c in frame.columns if c != LINE_COLUMN]
    raw_text = frame[shown].astype(str).agg(
        lambda row: ", ".join(f"{c}={clip(v, 40)}" for c, v in row.items()), axis=1)
    bad = ~ok
    rejected = pd.DataFrame({
        "partition_date": pd.to_datetime(partitions.to_numpy()[bad]),
        "plan_version": version,
        "plan_file": file_name,
        "source_line": lines[bad].astype(np.int64),
        "rule": pd.Series(rules, dtype=object)[bad].to_numpy(),
        "reason": pd.Series(reasons, dtype=object)[bad].to_numpy(),
        "raw_values": raw_text.to_numpy()[bad],
    }, columns=REJECT_COLUMNS)
    return PlanSplit(valid, rejected)


def combine(splits: list[PlanSplit], spec: DatasetSpec) -> PlanSplit:
    """Several files' splits as one; an empty plan (typed) when there are none."""
    if not splits:
        empty = pd.DataFrame({c: pd.Series(dtype=str)
                              for c in [spec.date_column, *spec.keys, LINE_COLUMN]})
        return validate_plan(empty, pd.Series(dtype=object), spec, "", "", set(), None,
                             PlanRange(spec.start, spec.end, spec.step_days))
    return PlanSplit(pd.concat([s.valid for s in splits], ignore_index=True),
                     pd.concat([s.rejected for s in splits], ignore_index=True))


_DTYPES: dict[ColumnType, str] = {"int": "Int64", "float": "Float64", "str": "string",
                                  "bool": "boolean"}
