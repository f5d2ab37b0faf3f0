"""A stated sample of whole series, for fits that would otherwise read every series.

A global model learns the shape of demand from many series, not from all of them: past a few
million rows, more series add fitting time and memory in proportion and accuracy barely
(``benchmarks/training_sample.py`` measures the cost on the same points). So a fit reads at
most ``max_rows`` rows, taking whole series: a series' lags, windows and closures stay
intact, and every series that is kept is backtested on all of its points.

Series are picked by a hash of their id, not at random: the same series are kept run after
run and at every origin of a backtest, so a backtest's folds and a retrain see one sample, and
a series' membership never depends on which others exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

# Hash buckets a share of series is counted in: a share is kept to one part in a million.
BUCKETS = 1_000_000


def bucket_sql(column: str = "series_id") -> str:
    """The series' bucket in 0..BUCKETS-1: MD5 of the id, stable across DuckDB versions."""
    return f"(md5_number({column}) % {BUCKETS})"


@dataclass(frozen=True)
class SeriesSample:
    """Which series a fit reads: all of them, or those whose bucket is below ``threshold``."""

    rows: int  # rows of the window, every series
    series: int  # series of the window
    threshold: int  # buckets kept: BUCKETS keeps every series

    @property
    def complete(self) -> bool:
        return self.threshold >= BUCKETS

    @property
    def share(self) -> float:
        return min(1.0, self.threshold / BUCKETS)

    def where(self, column: str = "series_id") -> tuple[str, list]:
        """The SQL condition keeping the sampled series, and its parameters (none), as
        ``SeriesBlock.where`` gives them: ``TRUE`` when every series is kept."""
        if self.complete:
            return "TRUE", []
        return f"{bucket_sql(column)} < {self.threshold}", []

    def describe(self) -> str:
        if self.complete:
            return f"every series ({self.series:,}, {self.rows:,} rows)"
        return (f"a {self.share:.1%} sample of whole series (about "
                f"{round(self.series * self.share):,} of {self.series:,}, hashed on series_id): "
                f"at most {round(self.rows * self.share):,} of {self.rows:,} rows")


def sample_series(con: duckdb.DuckDBPyConnection, source: str, where: str, params: list,
                  max_rows: int) -> SeriesSample:
    """The sample of ``source``'s series (rows matching ``where``) that keeps about
    ``max_rows`` rows; every series when the rows fit."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be a positive number of rows, got {max_rows}")
    rows, series = con.execute(
        f"SELECT count(*), count(DISTINCT series_id) FROM {source} WHERE {where}", params
    ).fetchall()[0]
    threshold = BUCKETS if rows <= max_rows else max(1, int(BUCKETS * max_rows / rows))
    return SeriesSample(rows=int(rows), series=int(series), threshold=threshold)
