"""What-if forecasts from the running forecasting service, over HTTP.

Why the service and not the snapshot: a what-if must run the model on changed covariates,
exactly as production does (the same bundle, feature SQL and closure rules), and the service
is that code path. The dashboard is its client: ``/forecast`` once without a scenario and once
with it, and the page shows the difference. Every failure becomes an ``Answer`` with a message
a planner can act on (how to start the service, or the service's own 4xx text), never an
exception on the page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd

TIMEOUT_SECONDS = 30.0
START_IT = ("Start it in another terminal with `.venv/bin/forecast-platform serve` (it listens "
            "on 127.0.0.1:3001 by default; `--port` for another port), then reload this page. "
            "The dashboard calls the URL in FORECAST_SERVICE_URL (or `forecast-platform "
            "dashboard --service-url URL`).")


@dataclass(frozen=True)
class Answer:
    """The service's answer: ``data`` when it answered 200, else ``message`` says why not."""

    ok: bool
    message: str = ""
    status: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


def typed_keys(keys: Mapping[str, str], key_types: Mapping[str, str]) -> dict[str, Any]:
    """A series' key values as the service expects them: integers for integer keys."""
    out: dict[str, Any] = {}
    for k, v in keys.items():
        out[k] = int(v) if key_types.get(k) == "int" else v
    return out


def scenario_for(dates: Iterable[dt.date], values: Mapping[str, float | str]
                 ) -> dict[str, dict[str, float | str]]:
    """The request's ``scenario``: the same covariate values on every chosen date."""
    if not values:
        return {}
    return {d.isoformat(): dict(values) for d in sorted(dates)}


def forecast(url: str, series: Mapping[str, Any], scenario: Mapping[str, Any] | None = None,
             api_key: str | None = None, timeout: float = TIMEOUT_SECONDS,
             client: httpx.Client | None = None) -> Answer:
    """POST ``/forecast`` to the service at ``url``."""
    body: dict[str, Any] = {"series": dict(series)}
    if scenario:
        body["scenario"] = dict(scenario)
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        if client is not None:
            response = client.post(f"{url}/forecast", json=body, headers=headers,
                                   timeout=timeout)
        else:
            response = httpx.post(f"{url}/forecast", json=body, headers=headers,
                                  timeout=timeout)
    except httpx.ConnectError:
        return Answer(False, f"The forecasting service is not running at {url}. {START_IT}")
    except httpx.TimeoutException:
        return Answer(False, f"The forecasting service at {url} did not answer within "
                             f"{timeout:.0f} s; it may be starting or overloaded. Try again.")
    except httpx.HTTPError as err:
        return Answer(False, f"Could not reach the forecasting service at {url}: {err}. "
                             f"{START_IT}")
    try:
        data = response.json()
    except ValueError:
        return Answer(False, f"Something other than the forecasting service answers at {url} "
                             f"(HTTP {response.status_code}, not JSON: is it the Dagster UI "
                             f"or another server?). {START_IT}",
                      status=response.status_code)
    if response.status_code == 200 and isinstance(data, dict):
        return Answer(True, status=200, data=data)
    return Answer(False, service_message(response.status_code, data),
                  status=response.status_code, data=data if isinstance(data, dict) else {})


def service_message(status: int, data: Any) -> str:
    """The service's own words for a refused request: its ``error``, the field and what it
    expected (the service names them for every 4xx)."""
    if not isinstance(data, dict):
        return f"The service answered {status}: {str(data)[:500]}"
    parts = [f"The service answered {status}: {data.get('error', 'no message')}"]
    if data.get("field"):
        parts.append(f"field: {data['field']}")
    if data.get("expected"):
        parts.append(f"expected: {data['expected']}")
    if status in (401, 403):
        parts.append("set FORECAST_API_KEY for the dashboard to the service's key")
    return " — ".join(parts)


def compare(base: Mapping[str, Any], what_if: Mapping[str, Any]) -> pd.DataFrame:
    """Per forecast date: the forecast as planned and with the scenario, and the change."""
    a = pd.DataFrame(base.get("forecast", []))
    b = pd.DataFrame(what_if.get("forecast", []))
    if not len(a) or not len(b):
        return pd.DataFrame()
    out = a.rename(columns={"p10": "p10_base", "p50": "p50_base", "p90": "p90_base"}).merge(
        b.rename(columns={"p10": "p10_whatif", "p50": "p50_whatif", "p90": "p90_whatif",
                          "is_open": "is_open_whatif"}), on="date", how="inner")
    out["change"] = out["p50_whatif"] - out["p50_base"]
    out["change_pct"] = (out["change"] / out["p50_base"].where(out["p50_base"] != 0)) * 100
    out["date"] = pd.to_datetime(out["date"]).dt.date
    return out
