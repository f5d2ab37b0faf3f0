"""The forecasting service: champion forecasts, what-ifs, explanations and anomaly scores.

Thin by design: it loads the serving bundle (``forecast_platform.serving.bundle``) and answers
with ``forecast_platform.serving.online``, the same feature SQL the offline assets run. It
never opens the DuckDB warehouse; every served value is appended to the JSON-lines prediction
log under the data directory, which the ``prediction_log`` asset loads.

Environment, read once at start through ``forecast_platform.settings`` (``SETTINGS``):
    FORECAST_BUNDLE       bundle (BentoML model) name, default ``forecast_bundle``
    BENTOML_HOME          BentoML store; default ``<FORECAST_DATA_DIR>/bentoml``
    FORECAST_DATA_DIR     data directory (prediction log under ``prediction_log/``)
    FORECAST_API_KEY      when set, every API call needs it (``X-API-Key`` or Bearer)
    FORECAST_ADMIN_KEY    needed by ``reload`` (``X-Admin-Key``); unset = reload disabled
    FORECAST_MAX_BATCH    most series per request (default 1000)
    FORECAST_MAX_BODY_BYTES  largest request body (default 1,000,000 bytes)

Status codes: 400 malformed JSON, wrong types or missing fields (the body names the field),
401 missing key, 403 wrong key, 404 unknown series, 413 oversized batch or request body, 422
values out of range (horizon, dates, covariates, a date that cannot be scored, a negative
actual), 501 a capability the bundle lacks (anomaly scoring without a detector). Every error
body is a JSON object of at most 10,000 bytes whatever the input (``serving.requests``:
``bounded_error``); it quotes at most a few hundred characters of any offending value.

Versions in answers: ``forecaster_version`` (the forecaster's registry version) and, from
``score_anomaly``, ``detector_version``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import threading
from collections.abc import Callable
from typing import Annotated, Any

from forecast_platform.settings import export_bentoml_home, load_settings

SETTINGS = load_settings()
# Before BentoML first touches its store: serve the platform's store, not ~/bentoml.
export_bentoml_home(SETTINGS)

import anyio.to_thread  # noqa: E402
import bentoml  # noqa: E402
import pydantic_core  # noqa: E402
from bentoml.validators import ContentType  # noqa: E402
from pydantic import Field, StrictFloat, StrictInt, StrictStr  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402

from forecast_platform.serving.bundle import load_bundle  # noqa: E402
from forecast_platform.serving.log import PredictionLog, new_request_id  # noqa: E402
from forecast_platform.serving.online import OnlineModel  # noqa: E402
from forecast_platform.serving.requests import (  # noqa: E402
    LISTED,
    MESSAGE_CHARS,
    ServingError,
    bounded_error,
    shorten,
)

BUNDLE = SETTINGS.bundle_name
API_KEY_ENV = "FORECAST_API_KEY"
ADMIN_KEY_ENV = "FORECAST_ADMIN_KEY"
MAX_BODY_ENV = "FORECAST_MAX_BODY_BYTES"
API_KEY_HEADER = "x-api-key"
ADMIN_KEY_HEADER = "x-admin-key"
PREDICTION_APIS = {"forecast", "forecast_batch", "score_anomaly", "explain", "model_info"}
ADMIN_APIS = {"reload"}
# Trailing parts of a pydantic error location that name a union branch or a dict key position.
UNION_TAGS = {"str", "int", "float", "bool", "[key]"}
# Methods whose requests carry no body to limit (health, metrics, docs).
BODYLESS = {"GET", "HEAD", "OPTIONS"}

# Containers a client sizes (keys, dates, covariates, series) stop validating at their first
# bad entry (``fail_fast``): an answer names that entry, and a body of 50,000 bad keys costs
# one error, not 50,000 (BentoML builds, logs and encodes every error before we see them).
SeriesKeys = Annotated[
    dict[str, StrictStr | StrictInt],
    Field(description="the series' keys, e.g. {\"store\": 1, \"item\": 7}",
          examples=[{"store": 1, "item": 1}], fail_fast=True),
]
SeriesList = Annotated[list[SeriesKeys], Field(fail_fast=True)]
Scenario = Annotated[
    Annotated[dict[dt.date, Annotated[dict[str, float], Field(fail_fast=True)]],
              Field(fail_fast=True)] | None,
    Field(description="known-in-advance covariates by forecast date, e.g. "
                      "{\"2018-01-05\": {\"promo\": 1}}; unset covariates stay 0",
          examples=[None]),
]
# Every answer is a JSON object. Saying so up front matters for speed: without a declared
# content type BentoML derives it from the return type's JSON schema on every response, which
# cost about a third of a single forecast's server CPU.
JSONBody = Annotated[dict[str, Any], ContentType("application/json")]
# Strict: a JSON number only ("12" and true are 400s naming the field, not coerced).
Actual = Annotated[
    StrictFloat,
    Field(description="the observed value of the target on that date (>= 0 unless the "
                      "dataset allows negative values)", examples=[12.0]),
]
Horizon = Annotated[
    StrictInt | None,
    Field(ge=1, description="periods to forecast, at most the model's horizon (default)"),
]


class KeyAuth:
    """API-key and admin-key checks before a request body is even read, then the body limit.

    Keys and the limit come from ``SETTINGS`` (FORECAST_API_KEY, FORECAST_ADMIN_KEY,
    FORECAST_MAX_BODY_BYTES), looked up per request rather than bound when BentoML builds the
    middleware, so that replacing ``SETTINGS`` (as the tests do) takes effect without
    rebuilding the app. Missing key: 401; wrong key: 403; both with a message saying which
    header is expected. Health, metrics and docs stay open. A body over the limit is a 413
    (``read_body``); every error answer of the APIs goes through ``ErrorBodies``.
    """

    def __init__(self, app: Callable, **_: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            name = scope.get("path", "").strip("/")
            denied = None
            if name in ADMIN_APIS:
                denied = self._check(scope, SETTINGS.admin_key, ADMIN_KEY_ENV,
                                     ADMIN_KEY_HEADER, required=True)
            elif name in PREDICTION_APIS:
                denied = self._check(scope, SETTINGS.api_key, API_KEY_ENV, API_KEY_HEADER,
                                     required=False)
            if denied is not None:
                await denied(scope, receive, send)
                return
            api = name in PREDICTION_APIS or name in ADMIN_APIS
            if api or scope.get("method", "GET") not in BODYLESS:
                receive = await read_body(scope, receive, send, SETTINGS.max_body_bytes)
                if receive is None:  # answered 413, or the client left
                    return
                await self.app(scope, receive, ErrorBodies(send))
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _check(scope: dict, expected: str | None, env: str, header: str, required: bool
               ) -> JSONResponse | None:
        if not expected:
            if not required:
                return None
            return JSONResponse({"error": f"this endpoint is disabled: {env} is not set on the "
                                          "server", "field": header}, status_code=403)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        given = headers.get(header)
        if given is None and header == API_KEY_HEADER:
            auth = headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        if not given:
            return JSONResponse({"error": f"missing credentials: send the key in the {header} "
                                          "header", "field": header}, status_code=401,
                                headers={"WWW-Authenticate": "ApiKey"})
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return JSONResponse({"error": f"the key in the {header} header is not valid",
                                 "field": header}, status_code=403)
        return None


async def read_body(scope: dict, receive: Callable, send: Callable, limit: int
                    ) -> Callable | None:
    """The request body, read whole up to ``limit`` bytes; a ``receive`` that replays it.

    Over the limit: a 413 naming the limit and its setting, answered from the declared
    ``Content-Length`` before any byte is read, or (a chunked body) as soon as the bytes
    received pass the limit, without reading further. Returns None when answered (or when the
    client left), else the ``receive`` to hand to the app.
    """
    headers = dict(scope.get("headers", []))
    declared = headers.get(b"content-length", b"").strip()
    if declared.isdigit() and int(declared) > limit:
        await _too_large(limit, int(declared))(scope, receive, send)
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: nobody to answer
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _too_large(limit, None)(scope, receive, send)
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    delivered = False

    async def replay() -> dict:
        nonlocal delivered
        if delivered:
            return await receive()  # after the body: wait for the disconnect, as the server would
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _too_large(limit: int, declared: int | None) -> JSONResponse:
    size = f"of {declared:,} bytes " if declared is not None else ""
    return JSONResponse({
        "error": f"request body {size}is larger than the limit of {limit:,} bytes "
                 f"({MAX_BODY_ENV}); send fewer series or a smaller scenario per request",
        "field": "body", "limit_bytes": limit, "setting": MAX_BODY_ENV,
        "expected": f"a request body of at most {limit:,} bytes"},
        status_code=413, headers={"Connection": "close"} if declared is None else None)


class ErrorBodies:
    """Every error answer of the APIs, bounded; BentoML's validation 400 rewritten readably.

    BentoML answers ``"1 validation error for Input"`` with the details in a list; clients
    (and people reading logs) should see ``"horizon: Input should be a valid integer"`` first.
    The first details stay under ``detail``. Any answer of status >= 400 (BentoML's, ours) is
    then cut to ``bounded_error``'s 10,000 bytes: a huge invalid value or thousands of invalid
    keys cannot make a huge answer. Successful answers pass through untouched.
    """

    def __init__(self, send: Callable):
        self.send = send
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = self._bounded(self.start["status"], b"".join(self.chunks))
        headers = [(k, v) for k, v in self.start.get("headers", [])
                   if k.lower() not in (b"content-length", b"content-type")]
        headers += [(b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json")]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    @classmethod
    def _bounded(cls, status: int, body: bytes) -> bytes:
        try:
            data = json.loads(body)
        except ValueError:
            data = {"error": body[:MESSAGE_CHARS * 4].decode("utf-8", "replace")}
        if status == 400:
            data = cls._rewrite(data)
        return bounded_error(data)

    @staticmethod
    def _rewrite(data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("detail"), list):
            return data
        by_field: dict[str, list[str]] = {}
        for item in data["detail"]:
            if not isinstance(item, dict):
                continue
            loc = [shorten(str(p)) for p in item.get("loc", [])]
            while loc and loc[-1] in UNION_TAGS:  # "series.store.int" -> "series.store"
                loc.pop()
            messages = by_field.setdefault(".".join(loc) or "body", [])
            msg = shorten(str(item.get("msg", "invalid")))
            if msg not in messages and len(messages) < LISTED:
                messages.append(msg)
        if not by_field:
            return data
        fields = list(by_field)
        problems = [f"{field}: {' or '.join(msgs)}" for field, msgs in by_field.items()]
        more = len(problems) - LISTED
        error = "invalid request: " + "; ".join(problems[:LISTED]) + (
            f"; and {more:,} more fields" if more > 0 else "")
        return {"error": error, "field": fields[0], "fields": fields[:LISTED],
                "detail": data["detail"][:LISTED]}


class FastJSONResponse(Response):
    """A JSON answer serialized once, in Rust (``pydantic_core.to_json``), straight to bytes.

    For a returned ``dict`` BentoML dumps the value to Python objects twice and then runs the
    stdlib encoder: in the profile that was most of a 500-series batch's server time. Same
    JSON (floats round-trip exactly); NaN and infinities become null, so the body stays valid
    JSON.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content, inf_nan_mode="null", fallback=str)


@bentoml.service(name="forecast_platform", traffic={"timeout": 60})
class ForecastService:
    """Forecasts (P10/P50/P90), what-ifs, explanations and anomaly scores of the champion."""

    model_ref = bentoml.models.BentoModel(f"{BUNDLE}:latest")

    def __init__(self) -> None:
        try:
            ref = self.model_ref
        except bentoml.exceptions.BentoMLException as exc:
            raise RuntimeError(
                f"no serving bundle {BUNDLE!r} in the BentoML store "
                f"({SETTINGS.bentoml_home}): materialize the serving_bundle asset first") from exc
        self.online = OnlineModel(load_bundle(ref.path, tag=str(ref.tag)),
                                  max_batch=SETTINGS.max_batch,
                                  memory_limit=SETTINGS.duckdb_memory_limit)
        self.log = PredictionLog(SETTINGS.prediction_log_dir)
        self._reload_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------
    def _answer(self, work: Callable[[OnlineModel], dict[str, Any]]) -> Any:
        """Run ``work`` on the current model; bad input becomes a precise 4xx, never a 500."""
        online = self.online  # one model for the whole request, even across a reload
        try:
            return FastJSONResponse(work(online))
        except ServingError as exc:
            return JSONResponse(exc.as_dict(), status_code=exc.status)
        except ValueError as exc:
            return JSONResponse({"error": shorten(str(exc), MESSAGE_CHARS)}, status_code=400)

    def _log(self, online: OnlineModel, endpoint: str, request_id: str,
             inputs: dict[str, Any], results: list[dict[str, Any]],
             outputs: Callable[[dict[str, Any]], dict[str, list]]) -> None:
        self.log.write({
            "request_id": request_id, "endpoint": endpoint, "bundle": online.bundle.tag,
            "forecaster_version": online.bundle.forecaster_version, "series_id": r["series_id"],
            "series": r["series"], "inputs": inputs, "outputs": outputs(r),
        } for r in results)

    @staticmethod
    def _scenario_json(scenario: dict | None) -> dict | None:
        return {str(k): v for k, v in scenario.items()} if scenario else None

    # -- APIs ---------------------------------------------------------------------------------
    @bentoml.api
    async def forecast(self, series: SeriesKeys, horizon: Horizon = None,
                       scenario: Scenario = None) -> JSONBody:
        """P10/P50/P90 per date for one series over the horizon after the data's last date.

        A what-if: pass ``scenario`` (e.g. a promotion on some forecast dates) and compare.
        """
        # Async on purpose: without a scenario the answer is a lookup into precomputed arrays
        # (microseconds), far cheaper than the hand-off to a worker thread BentoML makes for a
        # sync API (a measurable share of a forecast's server CPU and latency). A scenario
        # runs the model, so only then does the work go to a thread.
        def work(online: OnlineModel) -> dict[str, Any]:
            result = online.forecast([series], horizon, scenario)[0]
            request_id = new_request_id()
            inputs = {"horizon": horizon, "scenario": self._scenario_json(scenario)}
            self._log(online, "forecast", request_id, inputs, [result], _forecast_outputs)
            return {"request_id": request_id,
                    "forecaster_version": online.bundle.forecaster_version,
                    "bundle": online.bundle.tag, "origin": online.windows.origin.isoformat(),
                    **_records(result)}
        if scenario:
            return await anyio.to_thread.run_sync(self._answer, work)
        return self._answer(work)

    @bentoml.api
    def forecast_batch(self, series: SeriesList, horizon: Horizon = None,
                       scenario: Scenario = None) -> JSONBody:
        """Forecasts of many series in one vectorized call (at most ``max_batch``).

        Per series: ``dates`` and parallel ``p10``/``p50``/``p90``/``is_open`` lists (compact
        for large batches; a closed day has ``is_open`` false and every quantile 0). The
        scenario applies to every series of the batch.
        """
        def work(online: OnlineModel) -> dict[str, Any]:
            results = online.forecast(series, horizon, scenario, batch=True)
            request_id = new_request_id()
            inputs = {"horizon": horizon, "scenario": self._scenario_json(scenario),
                      "batch_size": len(series)}
            self._log(online, "forecast_batch", request_id, inputs, results, _forecast_outputs)
            return {"request_id": request_id,
                    "forecaster_version": online.bundle.forecaster_version,
                    "bundle": online.bundle.tag, "origin": online.windows.origin.isoformat(),
                    "forecasts": results}
        return self._answer(work)

    @bentoml.api
    def explain(self, series: SeriesKeys, date: dt.date, scenario: Scenario = None,
                top: Annotated[int, Field(ge=1, le=100)] = 5) -> JSONBody:
        """The top feature contributions (XGBoost ``pred_contribs``) to one P50.

        ``bias + sum(contributions) + rest == raw_p50``; the served ``p50`` is
        ``max(raw_p50, 0)``. Dates: the recent observed dates and the forecast dates. A day
        the closure rules close answers ``is_open`` false, 0 and no contributions.
        """
        def work(online: OnlineModel) -> dict[str, Any]:
            result = online.explain(series, date, scenario, top)
            request_id = new_request_id()
            inputs = {"date": date.isoformat(), "scenario": self._scenario_json(scenario),
                      "top": top}
            self._log(online, "explain", request_id, inputs, [result], lambda r: {
                "ds": [r["date"]], "p10": [r["p10"]], "p50": [r["p50"]], "p90": [r["p90"]]})
            return {"request_id": request_id,
                    "forecaster_version": online.bundle.forecaster_version,
                    "bundle": online.bundle.tag, **result}
        return self._answer(work)

    @bentoml.api
    def score_anomaly(self, series: SeriesKeys, date: dt.date, actual: Actual) -> JSONBody:
        """Score an observed value as the ``sales_anomalies`` asset scores its day.

        Answers the detector's score and threshold, the flag, for a flagged value its type
        (spike, dip, level_shift, zero_run; null when not flagged, as in the asset) and a
        one-line reason, the expected value (P50) with its P10/P90 interval and where it came
        from, and the detector and forecaster versions. Scorable dates (``model_info``'s
        ``anomaly.score_dates``): the recent observed dates (a what-if with another actual)
        and the first date after the data's last, whose expectation is the champion's
        forecast. Other dates get a 422 naming them; a bundle without a detector a 501.
        """
        def work(online: OnlineModel) -> dict[str, Any]:
            result = online.score_anomaly(series, date, actual)
            request_id = new_request_id()
            self._log(online, "score_anomaly", request_id,
                      {"date": date.isoformat(), "actual": actual}, [result], lambda r: {
                          "ds": [r["date"]], "actual": [r["actual"]], "score": [r["score"]],
                          "is_anomaly": [r["is_anomaly"]], "p10": [r.get("p10")],
                          "p50": [r.get("expected")], "p90": [r.get("p90")]})
            # The result says both versions: forecaster_version and detector_version.
            return {"request_id": request_id, "bundle": online.bundle.tag, **result}
        return self._answer(work)

    @bentoml.api
    def model_info(self) -> JSONBody:
        """Bundle and model versions, training window, backtest metrics, creation time."""
        return self._answer(lambda online: online.info())

    @bentoml.api
    def reload(self) -> JSONBody:
        """Admin: load the newest bundle from the store without a restart (``X-Admin-Key``).

        Requests in flight finish on the model they started with; the swap is one assignment.
        """
        with self._reload_lock:
            current = self.online
            try:
                ref = bentoml.models.get(f"{BUNDLE}:latest")
            except bentoml.exceptions.NotFound:
                return JSONResponse({"error": f"no bundle {BUNDLE!r} in the store"},
                                    status_code=404)
            if str(ref.tag) == current.bundle.tag:
                return {"reloaded": False, "bundle": current.bundle.tag,
                        "forecaster_version": current.bundle.forecaster_version,
                        "message": "already serving the newest bundle"}
            self.online = OnlineModel(load_bundle(ref.path, tag=str(ref.tag)),
                                      max_batch=SETTINGS.max_batch,
                                      memory_limit=SETTINGS.duckdb_memory_limit)
        return {"reloaded": True, "previous_bundle": current.bundle.tag,
                "bundle": self.online.bundle.tag,
                "forecaster_version": self.online.bundle.forecaster_version}


def _forecast_outputs(result: dict[str, Any]) -> dict[str, list]:
    return {"ds": result["dates"], "p10": result["p10"], "p50": result["p50"],
            "p90": result["p90"], "is_open": result["is_open"]}


def _records(result: dict[str, Any]) -> dict[str, Any]:
    """One series' columnar forecast as per-date records, the readable single-series shape."""
    rows = [{"date": d, "p10": a, "p50": b, "p90": c, "is_open": o} for d, a, b, c, o in zip(
        result["dates"], result["p10"], result["p50"], result["p90"], result["is_open"],
        strict=True)]
    return {"series": result["series"], "series_id": result["series_id"], "forecast": rows}


ForecastService.add_asgi_middleware(KeyAuth)

__all__ = ["ForecastService"]
