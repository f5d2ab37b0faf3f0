"""Split raw rows into valid rows and quarantined rows, each rejection with its reasons.

The rules are a pandera schema derived from the dataset spec. Values are parsed in DuckDB first
(``TRY_CAST``), so a value that does not parse becomes a null the schema catches; the reason then
quotes the original text, which the quarantine keeps. Every raw row ends up in exactly one of
the two outputs: ``len(raw) == len(valid) + len(rejects)`` is the contract the tests hold us to.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from forecast_platform.datasets.spec import ColumnType, DatasetSpec
from forecast_platform.warehouse.store import quote

SQL_TYPES: dict[ColumnType, str] = {
    "int": "BIGINT",
    "float": "DOUBLE",
    "str": "VARCHAR",
    "bool": "BOOLEAN",
}
TYPE_WORDS: dict[ColumnType, str] = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "bool": "true/false",
}
TRACE_COLUMNS = ["partition_date", "_source_file", "_source_line", "_ingested_at", "_schema_note"]


def column_types(spec: DatasetSpec) -> dict[str, ColumnType]:
    """The parsed type of every spec column except the date."""
    types: dict[str, ColumnType] = {k: spec.key_type(k) for k in spec.keys}
    types[spec.target] = "float"
    types.update(spec.covariates)
    return types


def build_schema(spec: DatasetSpec) -> pa.DataFrameSchema:
    """The pandera rules every row must meet to be used by features and models."""
    target_checks = [pa.Check(lambda s: s.abs() < float("inf"), name="finite")]
    if not spec.allow_negative_target:
        target_checks.append(pa.Check.ge(0))
    columns = {
        spec.date_column: pa.Column(nullable=False),
        **{k: pa.Column(nullable=False) for k in spec.keys},
        spec.target: pa.Column(nullable=False, checks=target_checks),
        # Known covariates are needed again when forecasting the future: they must be present.
        **{c: pa.Column(nullable=False) for c in spec.known},
        **{c: pa.Column(nullable=True) for c in spec.observed},
    }
    date_col = spec.date_column
    return pa.DataFrameSchema(
        columns,
        unique=[date_col, *spec.keys],
        report_duplicates="exclude_first",
        checks=[
            pa.Check(
                lambda df: (df[date_col] == df["partition_date"]) | df[date_col].isna(),
                name="date_matches_partition",
            )
        ],
    )


def parsed_select(spec: DatasetSpec, source: str) -> str:
    """SQL giving, for each raw row, the trace columns, the raw text and the parsed values."""
    date_col = quote(spec.date_column)
    parts = [f"{c}" for c in TRACE_COLUMNS]
    parts += [f"{quote(c)} AS {quote('raw:' + c)}" for c in spec.columns]
    parts.append(f"TRY_CAST(trim({date_col}) AS DATE) AS {date_col}")
    for col, typ in column_types(spec).items():
        parts.append(f"TRY_CAST(trim({quote(col)}) AS {SQL_TYPES[typ]}) AS {quote(col)}")
    return f"SELECT {', '.join(parts)} FROM {source}"


def _message(spec: DatasetSpec, check: str, column: str | None, raw: object, note: object) -> str:
    types = column_types(spec)
    if check == "not_nullable":
        if isinstance(note, str) and f"'{column}'" in note and "missing column" in note:
            return f"column '{column}' is missing from the file"
        if raw is None or (isinstance(raw, float) and pd.isna(raw)) or str(raw).strip() == "":
            return f"column '{column}' is empty; a value is required"
        expected = (
            "a date (YYYY-MM-DD)" if column == spec.date_column else TYPE_WORDS[types[column]]
        )
        return f"column '{column}': value {str(raw)!r} is not {expected}"
    if check.startswith("greater_than_or_equal_to"):
        return f"column '{column}': value {raw} is negative; expected >= 0"
    if check == "finite":
        return f"column '{column}': value {raw} is not finite"
    if check == "multiple_fields_uniqueness":
        keys = ", ".join([spec.date_column, *spec.keys])
        return f"duplicate ({keys}): an earlier row with the same keys was kept"
    if check == "date_matches_partition":
        return f"column '{spec.date_column}': value {raw} does not belong to this file's partition"
    return f"column '{column}' failed check {check} (value {raw!r})"


def rule_category(spec: DatasetSpec, check: str, column: str | None) -> str:
    """The family a failed rule belongs to: what the quarantine checks count by."""
    if check == "multiple_fields_uniqueness":
        return "duplicates"
    if check == "date_matches_partition" or column in (spec.date_column, *spec.keys):
        return "keys_and_dates"
    if column == spec.target:
        return "target"
    return "covariates"


def split_rows(spec: DatasetSpec, parsed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the schema; return (valid parsed rows, rejected rows with rule and reason).

    Rows are ordered by file and line first, so "the earlier duplicate is kept" is deterministic.
    """
    parsed = parsed.sort_values(["_source_file", "_source_line"], kind="stable")
    parsed = parsed.reset_index(drop=True)
    typed_cols = [spec.date_column, *column_types(spec), "partition_date"]
    typed = parsed[typed_cols].copy()
    typed[spec.date_column] = pd.to_datetime(typed[spec.date_column])
    typed["partition_date"] = pd.to_datetime(typed["partition_date"])
    try:
        build_schema(spec).validate(typed, lazy=True)
        failures = pd.DataFrame(columns=["index", "column", "check"])
    except SchemaErrors as err:
        failures = err.failure_cases
    failures = failures[failures["index"].notna()]
    # Dataframe-wide checks list every column of a failing row: keep one line per row.
    wide = failures["check"].isin(["date_matches_partition", "multiple_fields_uniqueness"])
    failures = pd.concat(
        [
            failures[~wide],
            failures[wide].drop_duplicates(["index", "check"]).assign(column=spec.date_column),
        ]
    )
    if failures.empty:
        return parsed, parsed.iloc[0:0].assign(rules=pd.Series(dtype=str), reason="")

    failures = failures.assign(index=failures["index"].astype(int))
    messages = []
    triples = zip(failures["index"], failures["column"], failures["check"], strict=True)
    for idx, col, check in triples:
        raw = parsed.at[idx, "raw:" + col] if col is not None else None
        messages.append(_message(spec, str(check), col, raw, parsed.at[idx, "_schema_note"]))
    categories = [
        rule_category(spec, str(check), col)
        for col, check in zip(failures["column"], failures["check"], strict=True)
    ]
    failures = failures.assign(message=messages, category=categories)
    by_row = failures.groupby("index").agg(
        rules=("category", lambda c: ",".join(dict.fromkeys(c))),
        reason=("message", lambda m: "; ".join(dict.fromkeys(m))),
    )
    bad = parsed.index.isin(by_row.index)
    rejects = parsed[bad].join(by_row)
    return parsed[~bad], rejects


def validate_range(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, raw_table: str, start: dt.date, end: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse and split the raw rows of ``start..end`` (both inclusive)."""
    source = f"(SELECT * FROM {quote(raw_table)} WHERE partition_date BETWEEN ? AND ?)"
    parsed = con.execute(parsed_select(spec, source), [start, end]).df()
    return split_rows(spec, parsed)
