"""Dashboard speed: time to first render of the Forecasts page and time to switch series, on
snapshots of 500 and 50,000 series.

    python benchmarks/dashboard.py              # appends a section to docs/benchmarks.md
    python benchmarks/dashboard.py --no-append  # prints only

Each snapshot is published by the real writer (``dashboard/extract.py`` through
``dashboard/snapshot.py``) from a DuckDB database holding what the warehouse would: the
generator's sales (``datasets/synthetic.py``) as ``validated_sales``, a stand-in ``forecasts``
table (each series' last four weeks repeated, P10/P90 at x0.8/x1.2: the benchmark measures
reading and rendering, not the model) and the generator's injected anomalies as flagged rows
of ``sales_anomalies``. The pages run in Streamlit's ``AppTest`` (the app's own script, server
side: reading, shaping and building the plotly figure; the browser's drawing is not counted),
in one process whose modules are already imported, as in a running server.

- first render: a new session on a cold cache (``st.cache_data`` cleared), default series.
- switch: in that session, typing another series' keys into the search box and rerunning;
  the median over ``--switches`` series never shown before (cache misses).

Goals (issue #17): first render < 2 s and switch < 300 ms at 50,000 series. The last line
printed is the result as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import append_section, machine  # noqa: E402
from forecast_platform.dashboard import extract, snapshot  # noqa: E402
from forecast_platform.datasets.registry import get_spec  # noqa: E402
from forecast_platform.datasets.synthetic import SyntheticConfig, generate_sales  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "forecast_platform" / "dashboard" / "app.py"
SIZES = {"500": (10, 50), "50k": (100, 500)}  # stores x items
HORIZON = 28


def build(root: Path, stores: int, items: int, days: int, seed: int) -> dict[str, float]:
    """A snapshot of ``stores x items`` series over ``days`` days under ``root``."""
    end = dt.date(2017, 11, 30)
    start = end - dt.timedelta(days=days - 1)
    t0 = time.perf_counter()
    sales, labels = generate_sales(SyntheticConfig(n_stores=stores, n_items=items, start=start,
                                                   end=end, seed=seed))
    generated = time.perf_counter() - t0
    sales = sales.drop(columns=["holiday"])
    spec = get_spec("synthetic")
    con = duckdb.connect()
    con.register("_sales", sales)
    con.execute("""CREATE TABLE validated_sales AS SELECT CAST(date AS DATE) AS date, store, item,
                   CAST(sales AS DOUBLE) AS sales, promo,
                   CAST(store AS VARCHAR) || '|' || CAST(item AS VARCHAR) AS series_id
                   FROM _sales""")
    con.execute(f"""CREATE TABLE forecasts AS
        SELECT series_id, store, item, CAST(date + INTERVAL {HORIZON} DAY AS TIMESTAMP) AS ds,
               DATE '{end}' AS origin, 1 AS forecaster_version, sales * 0.8 AS p10,
               sales AS p50, sales * 1.2 AS p90, true AS is_open
        FROM validated_sales WHERE date > DATE '{end}' - INTERVAL {HORIZON} DAY""")
    con.register("_labels", labels)
    con.execute("""CREATE TABLE sales_anomalies AS
        SELECT CAST(date AS DATE) AS ds, CAST(store AS VARCHAR) || '|' || CAST(item AS VARCHAR)
               AS series_id, CAST(actual AS DOUBLE) AS y, expected * 0.8 AS p10,
               CAST(expected AS DOUBLE) AS p50, expected * 1.2 AS p90, expected AS forecast_p50,
               1.0 AS day_factor, 10.0 AS score, true AS is_anomaly, anomaly_type,
               'injected ' || anomaly_type || ' (event ' || CAST(event_id AS VARCHAR) || ')'
               AS reason, 1 AS detector_version
        FROM _labels""")
    t1 = time.perf_counter()
    snap = snapshot.publish(root, f"bench-{stores}x{items}",
                            lambda folder: extract.write_tables(con, spec, folder))
    published = time.perf_counter() - t1
    con.close()
    size = sum(f.stat().st_size for f in snap.path.iterdir())
    return {"series": stores * items, "history_rows": snap.rows("history"),
            "generate_s": round(generated, 2), "publish_s": round(published, 2),
            "snapshot_mb": round(size / 2**20, 1)}


def measure(data_dir: Path, stores: int, items: int, switches: int, seed: int
            ) -> dict[str, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["FORECAST_DATA_DIR"] = str(data_dir)  # what the CLI's child_env would pass
    # Outside a server Streamlit logs that it has no runtime (AppTest makes its own).
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    st.cache_data.clear()
    t0 = time.perf_counter()
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    first = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    rng = random.Random(seed)
    times = []
    for _ in range(switches):
        store, item = rng.randint(1, stores), rng.randint(1, items)
        t = time.perf_counter()
        at.text_input(key="forecasts_query").input(f"store {store} item {item}").run()
        times.append(time.perf_counter() - t)
        assert at.selectbox(key="forecasts_series").value == f"{store}|{item}"
        if at.exception:
            raise RuntimeError(at.exception[0].value)
    return {"first_render_s": round(first, 3), "switch_s": round(statistics.median(times), 3),
            "switch_max_s": round(max(times), 3)}


def run(args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="dashboard_bench_") as tmp:
        # Import the app's modules once (a running server has them): a tiny warm-up snapshot.
        warm = Path(tmp) / "warm"
        build(warm / "dashboard", 2, 3, 60, args.seed)
        measure(warm, 2, 3, 1, args.seed)
        for name, (stores, items) in SIZES.items():
            data = Path(tmp) / name
            built = build(data / "dashboard", stores, items, args.days, args.seed)
            timed = measure(data, stores, items, args.switches, args.seed)
            print(f"{name}: {built} {timed}", flush=True)
            for key, value in {**built, **timed}.items():
                result[f"{key}_{name}"] = value
    return result


def report(result: dict[str, object], args: argparse.Namespace) -> str:
    rows = "\n".join(
        f"| {result[f'series_{n}']:,} | {result[f'history_rows_{n}']:,} | "
        f"{result[f'snapshot_mb_{n}']} | {result[f'publish_s_{n}']} | "
        f"{result[f'first_render_s_{n}']} | {result[f'switch_s_{n}']} | "
        f"{result[f'switch_max_s_{n}']} |" for n in SIZES)
    ok = result["first_render_s_50k"] < 2 and result["switch_s_50k"] < 0.3
    return f"""## Dashboard: first render and series switch ({dt.date.today()})

`python benchmarks/dashboard.py` ({args.days} days of daily history, {args.switches} switches);
{machine()}. Pages run in Streamlit's AppTest (server side: Parquet reads, shaping, the plotly
figure; not the browser's drawing), modules already imported as in a running server; first
render on a cold `st.cache_data`, switches to series never shown before (median, and max).

| series | history rows | snapshot MB | publish s | first render s | switch s | switch max s |
|---:|---:|---:|---:|---:|---:|---:|
{rows}

Goals at 50,000 series: first render < 2 s, switch < 300 ms: {'met' if ok else 'NOT met'}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365, help="days of history per series")
    parser.add_argument("--switches", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if not args.no_append:
        append_section(report(result, args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
