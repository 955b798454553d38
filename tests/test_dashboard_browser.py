"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``,
driven by Playwright with ``executable_path``; no browser is downloaded)
against a daemon on a real nats-server.

It sees the now-playing title; a like sent on NATS changes the count on the
page within 2 s without a reload; the window switch changes the list; a
hostile title stays text; nothing on the page breaks the CSP or logs an
error. A screenshot is saved under the test's tmp dir (and, with
``KRYTEN_LIKES_SCREENSHOT=path``, there too: how docs/dashboard.png is made).

Without Chromium the test is skipped, unless ``KRYTEN_LIKES_BROWSER=required``
(``.ci/run`` sets it, after installing Chromium): then it fails.
"""

from __future__ import annotations

import os
import shutil

import pytest
from test_http_api import HOSTILE, _channel, _queue_and_play
from test_http import http_config

CHROMIUM = os.environ.get("KRYTEN_LIKES_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own probe starts it: no sandbox as root, and no calls home
# (a closed network refuses them, many at a time).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _browser_or_skip():
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("KRYTEN_LIKES_BROWSER") == "required":
        pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")


def test_the_page_shows_likes_live_switches_windows_and_keeps_titles_as_text(harness, tmp_path):
    executable = _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    h = _channel(harness, "An old favourite", now_likers=())

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            streams: list[dict] = []
            page.on("response", lambda r: streams.append(r.headers) if r.url.endswith("/api/v1/stream") else None)
            page.goto(f"http://127.0.0.1:{h.config.http.port}/")
            expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=10_000)

            # The hostile title is the title, as text: no element was made of it.
            expect(page.locator("#now-title")).to_have_text(HOSTILE)
            assert page.locator("img").count() == 0
            expect(page.locator("#now-likes")).to_have_text("0")

            # A like on NATS shows on the page within 2 s, no reload.
            assert h.request("like", {"username": "Dora"})["like_count"] == 1
            expect(page.locator("#now-likes")).to_have_text("1", timeout=2_000)
            expect(page.locator("#latest li").first).to_contain_text("Dora", timeout=2_000)
            expect(page.locator("#latest li").first).to_contain_text(HOSTILE)
            assert h.request("like", {"username": "Eve"})["like_count"] == 2
            expect(page.locator("#now-likes")).to_have_text("2", timeout=2_000)

            # The window switch: all time, v-old (3 likes) leads; today only v-now is liked.
            liked = page.locator("#top-liked li .title")
            expect(liked).to_have_text(["An old favourite", HOSTILE], timeout=5_000)
            page.click("#window-switch button[data-window=day]")
            expect(page.locator("#window-switch button[data-window=day]")).to_have_attribute("aria-pressed", "true")
            expect(liked).to_have_text([HOSTILE], timeout=5_000)
            expect(page.locator("#top-liked li .count")).to_have_text(["2"])
            expect(page.locator("#top-curators li .title")).to_have_text(["Carol"])
            page.click("#window-switch button[data-window=all]")
            expect(liked).to_have_text(["An old favourite", HOSTILE], timeout=5_000)

            # The live stream the page read was gzipped, as the browser asked.
            assert streams and streams[0].get("content-encoding") == "gzip", streams

            # The chart is drawn (an SVG with shapes in it).
            assert page.locator("#chart svg *").count() > 10
            assert page.locator("img").count() == 0

            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("KRYTEN_LIKES_SCREENSHOT"):
                shutil.copy(shot, os.environ["KRYTEN_LIKES_SCREENSHOT"])
        finally:
            browser.close()
    assert problems == []


def test_the_page_reads_well_on_a_phone(harness, tmp_path):
    executable = _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    h = harness(http_config())
    _queue_and_play(h, "v1", "Bob", 1, "A rather long title " * 5)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True)
            page.goto(f"http://127.0.0.1:{h.config.http.port}/")
            expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=10_000)
            # Nothing wider than the screen: no sideways scrolling.
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        finally:
            browser.close()
