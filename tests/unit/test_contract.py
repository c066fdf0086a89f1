"""The input contract: schemas are valid 2020-12, the compiled checks agree with a reference
validator, and every rejection has a machine-readable reason and names the field."""

from __future__ import annotations

import copy

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import contract
from streams.core.contract import Rejected, compile_schema, parse_event
from streams.core.timeutil import DAY, parse_ts
from tests.conftest import Events as E
from tests.conftest import at

VALID = {
    "buyer_message": E.message(at(days=1)),
    "seller_reply": E.reply(at(days=1), "c"),
    "spam_action": E.spam(at(days=1), "c"),
    "ta_order": E.order(at(days=1), "b", "o"),
    "penalty": E.penalty(at(days=1), "x", 6),
    "store_visit": E.visit(at(days=1), "v"),
    "product_update": E.product(at(days=1), "p"),
    "marketing": E.marketing(at(days=1), "kwa_spend", amount=10, currency="USD"),
    "seller_profile": E.profile(at(days=1), "MY", "apparel"),
    # the score models' events (docs/spec.md §1.2)
    "product_quality": E.quality(at(days=1), "p", 72.5),
    "certificate": E.certificate(at(days=1), "iso"),
    "search_stats": E.search(at(days=1), "2026-03-02", 100, 3),
    "order_fulfilment": E.fulfil(at(days=1), "o", at(days=2)),
    "buyer_evaluation": E.evaluation(at(days=1), "o", "b", (4, 5, 3)),
    "dispute": E.dispute(at(days=1), "o"),
    "export_signal": E.export(at(days=1), "o"),
}


def test_every_event_type_of_the_spec_has_a_schema_and_topic():
    assert set(contract.SCHEMAS) == set(VALID)
    assert contract.TOPICS["buyer_message"] == "buyer-messages"
    assert contract.TOPICS["marketing"] == "marketing-events"
    for schema in contract.SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_examples_pass_both_validators(kind):
    event = parse_event(orjson.dumps(VALID[kind]))
    assert event.type == kind and event.ts == parse_ts(VALID[kind]["ts"])
    jsonschema.Draft202012Validator(contract.SCHEMAS[kind]).validate(VALID[kind])


@pytest.mark.parametrize("raw, reason, field", [
    (b"not json", "invalid_json", None),
    (b"\xff\xfe{}", "invalid_json", None),
    (b'{"a": NaN}', "invalid_json", None),
    (b"[1, 2]", "not_object", None),
    (b'{"type": "nope", "event_id": "e", "seller_id": "s", "ts": "2026-03-01T00:00:00Z"}', "unknown_type", "type"),
    (b'{"event_id": "e", "seller_id": "s", "ts": "2026-03-01T00:00:00Z"}', "schema", "type"),
    (b"x" * (contract.MAX_MESSAGE_BYTES + 1), "too_large", None),
])
def test_undecodable_input(raw, reason, field):
    with pytest.raises(Rejected) as info:
        parse_event(raw)
    assert info.value.reason == reason
    if field:
        assert info.value.message.startswith(field)


def mutated(event_type, **changes):
    event = copy.deepcopy(VALID[event_type])
    for key, value in changes.items():
        if value is ...:
            event.pop(key)
        else:
            event[key] = value
    return event


@pytest.mark.parametrize("event, field", [
    (mutated("buyer_message", buyer_id=...), "buyer_id"),
    (mutated("buyer_message", channel="fax"), "channel"),
    (mutated("ta_order", amount=-1), "amount"),
    (mutated("ta_order", amount="12"), "amount"),
    (mutated("ta_order", currency="usd"), "currency"),
    (mutated("ta_order", status="lost"), "status"),
    (mutated("penalty", points=1.5), "points"),
    (mutated("penalty", points=True), "points"),
    (mutated("seller_reply", manual="yes"), "manual"),
    (mutated("store_visit", ts="2026-03-01T00:00:00"), "ts"),  # no offset
    (mutated("store_visit", ts="2026-02-30T00:00:00Z"), "ts"),  # no such day
    (mutated("store_visit", seller_id="s" * 65), "seller_id"),
    (mutated("store_visit", event_id="e" * 129), "event_id"),
    (mutated("store_visit", event_id=""), "event_id"),
    (mutated("marketing", amount=...), "amount"),
    (mutated("marketing", kind="showcases"), "all_open"),
    (mutated("seller_profile", region="Malaysia"), "region"),
])
def test_schema_rejections_name_the_field(event, field):
    with pytest.raises(Rejected) as info:
        parse_event(orjson.dumps(event))
    assert info.value.reason == "schema"
    assert info.value.message.startswith(field + ":"), info.value.message


def test_future_ts_is_rejected_relative_to_the_clock():
    clock = parse_ts(VALID["store_visit"]["ts"]) - DAY
    parse_event(orjson.dumps(VALID["store_visit"]), clock=clock)  # exactly a day ahead: accepted
    with pytest.raises(Rejected) as info:
        parse_event(orjson.dumps(VALID["store_visit"]), clock=clock - 1)
    assert info.value.reason == "future_ts"


def test_integral_floats_are_integers_as_json_schema_says():
    assert parse_event(orjson.dumps(mutated("penalty", points=6.0))).body["points"] == 6.0


def test_an_unsupported_keyword_fails_loudly():
    with pytest.raises(ValueError, match="oneOf"):
        compile_schema({"oneOf": [{"type": "string"}]})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["", "x" * 200, "2026-03-01T00:00:00Z", "USD", "MY", "placed"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=5,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(VALID)), st.data())
def test_compiled_checks_agree_with_the_reference_validator(kind, data):
    event = copy.deepcopy(VALID[kind])
    for _ in range(data.draw(st.integers(0, 3))):
        field = data.draw(st.sampled_from(sorted(contract.SCHEMAS[kind]["properties"]) + ["extra"]))
        if data.draw(st.booleans()) and field in event:
            del event[field]
        else:
            event[field] = data.draw(json_values)
    reference_ok = jsonschema.Draft202012Validator(
        contract.SCHEMAS[kind], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).is_valid(event)
    try:
        contract.validate(event)
        ours_ok = True
    except Rejected as exc:
        ours_ok = False
        assert exc.reason in ("schema", "unknown_type")
    if event.get("type") == kind:
        assert ours_ok == reference_ok, event


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_rejected(raw):
    try:
        parse_event(raw)
    except Rejected as exc:
        assert exc.reason in contract.REASONS


@pytest.mark.parametrize("raw, expected", [
    (orjson.dumps({"type": "buyer_message", "ts": "2026-03-01T10:00:00.123Z"}), parse_ts("2026-03-01T10:00:00.123Z")),
    (orjson.dumps({"ts": "2026-03-01T18:00:00+08:00", "seller_id": "s"}), parse_ts("2026-03-01T10:00:00Z")),
    (b"not json", None), (b"[1, 2]", None), (b'{"ts": 5}', None), (b'{"ts": "yesterday"}', None),
    (b'{"ts": "2026-13-40T00:00:00Z"}', None), (b"{}", None), (None, None),
    (b'{"ts": "2026-03-01T10:00:00Z", "pad": "' + b"x" * contract.MAX_MESSAGE_BYTES + b'"}', None),
])
def test_event_time_reads_the_claimed_ts_or_none_never_raising(raw, expected):
    """The intake orders records by it before validation: whatever the bytes, no exception."""
    assert contract.event_time(raw) == expected
