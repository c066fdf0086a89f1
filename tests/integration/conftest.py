"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from streams.local.broker import embedded_broker


@pytest.fixture(scope="module")
def broker():
    """One embedded broker per test module (a module that needs one per test defines its own)."""
    with embedded_broker() as b:
        yield b
