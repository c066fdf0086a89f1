"""The HTTP API's contract and its refusals, served in process by the worker's own views (no
broker: the seller endpoints stop at 503 "starting" once a request has passed every check, so
each refusal below is made before that, and a 503 shows a request passed them all).
Answers from a live worker are in tests/integration/test_api.py."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from streams.service.access import mint
from streams.service.app import create_app
from streams.service.http import openapi_document
from streams.service.settings import Settings

SECRET = "a-secret-of-at-least-32-bytes-long!!"
OPERATOR = {"Authorization": "Bearer op-token"}


def seller(seller_id: str) -> dict:
    return {"Authorization": "Bearer " + mint(SECRET, seller_id, 3600)}


def worker_app(**overrides):
    settings = Settings(store="memory://", broker="kafka://127.0.0.1:1", partitions=1, api_token="op-token",
                        api_jwt_secret=SECRET, **overrides)
    app = create_app(settings)
    app.finalize()
    return app


def calls(app, requests: list[tuple]) -> list[tuple[int, dict, object]]:
    """(method, path, headers[, body bytes]) -> (status, headers, JSON body or text)."""
    async def run():
        async with TestClient(TestServer(app.web.web_app)) as client:
            out = []
            for method, path, headers, *body in requests:
                response = await client.request(method, path, headers=headers, data=body[0] if body else None)
                text = await response.read()
                try:
                    payload = orjson.loads(text)
                except orjson.JSONDecodeError:
                    payload = text
                out.append((response.status, dict(response.headers), payload))
            return out
    return asyncio.run(run())


def test_every_route_is_in_the_openapi_document_which_is_valid_openapi_3_1():
    document = openapi_document()
    validate(document)
    assert document["openapi"].startswith("3.1")
    app = worker_app()
    served = {(resource.canonical, route.method.lower()) for resource in app.web.web_app.router.resources()
              for route in resource if route.method not in ("HEAD", "OPTIONS")}
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == documented
    (status, _, body), = calls(app, [("GET", "/openapi.json", {})])
    assert status == 200 and body == document


@pytest.mark.parametrize("path, headers, status", [
    ("/sellers/s1", {}, 401),
    ("/sellers/s1", {"Authorization": "Bearer wrong"}, 401),
    ("/sellers/s1", {"Authorization": "Bearer " + mint(SECRET, "s1", 60, now=1_000_000)}, 401),  # expired
    ("/sellers/s1/actions", seller("s2"), 403),
    ("/sellers/" + "x" * 129, OPERATOR, 400),
    ("/sellers/a%01b", OPERATOR, 400),
    ("/sellers/a%2F..%2Fb", OPERATOR, 400),
    ("/sellers/..a/history", OPERATOR, 400),
    ("/sellers/a%5Cb", OPERATOR, 400),
    ("/sellers/s1?debug=1", OPERATOR, 400),
    ("/sellers/s1/history?months=0", OPERATOR, 400),
    ("/sellers/s1/history?months=25", OPERATOR, 400),
    ("/sellers/s1/history?months=abc", OPERATOR, 400),
    ("/sellers/s1/history?months=3&months=4", OPERATOR, 400),
    ("/sellers/s1/history?months=24", OPERATOR, 503),  # passed every check: not started
    ("/sellers/s1", seller("s1"), 503),
])
def test_refusals_are_json_4xx_before_anything_is_read(path, headers, status):
    (got, _, body), = calls(worker_app(), [("GET", path, headers)])
    assert got == status and isinstance(body, dict) and body["error"]


@pytest.mark.parametrize("headers, body, status", [
    ({"Content-Type": "text/plain"}, b"[]", 415),
    ({"Content-Type": "application/json"}, b"[{", 400),
    ({"Content-Type": "application/json"}, b'{"type": "buyer_message"}', 400),
    ({"Content-Type": "application/json"}, orjson.dumps([{"type": "buyer_message"}] * 1001), 413),
    ({"Content-Type": "application/json"}, b"[" + b" " * (1 << 20) + b"]", 413),
    ({"Content-Type": "application/json"}, b"[]", 503),  # passed every check
])
def test_what_if_bodies_are_checked_before_anything_is_rated(headers, body, status):
    (got, _, answer), = calls(worker_app(), [("POST", "/sellers/s1/what-if", {**OPERATOR, **headers}, body)])
    assert got == status and answer["error"]


def test_a_caller_past_its_rate_gets_429_with_retry_after_and_others_do_not():
    app = worker_app(api_rate=0.5, api_burst=2)
    answers = calls(app, [("GET", "/sellers/s1", seller("s1"))] * 3 + [("GET", "/sellers/s2", seller("s2"))])
    assert [status for status, _, _ in answers] == [503, 503, 429, 503]
    assert int(answers[2][1]["Retry-After"]) >= 1 and answers[2][2]["error"]


def test_metrics_require_their_token_when_it_is_set():
    app = worker_app(metrics_token="scrape")
    (refused, _, body), (allowed, headers, text) = calls(app, [
        ("GET", "/metrics", OPERATOR), ("GET", "/metrics", {"Authorization": "Bearer scrape"})])
    assert refused == 401 and body["error"]
    assert allowed == 200 and b"starcast_events_total" in text


def test_cors_answers_allowed_origins_only():
    app = worker_app(api_cors_origins=("https://seller.example.com",))
    (pre, headers, _), (bad, _, body), (get, get_headers, _) = calls(app, [
        ("OPTIONS", "/sellers/s1", {"Origin": "https://seller.example.com",
                                    "Access-Control-Request-Method": "GET"}),
        ("OPTIONS", "/sellers/s1", {"Origin": "https://evil.example.com"}),
        ("GET", "/sellers/s1", {**OPERATOR, "Origin": "https://seller.example.com"})])
    assert pre == 204 and headers["Access-Control-Allow-Origin"] == "https://seller.example.com"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    assert bad == 403 and body["error"]
    assert get_headers["Access-Control-Allow-Origin"] == "https://seller.example.com"


def test_the_access_log_has_method_route_and_status_but_no_token_or_id(caplog):
    token = mint(SECRET, "secret-seller", 3600)
    with caplog.at_level("INFO", logger="starcast.access"):
        calls(worker_app(), [("GET", "/sellers/secret-seller", {"Authorization": "Bearer " + token})])
    lines = [r.getMessage() for r in caplog.records if r.name == "starcast.access"]
    assert len(lines) == 1 and lines[0].startswith("GET /sellers/{seller_id} 503 ")
    assert "secret-seller" not in lines[0] and token not in lines[0]


def test_the_workers_access_log_writes_its_lines_in_blocks():
    import io
    import logging

    from streams.service.http import BlockHandler, access_log, install_access_log

    stream = io.StringIO()
    before = (list(access_log.handlers), access_log.propagate, access_log.level)
    try:
        handler = install_access_log(stream)
        assert install_access_log() is handler  # once per process
        access_log.info("%s %s %d %.1f ms", "GET", "/sellers/{seller_id}", 200, 1.25)
        access_log.info("%s %s %d %.1f ms", "GET", "/sellers/{seller_id}/actions", 404, 0.5)
        assert stream.getvalue() == ""  # nothing written per request
        handler.flush()
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2 and lines[0].endswith("[INFO] GET /sellers/{seller_id} 200 1.2 ms")
        assert isinstance(handler, BlockHandler) and not access_log.propagate
        for n in range(handler.limit):  # a full block is written without waiting for the second
            access_log.info("line %d", n)
        assert len(stream.getvalue().splitlines()) == 2 + handler.limit
    finally:
        access_log.handlers[:] = before[0]
        access_log.propagate, access_log.level = before[1], before[2]
        logging.getLogger("starcast.access").setLevel(before[2])
