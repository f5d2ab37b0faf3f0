"""Benchmark: the real BentoML service under a bounded closed-loop load on loopback.

    python benchmarks/serving.py                          # 8 clients x 20 s, then batches
    python benchmarks/serving.py --clients 8 --duration 20 --no-append
    python benchmarks/serving.py --reuse /tmp/serving-bench   # keep/reuse the trained bundle
    python benchmarks/serving.py --data-dir DIR       # serve DIR's newest bundle (scale.py --keep)

What it does, all through the platform's own code:

1. Synthetic sales of ``--stores`` x ``--items`` series (default 10 x 50 = 500) over
   ``--start .. --end`` (default 2016-01-01 .. 2017-12-31) in a DuckDB warehouse, the real
   feature SQL, the ``Forecaster`` with its default parameters registered and promoted as
   champion, the real ``forecasts``, ``expected_sales`` and ``anomaly_model`` assets (the
   anomaly detector and its out-of-sample expectations), then ``save_bundle`` (what the
   ``serving_bundle`` asset runs) into a temporary BENTOML_HOME. ``--reuse DIR`` keeps that
   directory and skips this step when it is there.
2. In this process, without HTTP: ``OnlineModel.forecast`` (the service's online forecast call)
   for one series x ``--horizon`` days and for a ``--batch-size`` batch, so the serving overhead
   is a ratio against the bare model call measured in the same run; and
   ``OnlineModel.score_anomaly`` for one value.
3. The real ``bentoml serve bentos/`` on 127.0.0.1 (a free port), warmed up, then a closed loop:
   ``--clients`` concurrent aiohttp clients post single-series forecasts (random series) for
   ``--duration`` seconds, each sending its next request when the previous answer arrived; then
   ``--batch-clients`` clients post ``--batch-size``-series batches for ``--batch-duration``
   seconds; then ``--score-clients`` clients post single ``score_anomaly`` requests (random
   series; half on the day after the data's last with an actual near the forecast, half
   what-ifs on recent observed days) for ``--score-duration`` seconds. Any non-200 answer or
   transport error counts as an error. The server's CPU time
   (its whole process tree) over each phase is read from /proc via psutil.

The load generator shares the machine with the server (the goal is stated for 2 cores shared
with it), so its own CPU time is reported too. It prints p50/p95/p99 latency, throughput and
errors per phase, appends a section to docs/benchmarks.md unless ``--no-append``, and prints a
last line of JSON. The server's process group is terminated in all cases.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from results import append_section, machine  # noqa: E402

from forecast_platform.cli.parser import quiet_known_warnings  # noqa: E402

quiet_known_warnings()  # before Dagster and dagster-mlflow are imported (below)

from forecast_platform.datasets.registry import get_spec  # noqa: E402
from forecast_platform.defs.bentoml_store import (  # noqa: E402
    load_stored_bundle,
    save_bundle,
    stored_bundle,
)
from forecast_platform.defs.harness import add_anomaly_detector  # noqa: E402
from forecast_platform.serving.harness import (  # noqa: E402
    bentoml_server,
    build_champion_warehouse,
)
from forecast_platform.serving.online import OnlineModel  # noqa: E402
from forecast_platform.settings import load_settings  # noqa: E402
from forecast_platform.warehouse.store import connect  # noqa: E402

MODEL = "synthetic_forecaster"
DONE_MARKER = "bundle.done"


# -- setup ------------------------------------------------------------------------------------

def prepare(args: argparse.Namespace, root: Path) -> tuple[dict[str, str], str, dict[str, float]]:
    """The environment of the server and the bundle tag; trains and packs unless reused."""
    env = {"FORECAST_DATA_DIR": str(root / "data"), "BENTOML_HOME": str(root / "bentoml"),
           "FORECAST_DATASET": "synthetic", "FORECAST_MAX_BATCH": str(max(1000, args.batch_size)),
           "DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "1"}
    timings: dict[str, float] = {}
    if args.data_dir is not None:
        # An existing data directory's newest bundle (e.g. one ``scale.py --keep`` left).
        data = Path(args.data_dir).resolve()
        env.update({"FORECAST_DATA_DIR": str(data), "BENTOML_HOME": str(data / "bentoml")})
        tag, _ = stored_bundle(f"{load_settings(env).bundle_name}:latest", data / "bentoml")
        return env, tag, timings
    settings = load_settings(env)
    marker = root / DONE_MARKER
    if marker.is_file():
        return env, marker.read_text().strip(), timings
    spec = get_spec("synthetic")
    if settings.warehouse_path.exists():
        settings.warehouse_path.unlink()
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = build_champion_warehouse(settings.warehouse_path, spec, MODEL, n_stores=args.stores,
                                     n_items=args.items, start=args.start, end=args.end, seed=7)
    timings["train_s"] = round(time.perf_counter() - t0, 1)
    timings["train_rows"] = model.train_rows
    t0 = time.perf_counter()
    add_anomaly_detector(settings, spec, args.start, args.end)
    timings["anomaly_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    with connect(settings.warehouse_path) as con:
        tag = save_bundle(con, spec, MODEL, settings)
    timings["bundle_s"] = round(time.perf_counter() - t0, 1)
    marker.write_text(tag)
    return env, tag, timings


def inprocess(env: dict[str, str], tag: str, args: argparse.Namespace
              ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The bare ``OnlineModel.forecast`` cost, single series and one batch, and the bare
    ``score_anomaly`` cost; the served series and the score requests to send."""
    t0 = time.perf_counter()
    bundle = load_stored_bundle(tag, Path(env["BENTOML_HOME"]))
    online = OnlineModel(bundle, max_batch=max(1000, args.batch_size),
                         memory_limit=load_settings(env).duckdb_memory_limit)
    load_s = time.perf_counter() - t0
    bundle_mb = sum(p.stat().st_size for p in bundle.path.rglob("*") if p.is_file()) / 2**20
    keys = list(online.spec.keys)
    series = [dict(zip(keys, (int(p) for p in sid.split("|")), strict=True))
              for sid in online.series_ids]
    rng = random.Random(0)
    single = []
    for _ in range(3000):
        s = rng.choice(series)
        t = time.perf_counter()
        online.forecast([s], args.horizon)
        single.append(time.perf_counter() - t)
    batch_series = (series * (args.batch_size // len(series) + 1))[:args.batch_size]
    batch = []
    for _ in range(30):
        t = time.perf_counter()
        online.forecast(batch_series, args.horizon, batch=True)
        batch.append(time.perf_counter() - t)
    s_ms, b_ms = np.array(single) * 1e3, np.array(batch) * 1e3
    out = {"load_s": round(load_s, 2), "bundle_mb": round(bundle_mb, 1),
           "series": len(series), "horizon": online.plan.horizon,
           "forecast_p50_ms": float(np.percentile(s_ms, 50)),
           "forecast_p99_ms": float(np.percentile(s_ms, 99)),
           "batch_p50_ms": float(np.percentile(b_ms, 50)),
           "batch_p99_ms": float(np.percentile(b_ms, 99))}
    scores = score_bodies(online, series, rng)
    if scores:
        timed = []
        for body in scores[:200]:
            t = time.perf_counter()
            online.score_anomaly(body["series"], body["date"], body["actual"])
            timed.append(time.perf_counter() - t)
        out["score_p50_ms"] = float(np.percentile(np.array(timed) * 1e3, 50))
    return out, series, scores


def score_bodies(online: OnlineModel, series: list[dict[str, Any]], rng: random.Random,
                 n: int = 400) -> list[dict[str, Any]]:
    """``score_anomaly`` requests: half on the day after the data's last (an actual near the
    forecast), half what-ifs on recent observed days (the recorded actual or a multiple)."""
    ctx = online.anomaly_context
    if ctx is None:
        return []
    after = online.windows.future_start
    recent = [online.windows.origin - dt.timedelta(days=d) for d in range(0, 28)]
    frame = ctx.frame.set_index(["series_id", "ds"])["y"]
    bodies = []
    for i in range(n):
        s = rng.choice(series)
        sid = "|".join(str(s[k]) for k in online.spec.keys)
        if i % 2 == 0:
            forecast = online.forecast([s], 1)[0]["p50"][0]
            bodies.append({"series": s, "date": after.isoformat(),
                           "actual": float(round(forecast * rng.uniform(0.5, 1.5)))})
        else:
            day = rng.choice(recent)
            recorded = float(frame.get((sid, pd.Timestamp(day)), 0.0))
            bodies.append({"series": s, "date": day.isoformat(),
                           "actual": recorded if rng.random() < 0.5 else recorded * 3})
    return bodies


# -- load ---------------------------------------------------------------------------------------

def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server process and all its children so far."""
    total = 0.0
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def server_rss_mb(pid: int) -> int:
    """The resident memory of the server's whole process tree, in MB."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    return round(sum(p.memory_info().rss for p in procs) / 2**20)


async def closed_loop(url: str, bodies: list[bytes], clients: int, duration: float
                      ) -> dict[str, Any]:
    """``clients`` workers, each posting its next body when the previous answer is read."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + duration
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)

    async def worker(seed: int, session: aiohttp.ClientSession) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            body = bodies[rng.randrange(len(bodies))]
            t = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t)
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(i, session) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {"requests": len(latencies), "seconds": elapsed,
            "rps": len(latencies) / elapsed, "errors": sum(errors.values()),
            "error_kinds": errors, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "client_cpu_s": time.process_time() - cpu0}


def load_phase(base: str, endpoint: str, bodies: list[bytes], clients: int, duration: float,
               pid: int) -> dict[str, Any]:
    cpu0 = server_cpu(pid)
    result = asyncio.run(closed_loop(f"{base}/{endpoint}", bodies, clients, duration))
    result["server_cpu_s"] = server_cpu(pid) - cpu0
    result["server_cpu_ms_per_req"] = 1e3 * result["server_cpu_s"] / max(result["requests"], 1)
    return result


def serve_and_load(env: dict[str, str], series: list[dict[str, Any]], args: argparse.Namespace,
                   log_path: Path, scores: list[dict[str, Any]]) -> dict[str, Any]:
    rng = random.Random(1)
    singles = [json.dumps({"series": s, "horizon": args.horizon}).encode() for s in series]
    batch_series = [series[i % len(series)] for i in range(args.batch_size)]
    batches = []
    for _ in range(4):
        rng.shuffle(batch_series)
        batches.append(json.dumps({"series": batch_series, "horizon": args.horizon}).encode())
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    # Ready when the bundle is loaded: minutes for a 50,000-series bundle.
    with bentoml_server(env, stderr_path=log_path, ready_timeout=900) as server:
        out["startup_s"] = time.perf_counter() - t0
        base, pid = server.url, server.proc.pid
        # Warm-up: every code path once, then a short burst, not measured.
        asyncio.run(closed_loop(f"{base}/forecast", singles, 2, args.warmup))
        asyncio.run(closed_loop(f"{base}/forecast_batch", batches, 1, min(args.warmup, 2.0)))
        score_json = [json.dumps(b).encode() for b in scores]
        if score_json:
            asyncio.run(closed_loop(f"{base}/score_anomaly", score_json, 1,
                                    min(args.warmup, 2.0)))
        out["forecast"] = load_phase(base, "forecast", singles, args.clients, args.duration, pid)
        out["batch"] = load_phase(base, "forecast_batch", batches, args.batch_clients,
                                  args.batch_duration, pid)
        if score_json:
            out["score"] = load_phase(base, "score_anomaly", score_json, args.score_clients,
                                      args.score_duration, pid)
        out["server_rss_mb"] = server_rss_mb(pid)
    return out


# -- report -------------------------------------------------------------------------------------

def report(args: argparse.Namespace, command: str, setup: dict[str, Any],
           inproc: dict[str, Any], load: dict[str, Any]) -> str:
    f, b = load["forecast"], load["batch"]
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"## Serving benchmark (synthetic, {inproc['series']} series), {now}", "",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        f"- bundle: Forecaster default params trained on {args.start} .. {args.end} "
        f"({setup['train_rows']:,} rows, {setup['train_s']} s; forecasts, expected values "
        f"and anomaly detector {setup['anomaly_s']} s; bundle {setup['bundle_s']} s)"
        if setup else f"- bundle: the newest of {args.data_dir or args.reuse}",
        f"- model horizon {inproc['horizon']}; bundle {inproc['bundle_mb']} MB; OnlineModel "
        f"load {inproc['load_s']} s, server ready in {load['startup_s']:.1f} s, server "
        f"resident memory {load['server_rss_mb']:,} MB (its process tree, after the load)",
        f"- load: closed loop on 127.0.0.1, aiohttp; single-series {args.horizon}-day forecasts "
        f"with {args.clients} clients x {args.duration:.0f} s, then {args.batch_size}-series "
        f"batches ({args.horizon} days) with {args.batch_clients} client(s) x "
        f"{args.batch_duration:.0f} s, then single score_anomaly requests with "
        f"{args.score_clients} clients x {args.score_duration:.0f} s; "
        "one BentoML API worker (the default); the load "
        "generator runs on the same cores; errors = non-200 answers + transport errors",
        "",
        "| phase | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors "
        "| server CPU ms/req | client CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    phases = [("forecast (1 series)", f), (f"forecast_batch ({args.batch_size})", b)]
    if "score" in load:
        phases.append(("score_anomaly (1 value)", load["score"]))
    for name, r in phases:
        lines.append(f"| {name} | {r['requests']:,} | {r['rps']:.0f} | {r['p50_ms']:.1f} | "
                     f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
                     f"{r['errors']} | {r['server_cpu_ms_per_req']:.2f} | "
                     f"{r['client_cpu_s']:.1f} |")
    lines += [
        "",
        f"In-process `OnlineModel.forecast` (no HTTP, same run): 1 series p50 "
        f"{inproc['forecast_p50_ms']:.3f} ms (p99 {inproc['forecast_p99_ms']:.3f}); "
        f"{args.batch_size} series p50 {inproc['batch_p50_ms']:.1f} ms. Serving overhead "
        f"(HTTP p50 / in-process p50): single {f['p50_ms'] / inproc['forecast_p50_ms']:.0f}x, "
        f"batch {b['p50_ms'] / inproc['batch_p50_ms']:.1f}x."
        + (f" In-process `OnlineModel.score_anomaly`: p50 {inproc['score_p50_ms']:.1f} ms."
           if "score_p50_ms" in inproc else ""),
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    keep = args.reuse is not None
    root = Path(args.reuse) if keep else Path(tempfile.mkdtemp(prefix="serving-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        env, tag, setup = prepare(args, root)
        print(f"bundle {tag} in {env['BENTOML_HOME']} {setup}", flush=True)
        inproc, series, scores = inprocess(env, tag, args)
        gc.collect()  # the in-process model is gone before the server loads its own copy
        print(f"in-process: {inproc}", flush=True)
        load = serve_and_load(env, series, args, root / "server.log", scores)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    command = "python benchmarks/serving.py " + " ".join(sys.argv[1:])
    text = report(args, command.strip(), setup, inproc, load)
    print(text)
    if not args.no_append:
        append_section(text)
    f, b = load["forecast"], load["batch"]
    sc = load.get("score")
    score_figures = {} if sc is None else {
        "score_anomaly_p50_ms": round(sc["p50_ms"], 2),
        "score_anomaly_p99_ms": round(sc["p99_ms"], 2),
        "score_anomaly_rps": round(sc["rps"], 1), "score_anomaly_errors": sc["errors"],
        "inprocess_score_ms": round(inproc["score_p50_ms"], 2),
        "server_cpu_ms_per_score": round(sc["server_cpu_ms_per_req"], 2),
    }
    return {
        "forecast_p50_ms": round(f["p50_ms"], 2), "forecast_p95_ms": round(f["p95_ms"], 2),
        "forecast_p99_ms": round(f["p99_ms"], 2), "forecast_rps": round(f["rps"], 1),
        "batch500_p50_ms": round(b["p50_ms"], 1), "batch500_p99_ms": round(b["p99_ms"], 1),
        "batch_rps": round(b["rps"], 2), "batch_size": args.batch_size,
        "errors": f["errors"] + b["errors"],
        "inprocess_forecast_ms": round(inproc["forecast_p50_ms"], 4),
        "inprocess_batch500_ms": round(inproc["batch_p50_ms"], 2),
        "overhead_ratio": round(f["p50_ms"] / inproc["forecast_p50_ms"], 1),
        "server_cpu_ms_per_forecast": round(f["server_cpu_ms_per_req"], 3),
        "clients": args.clients, "duration_s": args.duration, "horizon": args.horizon,
        "series": inproc["series"], "bundle_mb": inproc["bundle_mb"],
        "bundle_load_s": inproc["load_s"], "server_ready_s": round(load["startup_s"], 1),
        "server_rss_mb": load["server_rss_mb"],
        **score_figures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2016, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2017, 12, 31))
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-clients", type=int, default=1)
    parser.add_argument("--batch-duration", type=float, default=10.0)
    parser.add_argument("--score-clients", type=int, default=2)
    parser.add_argument("--score-duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--reuse", help="keep the trained bundle in this directory and reuse it")
    parser.add_argument("--data-dir", type=Path,
                        help="serve the newest bundle of this existing data directory instead "
                             "of training one (e.g. the one `scale.py --keep DIR` leaves)")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)
    for name in ("clients", "batch_clients", "score_clients"):
        if not 1 <= getattr(args, name) <= 64:
            parser.error(f"--{name.replace('_', '-')} must be from 1 to 64 (bounded load)")
    if not all(0 < d <= 300 for d in (args.duration, args.batch_duration,
                                       args.score_duration)):
        parser.error("durations must be in (0, 300] seconds")
    result = run(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
