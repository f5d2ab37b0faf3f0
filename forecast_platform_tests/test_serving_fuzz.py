"""Property-based fuzz of the real service over its own OpenAPI schema: no server errors.

Schemathesis reads the schema BentoML serves (``/docs.json``) from a real ``bentoml serve`` on
127.0.0.1 and generates requests for every prediction and admin API: valid bodies (positive
mode) and bodies that break the schema (negative mode: wrong types, missing fields, extra
nesting, garbage bytes). Its strategies are driven by plain Hypothesis ``@given``: the
``schema.parametrize`` pytest integration of schemathesis 4.32 fails under pytest 9 (it reads
the removed ``Function._nodeid``). A schema-only generator almost never names a served series,
so a second, Hypothesis-only test sends near-valid bodies (served series, dates around the
window, NaN/inf covariates, oversized batches) that reach the model and the business checks.

Every answer must be below 500: bad input is the client's fault and gets a 4xx with a body.
The bundle holds a real anomaly detector (the ``anomaly_model`` asset's), so ``score_anomaly``
is fuzzed down to the detector, not stopped at a 501. Bounded: 150 examples in all,
derandomized, no example database.

A real server (rather than the in-process ASGI app) keeps this module independent of the
BentoML model store other test modules configure in the same process, and exercises BentoML's
real request parsing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

from forecast_platform.datasets.registry import get_spec  # noqa: E402
from forecast_platform.defs.bentoml_store import save_bundle  # noqa: E402
from forecast_platform.defs.harness import add_anomaly_detector  # noqa: E402
from forecast_platform.forecasting.forecaster import ForecasterParams  # noqa: E402
from forecast_platform.serving.harness import (  # noqa: E402
    RunningServer,
    bentoml_server,
    build_champion_warehouse,
)
from forecast_platform.settings import load_settings  # noqa: E402
from forecast_platform.warehouse.store import connect  # noqa: E402

SPEC = get_spec("synthetic")
MODEL = "synthetic_forecaster"
START, END = dt.date(2014, 1, 1), dt.date(2016, 3, 31)
OPERATIONS = ("forecast", "forecast_batch", "explain", "score_anomaly", "model_info", "reload")
SCHEMA_EXAMPLES = 15  # per operation, schema-driven: 6 x 15 = 90
DOMAIN_EXAMPLES = 60  # near-valid bodies over all endpoints; 150 examples in all

# Near-valid values: mostly the bundle's own series and dates, with the edge cases that a
# schema-only generator almost never reaches (they all pass the schema).
KEY = st.one_of(st.integers(0, 4), st.sampled_from(["1", "2", "3", "x", ""]))
SERIES = st.fixed_dictionaries({"store": KEY, "item": KEY},
                               optional={"color": st.sampled_from(["red", 1])})
DAY = st.one_of(st.dates(END - dt.timedelta(days=120), END + dt.timedelta(days=100)).map(str),
                st.sampled_from(["2016-02-30", "", "tomorrow", "2016-04-01T00:00:00"]))
NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                   st.booleans(), st.sampled_from(["1", None]))
SCENARIO = st.one_of(st.none(), st.dictionaries(
    DAY, st.dictionaries(st.sampled_from(["promo", "price"]), NUMBER, max_size=2), max_size=3))
HORIZON = st.one_of(st.none(), st.integers(-2, 95))
BODIES = st.one_of(
    st.tuples(st.just("forecast"), st.fixed_dictionaries(
        {"series": SERIES}, optional={"horizon": HORIZON, "scenario": SCENARIO})),
    st.tuples(st.just("forecast_batch"), st.fixed_dictionaries(
        {"series": st.lists(SERIES, max_size=25)},
        optional={"horizon": HORIZON, "scenario": SCENARIO})),
    st.tuples(st.just("explain"), st.fixed_dictionaries(
        {"series": SERIES, "date": DAY},
        optional={"scenario": SCENARIO, "top": st.integers(-1, 120)})),
    st.tuples(st.just("score_anomaly"), st.fixed_dictionaries(
        {"series": SERIES, "date": DAY, "actual": NUMBER})),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningServer]:
    """A tiny champion (2 stores x 3 items) with its anomaly detector, its bundle, and the
    real server on loopback."""
    root = tmp_path_factory.mktemp("serving_fuzz")
    env = {"FORECAST_DATA_DIR": str(root / "data"), "BENTOML_HOME": str(root / "bentoml"),
           "FORECAST_MAX_BATCH": "20", "FORECAST_ADMIN_KEY": "adm1n", "FORECAST_API_KEY": "",
           "FORECAST_BUNDLE": "", "DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "1"}
    settings_ = load_settings(env)
    settings_.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    build_champion_warehouse(settings_.warehouse_path, SPEC, MODEL, n_stores=2, n_items=3,
                             start=START, end=END, params=ForecasterParams(n_estimators=10))
    add_anomaly_detector(settings_, SPEC, START, END)
    with connect(settings_.warehouse_path) as con:
        save_bundle(con, SPEC, MODEL, settings_)
    with bentoml_server(env) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(server: RunningServer):
    return schemathesis.openapi.from_url(f"{server.url}/docs.json")


@pytest.mark.parametrize("name", OPERATIONS)
def test_no_server_error(api_schema, name: str) -> None:
    """Positive and negative cases of one operation; every answer below 500."""
    operation = api_schema[f"/{name}"]["POST"]
    cases = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(max_examples=SCHEMA_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        response = case.call(timeout=30)
        _no_server_error(name, response, f"{operation.label}: {case.as_curl_command()}")

    check()


def _no_server_error(name: str, response: httpx.Response | Any, label: str) -> None:
    """Below 500; a 4xx has a body."""
    assert response.status_code < 500, f"{label}\n-> {response.status_code} {response.text}"
    if response.status_code >= 400:
        assert response.content, f"{label}\n-> an empty {response.status_code}"


def test_near_valid_requests_no_server_error(server: RunningServer) -> None:
    """Served series and dates with edge values: NaN/inf/huge covariates (sent as the
    ``NaN``/``Infinity`` literals Python's encoder writes), string keys, extra keys, horizons
    around the model's, dates around the served window, oversized batches."""
    statuses: set[int] = set()

    with httpx.Client(base_url=server.url, timeout=30) as client:
        @given(request=BODIES)
        @settings(max_examples=DOMAIN_EXAMPLES, deadline=None, database=None,
                  derandomize=True, suppress_health_check=list(HealthCheck))
        def check(request: tuple[str, dict[str, Any]]) -> None:
            name, body = request
            content = json.dumps(body, allow_nan=True)
            response = client.post(f"/{name}", content=content,
                                   headers={"Content-Type": "application/json"})
            statuses.add(response.status_code)
            _no_server_error(name, response, f"POST /{name} {content}")

        check()
    assert 200 in statuses and statuses & {404, 422}, statuses  # it reached the model


def test_score_anomaly_reaches_the_detector(server: RunningServer) -> None:
    """The fuzzed service scores for real: a served series on the first date after the data."""
    day = str(END + dt.timedelta(days=1))
    r = httpx.post(f"{server.url}/score_anomaly", timeout=30,
                   json={"series": {"store": 1, "item": 1}, "date": day, "actual": 3})
    assert r.status_code == 200, r.text
    assert r.json()["detector_version"] == 1 and "score" in r.json()
    assert r.json()["forecaster_version"] == 1 and "model_version" not in r.json()
