"""Rulebooks are data: every shipped one loads; a malformed one is refused with the key named."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from streams.core.rulebook import RulebookError, available, load, parse

GLOBAL = tomllib.loads((resources.files("streams.rulebooks") / "global-2023.toml").read_text())


def test_every_shipped_rulebook_loads():
    assert available() == ["cn-2020", "global-2023", "merchant-3star"]
    for name in available():
        rb = load(name)
        assert rb.name == name
        if rb.model == "indicators":
            assert set(rb.indicators) == {"potential_products", "top_super_products", "response_time",
                                          "active_buyers", "conversion_rate", "marketing_index"}
        else:  # the score models: four capabilities over the 13 sub-items of the Merchant Star Rating guide
            assert len(rb.capabilities) == 4
            assert set().union(*rb.capabilities.values()) <= set(rb.sub_items)
    three, cn = load("merchant-3star"), load("cn-2020")
    assert (three.thresholds, three.max_stars, three.tracks) == ((60, 70, 80), 3, ())
    assert len(three.sub_items) == 13
    assert {s.window_ms // 86_400_000 for s in three.sub_items.values() if s.window_ms} == {7, 30, 90, 180, 365}
    assert three.sub_items["buyer_evaluation"].window_ms is None  # all time
    assert (cn.thresholds, cn.max_stars, cn.tracks) == ((60, 70, 80, 85, 90), 5, ("customized", "ready_to_ship"))
    assert str(cn.time_zone) == "Asia/Shanghai" and cn.publish_day == 5 and cn.valid_through_day == 4


def test_global_2023_matches_the_spec_table():
    rb = load("global-2023")
    t = {name: list(th.thresholds) for name, th in rb.indicators.items()}
    assert t["potential_products"] == [12, 30, 48, 216, 216]
    assert t["top_super_products"] == [1, 4, 6, 21, 21]
    assert t["response_time"] == [24, 22, 20, 16, 12]
    assert t["active_buyers"] == [4, 10, 20, 35, 60]
    assert t["conversion_rate"] == [0.035, 0.05, 0.06, 0.08, 0.10]
    assert rb.indicators["top_super_products"].min_super == (0, 0, 0, 0, 1)
    assert rb.indicators["marketing_index"].floor_stars == 2
    assert rb.bonus_mode == "one" and rb.bonus_min_index == 70
    assert rb.unhealthy_points == 36 and rb.risk_window_ms == 365 * 86_400_000
    assert str(rb.usd_per_unit["MYR"] * 400) == "100.00"
    assert rb.time_zone.key == "UTC" and rb.publish_day == 5


def variant(path: str, value):
    data = tomllib.loads((resources.files("streams.rulebooks") / "global-2023.toml").read_text())
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("path, value, message", [
    ("name", ..., "name: missing"),
    ("model", "magic", "model: unknown model 'magic'"),
    ("time_zone", "Mars/Olympus", "time_zone: unknown time zone"),
    ("indicators.active_buyers.thresholds", [4, 10, 20, 35], "indicators.active_buyers.thresholds: expected a list of 5"),
    ("indicators.active_buyers.thresholds", [4, 10, 20, 60, 35], "must get stricter"),
    ("indicators.response_time.thresholds", [12, 16, 20, 22, 24], "indicators.response_time.thresholds: thresholds must get stricter"),
    ("indicators.response_time.direction", "sideways", "indicators.response_time.direction"),
    ("indicators.conversion_rate", ..., "indicators.conversion_rate: missing"),
    ("bonus.mode", "all", "bonus.mode: must be one of"),
    ("bonus.indicators", ["charm"], "bonus.indicators: unknown indicator 'charm'"),
    ("currencies.USD", 2.0, "currencies.USD: must be present and 1"),
    ("currencies.MYR", -1, "currencies.MYR: rate must be a positive number"),
    ("schedule.publish_time", "25:00", "schedule.publish_time: expected HH:MM"),
    ("schedule.publish_day", 31, "schedule.publish_day: must be 1..28"),
    ("window.memory_days", 20, "window.memory_days"),
    ("marketing.rfq_per_quotations", 0, "marketing.rfq_per_quotations: must be positive"),
    ("overrides.0.thresholds.marketing_index", [1, 2, 3, 4, 5], "not overridable"),
    ("overrides.2.region", ..., None),  # an override with only a category is fine
])
def test_malformed_rulebooks_are_refused_with_the_key(path, value, message):
    data = variant(path, value)
    if message is None:
        parse(data)
        return
    with pytest.raises(RulebookError) as info:
        parse(data)
    assert message in str(info.value)


def test_an_override_without_region_or_category_is_refused():
    data = variant("overrides.0.region", ...)  # the MY override has no category
    with pytest.raises(RulebookError, match=r"overrides\[0\]: needs region and/or category"):
        parse(data)


def test_not_toml_and_unknown_names(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(RulebookError, match="not valid TOML"):
        load(str(bad))
    with pytest.raises(RulebookError, match="unknown rulebook 'nope'"):
        load("nope")


def test_override_resolution_most_specific_wins_per_indicator():
    rb = load("global-2023")
    assert rb.thresholds_for(None, None)["active_buyers"].thresholds == (4, 10, 20, 35, 60)
    assert rb.thresholds_for("MY", None)["active_buyers"].thresholds == (3, 8, 15, 30, 50)
    both = rb.thresholds_for("MY", "machinery")
    assert both["conversion_rate"].thresholds == (0.02, 0.035, 0.045, 0.06, 0.08)  # region+category
    assert both["potential_products"].thresholds == (8, 20, 36, 150, 150)  # from the category override
    assert both["active_buyers"].thresholds == (3, 8, 15, 30, 50)  # from the region override
