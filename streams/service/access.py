"""Who may call the HTTP API, and how often.

- An operator token (`STARCAST_API_TOKEN`, compared in constant time) opens every seller.
- A seller token is a JWT signed with HS256 by `STARCAST_API_JWT_SECRET`, with `sub` = the
  seller id and `exp`; it opens that seller only (403 for another). `starcast token` mints one.
- With neither set, the seller endpoints are open (a local run); `/metrics` asks for
  `STARCAST_METRICS_TOKEN` when that is set, whatever the rest.
- Each caller (the operator, each seller, or everyone together when open) has a token bucket
  of `rate` requests a second and `burst` at once; past it, 429 with `Retry-After`.

No Faust import: the views call `Access` with header values and get a `Principal` or `Denied`.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import jwt

ALGORITHM = "HS256"
MAX_BUCKETS = 10_000  # callers remembered for rate limiting; the least recent is forgotten first


@dataclass(frozen=True)
class Principal:
    kind: str  # "operator", "seller" or "open"
    seller_id: str | None = None

    @property
    def bucket(self) -> str:
        return f"seller:{self.seller_id}" if self.kind == "seller" else self.kind


@dataclass
class Denied(Exception):
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def mint(secret: str, seller_id: str, ttl_seconds: float, now: float | None = None) -> str:
    """A seller token: HS256, `sub` = seller id, `iat` and `exp`."""
    issued = int(time.time() if now is None else now)
    return jwt.encode({"sub": seller_id, "iat": issued, "exp": issued + int(ttl_seconds)}, secret,
                      algorithm=ALGORITHM)


class Access:
    def __init__(self, operator_token: str = "", jwt_secret: str = "", metrics_token: str = "",
                 rate: float = 0.0, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.operator_token = operator_token.encode()
        self.jwt_secret = jwt_secret
        self.metrics_token = metrics_token.encode()
        self.rate, self.burst, self.clock = rate, max(burst, 1), clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    @property
    def open(self) -> bool:
        return not self.operator_token and not self.jwt_secret

    def principal(self, authorization: str | None) -> Principal:
        """Who the Authorization header says the caller is; Denied(401) if nobody valid."""
        if self.open:
            return Principal("open")
        token = _bearer(authorization)
        if token is None:
            raise Denied(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        if self.operator_token and hmac.compare_digest(token.encode(), self.operator_token):
            return Principal("operator")
        if self.jwt_secret:
            try:
                claims = jwt.decode(token, self.jwt_secret, algorithms=[ALGORITHM],
                                    options={"require": ["exp", "sub"]})
            except jwt.ExpiredSignatureError:
                raise Denied(401, "the token has expired", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            except jwt.InvalidTokenError:
                pass
            else:
                if isinstance(claims.get("sub"), str) and claims["sub"]:
                    return Principal("seller", claims["sub"])
        raise Denied(401, "the token is not valid", {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def authorize(self, principal: Principal, seller_id: str) -> None:
        """Denied(403) when a seller's token asks for another seller."""
        if principal.kind == "seller" and principal.seller_id != seller_id:
            raise Denied(403, "this token is for another seller")

    def metrics_allowed(self, authorization: str | None) -> bool:
        if not self.metrics_token:
            return True
        token = _bearer(authorization)
        return token is not None and hmac.compare_digest(token.encode(), self.metrics_token)

    def throttle(self, principal: Principal) -> None:
        """Take one request from the caller's bucket; Denied(429, Retry-After) when empty."""
        if self.rate <= 0:
            return
        key, now, buckets = principal.bucket, self.clock(), self._buckets
        tokens, last = buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            buckets[key] = (tokens, now)
            retry = max(1, math.ceil((1.0 - tokens) / self.rate))
            raise Denied(429, "too many requests", {"Retry-After": str(retry)})
        buckets[key] = (tokens - 1.0, now)
        while len(buckets) > MAX_BUCKETS:
            buckets.popitem(last=False)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
