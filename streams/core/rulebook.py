"""Rulebooks: rating rules as data (TOML files shipped in `streams/rulebooks/`).

The engine knows how to *measure* things (counts, windows, means); every threshold, window,
switch, currency rate and schedule comes from the rulebook. `load()` checks a file completely
and names the offending key, so a malformed rulebook never reaches a worker.

Format, in short (see `global-2023.toml` and docs/rulebooks.md):
- `model = "indicators"`: each `[indicators.NAME]` has a `direction` (`at_least`/`at_most`) and
  `thresholds` for 1..max_stars stars. Score models (docs/spec.md §1.2) will use the same threshold
  tables over capability scores, with `[capabilities.NAME]` listing weighted sub-items and their
  breakpoints; `model` selects the evaluator, so they need no change to this format.
- `[[overrides]]` match `region` and/or `category` and replace thresholds per indicator.
"""

from __future__ import annotations

import math
import tomllib
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cached_property
from decimal import Decimal
from typing import Any
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.core.scoring import ScoreBook, parse_score
from streams.core.timeutil import DAY, HOUR
from streams.core.tomlcheck import RulebookError, require

INDICATORS = (
    "potential_products",
    "top_super_products",
    "response_time",
    "active_buyers",
    "conversion_rate",
    "marketing_index",
)
"""The indicators the `indicators` model can measure, in output order (docs/spec.md §1.1)."""

OVERRIDABLE = ("potential_products", "top_super_products", "active_buyers", "conversion_rate")
MODELS = ("indicators", "score")
BONUS_MODES = ("one", "each")


@dataclass(frozen=True)
class Threshold:
    """How one indicator's value maps to stars."""

    direction: str  # "at_least" or "at_most"
    thresholds: tuple[float, ...]  # value needed for 1..max_stars stars
    min_super: tuple[int, ...] = ()  # top_super_products: super products needed per star
    floor_stars: int = 0  # stars given whatever the value (marketing_index: 2)
    keys: tuple[float, ...] = field(default=(), init=False, repr=False, compare=False)
    limits_ms: tuple[float, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Ascending keys for bisect: thresholds for at_least, negated ones for at_most.
        keys = self.thresholds if self.direction == "at_least" else tuple(-t for t in self.thresholds)
        object.__setattr__(self, "keys", keys)
        # The thresholds as hours in milliseconds (the response time's levels per conversation,
        # the most lenient first), computed once.
        object.__setattr__(self, "limits_ms", tuple(hours * 3_600_000 for hours in self.thresholds))

    def stars(self, value: float | None, supers: int = 0) -> int:
        """Stars earned by `value` (thresholds are monotone, so a bisect finds the level)."""
        if value is None:
            return self.floor_stars
        earned = bisect_right(self.keys, value if self.direction == "at_least" else -value)
        if self.min_super:
            while earned and supers < self.min_super[earned - 1]:
                earned -= 1
        return max(earned, self.floor_stars)


@dataclass(frozen=True)
class Override:
    region: str | None
    category: str | None
    thresholds: dict[str, tuple[float, ...]]

    def matches(self, region: str | None, category: str | None) -> bool:
        return (self.region is None or self.region == region) and (
            self.category is None or self.category == category
        )

    @property
    def specificity(self) -> int:
        """region+category (3) > category (2) > region (1): most specific wins."""
        return (2 if self.category is not None else 0) + (1 if self.region is not None else 0)


@dataclass(frozen=True)
class Rulebook:
    name: str
    model: str
    time_zone: ZoneInfo
    max_stars: int
    window_ms: int
    memory_ms: int
    grace_ms: int
    publish_day: int
    publish_minute: int  # minutes after local midnight
    spam_exclusion_ms: int
    answer_within_ms: int
    risk_window_ms: int
    unhealthy_points: int
    bonus_mode: str
    bonus_min_index: int
    bonus_max_stars_before: int
    bonus_indicators: tuple[str, ...]
    usd_per_unit: dict[str, Decimal]
    marketing: dict[str, Any]
    kwa_usd_points: tuple[tuple[Decimal, int], ...]
    indicators: dict[str, Threshold]
    overrides: tuple[Override, ...] = field(default=())
    description: str = ""
    valid_through_day: int | None = None  # privileges end with this day of the next month (None: at
    # the next publication); score rulebooks set it (cn-2020: the 4th), see scoring.ScoreBook
    _resolved: dict = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def kwa_micro_points(self) -> tuple[tuple[int, int], ...]:
        """`kwa_usd_points` in micro-USD: spend (an integer of micro-USD) reaches a threshold
        exactly when it reaches the threshold rounded up to a whole micro-USD."""
        return tuple((math.ceil(usd * 1_000_000), points) for usd, points in self.kwa_usd_points)

    @cached_property
    def kwa_monotone(self) -> bool:
        """Whether more spend never earns fewer points (ascending thresholds and points)."""
        points = self.kwa_micro_points
        return all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(points, points[1:]))

    @cached_property
    def retention_ms(self) -> int:
        """How far behind the clock a rating may still be evaluated (the freeze grace), plus
        the longest window: facts older than clock - retention can never matter again."""
        return max(self.window_ms + self.spam_exclusion_ms, self.risk_window_ms) + self.grace_ms

    def thresholds_for(self, region: str | None, category: str | None) -> dict[str, Threshold]:
        """Indicator thresholds for a seller, with the most specific override per indicator."""
        cached = self._resolved.get((region, category))
        if cached is None:
            cached = self._resolved[(region, category)] = self._resolve(region, category)
        return cached

    def _resolve(self, region: str | None, category: str | None) -> dict[str, Threshold]:
        matching = sorted(
            (o for o in self.overrides if o.matches(region, category)),
            key=lambda o: o.specificity,
        )
        if not matching:
            return self.indicators
        result = dict(self.indicators)
        for override in matching:  # ascending specificity: later (more specific) wins
            for name, values in override.thresholds.items():
                result[name] = Threshold(
                    result[name].direction, values, result[name].min_super, result[name].floor_stars
                )
        return result


def _thresholds(values: object, direction: str, max_stars: int, where: str) -> tuple[float, ...]:
    if not isinstance(values, list) or len(values) != max_stars:
        raise RulebookError(f"{where}: expected a list of {max_stars} thresholds, got {values!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise RulebookError(f"{where}: thresholds must be numbers, got {values!r}")
    pairs = list(zip(values, values[1:]))
    ordered = all(a <= b for a, b in pairs) if direction == "at_least" else all(a >= b for a, b in pairs)
    if not ordered:
        raise RulebookError(f"{where}: thresholds must get stricter with each star, got {values!r}")
    return tuple(values)


def parse(data: dict, source: str = "<rulebook>") -> Rulebook | ScoreBook:
    """Build and check a Rulebook from parsed TOML; RulebookError names the first bad key."""
    name = require(data, "name", str, "")
    model = require(data, "model", str, "")
    if model not in MODELS:
        raise RulebookError(f"model: unknown model {model!r} (known: {', '.join(MODELS)})")
    if model == "score":  # docs/spec.md §1.2: capability scores from sub-item breakpoints
        return parse_score(data, source)
    try:
        zone = ZoneInfo(require(data, "time_zone", str, ""))
    except (ZoneInfoNotFoundError, ValueError):
        raise RulebookError(f"time_zone: unknown time zone {data['time_zone']!r}") from None
    max_stars = require(data, "max_stars", int, "")
    window = require(data, "window", dict, "")
    schedule = require(data, "schedule", dict, "")
    response = require(data, "response", dict, "")
    risk = require(data, "risk", dict, "")
    bonus = require(data, "bonus", dict, "")
    marketing = require(data, "marketing", dict, "")

    publish_time = require(schedule, "publish_time", str, "schedule.")
    try:
        hours, minutes = (int(x) for x in publish_time.split(":"))
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError
    except ValueError:
        raise RulebookError(f"schedule.publish_time: expected HH:MM, got {publish_time!r}") from None
    publish_day = require(schedule, "publish_day", int, "schedule.")
    if not 1 <= publish_day <= 28:
        raise RulebookError(f"schedule.publish_day: must be 1..28, got {publish_day}")

    mode = require(bonus, "mode", str, "bonus.")
    if mode not in BONUS_MODES:
        raise RulebookError(f"bonus.mode: must be one of {BONUS_MODES}, got {mode!r}")
    bonus_indicators = tuple(require(bonus, "indicators", list, "bonus."))
    for ind in bonus_indicators:
        if ind not in INDICATORS:
            raise RulebookError(f"bonus.indicators: unknown indicator {ind!r}")

    currencies = require(data, "currencies", dict, "")
    usd: dict[str, Decimal] = {}
    for code, rate in currencies.items():
        if len(code) != 3 or not code.isupper():
            raise RulebookError(f"currencies.{code}: not an ISO 4217 code")
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0:
            raise RulebookError(f"currencies.{code}: rate must be a positive number, got {rate!r}")
        usd[code] = Decimal(str(rate))
    if usd.get("USD") != Decimal(1):
        raise RulebookError("currencies.USD: must be present and 1")

    kwa = require(marketing, "kwa_usd_points", list, "marketing.")
    try:
        kwa_points = tuple((Decimal(str(amount)), int(points)) for amount, points in kwa)
    except (TypeError, ValueError):
        raise RulebookError(f"marketing.kwa_usd_points: expected [[usd, points], ...], got {kwa!r}") from None
    for key in ("cap", "response_rate_points", "premium_ads_points", "rfq_per_quotations", "rfq_points",
                "rfq_max_points", "showcases_points", "video_min_products", "video_points"):
        value = require(marketing, key, int, "marketing.")
        if value < 0 or key == "rfq_per_quotations" and value == 0:
            raise RulebookError(f"marketing.{key}: must be positive, got {value}")
    require(marketing, "response_rate_min", (int, float), "marketing.")

    window_ms = require(window, "days", int, "window.") * DAY
    memory_ms = require(window, "memory_days", int, "window.") * DAY
    grace_ms = require(schedule, "grace_hours", int, "schedule.") * HOUR
    if window_ms <= 0:
        raise RulebookError("window.days: must be positive")
    if memory_ms < window_ms + grace_ms + DAY:
        raise RulebookError("window.memory_days: must exceed the window plus the freeze grace by a day")

    tables = require(data, "indicators", dict, "")
    indicators: dict[str, Threshold] = {}
    for ind in INDICATORS:
        spec = require(tables, ind, dict, "indicators.")
        where = f"indicators.{ind}"
        direction = require(spec, "direction", str, where + ".")
        if direction not in ("at_least", "at_most"):
            raise RulebookError(f"{where}.direction: must be at_least or at_most, got {direction!r}")
        values = _thresholds(spec.get("thresholds"), direction, max_stars, where + ".thresholds")
        min_super = spec.get("min_super", [])
        if min_super and (len(min_super) != max_stars or not all(isinstance(v, int) for v in min_super)):
            raise RulebookError(f"{where}.min_super: expected {max_stars} integers, got {min_super!r}")
        indicators[ind] = Threshold(direction, values, tuple(min_super), spec.get("floor_stars", 0))
    for extra in set(tables) - set(INDICATORS):
        raise RulebookError(f"indicators.{extra}: unknown indicator")

    overrides = []
    for i, item in enumerate(data.get("overrides", [])):
        where = f"overrides[{i}]"
        region, category = item.get("region"), item.get("category")
        if region is None and category is None:
            raise RulebookError(f"{where}: needs region and/or category")
        values = require(item, "thresholds", dict, where + ".")
        parsed = {}
        for ind, vals in values.items():
            if ind not in OVERRIDABLE:
                raise RulebookError(f"{where}.thresholds.{ind}: not overridable (only {', '.join(OVERRIDABLE)})")
            parsed[ind] = _thresholds(vals, indicators[ind].direction, max_stars, f"{where}.thresholds.{ind}")
        overrides.append(Override(region, category, parsed))

    return Rulebook(
        name=name,
        model=model,
        time_zone=zone,
        max_stars=max_stars,
        window_ms=window_ms,
        memory_ms=memory_ms,
        grace_ms=grace_ms,
        publish_day=publish_day,
        publish_minute=hours * 60 + minutes,
        spam_exclusion_ms=require(response, "spam_exclusion_hours", int, "response.") * HOUR,
        answer_within_ms=require(response, "answer_within_hours", int, "response.") * HOUR,
        risk_window_ms=require(risk, "window_days", int, "risk.") * DAY,
        unhealthy_points=require(risk, "unhealthy_points", int, "risk."),
        bonus_mode=mode,
        bonus_min_index=require(bonus, "min_marketing_index", int, "bonus."),
        bonus_max_stars_before=require(bonus, "max_stars_before", int, "bonus."),
        bonus_indicators=bonus_indicators,
        usd_per_unit=usd,
        marketing=dict(marketing),
        kwa_usd_points=kwa_points,
        indicators=indicators,
        overrides=tuple(overrides),
        description=data.get("description", ""),
    )


AnyBook = Rulebook | ScoreBook
"""A rulebook of either model (model.Book is what the worker reads of it)."""


def available() -> list[str]:
    """Names of the rulebooks shipped with the package."""
    folder = resources.files("streams.rulebooks")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


_CACHE: dict[str, AnyBook] = {}


def load(name: str = "global-2023") -> AnyBook:
    """A shipped rulebook by name, or a path to a TOML file."""
    if name not in _CACHE:
        if name.endswith(".toml"):
            with open(name, "rb") as fh:
                text = fh.read().decode()
        else:
            path = resources.files("streams.rulebooks") / f"{name}.toml"
            if not path.is_file():
                raise RulebookError(f"unknown rulebook {name!r} (shipped: {', '.join(available())})")
            text = path.read_text()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RulebookError(f"{name}: not valid TOML: {exc}") from None
        _CACHE[name] = parse(data, name)
    return _CACHE[name]
