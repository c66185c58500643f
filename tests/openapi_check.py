"""Check every request a connector made against the tracker's own OpenAPI description (openapi-core).

A request the description does not allow fails the test, except where an `Allowance` names a known,
documented difference between a client library and the description (TRACKERS.md lists them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

SPECS = Path(__file__).parent / "fixtures" / "openapi"


@dataclass(frozen=True)
class Allowance:
    """A documented difference: requests it matches are rewritten before they are checked."""

    why: str
    matches: Callable[[requests.PreparedRequest], bool]
    rewrite: Callable[[requests.PreparedRequest], requests.PreparedRequest]


@cache
def _openapi(spec_name: str, server: str) -> OpenAPI:
    spec: dict[str, Any] = json.loads((SPECS / spec_name).read_text(encoding="utf-8"))
    spec["servers"] = [{"url": server}]
    return OpenAPI.from_dict(spec)


def with_json_body(request: requests.PreparedRequest, body: Any) -> requests.PreparedRequest:
    copy = request.copy()
    copy.prepare_body(data=None, files=None, json=body)
    return copy


def assert_requests_allowed(
    spec_name: str,
    server: str,
    calls: Iterable[requests.PreparedRequest],
    allowances: Iterable[Allowance] = (),
) -> None:
    """Raise with every request that the description does not allow (method, path, body)."""
    openapi = _openapi(spec_name, server)
    rules = list(allowances)
    problems = []
    for request in calls:
        checked = request.copy()
        checked.prepare_url(
            str(request.url).replace(":443/", "/", 1), None
        )  # a default port, as clients write it
        for allowance in rules:
            if allowance.matches(checked):
                checked = allowance.rewrite(checked)
        try:
            openapi.validate_request(RequestsOpenAPIRequest(checked))
        except Exception as error:  # openapi-core raises a family of errors; report all of them
            details = "; ".join(str(e) for e in getattr(error, "schema_errors", [])) or str(error)
            problems.append(f"{request.method} {request.url}: {type(error).__name__}: {details}")
    assert not problems, "requests the OpenAPI description does not allow:\n" + "\n".join(problems)


def assert_exchanges_allowed(
    spec_name: str,
    server: str,
    calls: Iterable[Any],
    allowances: Iterable[Allowance] = (),
) -> None:
    """`assert_requests_allowed` for each call's request, and each answer (a fake's) checked
    against the operation's response schema: so a fake cannot answer in a shape the tracker never does.

    `calls` are `responses`' recorded calls (each with `.request` and `.response`).
    """
    recorded = list(calls)
    assert_requests_allowed(spec_name, server, (c.request for c in recorded), allowances)
    openapi = _openapi(spec_name, server)
    problems = []
    for call in recorded:
        request = call.request.copy()
        request.prepare_url(str(call.request.url).replace(":443/", "/", 1), None)
        try:
            openapi.validate_response(RequestsOpenAPIRequest(request), RequestsOpenAPIResponse(call.response))
        except Exception as error:  # as above: report every kind of mismatch
            details = "; ".join(str(e) for e in getattr(error, "schema_errors", [])) or str(error)
            problems.append(f"{request.method} {request.url}: {type(error).__name__}: {details}")
    assert not problems, "answers the OpenAPI description does not allow:\n" + "\n".join(problems)
