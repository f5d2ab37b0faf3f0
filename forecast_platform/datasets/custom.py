"""A user's own CSV as a dataset, by configuration: inspect it, propose a spec, keep it as YAML.

``forecast-platform init-dataset`` maps the columns of one CSV (date, keys, target, known and
observed covariates, static attributes, a holiday flag) onto a ``DatasetSpec``. Everything is
checked before anything is written: a column that does not exist, a date column that does not
parse, keys that are not unique per date, a frequency that is neither daily nor weekly, a static
attribute that changes within a series, a holiday flag that is not 0/1. The proposal states what
was inferred
(column types, frequency, span, gaps) so the person can read it before running the graph.

The spec is a YAML file under ``Settings.datasets_dir``; ``registry.get_spec`` finds it by name,
and its lander (``land_csv``) splits the CSV into landing files. The CSV itself is never copied:
the spec records its path (a ``--source-dir`` holding a file of the same name wins, so a moved
folder can be pointed at).

Gaps are reported, not filled: a period without a row is "no data" (closed, not stocked), never
zero sales. Closures are understood, not refused (datasets/closures.py): the days a series or a
group of series does not report by rule (a store's Sundays, national and regional holidays, a
refurbishment) are inferred from the history, declared with ``--closures FILE``, or read
exactly from an open flag (``--open COLUMN``); they become closure rules in
``<name>.closures.csv`` beside the YAML, which the blocking completeness and volume checks
expect no row on. The completeness tolerance is proposed from the worst remaining date (gaps
that are no closure). A history shorter than the forecaster needs (``shortest_history``) is
refused with that figure.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from forecast_platform.datasets import closures as cl
from forecast_platform.datasets.landing import write_landing_files
from forecast_platform.datasets.spec import (
    ENCODINGS,
    FLAG_WORDS,
    METRICS,
    ClosureRule,
    ColumnType,
    DatasetSpec,
    csv_delimiter,
    decode,
    flags_as_numbers,
)

# Date formats tried in order; the first that parses every value is the file's.
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d",
                "%Y-%m-%d %H:%M:%S")
DEFAULT_HORIZON = {"D": 28, "W": 13}
MAX_CATEGORIES = 50  # a text covariate with more distinct values is not a code list
# The target's plausibility bound: this many times the largest value of the history, rounded up
# to a readable figure (1, 2 or 5 times a power of ten).
MAX_TARGET_FACTOR = 10
SPEC_VERSION = 1
# What the forecaster needs (see ``shortest_history``): the train job's backtest origins
# (defs/forecasting.py ForecasterConfig.backtest_origins) spaced 28 days' worth apart
# (forecasting/training.py default_spacing).
BACKTEST_ORIGINS = 3
# More of the series-periods (between each series' first and last row, closures left out)
# missing than this: the keys do not describe series.
MAX_GAP_SHARE = 0.5


class MappingError(ValueError):
    """The column mapping does not fit the file: nothing was written."""


@dataclass
class Proposal:
    """What ``inspect_csv`` found: the spec's fields and the facts behind them."""

    spec: dict
    notes: list[str] = field(default_factory=list)
    rules: list[ClosureRule] = field(default_factory=list)  # the closures file's rules

    def text(self) -> str:
        s = self.spec
        lines = [f"dataset {s['name']!r} from {s['csv']}",
                 f"  frequency {s['frequency']} ({'daily' if s['frequency'] == 'D' else 'weekly'})"
                 f", {s['start']} .. {s['end']}, horizon {s['horizon']} periods",
                 f"  date {s['date_column']!r} (format {s['date_format']}), keys "
                 + ", ".join(f"{k} ({t})" for k, t in s["key_types"].items())
                 + f", target {s['target']!r}"]
        for kind in ("known", "observed", "static"):
            if s.get(kind):
                lines.append(f"  {kind}: " + ", ".join(f"{c} ({t})" for c, t in s[kind].items()))
        if s.get("static"):
            lines.append(f"  static attributes constant per {', '.join(s['static_keys'])}")
        if s.get("holiday_column"):
            lines.append(f"  holiday flag {s['holiday_column']!r}; metric of record "
                         f"{s['metric']}")
        if s.get("max_target") is not None:
            lines.append(f"  plausibility bound max_target {figure(s['max_target'])}: a larger "
                         "target is quarantined (edit it in the spec if the business can "
                         "exceed it)")
        if s.get("open_column"):
            lines.append(f"  open flag {s['open_column']!r}: closed rows (0) are closure rules, "
                         "never landed as sales")
        if self.rules:
            lines.append(f"  closures: {len(self.rules)} rules in {s['closures']} (days a series "
                         "has no row, or a row of 0 that is not landed, by rule; the ingest "
                         "checks expect none)")
            lines += [f"    {line}" for line in cl.summarize(self.rules)]
        if s.get("encoding", "utf-8") != "utf-8":
            lines.append(f"  files that are not UTF-8 are read as {s['encoding']}")
        lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


def figure(value: float) -> str:
    """A number as a person reads it: 10,000,000 rather than 1e+07; 0.5 stays 0.5."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.6g}"


def readable_bound(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value * (1 - 1e-12):
            bound = step * power
            return float(int(bound)) if bound >= 1 else bound
    return 10 * power  # not reached


def read_text_csv(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """A CSV's values as text: UTF-8 (a byte-order mark dropped), else the declared encoding.
    A file neither reads is refused with the byte and offset that do not decode."""
    data = Path(path).read_bytes()
    try:
        text, _ = decode(data, encoding)
    except UnicodeDecodeError as err:
        hint = ("; if it is Windows-1252 (Excel on Windows), declare encoding cp1252"
                if encoding == "utf-8" else "")
        raise MappingError(f"{path} is not {'UTF-8' if encoding == 'utf-8' else encoding}: byte "
                           f"0x{data[err.start]:02x} at offset {err.start:,} does not decode"
                           f"{hint}") from None
    return pd.read_csv(io.StringIO(text), sep=csv_delimiter(text), dtype=str,
                       keep_default_na=False)


def _columns(frame: pd.DataFrame, names: list[str], role: str) -> None:
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise MappingError(f"{role} column {missing[0]!r} does not exist in the CSV; its columns "
                           f"are {list(frame.columns)}")


def parse_dates(values: pd.Series, column: str) -> tuple[pd.Series, str]:
    """The dates and the one format that parses all of them, or an error quoting a bad value."""
    text = values.str.strip()
    empty = text.eq("") | text.isna()
    if empty.any():
        line = int(empty.to_numpy().nonzero()[0][0]) + 2  # header is line 1
        raise MappingError(f"date column {column!r} is empty on line {line}")
    best = None  # (parsed count, format, first value it fails on, its line)
    for fmt in DATE_FORMATS:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        if parsed.notna().all():
            return parsed.dt.normalize(), fmt
        if best is None or parsed.notna().sum() > best[0]:
            # The format most values follow names the value a person should look at.
            i = int(parsed.isna().to_numpy().nonzero()[0][0])
            best = (int(parsed.notna().sum()), fmt, text.iloc[i], i + 2)
    hint = f" (the other values follow {best[1]})" if best[0] else ""
    raise MappingError(
        f"date column {column!r} does not parse: value {best[2]!r} on line {best[3]} is not a "
        f"date{hint}; formats tried: {list(DATE_FORMATS)}")


def infer_type(values: pd.Series) -> ColumnType:
    """int, float or str: the narrowest type every non-empty value parses as."""
    present = values[values.str.strip().ne("") & values.notna()].str.strip()
    if present.empty:
        return "float"
    number = pd.to_numeric(present, errors="coerce")
    if number.notna().all():
        return "int" if (number == number.round()).all() and \
            not present.str.contains(r"[.eE]").any() else "float"
    return "str"


def word_flags(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns whose values are all flag words (TRUE/FALSE, yes/no, any case; blanks
    allowed), as spreadsheets export a 0/1 column."""
    found = []
    for c in dict.fromkeys(columns):
        present = frame[c].str.strip()
        present = present[present.ne("")].str.lower()
        if len(present) and present.isin(list(FLAG_WORDS)).all():
            found.append(c)
    return found


def guess_frequency(dates: pd.Series, column: str) -> str:
    days = pd.Series(sorted(dates.unique()))
    if len(days) < 2:
        raise MappingError(f"date column {column!r} holds a single date: no frequency to follow")
    gaps = days.diff().dropna().dt.days
    step = int(gaps.min())
    if step == 7 and (gaps % 7 == 0).all():
        return "W"
    if step == 1:
        return "D"
    raise MappingError(
        f"date column {column!r}: consecutive dates are {step} days apart at least (e.g. "
        f"{days.iloc[int(gaps.to_numpy().argmin())].date()} to the next): expected daily (1) or "
        "weekly (7, always on the same weekday) data")


def static_keys_for(frame: pd.DataFrame, keys: list[str], static: list[str]) -> list[str]:
    """The fewest keys every static attribute is constant for: one key (in the given order,
    e.g. the store of store x dept) if one suffices, else all of them (per series).

    Why the smallest group: the feature SQL reads one value per group, so a store's size also
    reaches a department the store opens later. Values that change within a series are not
    static: the error names the column, the series and two of its values.
    """
    def constant(by: list[str]) -> bool:
        return bool((frame.groupby(by)[static].nunique(dropna=False) <= 1).all().all())

    for key in keys:
        if constant([key]):
            return [key]
    varying = frame.groupby(keys)[static].nunique(dropna=False)
    for column in static:
        bad = varying[varying[column] > 1]
        if not bad.empty:
            series = bad.index[0] if len(keys) > 1 else (bad.index[0],)
            where = dict(zip(keys, series, strict=True))
            mask = (frame[keys] == pd.Series(where)).all(axis=1)
            values = sorted(frame.loc[mask, column].unique())[:2]
            raise MappingError(
                f"static column {column!r} is not constant per series: {where} has the values "
                f"{values}; expected one value per series (map values that change over time "
                "with --known or --observed)")
    return list(keys)


def holiday_flag(frame: pd.DataFrame, column: str) -> None:
    """A holiday column must be a 0/1 flag: WMAE weighs the rows where it is 1."""
    values = frame[column].str.strip()
    bad = ~values.isin(["0", "1"])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise MappingError(f"holiday column {column!r} must hold 0 or 1, got {values.iloc[i]!r} "
                           f"on line {i + 2}")


def open_flag(frame: pd.DataFrame, column: str) -> None:
    """An open flag must be 0 (closed) or 1 (open) on every row."""
    values = frame[column].str.strip()
    bad = ~values.isin(["0", "1"])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise MappingError(f"open column {column!r} must hold 0 (closed) or 1 (open), got "
                           f"{values.iloc[i]!r} on line {i + 2}")


def shortest_history(frequency: str, horizon: int) -> tuple[int, str]:
    """The fewest days of history the forecaster needs, and why: the normaliser's lookback
    (``plan_features(...).normaliser_days``: the model trains on rows that have it) plus the
    backtest's span (``check_history``: one horizon of training rows before the first of
    ``BACKTEST_ORIGINS`` origins 28 days apart, and one horizon to score after the last).

    Not the features' longest lookback (two years back for daily data): a retailer's export of
    two years is common, and the features that reach further are missing values to the model
    until the history holds them."""
    from forecast_platform.features.sql import plan_features

    step = 7 if frequency == "W" else 1
    probe = DatasetSpec(name="probe", frequency=frequency, date_column="d", keys=("k",),
                        target="y", start=dt.date(2000, 1, 1), end=dt.date(2000, 1, 1),
                        horizon=horizon)
    normaliser = plan_features(probe).normaliser_days
    spacing = max(1, 28 // step)
    backtest = (2 * horizon + (BACKTEST_ORIGINS - 1) * spacing) * step
    unit = "days" if step == 1 else "weeks"
    why = (f"{normaliser} days before the first training row for the normaliser (the series' "
           f"expected level the model scales by) + {backtest} days for the backtest "
           f"({BACKTEST_ORIGINS} origins {spacing * step} days apart, a {horizon}-{unit[:-1]} "
           "horizon of training before the first and to score after the last)")
    return normaliser + backtest, why


def inspect_csv(csv: Path, name: str, date: str, keys: list[str], target: str,
                freq: str | None = None, known: list[str] = (), observed: list[str] = (),
                horizon: int | None = None, static: list[str] = (), holiday: str | None = None,
                metric: str | None = None, encoding: str = "utf-8",
                closures: Path | None = None, open_column: str | None = None) -> Proposal:
    """Check the mapping against the file and propose a spec (nothing is written here).

    ``holiday``: a 0/1 column flagging holiday periods; it becomes a known covariate and the
    spec's ``holiday_column``, and the metric of record defaults to WMAE (holidays weigh 5).
    ``encoding``: what the CSV and its landing files are in when they are not UTF-8 ('utf-8'
    or 'cp1252'). The target's plausibility bound ``max_target`` is proposed from the history.
    ``closures``: a closures CSV (datasets/closures.py) declaring the closed days instead of
    inferring them; a declared closed day with sales is an error. ``open_column``: a 0/1 column
    flagging open rows; closed rows (0, target 0 or empty) become exact closure rules and are
    not landed.
    """
    csv = Path(csv).expanduser().resolve()
    if not csv.is_file():
        raise MappingError(f"--csv {csv} does not exist")
    if not name.isidentifier():
        raise MappingError(f"--name {name!r} must be a plain identifier (letters, digits, _)")
    if encoding not in ENCODINGS:
        raise MappingError(f"encoding {encoding!r}: expected one of {list(ENCODINGS)}")
    frame = read_text_csv(csv, encoding)
    _columns(frame, [date], "date")
    _columns(frame, keys, "key")
    _columns(frame, [target], "target")
    _columns(frame, list(known), "known covariate")
    _columns(frame, list(observed), "observed covariate")
    _columns(frame, list(static), "static")
    known = list(known)
    if open_column is not None:
        _columns(frame, [open_column], "open")
    if holiday is not None:
        _columns(frame, [holiday], "holiday")
    flags = word_flags(frame, [*known, *observed, *static,
                               *(c for c in (holiday, open_column) if c is not None)])
    frame = flags_as_numbers(frame, flags)
    if open_column is not None:
        open_flag(frame, open_column)
    if holiday is not None:
        holiday_flag(frame, holiday)
        if holiday not in known:
            known.append(holiday)
    roles = [date, *keys, target, *known, *observed, *static,
             *([open_column] if open_column else [])]
    twice = sorted({c for c in roles if roles.count(c) > 1})
    if twice:
        raise MappingError(f"column {twice[0]!r} is mapped twice (date, keys, target, known, "
                           "observed, static and open must be distinct)")
    metric = metric or ("wmae" if holiday is not None else "smape")
    if metric not in METRICS:
        raise MappingError(f"--metric {metric!r}: expected one of {list(METRICS)}")
    if metric == "wmae" and holiday is None:
        raise MappingError("--metric wmae weighs holiday periods: name the 0/1 holiday column "
                           "with --holiday")
    if freq is not None and freq not in ("D", "W"):
        raise MappingError(f"--freq {freq!r}: expected D (daily) or W (weekly)")
    if frame.empty:
        raise MappingError(f"{csv} has a header but no rows")

    dates, fmt = parse_dates(frame[date], date)
    dup = frame.assign(_d=dates).duplicated(["_d", *keys], keep=False)
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        where = ", ".join(f"{k}={frame[k].iloc[i]!r}" for k in keys)
        raise MappingError(
            f"keys {keys} are not unique per date: {int(dup.sum())} rows share a (date, keys) "
            f"pair, e.g. {date}={frame[date].iloc[i]!r}, {where} (line {i + 2} and others)")
    guessed = guess_frequency(dates, date)
    if freq is not None and freq != guessed:
        raise MappingError(f"--freq {freq} does not match the dates of {date!r}, which look "
                           f"{'weekly' if guessed == 'W' else 'daily'} ({guessed})")
    frequency = freq or guessed
    periods_ahead = int(horizon or DEFAULT_HORIZON[frequency])
    step = 7 if frequency == "W" else 1
    needed, why = shortest_history(frequency, periods_ahead)
    have = (dates.max() - dates.min()).days + step
    if have < needed:
        raise MappingError(
            f"the history is too short: {dates.min().date()} .. {dates.max().date()} is {have} "
            f"days, and a {'daily' if step == 1 else 'weekly'} dataset with a horizon of "
            f"{periods_ahead} periods needs at least {needed} days ({why}); land more history")
    key_types = {k: ("int" if infer_type(frame[k]) == "int" else "str") for k in keys}
    rules, history, inferred, closure_notes = _closures(
        frame, dates, keys, key_types, target, step, closures, open_column, fmt)
    if open_column is not None:  # the closed rows are rules now, never sales
        keep = frame[open_column].str.strip().eq("1").to_numpy()
        frame, dates = frame[keep], dates[keep]

    notes: list[str] = [f"history {have} days; the forecaster needs at least {needed} ({why})"]
    if flags:
        notes.append(f"{', '.join(flags)}: flag words (TRUE/FALSE, yes/no) read as 1/0")
    target_values = pd.to_numeric(frame[target].str.strip(), errors="coerce")
    bad = target_values.isna() & frame[target].str.strip().ne("")
    if bad.mean() > 0.5:
        i = int(bad.to_numpy().nonzero()[0][0])
        raise MappingError(f"target column {target!r} is not numeric: e.g. "
                           f"{frame[target].iloc[i]!r} on line {i + 2}")
    if bad.any():
        notes.append(f"{int(bad.sum())} target values are not numbers: those rows will be "
                     "quarantined (sales_rejects)")
    negative = bool((target_values < 0).any())
    finite = target_values[target_values.abs() < math.inf]
    largest = float(finite.max()) if finite.notna().any() else 0.0
    max_target = readable_bound(MAX_TARGET_FACTOR * max(largest, 1.0))
    notes.append(f"target bound max_target {figure(max_target)} ({MAX_TARGET_FACTOR}x the "
                 f"largest value of the history, {figure(largest)}, rounded up): larger targets "
                 "will be quarantined as implausible")
    top = finite.nlargest(2)
    if len(top) == 2 and top.iloc[1] > 0 and top.iloc[0] > 100 * top.iloc[1]:
        notes.append(f"the largest target {figure(top.iloc[0])} is over 100x the next "
                     f"({figure(top.iloc[1])}): check it, the bound above is made from it")
    if negative:
        notes.append(f"{int((target_values < 0).sum())} negative targets (returns?): accepted "
                     "(allow_negative_target)")

    types = {c: infer_type(frame[c]) for c in [*known, *observed, *static]}
    static_keys = static_keys_for(frame, keys, list(static)) if static else []
    if static:
        notes.append(f"static {list(static)}: one value per {', '.join(static_keys)}, joined in "
                     "the features (future rows get them too)")
    categories = {}
    for c, t in types.items():
        if t != "str":
            continue
        codes = sorted(v for v in frame[c].str.strip().unique() if v)
        if len(codes) > MAX_CATEGORIES:
            raise MappingError(f"covariate {c!r} holds text with {len(codes)} distinct values "
                               f"(e.g. {codes[0]!r}): expected numbers or at most "
                               f"{MAX_CATEGORIES} codes")
        categories[c] = codes
        notes.append(f"{c}: text codes {codes} encoded as categories 1..{len(codes)}")

    # Gaps: periods an open series misses between its first and last row (closures left out).
    closed = inferred if inferred is not None else history.apply(rules)
    open_s = history.active & ~closed
    gaps = open_s & ~history.present
    n_open, n_gaps = open_s.sum(0), gaps.sum(0)
    share = np.where(n_open > 0, n_gaps / np.maximum(n_open, 1), 0.0)
    worst = float(share.max()) if share.size else 0.0
    missing = int(gaps.sum())
    overall = missing / max(int(open_s.sum()), 1)
    notes.append(f"{len(history.series_keys)} series, {len(frame)} rows; {missing} "
                 "series-periods missing between a series' first and last row, closures left "
                 "out (missing = no data, never zero)")
    notes += closure_notes
    found = "; ".join(cl.summarize(rules, shown=1)) or "no closures"
    if overall > MAX_GAP_SHARE:
        raise MappingError(
            f"the keys {keys} do not describe series that report most periods: {overall:.0%} "
            f"of the series-periods between each series' first and last row are missing, with "
            f"{len(rules)} closure rules found ({found}); expected one row per date and series "
            "on the days a series is open")
    if worst >= 1:
        t = int(share.argmax())
        raise MappingError(
            f"on {history.periods[t].date()} none of the {int(n_open[t])} series expected open "
            f"has a row ({len(rules)} closure rules: {found}): declare the day closed in the "
            "closures file (--closures) or land its rows")
    tolerance = max(0.05, math.ceil(worst * 20) / 20)
    if tolerance > 0.05:
        notes.append(f"up to {worst:.0%} of the open series miss a period: completeness "
                     f"tolerance max_missing_share {tolerance:.2f}")
    tolerance = min(tolerance, 0.95)

    spec = {
        "version": SPEC_VERSION,
        "name": name, "csv": str(csv), "date_format": fmt, "flags": flags,
        "description": f"user CSV {csv.name}",
        "frequency": frequency, "date_column": date, "keys": list(keys),
        "key_types": key_types, "target": target,
        "known": {c: types[c] for c in known}, "observed": {c: types[c] for c in observed},
        "static": {c: types[c] for c in static}, "static_keys": static_keys,
        "holiday_column": holiday, "metric": metric,
        "categories": categories, "allow_negative_target": negative,
        "max_missing_share": tolerance, "closed_dates": [],
        "closures": cl.closures_file_name(name) if rules else None,
        "open_column": open_column,
        "max_target": max_target, "encoding": encoding,
        "start": dates.min().date().isoformat(), "end": dates.max().date().isoformat(),
        "horizon": periods_ahead,
    }
    to_spec(spec, rules=rules)  # the spec's own rules (e.g. a weekly horizon it can serve)
    return Proposal(spec, notes, list(rules))


def _closures(frame: pd.DataFrame, dates: pd.Series, keys: list[str],
              key_types: dict[str, str], target: str, step: int, declared: Path | None,
              open_column: str | None, date_format: str | None = None
              ) -> tuple[list[ClosureRule], cl.History, np.ndarray | None, list[str]]:
    """The closure rules of the history (declared, from the open flag, else inferred), the
    history of its open rows as matrices, the inferred closed matrix (None when not inferred)
    and report lines."""
    keyframe = pd.DataFrame({k: frame[k].map(lambda v, k=k: cl.normalize_key(v, key_types[k]))
                             for k in keys})
    values = pd.to_numeric(frame[target].str.strip(), errors="coerce")
    sold = values.fillna(0).ne(0).to_numpy()
    lines = pd.Series(np.arange(len(frame)) + 2)
    rules: list[ClosureRule] = []
    open_rows = np.ones(len(frame), dtype=bool)
    if open_column is not None:
        open_rows = frame[open_column].str.strip().eq("1").to_numpy()
        bad = np.flatnonzero(~open_rows & sold)
        if len(bad):
            i = int(bad[0])
            who = ", ".join(f"{k}={frame[k].iloc[i]}" for k in keys)
            raise MappingError(
                f"open column {open_column!r}: {who} is closed (0) on {dates.iloc[i].date()} "
                f"but has {target}={frame[target].iloc[i]!r} (line {i + 2}); a closed row must "
                f"have {target} 0 or empty ({len(bad)} such rows)")
    history = cl.History.build(keyframe, dates.reset_index(drop=True), step, mask=open_rows)
    daily = step == 1
    notes: list[str] = []
    if open_column is not None:
        shut = cl.History.build(keyframe, dates.reset_index(drop=True), step,
                                mask=~open_rows).present
        rules += cl.rules_from_open_flag(history, shut, daily)
        notes.append(f"open flag {open_column!r}: {int((~open_rows).sum())} closed rows read as "
                     f"{len(rules)} exact closure rules (not landed)")
    if declared is not None:
        try:
            given = cl.read_closures(Path(declared).expanduser(), keys, key_types,
                                     date_format=date_format)
        except ValueError as err:
            raise MappingError(f"--closures: {err}") from None
        wrong = cl.contradictions(history, given, sold & open_rows, frame[target], lines)
        if wrong:
            raise MappingError(f"--closures {declared}: declared closed days have sales: "
                               + "; ".join(wrong))
        rules += [r if r.note else ClosureRule(r.date, r.yearly, r.weekday, r.match,
                                               cl.NOTES["declared"]) for r in given]
        notes.append(f"{len(given)} closure rules declared in {declared}")
    if open_column is not None or declared is not None:
        return rules, history, None, notes
    # Exports that write every day write a closed day as 0: a day that sold nothing reads as
    # not reporting for the calendar patterns (weekdays, holidays), and the lander leaves such
    # rows out on the rules' days. A run of zero days of one series is left to the anomalies.
    selling = cl.History.build(keyframe, dates.reset_index(drop=True), step,
                               mask=open_rows & sold, periods=history.periods)
    inferred = cl.infer_closures(selling, daily, rows=history.present)
    if inferred.rules:
        notes.append(f"closures inferred from the history ({len(inferred.rules)} rules): days "
                     "series do not report by rule, not gaps; edit the closures file, or "
                     "declare them with --closures")
    return inferred.rules, history, inferred.closed, notes


def to_spec(data: dict, folder: Path | None = None,
            rules: list[ClosureRule] | None = None) -> DatasetSpec:
    """A ``DatasetSpec`` from the YAML's mapping, with the CSV lander bound to its file.

    ``closures`` names a closures CSV in ``folder`` (the YAML's); ``rules`` given are used
    instead of reading it."""
    closures_file = data.get("closures")
    if rules is None and closures_file:
        if folder is None:
            raise ValueError(f"dataset spec {data.get('name', '?')!r} names the closures file "
                             f"{closures_file!r}: load it with the YAML's folder")
        rules = list(cl.read_closures(Path(folder) / closures_file, list(data.get("keys", ())),
                                      dict(data.get("key_types", {}))))
    try:
        return DatasetSpec(
            name=data["name"], description=data.get("description", ""),
            frequency=data["frequency"], date_column=data["date_column"],
            keys=tuple(data["keys"]), key_types=dict(data.get("key_types", {})),
            target=data["target"], known=dict(data.get("known", {})),
            observed=dict(data.get("observed", {})),
            static=dict(data.get("static", {}) or {}),
            static_keys=tuple(data.get("static_keys", ()) or ()),
            holiday_column=data.get("holiday_column"),
            categories={c: tuple(v) for c, v in data.get("categories", {}).items()},
            allow_negative_target=bool(data.get("allow_negative_target", False)),
            max_missing_share=float(data.get("max_missing_share", 0.05)),
            max_target=None if data.get("max_target") is None else float(data["max_target"]),
            encoding=str(data.get("encoding", "utf-8")),
            date_format=str(data.get("date_format", "%Y-%m-%d")),
            flags=tuple(data.get("flags", ()) or ()),
            closed_dates=tuple(data.get("closed_dates", ()) or ()),
            closures_file=closures_file, closure_rules=tuple(rules or ()),
            start=dt.date.fromisoformat(str(data["start"])),
            end=dt.date.fromisoformat(str(data["end"])),
            horizon=int(data["horizon"]), metric=data.get("metric", "smape"),
            lander=functools.partial(land_csv, csv=data["csv"],
                                     date_format=data.get("date_format", "%Y-%m-%d"),
                                     open_column=data.get("open_column")),
        )
    except KeyError as err:
        raise ValueError(f"dataset spec {data.get('name', '?')!r} lacks the field {err.args[0]!r}"
                         ) from None


def write_spec(proposal: Proposal, datasets_dir: Path, overwrite: bool = False) -> Path:
    path = Path(datasets_dir) / f"{proposal.spec['name']}.yaml"
    if path.exists() and not overwrite:
        raise MappingError(f"{path} exists: pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = path.parent / cl.closures_file_name(proposal.spec["name"])
    if proposal.rules:  # beside the YAML, before it: a YAML never names a missing file
        cl.write_closures(proposal.rules, path.parent / proposal.spec["closures"],
                          proposal.spec["keys"])
    elif stale.exists():  # a replaced spec's rules
        stale.unlink()
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text("# written by forecast-platform init-dataset; edit freely\n"
                   + yaml.safe_dump(proposal.spec, sort_keys=False))
    tmp.replace(path)
    return path


def load_spec(path: Path) -> DatasetSpec:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a dataset spec (a YAML mapping)")
    return to_spec(data, folder=Path(path).parent)


def land_csv(spec: DatasetSpec, landing_dir: Path, source_dir: Path | None = None, *,
             csv: str, date_format: str, open_column: str | None = None,
             **_: object) -> list[Path]:
    """Split the user's CSV into landing files, one per period, values kept as text.

    Validation (pandera) then types the values and quarantines what does not parse, as for
    every other dataset. A ``source_dir`` holding a file of the CSV's name wins over the path
    recorded in the spec.
    """
    path = Path(csv)
    if source_dir is not None and (Path(source_dir) / path.name).is_file():
        path = Path(source_dir) / path.name
    if not path.is_file():
        raise FileNotFoundError(f"dataset {spec.name!r}: {path} does not exist (the CSV the "
                                "spec was made from; pass --source-dir to point at its folder)")
    frame = flags_as_numbers(read_text_csv(path, spec.encoding), spec.flags)
    if open_column is not None and open_column in frame.columns:
        # Closed rows (open flag 0) are closure rules of the spec, never sales.
        frame = frame[frame[open_column].str.strip().ne("0")]
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"dataset {spec.name!r}: {path} lacks the columns {missing}")
    dates, _ = parse_dates(frame[spec.date_column], spec.date_column) if date_format is None \
        else (pd.to_datetime(frame[spec.date_column].str.strip(), format=date_format,
                             errors="coerce"), date_format)
    if dates.isna().any():
        i = int(dates.isna().to_numpy().nonzero()[0][0])
        raise ValueError(f"dataset {spec.name!r}: {spec.date_column}="
                         f"{frame[spec.date_column].iloc[i]!r} on line {i + 2} of {path} is not "
                         f"a date in the spec's format {date_format}")
    # A row on a day its series is closed by rule, with nothing sold (0 or empty), is how
    # many exports write "closed": not a sale, so it is not landed (as the open flag's closed
    # rows). A sale on a closed day is landed, and the ingest checks name it.
    sold = pd.to_numeric(frame[spec.target].str.strip(), errors="coerce").fillna(0).ne(0)
    keep = ~cl.closed_rows(spec, frame, dates) | sold.to_numpy()
    out = frame[spec.columns][keep].assign(
        **{spec.date_column: dates[keep].dt.strftime("%Y-%m-%d")})
    return write_landing_files(out, landing_dir, spec.date_column)
