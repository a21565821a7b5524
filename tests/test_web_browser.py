"""`videolens serve` in a real headless Chromium: type a query, see results, click one, and
the page's player lands on that moment; the video page's timeline seeks too.

Uses the system's Chromium (Debian: ``apt-get install chromium``) through Playwright's
Python package; Playwright's own browser downloads are not needed. Skipped when either is
missing. Screenshots are saved under the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from media import make_video_with_segments

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs the playwright Python package")

from test_web import live_server  # noqa: E402

from videolens.pipelines.index import index  # noqa: E402
from videolens.web import create_app  # noqa: E402

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def _chromium() -> str | None:
    for candidate in [os.environ.get("VIDEOLENS_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")]:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_clip):
    """A library of two VP9 WebM clips (every Chromium build plays VP9; H.264 depends on
    the build) served by uvicorn on a free loopback port."""
    root = tmp_path_factory.mktemp("browser")
    videos = root / "videos"
    videos.mkdir()
    make_video_with_segments(videos / "street.webm", [(3.0, 5.0, RED), (7.0, 8.0, BLUE)],
                             duration=10.0, fps=10, size=(160, 96), codec="vp9")
    make_video_with_segments(videos / "park.webm", [(2.0, 4.0, GREEN)], duration=6.0, fps=10,
                             size=(160, 96), codec="vp9")
    summary = index([videos], library=root / "lib", model=tiny_clip, fps=2, device="cpu")
    assert len(summary.indexed) == 2, summary.failed
    with live_server(create_app(root / "lib", device="cpu")) as base:
        yield base


@pytest.fixture()
def page(tmp_path):
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or set VIDEOLENS_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda message: problems.append(f"console: {message.text}")
                    if message.type == "error" else None)
            page.problems = problems
            yield page
        finally:
            browser.close()


def test_search_click_plays_from_the_moment(server, page, tmp_path):
    page.goto(server + "/")
    page.fill("input[name=q]", "a person running")
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("#results a.result")
    cards = page.locator("#results a.result")
    assert cards.count() >= 2
    page.wait_for_function(  # every thumbnail loaded and decoded
        "() => [...document.querySelectorAll('#results img')]"
        ".every(i => i.complete && i.naturalWidth > 0)")
    starts = [float(cards.nth(i).get_attribute("data-start")) for i in range(cards.count())]
    # a moment that does not begin at 0 s, so landing on it is not the player's default
    choice = next((i for i, s in enumerate(starts) if s >= 1.0), 0)
    start = starts[choice]
    assert start >= 1.0, f"every moment starts at 0: {starts}"

    # record where the player is when its seek lands, before playback moves on
    page.evaluate("""() => {
        const video = document.getElementById('player-video');
        window.__seekedAt = null;
        video.addEventListener('seeked', () => { window.__seekedAt = video.currentTime; },
                               { once: true });
    }""")
    cards.nth(choice).click()
    page.wait_for_function("() => window.__seekedAt !== null", timeout=15_000)
    seeked_at = page.evaluate("window.__seekedAt")
    assert abs(seeked_at - start) < 0.1, (seeked_at, start)
    media = cards.nth(choice).get_attribute("data-media")
    assert page.evaluate("document.getElementById('player-video').currentSrc").endswith(media)
    # then it plays on from there
    page.wait_for_function(
        "start => { const v = document.getElementById('player-video');"
        " return !v.paused && v.currentTime > start + 0.2; }", arg=start, timeout=15_000)
    assert page.evaluate("document.getElementById('player-video').error") is None
    page.evaluate("document.getElementById('player-video').pause()")
    page.screenshot(path=tmp_path / "search.png", full_page=True)
    assert page.problems == []


def test_video_page_timeline_seeks(server, page, tmp_path):
    page.goto(server + "/videos")
    page.click("a.card >> text=street.webm")
    page.fill("input[name=q]", "running, jumping")
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("#timeline")
    assert page.locator("#timeline .track").count() == 2
    segments = page.locator("#timeline .segment")
    if segments.count():
        start = float(segments.first.get_attribute("data-start"))
        page.evaluate("""() => {
            const video = document.getElementById('main-video');
            window.__seekedAt = null;
            video.addEventListener('seeked', () => { window.__seekedAt = video.currentTime; },
                                   { once: true });
        }""")
        segments.first.click()
        page.wait_for_function("() => window.__seekedAt !== null", timeout=15_000)
        assert abs(page.evaluate("window.__seekedAt") - start) < 0.1
        page.evaluate("document.getElementById('main-video').pause()")
    page.screenshot(path=tmp_path / "video.png", full_page=True)

    page.goto(server + "/classify")
    page.fill("textarea[name=labels]", "running, swimming, cooking, playing guitar")
    page.click("form.classify button")
    page.wait_for_selector(".bars .fill")
    assert page.locator(".bars li").count() == 4
    page.screenshot(path=tmp_path / "classify.png", full_page=True)
    assert page.problems == []
