"""What both rating models share, written once: money, the state-table keys, LWW registers,
and the model interface itself."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from streams.core.contract import UNKNOWN_CURRENCY, Rejected, parse_event
from streams.core.engine import model_for
from streams.core.indicators import IndicatorModel
from streams.core.keys import seller_of_key, split_state_key, state_key
from streams.core.lww import lww_add, lww_at, lww_prune
from streams.core.money import usd_micro
from streams.core.rulebook import load
from streams.core.scoring import ScoreModel
from tests.conftest import Events as E
from tests.conftest import at

RATES = {"USD": Decimal(1), "MYR": Decimal("0.25"), "JPY": Decimal("0.0066666667")}


def test_money_rounds_to_the_nearest_micro_usd_halves_to_even():
    assert usd_micro(100, "USD", RATES, "rb") == 100_000_000
    assert usd_micro(400.0, "MYR", RATES, "rb") == 100_000_000
    assert usd_micro(0.0000005, "USD", RATES, "rb") == 0  # half: to the even 0
    assert usd_micro(0.0000015, "USD", RATES, "rb") == 2  # half: to the even 2
    assert usd_micro(0.0000016, "USD", RATES, "rb") == 2  # not truncated to 1
    assert usd_micro(1, "JPY", RATES, "rb") == 6667  # 6,666.6667 micro-USD


def test_an_unknown_currency_is_a_dead_letter_reason():
    with pytest.raises(Rejected) as caught:
        usd_micro(5, "XXX", RATES, "global-2023")
    assert caught.value.reason == UNKNOWN_CURRENCY and "global-2023" in caught.value.message


def test_state_keys_round_trip_and_name_their_seller():
    key = state_key("seller-1", "c", "conv\x1fwith-separator")
    assert split_state_key(key) == ("seller-1", "c", "conv\x1fwith-separator")
    assert seller_of_key(key) == b"seller-1"


def test_lww_keeps_one_version_per_event_in_ts_order_and_prunes_to_the_current_one():
    versions: list = []
    assert lww_add(versions, [20, "b", "top"]) and lww_add(versions, [10, "a", "none"])
    assert not lww_add(versions, [20, "b", "top"])  # the same event again
    assert lww_at(versions, 15) == [10, "a", "none"] and lww_at(versions, 5) is None
    lww_add(versions, [30, "c", "super"])
    lww_prune(versions, 25)
    assert versions == [[20, "b", "top"], [30, "c", "super"]]


@pytest.mark.parametrize("name, model", [("global-2023", IndicatorModel), ("cn-2020", ScoreModel),
                                         ("merchant-3star", ScoreModel)])
def test_each_rulebook_gets_its_model_and_a_state_restored_from_its_writes_rates_the_same(name, model):
    m = model_for(load(name))
    assert isinstance(m, model)
    state = m.new_state("s1")
    for e in (E.message(at(days=1), buyer="b1"), E.reply(at(days=1, hours=2), "c-b1"), E.visit(at(days=1), "b1")):
        state.apply(parse_event(orjson.dumps(e)))
    items = [(kind, key, data) for (kind, key), data in state.take_dirty() if data is not None]
    restored = m.state_from_entities("s1", items)
    when = 1_772_582_400_000  # 2026-03-04
    assert m.rate("s1", restored, when) == m.rate("s1", state, when)
