"""The seller page in a real browser: Debian's chromium driven by Selenium through Debian's
chromedriver (no browser download). Two workers on the embedded broker; the page is opened on
the worker that does not own the seller:

- it shows the stars the API returns;
- a message produced to Kafka changes the page without a reload;
- after the owner is killed (SIGKILL) and the other worker takes the partition over, the page
  keeps updating;
- it opens with the seller's token and is refused without one.

Screenshots at 375 and 1280 px go to $STARCAST_ARTIFACTS (default: the test's tmp dir)."""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from streams import testing
from streams.local.broker import EmbeddedBroker
from streams.service.access import mint
from tests.conftest import Events as E
from tests.integration.test_streaming import _prefixes, produce_events, scripted_month, worker_pair

SECRET = "browser-secret-of-at-least-32-bytes!"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver "
                                "are installed by `make test` (ops-tools)")


def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def owns(worker, token: str) -> bool:
    request = urllib.request.Request(worker.base + "/sellers/fading", headers={
        "Authorization": f"Bearer {token}", "X-Starcast-Forwarded": "1"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (urllib.error.HTTPError, OSError):
        return False


def api_stars(worker, token: str) -> int:
    request = urllib.request.Request(worker.base + "/sellers/fading", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return orjson.loads(response.read())["stars"]


def wait(condition, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, what
        time.sleep(0.1)
    return time.monotonic() - started


def test_the_seller_page_follows_the_stream_across_a_takeover(tmp_path):
    artifacts = Path(os.environ.get("STARCAST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker().start()
    prefix = f"browser{next(_prefixes)}-"
    workers = worker_pair(broker, prefix, tmp_path, {"STARCAST_API_JWT_SECRET": SECRET})
    token = mint(SECRET, "fading", 3600)
    driver = None
    try:
        testing.start_all(workers)
        produce_events(broker, prefix, scripted_month())
        wait(lambda: any(owns(w, token) for w in workers), 120, "no worker rated fading")
        owner = next(w for w in workers if owns(w, token))
        other = next(w for w in workers if w is not owner)

        driver = browser(tmp_path)
        driver.set_window_size(1280, 1000)
        driver.get(other.base + "/sellers/fading/page")
        assert "bearer token" in driver.find_element("tag name", "body").text  # refused without a token

        driver.get(other.base + f"/sellers/fading/page?token={token}")
        stars = lambda: int(driver.find_element("id", "stars-n").get_attribute("textContent"))  # noqa: E731
        assert stars() == api_stars(other, token)
        wait(lambda: driver.find_element("id", "live").text == "Live updates on", 10, "the stream did not open")
        driver.execute_script("window.notReloaded = true")
        buyers = lambda: driver.find_element("css selector", "#ind-active_buyers .value").text  # noqa: E731
        before = buyers()
        produce_events(broker, prefix, [E.message("2026-03-30T10:00:00Z", buyer=f"page-b{i}", seller="fading")
                                        for i in range(3)])
        seconds = wait(lambda: buyers() != before, 20, "the page did not change")
        print(f"produced -> page updated in {seconds:.2f} s")
        assert driver.execute_script("return window.notReloaded") is True
        assert int(buyers()) == int(before) + 3
        driver.save_screenshot(str(artifacts / "seller-page-1280.png"))
        driver.set_window_size(375, 1400)
        driver.save_screenshot(str(artifacts / "seller-page-375.png"))

        owner.kill()  # SIGKILL: the other worker takes the partition over
        before = buyers()
        produce_events(broker, prefix, [E.message("2026-03-30T11:00:00Z", buyer=f"page-c{i}", seller="fading")
                                        for i in range(2)])
        wait(lambda: buyers() != before, 90, "the page stopped updating after the takeover")
        assert int(buyers()) == int(before) + 2
        assert driver.execute_script("return window.notReloaded") is True
    finally:
        if driver is not None:
            driver.quit()
        for worker in workers:
            worker.stop()
        broker.stop()
