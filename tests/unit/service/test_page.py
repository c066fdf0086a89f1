"""The seller page and the overview (streams/service/page.py): the rating is in the HTML
without JavaScript, every value is escaped, and nothing is fetched from outside."""

from __future__ import annotations

import re

import orjson

from streams.core.engine import Engine
from streams.core.rulebook import load
from streams.core.timeutil import parse_ts
from streams.service.page import overview_page, seller_page
from tests.conftest import Events as E
from tests.conftest import at


def rating_of(seller: str) -> dict:
    engine = Engine(load())
    for event in [E.message(at(days=1), buyer="b1", conv="c1", seller=seller),
                  E.visit(at(days=2), "v1", seller=seller)]:
        engine.ingest(orjson.dumps(event))
    return engine.rating_with_projection(seller, parse_ts(at(days=3)))


def test_the_page_shows_the_rating_escaped_and_self_contained():
    seller = 'evil<script>alert("x")</script>'
    rating = rating_of(seller)
    actions = {"unanswered_conversations": [{"conversation_id": "c<1>", "first_message_at": at(days=1),
                                             "reply_by": at(days=2)}]}
    months = [{"month": "2026-02", "stars": 3, "risk": "healthy", "indicators": {}, "valid_from": "x",
               "valid_until": "y"}]
    html = seller_page(rating, actions, months, token="t&k")
    assert "<script>alert" not in html and "evil&lt;script&gt;" in html and "c&lt;1&gt;" in html
    assert f'aria-label="{rating["stars"]} stars"' in html  # the stars, rendered on the server
    for name, block in rating["indicators"].items():
        assert f'id="ind-{name}"' in html
    assert 'data-token="t&amp;k"' in html and "26-02" in html  # the history bar's label
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from outside
    assert "<label" in html or "aria-pressed" in html  # the one control is labelled and stateful


def test_the_overview_lists_sellers_with_links_to_their_pages():
    ratings = [rating_of("b"), rating_of("a")]
    html = overview_page(ratings, token=None)
    assert html.index("/sellers/b/page") < html.index("/sellers/a/page")  # in the order given
