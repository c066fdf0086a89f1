"""Hostile input: mutations of valid events plus garbage, each with the rejection it must get.

Every generated message is something a broken or malicious producer could publish; `None`
as the expected reason means the message is valid (or harmlessly old) and must be accepted.
"""

from __future__ import annotations

import random

import orjson

from streams.core.contract import MAX_MESSAGE_BYTES, SCHEMAS


def _dumps(obj) -> bytes:
    return orjson.dumps(obj)


def mutations(event: dict, rnd: random.Random) -> list[tuple[bytes | None, str]]:
    """(raw bytes, expected rejection reason) for one valid event."""
    e = dict(event)
    field = rnd.choice([k for k in e if k not in ("type",)])
    required = rnd.choice([k for k in SCHEMAS[e["type"]]["required"] if k != "type"])
    wrong = {"event_id": 12, "seller_id": ["x"], "ts": 1700000000}.get(field, {"nested": True})
    deep = "[" * 2000 + "]" * 2000
    return [
        (_dumps({**e, field: wrong}), "schema"),  # wrong type
        (_dumps({k: v for k, v in e.items() if k != required}), "schema"),  # missing field
        (_dumps({**e, "event_id": "x" * 200}), "schema"),  # too long
        (_dumps({**e, "seller_id": "s" * 65}), "schema"),
        (_dumps({**e, "type": "unknown_kind"}), "unknown_type"),
        (_dumps({**e, "ts": "2999-01-01T00:00:00Z"}), "future_ts"),
        (_dumps({**e, "ts": "not a time"}), "schema"),
        (_dumps({**e, "ts": "2026-02-30T00:00:00Z"}), "schema"),
        (_dumps({**e, "padding": "p" * MAX_MESSAGE_BYTES}), "too_large"),
        (_dumps(e)[:-1] + b', "extra": ' + deep.encode() + b"}", "invalid_json"),  # nesting > 1024
        (_dumps(e)[:-1] + b', "amount": NaN}', "invalid_json"),
        (_dumps(e)[:-1] + b', "x": Infinity}', "invalid_json"),
        (_dumps(e).replace(b'"', b"'", 2), "invalid_json"),
        (b"\xff\xfe" + _dumps(e), "invalid_json"),  # not UTF-8
        (_dumps([e]), "not_object"),
        (_dumps(e)[: rnd.randrange(1, 20)], "invalid_json"),  # truncated
        (bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))), "invalid_json"),
        (b"", "invalid_json"),  # an empty value
        (None, "invalid_json"),  # a null value (a tombstone): crashed the agent once
    ]


def hostile_stream(valid: list[dict], count: int, seed: int = 0) -> list[tuple[bytes | None, str, str]]:
    """`count` hostile messages (raw, expected reason, seller key) drawn from mutations of `valid`."""
    rnd = random.Random(seed)
    out = []
    while len(out) < count:
        event = rnd.choice(valid)
        raw, reason = rnd.choice(mutations(event, rnd))
        out.append((raw, reason, event["seller_id"]))
    return out
