"""API access (streams/service/access.py): operator and seller tokens, 401/403, the metrics
token, and the per-caller rate limit."""

from __future__ import annotations

import jwt
import pytest

from streams.service.access import Access, Denied, Principal, mint

SECRET = "a-secret-of-at-least-32-bytes-long!!"


def denied(call) -> Denied:
    with pytest.raises(Denied) as info:
        call()
    return info.value


def test_the_operator_token_opens_every_seller_and_only_the_exact_token_does():
    access = Access(operator_token="op-token", jwt_secret=SECRET)
    who = access.principal("Bearer op-token")
    assert who == Principal("operator")
    access.authorize(who, "anyone")  # no exception
    assert denied(lambda: access.principal("Bearer op-token2")).status == 401
    assert denied(lambda: access.principal("Basic op-token")).status == 401
    assert denied(lambda: access.principal(None)).status == 401


def test_a_seller_token_opens_its_own_seller_only():
    access = Access(jwt_secret=SECRET)
    who = access.principal("Bearer " + mint(SECRET, "s1", 3600))
    assert who == Principal("seller", "s1")
    access.authorize(who, "s1")
    assert denied(lambda: access.authorize(who, "s2")).status == 403


def test_expired_forged_and_incomplete_tokens_get_401():
    access = Access(jwt_secret=SECRET)
    expired = mint(SECRET, "s1", 60, now=1_000_000)
    assert "expired" in denied(lambda: access.principal("Bearer " + expired)).message
    forged = mint("another-secret-of-32-bytes-or-more!!", "s1", 3600)
    assert denied(lambda: access.principal("Bearer " + forged)).status == 401
    no_exp = jwt.encode({"sub": "s1"}, SECRET, algorithm="HS256")
    assert denied(lambda: access.principal("Bearer " + no_exp)).status == 401
    none_alg = jwt.encode({"sub": "s1", "exp": 9_999_999_999}, None, algorithm="none")
    assert denied(lambda: access.principal("Bearer " + none_alg)).status == 401


def test_with_no_token_configured_the_seller_endpoints_are_open():
    access = Access()
    assert access.open and access.principal(None) == Principal("open")


def test_metrics_ask_for_their_own_token_when_set():
    assert Access().metrics_allowed(None)
    access = Access(operator_token="op", metrics_token="scrape")
    assert access.metrics_allowed("Bearer scrape")
    assert not access.metrics_allowed("Bearer op") and not access.metrics_allowed(None)


def test_each_caller_has_its_own_bucket_and_is_told_when_to_retry():
    now = [0.0]
    access = Access(operator_token="op", jwt_secret=SECRET, rate=2.0, burst=3, clock=lambda: now[0])
    s1, s2 = Principal("seller", "s1"), Principal("seller", "s2")
    for _ in range(3):
        access.throttle(s1)
    refused = denied(lambda: access.throttle(s1))
    assert refused.status == 429 and refused.headers["Retry-After"] == "1"
    access.throttle(s2)  # another seller is not held back
    now[0] += 0.5  # one token back at 2 a second
    access.throttle(s1)
    assert denied(lambda: access.throttle(s1)).status == 429
