"""Closures by rule: when a series is closed, read, inferred, checked and said in SQL.

A real chain's export has rows for open days only: stores close on Sundays, on national and
regional public holidays, for a refurbishment. Those days are not missing data, they are
closures, and the ingest checks must expect no row from a closed series. They are
``ClosureRule``s (datasets/spec.py): exactly one of ``date`` (YYYY-MM-DD), ``yearly`` (MM-DD) or
``weekday`` (ISO 1-7), for the series whose keys hold ``match``'s values (empty = all series).

The rules live in a CSV beside the spec's YAML (``<name>.closures.csv``), one rule a line::

    date,yearly,weekday,Store,note
    ,,7,3,weekly closing            <- store 3 closed every Sunday
    ,12-25,,,national holiday       <- every series closed every Christmas
    2021-06-24,,,5,regional holiday <- store 5 closed on 2021-06-24

``closed_sql`` says "series ``alias`` is closed on ``date_expr``" as one SQL condition (hash
semi-joins on the formatted day and the key values, so its cost follows the rows, not the
rules); ``closed_pairs_sql`` lists the closed (day, series) pairs of a set of days and series.
``infer_closures`` finds the rules in a history with no open flag, ``rules_from_open_flag`` reads
them exactly from an export that flags its closed rows, and ``contradictions`` finds declared
closed days that have sales. No Dagster here.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast_platform.datasets.spec import WEEKDAYS, ClosureRule, DatasetSpec, csv_delimiter
from forecast_platform.warehouse.store import quote

RULE_COLUMNS = ("date", "yearly", "weekday")
# Inference thresholds (see ``infer_closures``).
WEEKDAY_MAX_SHARE = 0.02  # a weekday a group reports on at most this share of its weeks
WEEKDAY_MIN_WEEKS = 8  # ... out of at least this many weeks
NATIONAL_SHARE = 0.8  # a date this share of the open series miss: closed for all
REGIONAL_SHARE = 0.2  # a date this share of a key's groups miss whole: closed for each
RUN_DAYS = 7  # a group missing whole this many consecutive days: closed those days
# Holidays are exceptions: no date rules when a typical period misses over this share of the
# open series (no series structure), nor for a key whose groups miss whole on over this share
# of the periods (sparse groups, not holidays).
TYPICAL_MAX_SHARE = 0.5
EXCEPTIONAL_SHARE = 0.1

NOTES = {"weekday": "weekly closing", "national": "national holiday",
         "regional": "regional holiday", "run": "closed run", "declared": "declared",
         "open": "open flag"}


# -- the CSV beside the spec ---------------------------------------------------------------------


def closures_file_name(name: str) -> str:
    return f"{name}.closures.csv"


def normalize_key(value: object, key_type: str) -> str:
    """A key value as the rules compare it: the text, an integer key without leading zeros."""
    text = str(value).strip()
    if key_type == "int":
        try:
            return str(int(float(text))) if "." in text else str(int(text))
        except ValueError:
            return text
    return text


def read_closures(path: Path, keys: Sequence[str], key_types: dict[str, str] | None = None,
                  date_format: str | None = None) -> tuple[ClosureRule, ...]:
    """The rules of a closures CSV (columns date, yearly, weekday, any of the keys, note).

    ``date_format``: how the user's data writes dates (a declared file may write a rule's date
    that way, e.g. 25.12.2017); ISO is always read. Errors name the file, the line and what is
    wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"closures file {path} does not exist")
    text = path.read_text(encoding="utf-8-sig")
    frame = pd.read_csv(io.StringIO(text), sep=csv_delimiter(text), dtype=str,
                        keep_default_na=False)
    known = {*RULE_COLUMNS, *keys, "note"}
    stray = [c for c in frame.columns if c not in known]
    if stray or not any(c in frame.columns for c in RULE_COLUMNS):
        raise ValueError(f"closures file {path}: columns {list(frame.columns)}; expected "
                         f"date, yearly, weekday, key columns among {list(keys)} and note"
                         + (f" (unknown: {stray})" if stray else ""))
    rules = []
    for i, row in enumerate(frame.to_dict("records")):
        match = {k: normalize_key(row[k], (key_types or {}).get(k, "str"))
                 for k in keys if k in row and str(row[k]).strip() != ""}
        try:
            rules.append(ClosureRule(
                date=_iso(row.get("date", "").strip(), date_format) or None,
                yearly=row.get("yearly", "").strip() or None,
                weekday=row.get("weekday", "").strip() or None,
                match=match, note=str(row.get("note", "")).strip()))
        except ValueError as err:
            raise ValueError(f"closures file {path}, line {i + 2}: {err}") from None
    return tuple(rules)


def _iso(text: str, date_format: str | None) -> str:
    """A rule's date as ISO: the text when it is ISO (or cannot be read otherwise: the rule
    names it), else read with the data's ``date_format``."""
    if not text or date_format is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return text
    try:
        return dt.datetime.strptime(text, date_format).date().isoformat()
    except ValueError:
        return text


def write_closures(rules: Sequence[ClosureRule], path: Path, keys: Sequence[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*RULE_COLUMNS, *keys, "note"])
    for r in rules:
        writer.writerow([r.date or "", r.yearly or "", r.weekday or "",
                         *(r.match.get(k, "") for k in keys), r.note])
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(out.getvalue())
    tmp.replace(path)
    return path


# -- SQL -----------------------------------------------------------------------------------------

_FORMATS = {"date": "strftime({d}, '%Y-%m-%d')", "yearly": "strftime({d}, '%m-%d')",
            "weekday": "CAST(isodow({d}) AS VARCHAR)"}


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _by_shape(rules: Sequence[ClosureRule]) -> dict[tuple[str, tuple[str, ...]],
                                                   list[ClosureRule]]:
    """Rules grouped by (kind, the keys they match on)."""
    shapes: dict[tuple[str, tuple[str, ...]], list[ClosureRule]] = {}
    for r in rules:
        shapes.setdefault((r.kind, tuple(sorted(r.match))), []).append(r)
    return shapes


def closed_sql(spec: DatasetSpec, date_expr: str, alias: str | None = None) -> str:
    """SQL condition: the series of ``alias`` (a relation with the spec's key columns) is closed
    on the date ``date_expr``. With ``alias`` None, only the rules for every series count (the
    day is closed for all). 'false' when the spec has no rules."""
    terms = []
    for (kind, keys), rules in sorted(_by_shape(spec.rules).items()):
        day = _FORMATS[kind].format(d=date_expr)
        values = sorted({r.value for r in rules} if not keys else
                        {(r.value, *(r.match[k] for k in keys)) for r in rules})
        if not keys:
            terms.append(f"{day} IN ({', '.join(_lit(v) for v in values)})")
            continue
        if alias is None:
            continue
        cols = ["_day", *(f"_k{i}" for i in range(len(keys)))]
        rows = ", ".join("(" + ", ".join(_lit(x) for x in v) + ")" for v in values)
        conds = [f"_r._day = {day}"] + [f"_r._k{i} = CAST({alias}.{quote(k)} AS VARCHAR)"
                                        for i, k in enumerate(keys)]
        terms.append(f"EXISTS (SELECT 1 FROM (VALUES {rows}) AS _r({', '.join(cols)}) "
                     f"WHERE {' AND '.join(conds)})")
    return "(" + " OR ".join(terms) + ")" if terms else "false"


def closed_pairs_sql(spec: DatasetSpec, days: str, series: str, day_column: str = "d") -> str:
    """SQL query of the distinct (``day_column``, series_id) pairs where a series of the
    relation ``series`` (series_id and the key columns) is closed on a day of the relation
    ``days`` (one column ``day_column``). Built rule shape by rule shape as hash joins: its cost
    is the closed pairs it returns."""
    parts = []
    for (kind, keys), rules in sorted(_by_shape(spec.rules).items()):
        day = _FORMATS[kind].format(d=f"_dd.{quote(day_column)}")
        values = sorted({(r.value, *(r.match[k] for k in keys)) for r in rules})
        cols = ["_day", *(f"_k{i}" for i in range(len(keys)))]
        rows = ", ".join("(" + ", ".join(_lit(x) for x in v) + ")" for v in values)
        on = " AND ".join(f"_r._k{i} = CAST(_ss.{quote(k)} AS VARCHAR)"
                          for i, k in enumerate(keys)) or "true"
        parts.append(
            f"SELECT _dd.{quote(day_column)} AS {quote(day_column)}, _ss.series_id "
            f"FROM (VALUES {rows}) AS _r({', '.join(cols)}) "
            f"JOIN {days} AS _dd ON _r._day = {day} JOIN {series} AS _ss ON {on}")
    if not parts:
        return (f"SELECT NULL::DATE AS {quote(day_column)}, NULL::VARCHAR AS series_id "
                "WHERE false")
    return " UNION ".join(parts)


def matched_keys(spec: DatasetSpec) -> list[str]:
    """The key columns the spec's rules match on (what ``closed_sql`` reads of a series)."""
    used = {k for r in spec.rules for k in r.match}
    return [k for k in spec.keys if k in used]


def closed_for_all(spec: DatasetSpec, day: dt.date) -> bool:
    """Whether a rule for every series closes ``day`` (``closed_sql`` without a series)."""
    return any(not r.match and r.applies(day) for r in spec.rules)


# -- rules over a history, as dense series x period matrices -------------------------------------


@dataclass
class History:
    """A history as matrices: series x periods (``present``: a row; ``active``: between the
    series' first and last row) and each series' key values (text, normalized)."""

    keys: list[str]
    periods: pd.DatetimeIndex
    series_keys: pd.DataFrame  # one row per series, the key columns
    present: np.ndarray
    active: np.ndarray
    step: int = 1
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    @classmethod
    def build(cls, keyframe: pd.DataFrame, dates: pd.Series, step: int,
              mask: np.ndarray | None = None, periods: pd.DatetimeIndex | None = None
              ) -> History:
        """``keyframe``: the rows' key values (text); ``dates``: their dates; ``mask``: the rows
        that count as present (default all)."""
        keys = list(keyframe.columns)
        codes, uniques = pd.factorize(pd.MultiIndex.from_frame(keyframe))
        series_keys = pd.DataFrame(list(uniques), columns=keys, dtype=str) if len(uniques) \
            else pd.DataFrame(columns=keys, dtype=str)
        if periods is None:
            periods = pd.date_range(dates.min(), dates.max(), freq=f"{step}D")
        cols = ((dates - periods[0]).dt.days // step).to_numpy()
        present = np.zeros((len(uniques), len(periods)), dtype=bool)
        m = np.ones(len(codes), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        present[codes[m], cols[m]] = True
        first = np.full(len(uniques), len(periods), dtype=int)
        last = np.full(len(uniques), -1, dtype=int)
        np.minimum.at(first, codes, cols)
        np.maximum.at(last, codes, cols)
        idx = np.arange(len(periods))
        active = (idx[None, :] >= first[:, None]) & (idx[None, :] <= last[:, None])
        return cls(keys, periods, series_keys, present, active, step, codes, cols)

    def levels(self) -> list[tuple[str, ...]]:
        """Coarsest first: each single key (fewest values first), then the whole series."""
        singles = sorted(self.keys, key=lambda k: (self.series_keys[k].nunique(),
                                                   self.keys.index(k)))
        return [(k,) for k in singles] + ([tuple(self.keys)] if len(self.keys) > 1 else [])

    def groups(self, level: tuple[str, ...]) -> tuple[np.ndarray, pd.DataFrame]:
        """Each series' group code at ``level`` and the groups' key values."""
        codes, uniques = pd.factorize(pd.MultiIndex.from_frame(self.series_keys[list(level)]))
        return codes, pd.DataFrame(list(uniques), columns=list(level), dtype=str)

    def rows_of(self, match: dict[str, str]) -> np.ndarray:
        """The series whose key columns hold ``match``'s values (every series for {})."""
        rows = np.ones(len(self.series_keys), dtype=bool)
        for k, v in match.items():
            rows &= (self.series_keys[k].astype(str) == str(v)).to_numpy() \
                if k in self.series_keys else False
        return rows

    def period_index(self, day: dt.date) -> int | None:
        """The period of ``day``, None when it is not one of the history's periods."""
        offset = (day - self.periods[0].date()).days
        if offset < 0 or offset % self.step or offset // self.step >= len(self.periods):
            return None
        return offset // self.step

    def apply(self, rules: Sequence[ClosureRule]) -> np.ndarray:
        """series x periods: closed by one of ``rules``."""
        closed = np.zeros_like(self.present)
        patterns = {"date": self.periods.strftime("%Y-%m-%d").to_numpy(),
                    "yearly": self.periods.strftime("%m-%d").to_numpy(),
                    "weekday": np.asarray(self.periods.isocalendar().day).astype(str)}
        masks: dict[tuple, np.ndarray] = {}
        for r in rules:
            key = tuple(sorted(r.match.items()))
            day_mask = patterns[r.kind] == r.value
            masks[key] = masks.get(key, np.zeros(len(self.periods), dtype=bool)) | day_mask
        for key, day_mask in masks.items():
            rows = np.ones(len(self.series_keys), dtype=bool)
            for k, v in key:
                if k in self.series_keys:
                    rows &= (self.series_keys[k] == v).to_numpy()
                else:
                    rows[:] = False
            closed[np.ix_(rows, day_mask)] = True
        return closed


def closed_rows(spec: DatasetSpec, frame: pd.DataFrame, dates: pd.Series) -> np.ndarray:
    """Per row of ``frame`` (the spec's key columns, as text) on ``dates``: whether one of the
    spec's rules closes its series that day."""
    if not spec.rules or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    keyframe = pd.DataFrame({k: [normalize_key(v, spec.key_type(k)) for v in frame[k]]
                             for k in spec.keys})
    history = History.build(keyframe, pd.Series(pd.to_datetime(dates).to_numpy()),
                            spec.step_days)
    return history.apply(spec.rules)[history.codes, history.cols]


def _group_any(matrix: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """groups x periods: any series of the group (``codes``: each series' group, 0..n-1, every
    group with a series)."""
    if n == len(codes) and (codes == np.arange(n)).all():
        return matrix.copy()
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    return np.logical_or.reduceat(matrix[order], starts, axis=0)


def _match(groups: pd.DataFrame, g: int) -> dict[str, str]:
    return {k: str(groups.iloc[g][k]) for k in groups.columns}


def compress_yearly(history: History, found: dict[tuple, set[dt.date]], note: str
                    ) -> list[ClosureRule]:
    """Date rules per match, as yearly rules where the match has no row on that MM-DD in every
    year of its span it was active in (at least two), else one rule per date.

    A year counts as closed whatever closed it: Christmas on a Sunday is closed by the weekly
    rule, not found as a holiday, and must not turn the holiday into one-off dates (the
    horizon's next Christmas would then be forecast open).
    """
    rules = []
    start, end = history.periods[0].date(), history.periods[-1].date()
    for key, days in sorted(found.items()):
        match = dict(key)
        rows = history.rows_of(match)
        by_md: dict[str, list[dt.date]] = {}
        for d in days:
            by_md.setdefault(d.strftime("%m-%d"), []).append(d)
        for md, hits in sorted(by_md.items()):
            observed = closed = 0
            for y in range(start.year, end.year + 1):
                if md == "02-29":
                    break
                t = history.period_index(dt.date(y, int(md[:2]), int(md[3:])))
                if t is None or not history.active[rows, t].any():
                    continue  # outside the history, or before the series began: no evidence
                observed += 1
                closed += not history.present[rows, t].any()
            if observed >= 2 and closed == observed:
                rules.append(ClosureRule(yearly=md, match=match, note=note))
            else:
                rules += [ClosureRule(date=d.isoformat(), match=match, note=note)
                          for d in sorted(hits)]
    return rules


@dataclass
class Inferred:
    rules: list[ClosureRule]
    closed: np.ndarray  # series x periods
    found: dict[str, list[ClosureRule]]  # by reason (weekday, national, regional, run)


def infer_closures(history: History, daily: bool, rows: np.ndarray | None = None) -> Inferred:
    """Closure rules a history without an open flag implies, coarsest first:

    (a) daily data: a weekday a group (a key's value, e.g. a store, or a series) reports on at
        most 2 % of its weeks (at least 8), while it reports on most of its other days: a
        weekday rule for that group, for every series when every group of a key has it;
    (b) a period >= 80 % of the open series miss: closed for all (a national holiday), a yearly
        rule when it is the same MM-DD every year of the history; when some series do report
        that day (a store open on holidays), (c) gives the rules of the groups that miss it;
    (c) a period >= 20 % (and at least two) of a key's open groups miss whole (none of their
        series reports): date (or yearly) rules for each of those groups (regional holidays);
    (d) daily data: >= 7 consecutive days a group misses whole: date rules for those days
        (a refurbishment).
    What remains missing is a gap (no data), for the completeness tolerance. Dates are
    exceptions: when a typical period misses over half the open series there are no date rules
    (the keys do not describe series), nor for a key whose groups miss whole on over 10 % of
    the periods.

    ``history.present`` is what counts as reporting; ``rows`` (default the same) replaces it for
    (d) when a group is one series: the caller passes the days that sold as ``present`` and the
    days with a row as ``rows``, so a day written as 0 reads as closed on a calendar pattern or
    for a whole group, while a run of zero days of one series stays a zero run (an anomaly).
    """
    h = history
    rows = h.present if rows is None else rows
    closed = np.zeros_like(h.present)
    found: dict[str, list[ClosureRule]] = {k: [] for k in ("weekday", "national", "regional",
                                                           "run")}
    weekday = np.array([d.isoweekday() for d in h.periods])
    singles = [lvl for lvl in h.levels() if len(lvl) == 1]
    if daily:
        for level in h.levels():
            codes, groups = h.groups(level)
            n = len(groups)
            open_g = _group_any(h.active & ~closed, codes, n)
            seen = _group_any(h.present, codes, n) & open_g
            for w in range(1, 8):
                on = weekday == w
                weeks, hits = open_g[:, on].sum(1), seen[:, on].sum(1)
                other, other_hits = open_g[:, ~on].sum(1), seen[:, ~on].sum(1)
                hit = (weeks >= WEEKDAY_MIN_WEEKS) & (hits <= WEEKDAY_MAX_SHARE * weeks) & \
                    (other_hits >= 0.5 * other)
                if not hit.any():
                    continue
                if len(level) == 1 and hit.all() and n > 1:
                    rules = [ClosureRule(weekday=w, note=NOTES["weekday"])]
                else:
                    rules = [ClosureRule(weekday=w, match=_match(groups, g),
                                         note=NOTES["weekday"]) for g in np.flatnonzero(hit)]
                found["weekday"] += rules
                closed[np.ix_(hit[codes], on)] = True
    # (b) national
    open_s = h.active & ~closed
    n_open, n_missing = open_s.sum(0), (open_s & ~h.present).sum(0)
    shares = n_missing[n_open > 0] / n_open[n_open > 0]
    if not shares.size or float(np.median(shares)) > TYPICAL_MAX_SHARE:
        rules = found["weekday"]
        return Inferred(list(rules), h.apply(rules), found)
    # A day some series do report on (a store open on holidays) is left to (c): rules for the
    # groups that miss it, so an open store is never said closed.
    national = (n_open > 0) & (n_missing >= NATIONAL_SHARE * n_open) & (n_missing == n_open)
    if national.any():
        days = {d.date() for d in h.periods[national]}
        found["national"] = compress_yearly(h, {(): days}, NOTES["national"])
        closed[:, national] = True
    # (c) regional, (d) runs: per key value
    for level in singles:
        codes, groups = h.groups(level)
        n = len(groups)
        if n < 2 and len(h.keys) > 1:
            continue
        open_g = _group_any(h.active & ~closed, codes, n)
        miss = open_g & ~_group_any(h.present, codes, n)
        count = miss.sum(0)
        regional = (count >= 2) & (count >= REGIONAL_SHARE * open_g.sum(0))
        if regional.sum() > EXCEPTIONAL_SHARE * len(regional):
            continue
        hits: dict[str, dict[tuple, set[dt.date]]] = {"national": {}, "regional": {}}
        for t in np.flatnonzero(regional):
            # most groups missing (a store open on national holidays): still a national one
            kind = "national" if count[t] >= NATIONAL_SHARE * open_g[:, t].sum() else "regional"
            for g in np.flatnonzero(miss[:, t]):
                hits[kind].setdefault(tuple(sorted(_match(groups, g).items())), set()).add(
                    h.periods[t].date())
                closed[codes == g, t] = True
        for kind, found_kind in hits.items():
            found[kind] += compress_yearly(h, found_kind, NOTES[kind])
        if not daily:
            continue
        # runs: missing whole (or already closed) while active, >= RUN_DAYS days in a row
        active_g = _group_any(h.active, codes, n)
        # A group of several series selling nothing for days is closed (a refurbishment written
        # as zeros); one series doing so is a zero run, closed only when it has no rows.
        several = np.bincount(codes, minlength=n) > 1
        whole = active_g & ~np.where(several[:, None], _group_any(h.present, codes, n),
                                     _group_any(rows, codes, n))
        open_g = _group_any(h.active & ~closed, codes, n)
        for g in range(n):
            row = whole[g]
            if not row.any():
                continue
            edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                new = [t for t in range(a, b) if open_g[g, t]]
                if b - a >= RUN_DAYS and new:
                    match = _match(groups, g)
                    note = (f"{NOTES['run']} of {b - a} days from "
                            f"{h.periods[a].date().isoformat()}")
                    found["run"] += [ClosureRule(date=h.periods[t].date().isoformat(),
                                                 match=match, note=note) for t in new]
                    closed[np.ix_(codes == g, np.array(new))] = True
    rules = [r for kind in ("weekday", "national", "regional", "run") for r in found[kind]]
    return Inferred(rules, h.apply(rules), found)


def rules_from_open_flag(history: History, closed_rows: np.ndarray, daily: bool
                         ) -> list[ClosureRule]:
    """Exact rules from an export whose rows flag closed days: ``history.present`` holds the
    open rows, ``closed_rows`` (series x periods) the rows flagged closed.

    Coarsest first, and only where exact: a weekday for every series, then per key value, then
    per series, when the group has closed rows on that weekday (at least two) and no open row on
    it; then each remaining closed day for every series, per key value or per series, when the
    group has no open row that day; dates repeating every year become yearly rules."""
    h = history
    covered = np.zeros_like(closed_rows)
    rules: list[ClosureRule] = []
    weekday = np.array([d.isoweekday() for d in h.periods])
    levels: list[tuple[str, ...]] = [(), *h.levels()]
    if len(h.keys) == 1:
        levels = [(), (h.keys[0],)]

    def groups_of(level: tuple[str, ...]) -> tuple[np.ndarray, pd.DataFrame]:
        if not level:
            return np.zeros(len(h.series_keys), dtype=int), pd.DataFrame(index=[0])
        return h.groups(level)

    if daily:
        for level in levels:
            codes, groups = groups_of(level)
            n = len(groups)
            shut = _group_any(closed_rows & ~covered, codes, n)
            opened = _group_any(h.present, codes, n)
            for w in range(1, 8):
                on = weekday == w
                hit = (shut[:, on].sum(1) >= 2) & ~opened[:, on].any(1)
                for g in np.flatnonzero(hit):
                    match = _match(groups, g) if level else {}
                    rules.append(ClosureRule(weekday=w, match=match, note=NOTES["open"]))
                    covered[np.ix_(codes == g, on)] = True
    for level in levels:
        codes, groups = groups_of(level)
        n = len(groups)
        shut = _group_any(closed_rows & ~covered, codes, n)
        opened = _group_any(h.present, codes, n)
        hit = shut & ~opened
        hits: dict[tuple, set[dt.date]] = {}
        for g, t in zip(*np.nonzero(hit), strict=True):
            match = _match(groups, g) if level else {}
            hits.setdefault(tuple(sorted(match.items())), set()).add(h.periods[t].date())
            covered[codes == g, t] = True
        rules += compress_yearly(h, hits, NOTES["open"])
    return rules


def contradictions(history: History, rules: Sequence[ClosureRule], sales: np.ndarray,
                   values: pd.Series, lines: pd.Series) -> list[str]:
    """Rows with sales (``sales``: per row, a non-zero target) on a day a rule closes their
    series: one sentence each (series, date, value, line, rule)."""
    closed = history.apply(rules)
    bad = np.flatnonzero(closed[history.codes, history.cols] & sales)
    out = []
    for i in bad[:5]:
        keys = history.series_keys.iloc[history.codes[i]]
        day = history.periods[history.cols[i]].date()
        rule = next(r for r in rules if r.applies(day)
                    and all(keys.get(k) == v for k, v in r.match.items()))
        who = ", ".join(f"{k}={keys[k]}" for k in history.keys)
        out.append(f"{who} has sales {values.iloc[i]!r} on {day} (line {lines.iloc[i]}), a day "
                   f"the closures close it ({rule.describe()})")
    if len(bad) > 5:
        out.append(f"and {len(bad) - 5} more rows")
    return out


def summarize(rules: Sequence[ClosureRule], shown: int = 3) -> list[str]:
    """Report lines: rules by reason (the note's first words), with examples."""
    by: dict[str, list[ClosureRule]] = {}
    for r in rules:
        reason = r.note.split(" of ")[0] if r.note else "rule"
        by.setdefault(reason, []).append(r)
    lines = []
    for reason, rs in by.items():
        kinds = {}
        for r in rs:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in kinds.items())
        examples = "; ".join(r.describe() for r in rs[:shown])
        lines.append(f"{reason}: {len(rs)} rules ({counts}), e.g. {examples}"
                     + (" ..." if len(rs) > shown else ""))
    return lines


__all__ = ["WEEKDAYS", "ClosureRule", "History", "Inferred", "closed_for_all",
           "closed_pairs_sql", "closed_sql", "closures_file_name", "compress_yearly",
           "contradictions", "infer_closures", "matched_keys", "normalize_key", "read_closures",
           "rules_from_open_flag", "summarize", "write_closures"]
