"""The HTTP API: a seller's forecast, official rating, history, actions and what-if; readiness,
the OpenAPI document and metrics (README "HTTP API"; the contract is `openapi.json` beside this
module, served at /openapi.json).

- Seller endpoints answer from the worker that owns the seller's partition: a request reaching
  another worker is forwarded there, method, body and all (marked so it is never forwarded
  twice).
- Views only read: the tables this worker owns, and the processor's states and clocks; a
  what-if rates a copy of the state.
- Every error is a JSON object `{"error": ...}` with a 4xx status (503 while starting or while
  a partition has no owner); an unexpected exception is logged and answered with a JSON 500.
- Access (tokens, rate limits) is `access.py`'s; one access-log line per request gives method,
  route template, status and latency, never a token or an id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from importlib import resources
from typing import Any, Awaitable, Callable

import aiohttp
import faust
import orjson
from aiohttp import web as aiohttp_web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from yarl import URL

from streams.core.groups import RulebookSelection
from streams.core.projection import first_drop
from streams.core.rulebook import AnyBook
from streams.core.timeutil import format_ts, parse_ts
from streams.core.whatif import MAX_EVENTS, hypothetical, what_if
from streams.service import history as monthly
from streams.service import kafka
from streams.service.access import Access, Denied
from streams.service.live import HEARTBEAT, Hub
from streams.service.metrics import Metrics
from streams.service.page import overview_page, seller_page
from streams.service.settings import Settings

log = logging.getLogger("starcast")
access_log = logging.getLogger("starcast.access")


class BlockHandler(logging.Handler):
    """The access log's handler in a worker: each record formatted plainly and the lines written
    in blocks (`flush`: a worker timer every second, and at every `limit` lines), never with a
    colour formatter and a flush per request: under load those took 16 % of the worker."""

    def __init__(self, stream: Any = None, limit: int = 512) -> None:
        super().__init__(logging.INFO)
        self.stream, self.limit = stream, limit
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if len(self.lines) >= self.limit:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            lines, self.lines = self.lines, []
            stream = self.stream or sys.stderr
            stream.write("\n".join(lines) + "\n")
            stream.flush()


def install_access_log(stream: Any = None) -> BlockHandler:
    """Give the access log its own block-writing handler (the worker's log stream otherwise);
    once: a second call returns the first handler."""
    for existing in access_log.handlers:
        if isinstance(existing, BlockHandler):
            return existing
    handler = BlockHandler(stream)
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
    return handler

MAX_BODY = 1 << 20  # bytes a what-if body may have
SELLER_ID_MAX_BYTES = 128
FORWARDED = "X-Starcast-Forwarded"
DEFAULT_MONTHS = 12
TOKEN_COOKIE = "starcast_token"


def openapi_document() -> dict[str, Any]:
    return json.loads((resources.files("streams.service") / "openapi.json").read_text())


def check_seller_id(seller_id: str) -> None:
    """Denied(400) for a seller id no seller can have."""
    if not seller_id:
        raise Denied(400, "the seller id is empty")
    if len(seller_id.encode("utf-8", "surrogatepass")) > SELLER_ID_MAX_BYTES:
        raise Denied(400, f"the seller id is longer than {SELLER_ID_MAX_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in seller_id):
        raise Denied(400, "the seller id has control characters")
    if "/" in seller_id or "\\" in seller_id or seller_id.startswith("."):
        raise Denied(400, "the seller id is not a plain name (no /, no \\, not starting with .)")


def check_query(request: Any, allowed: frozenset[str] = frozenset()) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise Denied(400, f"unknown query parameter {unknown[0]!r}")
    for name in allowed:
        if len(request.query.getall(name, [])) > 1:
            raise Denied(400, f"query parameter {name!r} given more than once")


def authorization_of(request: Any) -> str | None:
    """The Authorization header, or a bearer made of the `token` query parameter or cookie
    (a browser's EventSource and links cannot set headers)."""
    token = request.query.get("token") or request.cookies.get(TOKEN_COOKIE)
    return request.headers.get("Authorization") or (f"Bearer {token}" if token else None)


def months_param(request: Any) -> int:
    text = request.query.get("months")
    if text is None:
        return DEFAULT_MONTHS
    if not text.isdigit() or not 1 <= int(text) <= monthly.KEPT:
        raise Denied(400, f"months must be an integer from 1 to {monthly.KEPT}")
    return int(text)


def register_views(app: faust.App, *, settings: Settings, processor: Any, rulebook: AnyBook,
                   selection: RulebookSelection | None, hub: Hub, forecasts: faust.Table, official: faust.Table,
                   history: faust.Table, started: asyncio.Event, metrics: Metrics,
                   update_gauges: Callable[[], None]) -> None:
    access = Access(settings.api_token, settings.api_jwt_secret, settings.metrics_token, settings.api_rate,
                    settings.api_burst)
    origins = frozenset(settings.api_cors_origins)
    document = orjson.dumps(openapi_document())

    class Endpoint(faust.web.View):
        """A view whose errors are JSON, with CORS for allowed origins and an access-log line."""

        template = ""

        async def dispatch(self, request: Any) -> Any:
            started_at = time.monotonic()
            origin = request.headers.get("Origin")
            try:
                if request.method == "OPTIONS":
                    response = self.preflight(origin)
                elif request.method.lower() not in self.methods:
                    raise Denied(405, f"method {request.method} not allowed")
                else:
                    response = await super().dispatch(request)
            except Denied as exc:
                response = self.json({"error": exc.message}, status=exc.status, headers=dict(exc.headers))
            except aiohttp_web.HTTPRequestEntityTooLarge:
                response = self.json({"error": f"the body is larger than {MAX_BODY} bytes"}, status=413)
            except Exception as exc:  # noqa: BLE001 - answered as JSON; the cause goes to the log
                log.exception("starcast: %s %s failed: %s", request.method, self.template, type(exc).__name__)
                response = self.json({"error": "internal error"}, status=500)
            if origin and origin in origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Vary"] = "Origin"
            access_log.info("%s %s %d %.1f ms", request.method, self.template, response.status,
                            (time.monotonic() - started_at) * 1000)
            return response

        async def options(self, request: Any, **_: Any) -> Any:  # CORS preflight (dispatch answers it)
            return self.preflight(request.headers.get("Origin"))

        def preflight(self, origin: str | None) -> Any:
            if not origin or origin not in origins:
                raise Denied(403, "origin not allowed")
            return self.bytes(b"", status=204, headers={
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600"})

    def admit(request: Any, seller_id: str, query: frozenset[str]) -> str | None:
        """Check the id, the caller (a `token` query parameter or cookie counts when `query`
        allows `token`) and the query; the Authorization the caller gave."""
        check_seller_id(seller_id)
        authorization = authorization_of(request) if "token" in query else request.headers.get("Authorization")
        principal = access.principal(authorization)
        access.authorize(principal, seller_id)
        access.throttle(principal)
        check_query(request, query)
        return authorization

    async def for_seller(view: Endpoint, request: Any, seller_id: str, local: Callable[[Any], Awaitable[Any]],
                         query: frozenset[str] = frozenset(), check: Callable[[Any], Any] | None = None) -> Any:
        """Check the id, the caller and the request's shape (a POST's body: a JSON array of at
        most MAX_EVENTS, given to `local`), then answer here if this worker owns the seller."""
        authorization = admit(request, seller_id, query)
        if check is not None:
            check(request)
        body, payload = None, None
        if request.method == "POST":
            body, payload = await json_array(request)
        if not started.is_set():
            raise Denied(503, "starting", {"Retry-After": "1"})
        forwarded = await forward(view, request, seller_id, body, authorization)
        return forwarded if forwarded is not None else await local(payload)

    async def forward(view: Endpoint, request: Any, seller_id: str, body: bytes | None,
                      authorization: str | None) -> Any:
        """The owner's answer, or None when this worker owns the seller (or the request was
        forwarded already)."""
        if request.headers.get(FORWARDED):
            return None
        try:
            owner = owner_of(seller_id)
        except KeyError:
            raise Denied(503, "the seller's partition has no owner right now", {"Retry-After": "1"})
        if owner is None:
            return None
        headers = {name: request.headers[name] for name in ("Content-Type",) if name in request.headers}
        if authorization:
            headers["Authorization"] = authorization
        headers[FORWARDED] = "1"
        url = request.url.with_host(owner.host).with_port(owner.port)
        async with app.http_client.request(request.method, url, headers=headers, data=body) as answer:
            payload = await answer.read()
            response = view.bytes(payload, content_type=answer.content_type, status=answer.status)
            if "Retry-After" in answer.headers:
                response.headers["Retry-After"] = answer.headers["Retry-After"]
            return response

    def owner_of(seller_id: str) -> URL | None:
        """The URL of the worker owning the seller's partition, None when it is this one;
        KeyError when no worker owns it right now."""
        owner = URL(str(app.router.key_store(forecasts.name, seller_id)))
        here = URL(str(app.conf.canonical_url))
        return None if (owner.host, owner.port) == (here.host, here.port) else owner

    async def json_array(request: Any) -> tuple[bytes, list]:
        if request.content_type != "application/json":
            raise Denied(415, "the body must be application/json")
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise Denied(413, f"the body is larger than {MAX_BODY} bytes")
        body = await request.read()
        if len(body) > MAX_BODY:
            raise Denied(413, f"the body is larger than {MAX_BODY} bytes")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Denied(400, "the body is not valid JSON")
        if not isinstance(payload, list):
            raise Denied(400, "the body must be a JSON array of events")
        if len(payload) > MAX_EVENTS:
            raise Denied(413, f"at most {MAX_EVENTS} events")
        return body, payload

    def document_of(table: faust.Table, seller_id: str) -> dict | None:
        data = table.get(seller_id.encode())
        return None if data is None else orjson.loads(bytes(data))

    def seller_clock(seller_id: str) -> tuple[Any, Any, Any, int]:
        """The seller's processor, engine, state (None if not held) and partition clock (the
        wall clock before the partition saw any event)."""
        rater = processor.processor_for(seller_id)
        engine, state, clock = rater.lookup(seller_id)
        return rater, engine, state, clock if clock is not None else int(time.time() * 1000)

    def rated(seller_id: str) -> tuple[dict, Any, Any, Any, int, int]:
        """The seller's published forecast, processor, engine, state (None if not held), the
        partition clock, and the later of that clock and the forecast's as_of; Denied(404)
        without a forecast."""
        rating = document_of(forecasts, seller_id)
        if rating is None:
            raise Denied(404, f"unknown seller {seller_id!r}")
        rater, engine, state, clock = seller_clock(seller_id)
        return rating, rater, engine, state, clock, max(clock, parse_ts(rating["as_of"]))

    def official_months(seller_id: str, rater: Any, clock: int, months: int) -> list[dict]:
        """The seller's latest `months` official records, newest first (the current month, not
        frozen yet, is looked at too)."""
        found = (history.get(monthly.key(seller_id, month))
                 for month in monthly.recent_months(rater.month_of(clock), months + 1))
        return [orjson.loads(bytes(data)) for data in found if data is not None][:months]

    def stored(table: faust.Table, missing: str) -> type[Endpoint]:
        """A view of the seller's document in `table`, as stored (404: `missing`)."""
        class Stored(Endpoint):
            async def get(self, request: Any, seller_id: str) -> Any:
                async def local(_: Any) -> Any:
                    data = table.get(seller_id.encode())
                    if data is None:
                        raise Denied(404, missing.format(seller_id=seller_id))
                    return self.bytes(bytes(data), content_type="application/json")
                return await for_seller(self, request, seller_id, local)
        return Stored

    @app.page("/sellers/{seller_id}")
    class SellerForecast(stored(forecasts, "unknown seller {seller_id!r}")):  # type: ignore[misc]
        template = "/sellers/{seller_id}"

    @app.page("/sellers/{seller_id}/official")
    class SellerOfficial(stored(official, "no official rating for seller {seller_id!r} yet")):  # type: ignore[misc]
        template = "/sellers/{seller_id}/official"

    @app.page("/sellers/{seller_id}/history")
    class SellerHistory(Endpoint):
        template = "/sellers/{seller_id}/history"

        async def get(self, request: Any, seller_id: str) -> Any:
            async def local(_: Any) -> Any:
                rater, _, _, clock = seller_clock(seller_id)
                records = official_months(seller_id, rater, clock, months_param(request))
                if not records and forecasts.get(seller_id.encode()) is None:
                    raise Denied(404, f"unknown seller {seller_id!r}")
                return self.json({"seller_id": seller_id, "months": records})
            return await for_seller(self, request, seller_id, local, frozenset({"months"}), months_param)

    @app.page("/sellers/{seller_id}/actions")
    class SellerActions(Endpoint):
        template = "/sellers/{seller_id}/actions"

        async def get(self, request: Any, seller_id: str) -> Any:
            async def local(_: Any) -> Any:
                rating, _, engine, state, _, as_of = rated(seller_id)
                if state is None:
                    raise Denied(404, f"unknown seller {seller_id!r}")
                return self.json({"seller_id": seller_id, "as_of": format_ts(as_of),
                                  **seller_actions(engine.model.actions(seller_id, state, rating, as_of), rating)})
            return await for_seller(self, request, seller_id, local)

    @app.page("/sellers/{seller_id}/what-if")
    class SellerWhatIf(Endpoint):
        template = "/sellers/{seller_id}/what-if"

        async def post(self, request: Any, seller_id: str) -> Any:
            async def local(objects: Any) -> Any:
                _, engine, state, clock = seller_clock(seller_id)
                events, invalid = hypothetical(seller_id, objects, clock)
                rating = None
                if not invalid:
                    rating, invalid = what_if(engine.model, seller_id, state, events, clock)
                if invalid:
                    return self.json({"error": "invalid events", "invalid": [i.to_json() for i in invalid]},
                                     status=400)
                return self.json(rating)
            return await for_seller(self, request, seller_id, local)

    @app.page("/sellers/{seller_id}/stream")
    class SellerStream(Endpoint):
        """Server-Sent Events: the current forecast first, then the seller's forecasts,
        warnings and official records as they are published, a comment every 15 s. Served by
        any worker (each reads the output topics itself). EventSource cannot set headers, so
        the token may also come as `?token=` or the `starcast_token` cookie."""

        template = "/sellers/{seller_id}/stream"

        async def get(self, request: Any, seller_id: str) -> Any:
            authorization = admit(request, seller_id, frozenset({"token"}))
            if not started.is_set():
                raise Denied(503, "starting", {"Retry-After": "1"})
            response = aiohttp_web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            origin = request.headers.get("Origin")
            if origin and origin in origins:
                response.headers["Access-Control-Allow-Origin"] = origin
            subscriber, missed = hub.subscribe(seller_id, request.headers.get("Last-Event-ID"))
            try:
                await response.prepare(request)
                if missed is None:  # a new stream, or one whose last event is no longer kept
                    current = await current_forecast(request, seller_id, authorization)
                    snapshot = b"id: %s\nevent: snapshot\ndata: %s\n\n" % (
                        (hub.latest_id(seller_id) or "0").encode(), current or b"null")
                    await response.write(snapshot)
                else:
                    for event in missed:
                        await response.write(event.encode())
                while not subscriber.dropped.is_set():
                    event = await subscriber.queue.get()  # the hub's heartbeat or end wakes it too
                    transport = request.transport
                    if event is None or transport is None or transport.is_closing():  # ended, or gone
                        break
                    await response.write(b": heartbeat\n\n" if event is HEARTBEAT else event.encode())
                return response  # dropped for falling behind: the client reconnects with Last-Event-ID
            except ConnectionResetError:  # the client went away
                return response
            finally:
                hub.unsubscribe(seller_id, subscriber)

    async def current_forecast(request: Any, seller_id: str, authorization: str | None) -> bytes | None:
        """The seller's forecast from the worker that owns it (this one or another)."""
        data = forecasts.get(seller_id.encode())
        if data is not None:
            return bytes(data)
        try:
            owner = owner_of(seller_id)
        except KeyError:
            return None
        if owner is None:
            return None
        headers = {FORWARDED: "1", **({"Authorization": authorization} if authorization else {})}
        url = request.url.with_host(owner.host).with_port(owner.port).with_path(f"/sellers/{seller_id}").with_query({})
        try:
            async with app.http_client.get(url, headers=headers) as answer:
                return await answer.read() if answer.status == 200 else None
        except aiohttp.ClientError:
            return None

    @app.page("/sellers/{seller_id}/page")
    class SellerPage(Endpoint):
        template = "/sellers/{seller_id}/page"

        async def get(self, request: Any, seller_id: str) -> Any:
            async def local(_: Any) -> Any:
                rating, rater, engine, state, clock, as_of = rated(seller_id)
                found = engine.model.actions(seller_id, state, rating, as_of) if state is not None else None
                months = official_months(seller_id, rater, clock, DEFAULT_MONTHS)
                html = seller_page(rating, found, months, request.query.get("token"))
                return self.bytes(html.encode(), content_type="text/html")
            return await for_seller(self, request, seller_id, local, frozenset({"token"}))

    @app.page("/")
    class Overview(Endpoint):
        template = "/"

        async def get(self, request: Any) -> Any:
            check_query(request, frozenset({"token"}))
            principal = access.principal(authorization_of(request))
            if principal.kind == "seller":
                raise Denied(403, "the overview is for operators")
            access.throttle(principal)
            # From the forecasts table (this worker's partitions): memory holds only hot sellers.
            ratings = sorted((orjson.loads(bytes(v)) for _, v in kafka.stored_items(forecasts)),
                             key=lambda r: (-r["stars"], r["seller_id"]))
            html = overview_page(ratings, request.query.get("token"))
            return self.bytes(html.encode(), content_type="text/html")

    @app.page("/openapi.json")
    class OpenApi(Endpoint):
        template = "/openapi.json"

        async def get(self, request: Any) -> Any:
            return self.bytes(document, content_type="application/json")

    @app.page("/healthz")
    class Health(Endpoint):
        template = "/healthz"

        async def get(self, request: Any) -> Any:
            if not started.is_set():
                return self.json({"status": "starting"}, status=503)
            groups = {g.name: g.rulebook.name for g in selection.groups} if selection else {}
            return self.json({"status": "ok", "rulebook": rulebook.name, "groups": groups,
                              "partitions": settings.partitions,
                              "clocks": {str(p): c for p, c in processor.clocks().items()}})

    @app.page("/metrics")
    class MetricsView(Endpoint):
        template = "/metrics"

        async def get(self, request: Any) -> Any:
            if not access.metrics_allowed(request.headers.get("Authorization")):
                raise Denied(401, "the metrics token is required", {"WWW-Authenticate": "Bearer"})
            try:
                update_gauges()
            except Exception as exc:  # noqa: BLE001 - e.g. the consumer not started yet: serve what is known
                log.debug("starcast: gauges not updated for a scrape: %r", exc)
            return self.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def seller_actions(found: dict[str, Any], rating: dict[str, Any]) -> dict[str, Any]:
    """The actions document: the model's findings, each indicator's next star, and the
    projection's first drop with the indicators that cause it."""
    drop = first_drop(rating)
    if drop is not None:
        now = rating["indicators"]
        drop = {**drop, "cause": sorted(name for name, block in drop["indicators"].items()
                                        if name in now and block["stars"] < now[name]["stars"])}
    return {
        "unanswered_conversations": found.get("unanswered_conversations", []),
        "next_stars": [{"indicator": name, "value": block.get("value"), "stars": block.get("stars"),
                        "next_star": block.get("next_star")} for name, block in rating["indicators"].items()],
        "first_drop": drop,
        "to_keep": found.get("to_keep", []),
        "spend_leaving": found.get("spend_leaving", []),
    }
