"""What the worker tells the overrides: which ones to compose and their parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from streams.service.kafka.intake import Intake


@dataclass(frozen=True)
class KafkaOptions:
    own_fetch_loop: bool = True  # fetch_loop.py; False keeps Faust's loop
    intake: Intake | None = None  # with the own fetch loop: where the rating agent's records go
    embedded_broker: bool = False  # tansu.py
    bootstrap: str = ""  # host:port, for tansu.py's end-offset fetches
    fetch_wait_ms: int = 0  # tansu.py: the consumer's fetch wait; 0 keeps Faust's
    bulk_restore: bool = True  # restore.py; False keeps Faust's per-record recovery
    on_standby_fallback: Callable[[], None] | None = None  # standby.py: a copy that could not serve


def options_of(component: Any) -> KafkaOptions:
    """The options of the transport a consumer or producer belongs to (defaults for another)."""
    options = getattr(component.transport, "options", None)
    return options if isinstance(options, KafkaOptions) else KafkaOptions()
