"""`starcast notify` against a receiver that fails on purpose (500s, timeouts, one record it
always refuses) and a notifier killed with SIGKILL mid-way and restarted: every record ends up
delivered exactly once by idempotency key, or parked on starcast-notify-failed; each seller's
records are first delivered in order, and every POST is signed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from streams.local.broker import EmbeddedBroker
from streams.notify import verify
from streams.testing import free_port, read_topic, send

SECRET = "notify-test-secret"
PREFIX = "notify-"
N = 90


class Receiver(BaseHTTPRequestHandler):
    seen: dict[str, int] = {}  # idempotency key -> attempts
    delivered: list[tuple[str, str, int]] = []  # (key, seller, seq) in first-delivery order
    bad_signatures = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers["X-Starcast-Idempotency-Key"]
        seq = orjson.loads(body)["seq"]
        with self.lock:
            attempt = self.seen[key] = self.seen.get(key, 0) + 1
            if not verify(SECRET, body, self.headers["X-Starcast-Signature"]):
                type(self).bad_signatures += 1
        if seq == 13:
            return self.answer(400)  # refused for good: parked
        if seq % 3 == 0 and attempt == 1:
            return self.answer(500)
        if seq % 7 == 0 and attempt == 1:
            time.sleep(1.5)  # past the notifier's 1 s timeout
        with self.lock:
            if key not in {k for k, _, _ in self.delivered}:
                self.delivered.append((key, self.headers["X-Starcast-Seller"], seq))
        if seq % 10 == 0:
            time.sleep(0.05)  # slow enough that a kill lands mid-way
        self.answer(200)

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def notifier(broker: EmbeddedBroker, url: str, log) -> subprocess.Popen:
    env = dict(os.environ, STARCAST_BROKER=broker.url, STARCAST_TOPIC_PREFIX=PREFIX, STARCAST_WEBHOOK_SECRET=SECRET)
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "notify", "--webhook", url, "--tries", "3",
                             "--timeout", "1", "--topics", "star-changes"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_every_record_is_delivered_once_by_key_or_parked_across_a_crash(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    broker = EmbeddedBroker().start()
    log = open(tmp_path / "notify.log", "ab")
    try:
        sellers = [f"s{i}" for i in range(6)]
        send(broker.bootstrap, [(PREFIX + "star-changes", sellers[n % 6].encode(), orjson.dumps({"seq": n}), None)
                                for n in range(N)])
        first = notifier(broker, url, log)
        deadline = time.monotonic() + 60
        while len(Receiver.delivered) < N // 3:
            assert time.monotonic() < deadline, "no progress before the kill"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # mid-way: offsets of what it delivered may be uncommitted
        first.wait()
        killed_at = len(Receiver.delivered)
        second = notifier(broker, url, log)
        try:
            deadline = time.monotonic() + 120
            while len(Receiver.delivered) < N - 1:
                assert time.monotonic() < deadline, f"{len(Receiver.delivered)} of {N - 1} delivered"
                time.sleep(0.2)
            parked = read_topic(broker.bootstrap, PREFIX + "starcast-notify-failed", idle=3.0, timeout=60)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        broker.stop()
        server.shutdown()
        log.close()
    assert killed_at < N - 1  # the kill came before the end
    keys = [key for key, _, _ in Receiver.delivered]
    assert len(keys) == len(set(keys)) == N - 1  # once each, by idempotency key
    assert sorted(seq for _, _, seq in Receiver.delivered) == [n for n in range(N) if n != 13]
    for seller in sellers:  # in order per seller
        seqs = [seq for _, s, seq in Receiver.delivered if s == seller]
        assert seqs == sorted(seqs), seller
    # parked at least once (a crash between parking and committing parks it again), one origin
    assert {orjson.loads(m.value)["seq"] for m in parked} == {13}
    assert len({dict(m.headers)["starcast-origin-offset"] for m in parked}) == 1
    headers = dict(parked[0].headers)
    assert headers["starcast-error"] == b"HTTP 400" and headers["starcast-origin-topic"] == b"notify-star-changes"
    assert Receiver.bad_signatures == 0
    assert max(Receiver.seen.values()) >= 2  # retries happened
