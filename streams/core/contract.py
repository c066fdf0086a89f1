"""The input contract: JSON Schema files in `schemas/` compiled into plain Python checks.

`schemas/*.json` (JSON Schema 2020-12) stay the single source of truth. A general validator
costs tens of microseconds per event, so the subset of keywords the contract uses is compiled
once into closures (a few microseconds per event); `tests/test_contract.py` cross-checks the
compiled checks against the reference `jsonschema` validator on generated input. A schema that
uses a keyword outside the subset fails to compile instead of being silently half-checked.

Every rejection carries a machine-readable `reason` and a message naming the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson

from streams.core.timeutil import DAY, parse_ts

SCHEMA_DIR = Path(__file__).with_name("contract_schemas")

MAX_MESSAGE_BYTES = 16 * 1024
"""Largest accepted event; real events are a few hundred bytes."""

# Reasons (bounded set: they are metric label values).
INVALID_JSON = "invalid_json"
TOO_LARGE = "too_large"
NOT_OBJECT = "not_object"
UNKNOWN_TYPE = "unknown_type"
SCHEMA = "schema"
FUTURE_TS = "future_ts"
UNKNOWN_CURRENCY = "unknown_currency"
REASONS = (INVALID_JSON, TOO_LARGE, NOT_OBJECT, UNKNOWN_TYPE, SCHEMA, FUTURE_TS, UNKNOWN_CURRENCY)

FUTURE_TOLERANCE_MS = DAY
"""An event more than this far ahead of the clock is rejected (docs/spec.md §2)."""


class Rejected(Exception):
    """An input that must go to the dead-letter topic and change no state."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class Event:
    """A validated event: its fields as decoded, plus the parsed event time. Never changed once
    made (not `frozen`: a frozen dataclass's constructor costs four times as much, once per
    event)."""

    type: str
    seller_id: str
    event_id: str
    ts: int  # epoch milliseconds
    body: dict[str, Any]

    def get(self, field: str, default: Any = None) -> Any:
        return self.body.get(field, default)


Check = Callable[[Any, str], None]


def _fail(path: str, what: str) -> Rejected:
    return Rejected(SCHEMA, f"{path or 'event'}: {what}")


_TYPE_TESTS = {
    "string": "isinstance({v}, str)",
    "boolean": "isinstance({v}, bool)",
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "null": "{v} is None",
    "number": "(isinstance({v}, (int, float)) and not isinstance({v}, bool) and _isfinite({v}))",
    "integer": "(isinstance({v}, int) and not isinstance({v}, bool)"
    " or isinstance({v}, float) and {v}.is_integer())",
}
_ANNOTATIONS = {"$schema", "$id", "title", "description", "x-topic", "default", "examples", "then", "else"}


class _Compiler:
    """Turns a schema into the source of one Python function, then compiles it.

    Generated straight-line code runs several times faster than a tree of closures, which is
    what lets validation stay a small share of a worker's per-event budget.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {"_isfinite": math.isfinite, "_fail": _fail, "_short": _short,
                                       "_parse_ts": parse_ts, "Rejected": Rejected}
        self.counter = 0

    def const(self, value: Any) -> str:
        self.counter += 1
        name = f"_k{self.counter}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self.counter += 1
        return f"_v{self.counter}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def schema(self, schema: dict[str, Any], v: str, path: str, depth: int) -> None:
        """Emit checks of value `v` (a local name) at `path` (an expression for messages).

        Once a single `type` has been checked, a keyword that applies to that type is emitted
        without its type guard, and one that applies only to other types is not emitted: the
        value has already been rejected if it is not of that type."""
        for key in schema:
            if key not in _ANNOTATIONS and key not in _KEYWORDS:
                raise ValueError(f"schema keyword {key!r} is not supported by the contract compiler")
        known: str | None = None
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
            test = " or ".join(_TYPE_TESTS[n].format(v=v) for n in names)
            self.emit(depth, f"if not ({test}):")
            self.emit(depth + 1, f"raise _fail({path}, 'must be {' or '.join(names)}, got ' + type({v}).__name__)")
            known = names[0] if len(names) == 1 else None

        def guarded(applies: tuple[str, ...], guard: str, test: str) -> str | None:
            """`test` for a keyword that applies to the types `applies` (guard: when unknown)."""
            if known is None:
                return f"{guard} and {test}"
            return test if known in applies else None

        def check(applies: tuple[str, ...], guard: str, test: str, message: str) -> None:
            condition = guarded(applies, guard, test)
            if condition is not None:
                self.emit(depth, f"if {condition}:")
                self.emit(depth + 1, f"raise _fail({path}, {message})")

        def block(applies: tuple[str, ...], guard: str) -> int | None:
            """The depth for a block of checks that apply to the types `applies`: under an
            `if guard:` emitted now when the type is unknown; None when it is another type."""
            if known is None:
                self.emit(depth, f"if {guard}:")
                return depth + 1
            return depth if known in applies else None

        is_str, is_number = f"isinstance({v}, str)", _TYPE_TESTS["number"].format(v=v)
        if "enum" in schema:
            allowed = self.const(list(schema["enum"]))
            if all(type(a) is str for a in schema["enum"]):  # exact type, as the general test
                members = self.const(frozenset(schema["enum"]))
                self.emit(depth, f"if not (type({v}) is str and {v} in {members}):")
            else:
                self.emit(depth, f"if not any(type({v}) is type(a) and {v} == a for a in {allowed}):")
            self.emit(depth + 1, f"raise _fail({path}, 'must be one of ' + repr({allowed}) + ', got ' + _short({v}))")
        if "const" in schema:
            c = self.const(schema["const"])
            self.emit(depth, f"if not (type({v}) is type({c}) and {v} == {c}):")
            self.emit(depth + 1, f"raise _fail({path}, 'must be ' + repr({c}))")
        if "minLength" in schema:
            n = schema["minLength"]  # JSON Schema counts code points, as len() does
            check(("string",), is_str, f"len({v}) < {n}", f"'length must be at least {n}'")
        if "maxLength" in schema:
            n = schema["maxLength"]
            check(("string",), is_str, f"len({v}) > {n}", f"'length must be at most {n}'")
        if "pattern" in schema:
            regex = self.const(re.compile(schema["pattern"]))
            check(("string",), is_str, f"not {regex}.search({v})", f"'does not match ' + {regex}.pattern")
        for key, op, word in (("minimum", "<", ">="), ("maximum", ">", "<=")):
            if key in schema:
                n = schema[key]
                check(("number", "integer"), is_number, f"{v} {op} {n!r}", f"'must be {word} {n}'")
        if "format" in schema:
            if schema["format"] != "date-time":
                raise ValueError(f"unsupported format {schema['format']!r}")
            inner = block(("string",), is_str)
            if inner is not None:
                self.emit(inner, "try:")
                self.emit(inner + 1, f"_parse_ts({v})")
                self.emit(inner, "except (ValueError, IndexError, TypeError, OverflowError):")
                self.emit(inner + 1, f"raise _fail({path}, 'is not a valid RFC 3339 date-time') from None")
        is_dict = f"isinstance({v}, dict)"
        if "required" in schema and (inner := block(("object",), is_dict)) is not None:
            for field in schema["required"]:
                self.emit(inner, f"if {field!r} not in {v}:")
                self.emit(inner + 1, f"raise _fail(_join({path}, {field!r}), 'is required')")
        if "properties" in schema and (inner := block(("object",), is_dict)) is not None:
            present = set(schema.get("required", ()))  # checked above: these are there
            for name, sub in schema["properties"].items():
                item = self.var()
                if name in present:
                    self.emit(inner, f"{item} = {v}[{name!r}]")
                    self.schema(sub, item, f"_join({path}, {name!r})", inner)
                    continue
                self.emit(inner, f"{item} = {v}.get({name!r}, _MISSING)")
                self.emit(inner, f"if {item} is not _MISSING:")
                self.schema(sub, item, f"_join({path}, {name!r})", inner + 1)
                self.emit(inner + 1, "pass")
        for sub in schema.get("allOf", []):
            self.schema(sub, v, path, depth)
        if "if" in schema:
            self.emit(depth, "try:")
            self.schema(schema["if"], v, path, depth + 1)
            self.emit(depth + 1, "pass")
            self.emit(depth, "except Rejected:")
            self.schema(schema.get("else", {}), v, path, depth + 1)
            self.emit(depth + 1, "pass")
            self.emit(depth, "else:")
            self.schema(schema.get("then", {}), v, path, depth + 1)
            self.emit(depth + 1, "pass")


_KEYWORDS = {"type", "enum", "const", "minLength", "maxLength", "pattern", "minimum", "maximum", "format",
             "required", "properties", "allOf", "if"}
_MISSING = object()


def compile_schema(schema: dict[str, Any]) -> Check:
    """Compile one schema into `check(value, path)`, raising Rejected on the first violation."""
    compiler = _Compiler()
    compiler.emit(0, "def check(value, path):")
    compiler.schema(schema, "value", "path", 1)
    compiler.emit(1, "pass")
    namespace = {**compiler.consts, "_join": _join, "_MISSING": _MISSING}
    exec("\n".join(compiler.lines), namespace)  # noqa: S102 - source generated from our own schemas
    return namespace["check"]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_schemas(directory: Path = SCHEMA_DIR) -> dict[str, dict[str, Any]]:
    """Event type -> its JSON Schema, read from `schemas/`."""
    schemas = {}
    for path in sorted(directory.glob("*.json")):
        schema = orjson.loads(path.read_bytes())
        schemas[schema["title"]] = schema
    return schemas


SCHEMAS = load_schemas()
TOPICS = {name: schema["x-topic"] for name, schema in SCHEMAS.items()}
"""Event type -> its default input topic (docs/spec.md §2)."""
_CHECKS = {name: compile_schema(schema) for name, schema in SCHEMAS.items()}


def decode(raw: bytes | str | None) -> dict[str, Any]:
    """Bytes to a JSON object, or Rejected (invalid_json / too_large / not_object)."""
    if raw is None:  # a Kafka message with a null value (a tombstone)
        raise Rejected(INVALID_JSON, "no value (a null message)")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Rejected(TOO_LARGE, f"event is {len(raw)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected(INVALID_JSON, f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Rejected(NOT_OBJECT, f"event must be a JSON object, got {type(obj).__name__}")
    return obj


def event_time(raw: bytes | None) -> int | None:
    """The event time (epoch ms) a raw message claims, for ordering only: None when it has no
    readable `ts` (validation will say why, if it is an event at all)."""
    if raw is None or len(raw) > MAX_MESSAGE_BYTES:
        return None
    try:
        obj = orjson.loads(raw)
        ts = obj["ts"]
        return parse_ts(ts) if isinstance(ts, str) and len(ts) >= 20 else None
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, IndexError):
        return None


def validate(obj: dict[str, Any], clock: int | None = None) -> Event:
    """A decoded object to an Event, or Rejected. `clock` (epoch ms) enables future_ts."""
    kind = obj.get("type")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        if "type" not in obj:
            raise Rejected(SCHEMA, "type: is required")
        raise Rejected(UNKNOWN_TYPE, f"type: unknown event type {_short(kind)}")
    check(obj, "")
    ts = parse_ts(obj["ts"])
    if clock is not None and ts > clock + FUTURE_TOLERANCE_MS:
        raise Rejected(FUTURE_TS, f"ts: {obj['ts']} is more than a day ahead of the clock")
    return Event(str(kind), obj["seller_id"], obj["event_id"], ts, obj)


def parse_event(raw: bytes | str, clock: int | None = None) -> Event:
    """Decode and validate one message."""
    return validate(decode(raw), clock)
