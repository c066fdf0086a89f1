"""The HTTP API: a seller's forecast and official rating, readiness, and metrics.

Views only read: the tables this worker owns (Faust's table routing forwards a request for a
seller of another worker's partition to that worker) and the processor's clocks. Every error
is a JSON object `{"error": ...}` with a 4xx status.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Callable

import faust
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streams.core.groups import RulebookSelection
from streams.core.rulebook import AnyBook
from streams.service.metrics import Metrics
from streams.service.settings import Settings


def bearer_ok(token: str, header: str | None) -> bool:
    """Whether `header` is `Bearer <token>` (compared in constant time); no token: open."""
    if not token:
        return True
    return hmac.compare_digest((header or "").encode(), f"Bearer {token}".encode())


def register_views(app: faust.App, *, settings: Settings, processor: Any, rulebook: AnyBook,
                   selection: RulebookSelection | None, forecasts: faust.Table, official: faust.Table,
                   started: asyncio.Event, metrics: Metrics, update_gauges: Callable[[], None]) -> None:
    def error(view: faust.web.View, status: int, message: str) -> Any:
        return view.json({"error": message}, status=status)

    def seller_document(view: faust.web.View, request: Any, table: faust.Table, seller_id: str, missing: str) -> Any:
        """A seller's JSON document from a table this worker owns, or a JSON 401/404."""
        if not bearer_ok(settings.api_token, request.headers.get("Authorization")):
            return error(view, 401, "bearer token required")
        data = table.get(seller_id.encode())
        if data is None:
            return error(view, 404, missing)
        return view.bytes(bytes(data), content_type="application/json")

    @app.page("/sellers/{seller_id}")
    class SellerForecast(faust.web.View):
        @app.table_route(table=forecasts, match_info="seller_id")
        async def get(self: faust.web.View, request: Any, *args: Any, **match: Any) -> Any:
            seller_id = match["seller_id"]
            return seller_document(self, request, forecasts, seller_id, f"unknown seller {seller_id!r}")

    @app.page("/sellers/{seller_id}/official")
    class SellerOfficial(faust.web.View):
        @app.table_route(table=official, match_info="seller_id")
        async def get(self: faust.web.View, request: Any, *args: Any, **match: Any) -> Any:
            seller_id = match["seller_id"]
            return seller_document(self, request, official, seller_id,
                                   f"no official rating for seller {seller_id!r} yet")

    @app.page("/healthz")
    class Health(faust.web.View):
        async def get(self, request: Any) -> Any:
            if not started.is_set():
                return self.json({"status": "starting"}, status=503)
            groups = {g.name: g.rulebook.name for g in selection.groups} if selection else {}
            return self.json({"status": "ok", "rulebook": rulebook.name, "groups": groups,
                              "partitions": settings.partitions,
                              "clocks": {str(p): c for p, c in processor.clocks().items()}})

    @app.page("/metrics")
    class MetricsView(faust.web.View):
        async def get(self, request: Any) -> Any:
            update_gauges()
            return self.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])
