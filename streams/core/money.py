"""Amounts in other currencies as integer micro-USD, one rounding rule for every model.

An amount is converted exactly (Decimal of its shortest decimal representation times the
rulebook's rate) and then rounded to the nearest micro-USD, halves to even (banker's rounding,
so a stream of amounts has no rounding drift either way). Integers keep window sums exact
whatever the order events arrive in.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Mapping

from streams.core.contract import UNKNOWN_CURRENCY, Rejected

MICRO = Decimal(1_000_000)


def usd_micro(amount: float, currency: str, usd_per_unit: Mapping[str, Decimal], rulebook: str) -> int:
    """`amount` of `currency` in micro-USD; Rejected (a dead letter) for a currency the
    rulebook has no rate for."""
    rate = usd_per_unit.get(currency)
    if rate is None:
        raise Rejected(UNKNOWN_CURRENCY, f"currency: {currency!r} has no USD rate in rulebook {rulebook}")
    return int((Decimal(repr(amount)) * rate * MICRO).to_integral_value(ROUND_HALF_EVEN))
