"""The seller API against live workers on the embedded broker: two workers in one group, each
request sent to both (a worker that does not own the seller forwards it, body and all), with
seller and operator tokens; history after a freeze, actions, and a what-if that changes
nothing."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import orjson

from streams import testing
from streams.service.access import mint

from tests.integration.test_streaming import (_prefixes, expected_ratings, produce_events, scripted_month,
                                              tick_all, worker_pair)

SECRET = "integration-secret-of-32-bytes-or-more"
ENV = {"STARCAST_API_TOKEN": "op-token", "STARCAST_API_JWT_SECRET": SECRET}


def call(base: str, path: str, token: str, body: bytes | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_every_endpoint_answers_the_same_from_either_worker(broker, tmp_path):
    prefix = f"api{next(_prefixes)}-"
    workers = worker_pair(broker, prefix, tmp_path, ENV)
    try:
        testing.start_all(workers)
        events = scripted_month()
        produce_events(broker, prefix, events)
        final = "2026-04-05T00:00:00Z"
        tick_all(broker, prefix, final)
        expected = expected_ratings(events, final)
        fading = mint(SECRET, "fading", 3600)

        def settled() -> bool:
            status, body = call(workers[0].base, "/sellers/fading/history", fading)
            return status == 200 and len(body["months"]) == 1 and \
                call(workers[0].base, "/sellers/fading", fading)[1].get("as_of", "") >= "2026-04-04"
        deadline = time.monotonic() + 120
        while not settled():
            assert time.monotonic() < deadline, "the freeze of March never reached fading's history"
            time.sleep(1)

        for worker in workers:
            status, forecast = call(worker.base, "/sellers/fading", fading)
            assert status == 200 and forecast["stars"] == expected["fading"]["stars"]
            status, history = call(worker.base, "/sellers/fading/history?months=2", fading)
            assert status == 200 and [m["month"] for m in history["months"]] == ["2026-03"]
            assert set(history["months"][0]) == {"month", "stars", "risk", "indicators", "valid_from", "valid_until"}
            status, actions = call(worker.base, "/sellers/fading/actions", fading)
            assert status == 200 and actions["seller_id"] == "fading"
            assert {n["indicator"] for n in actions["next_stars"]} == set(forecast["indicators"])
            # what-if: twenty new buyers today lift active buyers by twenty; nothing is kept
            new = [{"type": "buyer_message", "buyer_id": f"wi-{i}", "conversation_id": f"wi-c{i}",
                    "channel": "inquiry"} for i in range(20)]
            status, rating = call(worker.base, "/sellers/fading/what-if", fading, orjson.dumps(new))
            assert status == 200, rating
            assert rating["indicators"]["active_buyers"]["value"] == \
                forecast["indicators"]["active_buyers"]["value"] + 20
            assert rating["projection"] is not None
            status, invalid = call(worker.base, "/sellers/fading/what-if", fading,
                                   orjson.dumps([new[0], {"type": "buyer_message"}]))
            assert status == 400 and [(i["index"], i["reason"]) for i in invalid["invalid"]] == [(1, "schema")]
            # the operator sees every seller; a seller token only its own
            other = sorted(s for s in expected if s != "fading")[0]
            assert call(worker.base, f"/sellers/{other}", "op-token")[0] == 200
            assert call(worker.base, f"/sellers/{other}", fading)[0] == 403
        # the what-ifs changed nothing
        assert call(workers[1].base, "/sellers/fading", fading)[1] == call(workers[0].base, "/sellers/fading", fading)[1]
        assert call(workers[0].base, "/sellers/fading", fading)[1]["indicators"]["active_buyers"]["value"] == \
            expected["fading"]["indicators"]["active_buyers"]["value"]
    finally:
        for worker in workers:
            worker.stop()
