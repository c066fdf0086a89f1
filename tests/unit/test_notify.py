"""The webhook notifier's delivery step (streams/notify.py): signed POSTs, retried with backoff
on 5xx, 429, timeouts and refused connections, given up at once on a refusal."""

from __future__ import annotations

import asyncio
import random

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from streams.notify import Options, backoff, post, signature, verify

SECRET = "webhook-secret"


def test_the_signature_is_hmac_sha256_of_the_body_and_verifies_in_constant_time():
    sig = signature(SECRET, b'{"a":1}')
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify(SECRET, b'{"a":1}', sig)
    assert not verify(SECRET, b'{"a":2}', sig) and not verify("other", b'{"a":1}', sig) and not verify(SECRET, b"", None)


def test_backoff_is_full_jitter_under_an_exponential_cap():
    rng = random.Random(1)
    for attempt in range(1, 12):
        waits = [backoff(attempt, 0.5, 30.0, rng) for _ in range(200)]
        bound = min(30.0, 0.5 * 2 ** (attempt - 1))
        assert all(0 <= w <= bound for w in waits) and max(waits) > bound / 2


def serve(answers: list):
    """A receiver answering each POST with the next of `answers` (a status, or "slow")."""
    seen: list[tuple[bytes, dict]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((await request.read(), dict(request.headers)))
        answer = answers.pop(0) if answers else 200
        if answer == "slow":
            await asyncio.sleep(1)
            answer = 200
        return web.Response(status=answer)

    app = web.Application()
    app.router.add_post("/hook", handler)
    return TestServer(app), seen


def deliver(answers: list, tries: int = 4) -> tuple:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    async def run():
        server, seen = serve(answers)
        await server.start_server()
        try:
            options = Options(str(server.make_url("/hook")), SECRET, tries=tries, timeout=0.3)
            async with aiohttp.ClientSession() as session:
                outcome = await post(session, options, b'{"seq":1}', {"X-Starcast-Idempotency-Key": "t/0/1"},
                                     sleep=fake_sleep, rng=random.Random(3))
        finally:
            await server.close()
        return outcome, seen, waits

    return asyncio.run(run())


def test_a_5xx_then_a_timeout_are_retried_until_delivered_with_the_same_key_and_signature():
    outcome, seen, waits = deliver([500, "slow", 200])
    assert outcome.delivered and outcome.tries == 3 and len(waits) == 2
    assert {headers["X-Starcast-Idempotency-Key"] for _, headers in seen} == {"t/0/1"}
    assert all(verify(SECRET, body, headers["X-Starcast-Signature"]) for body, headers in seen)


def test_a_refusal_is_not_retried_and_too_many_failures_give_up_with_the_last_error():
    refused, seen, waits = deliver([400])
    assert not refused.delivered and refused.tries == 1 and refused.error == "HTTP 400" and not waits
    exhausted, seen, waits = deliver([503, 429, 500, 502], tries=4)
    assert not exhausted.delivered and exhausted.tries == 4 and exhausted.error == "HTTP 502" and len(waits) == 3


def test_a_refused_connection_is_retried_then_given_up():
    async def run():
        options = Options("http://127.0.0.1:9/hook", SECRET, tries=3, timeout=0.3)
        async with aiohttp.ClientSession() as session:
            async def no_wait(_: float) -> None:
                return None
            return await post(session, options, b"{}", {}, sleep=no_wait)

    outcome = asyncio.run(run())
    assert not outcome.delivered and outcome.tries == 3 and "Connect" in outcome.error
