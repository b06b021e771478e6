"""The web page in headless Chromium: search and play from a clip's start (also a file that needed a playback
copy), a player error with a download link, an upload that fails with its reason, the admin view following a
re-index to its end.

Skips cleanly when Chromium, its driver or selenium are missing (``apt-get install chromium chromium-driver``).
Each test works on videos of its own in the one collection the module's server holds.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from service_helpers import runtime_for, settings_for
from video_factory import write_audio_only

from videoseek.layout import DataLayout
from videoseek.toy.generate import generate_videos
from videoseek.video.identity import video_id_for_file

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium not installed (chromium, chromium-driver)",
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
)
VIDEO = "document.getElementById('player-video')"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Toy:
    caption: str
    video_id: str
    path: Path


@dataclass(frozen=True)
class LiveServer:
    url: str
    layout: DataLayout
    mp4: Toy  # played as uploaded
    avi: Toy  # MPEG-4 Part 2 in AVI: browsers play its playback copy
    uncopied: Toy  # another AVI, whose copy the player-error test removes
    doomed: Toy  # an MP4 whose stored file the player-error test removes


def _toys(directory: Path, count: int, seed: int, **kwargs: Any) -> list[Toy]:
    manifest = generate_videos(directory, count, seed=seed, domain="A", durations_s=(6,), **kwargs)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    paths = [directory / r["video"] for r in records]
    return [Toy(r["caption"], video_id_for_file(p), p) for r, p in zip(records, paths, strict=True)]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """uvicorn on a free port with collection 'toys': toy videos cut into 2 s clips (most clips start > 0),
    one of them an AVI, indexed and with its playback copy written."""
    import uvicorn

    from service.main import create_app
    from videoseek.collections import create_collection
    from videoseek.runtime.embedded import EmbeddedRuntime

    root = tmp_path_factory.mktemp("browser")
    mp4s = _toys(root / "mp4", 3, seed=5)
    avis = _toys(root / "avi", 2, seed=6, codec="mpeg4")
    settings = settings_for(root / "data", ingest={"clip_window_s": 2.0, "clip_stride_s": 2.0})
    port = free_port()
    runtime = runtime_for(settings)
    assert isinstance(runtime, EmbeddedRuntime)
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    create_collection(runtime.context, "toys")  # in the server's process, on its runtime
    for toy in [*mp4s, *avis]:
        runtime.submit_ingest("toys", toy.path)
    assert runtime.runner.join(timeout=300)  # indexed, and the AVI's playback copy written
    try:
        yield LiveServer(
            f"http://127.0.0.1:{port}/", runtime.context.layout, mp4s[0], avis[0], avis[1], mp4s[1]
        )
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    with ExitStack() as stack:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        stack.callback(driver.quit)
        driver.set_page_load_timeout(60)
        driver.set_window_size(1280, 800)
        yield driver


def open_page(browser: Any, url: str) -> WebDriverWait:
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(
        lambda d: d.execute_script("return document.querySelectorAll('#collection option').length") > 0
    )
    return wait


def search_for(browser: Any, wait: WebDriverWait, toy: Toy) -> list[Any]:
    """Search for the toy's caption; its own result cards that start after 0 s."""
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys(toy.caption, Keys.ENTER)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card")) > 0)
    cards = browser.find_elements(By.CSS_SELECTOR, f"#results .card[data-video-id='{toy.video_id}']")
    later = [card for card in cards if float(card.get_attribute("data-start")) > 0]
    assert later, "expected clips of the video that start after 0 s"
    return later


def player(browser: Any, expression: str) -> Any:
    return browser.execute_script(f"var v = {VIDEO}; return {expression};")


def test_search_then_play_a_result_from_its_start(live_server: LiveServer, browser: Any) -> None:
    wait = open_page(browser, live_server.url)
    assert browser.find_element(By.ID, "collection").get_attribute("value") == "toys"
    card = search_for(browser, wait, live_server.mp4)[0]
    assert "result" in browser.find_element(By.ID, "result-summary").text
    assert card.find_element(By.CSS_SELECTOR, ".words").text  # relevance in words beside its bar
    start = float(card.get_attribute("data-start"))
    card.find_element(By.CSS_SELECTOR, ".thumb").click()

    wait.until(lambda d: d.execute_script("return document.getElementById('player').open"))
    wait.until(lambda d: player(d, "v.readyState") >= 1)
    position = player(browser, "v.currentTime")
    assert player(browser, "v.error && v.error.message") is None
    # It starts playing at once, so allow for the moments between the seek and this read.
    assert start - 0.25 <= position <= start + 1.0, (position, start)
    source = player(browser, "v.currentSrc")
    assert "/collections/toys/videos/" in source and source.endswith(f"/file#t={start}")
    browser.find_element(By.ID, "player-close").click()


def test_a_result_whose_upload_browsers_cannot_play_plays_its_copy_from_start_s(
    live_server: LiveServer, browser: Any
) -> None:
    assert live_server.layout.playback_file("toys", live_server.avi.video_id).is_file()
    wait = open_page(browser, live_server.url)
    card = search_for(browser, wait, live_server.avi)[0]
    start = float(card.get_attribute("data-start"))
    card.find_element(By.CSS_SELECTOR, ".thumb").click()

    # Decoded frames at start_s (readyState >= 2: HAVE_CURRENT_DATA), then playing on from there.
    wait.until(
        lambda d: player(d, f"v.error !== null || (v.readyState >= 2 && v.currentTime >= {start - 0.25})")
    )
    assert player(browser, "v.error && v.error.message") is None
    assert player(browser, "v.currentSrc").endswith(
        f"/videos/{live_server.avi.video_id}/playback.mp4#t={start}"
    )
    first = player(browser, "v.currentTime")
    assert start - 0.25 <= first <= start + 1.5, (first, start)
    wait.until(lambda d: player(d, "v.currentTime") > first)  # it plays: the copy decodes in Chromium
    assert browser.find_element(By.ID, "player-error").get_attribute("hidden") is not None
    browser.find_element(By.ID, "player-close").click()


def play_and_read_error(browser: Any, wait: WebDriverWait, toy: Toy) -> str:
    search_for(browser, wait, toy)[0].find_element(By.CSS_SELECTOR, ".thumb").click()
    message: str = wait.until(lambda d: d.find_element(By.ID, "player-error-text").text or None)
    assert not browser.find_element(By.ID, "player-video").is_displayed()
    return message


def test_a_video_the_browser_cannot_play_says_so_and_offers_the_file(
    live_server: LiveServer, browser: Any
) -> None:
    live_server.layout.playback_file("toys", live_server.uncopied.video_id).unlink()  # as if not written yet
    wait = open_page(browser, live_server.url)
    message = play_and_read_error(browser, wait, live_server.uncopied)
    assert "cannot play this video's format" in message
    download = browser.find_element(By.ID, "player-download")
    assert download.is_displayed()
    assert download.get_attribute("href").endswith(f"/videos/{live_server.uncopied.video_id}/file")
    browser.find_element(By.ID, "player-close").click()


def test_a_video_whose_file_is_gone_says_so(live_server: LiveServer, browser: Any) -> None:
    stored = live_server.layout.video_file("toys", live_server.doomed.video_id)
    assert stored is not None
    stored.unlink()  # the clips stay searchable; the file they would play from is gone
    wait = open_page(browser, live_server.url)
    message = play_and_read_error(browser, wait, live_server.doomed)
    assert "no longer stored" in message
    assert not browser.find_element(By.ID, "player-download").is_displayed()
    browser.find_element(By.ID, "player-close").click()


def test_an_upload_that_fails_shows_its_reason_on_its_row_and_in_the_list(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    sound = write_audio_only(tmp_path / "only-sound.m4a", seconds=2.0)
    wait = open_page(browser, live_server.url + "#videos")
    browser.find_element(By.ID, "upload-file").send_keys(str(sound))
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    row = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs li") or None)[0]
    wait.until(lambda d: "ok" in row.get_attribute("class") or "failed" in row.get_attribute("class"))
    assert "failed" in row.get_attribute("class"), row.text
    assert "no video stream" in row.find_element(By.CSS_SELECTOR, ".stage").text
    assert not row.find_elements(By.TAG_NAME, "progress")  # no half-filled bar on a failed row

    video_id = video_id_for_file(sound)
    listed = wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"#video-rows tr[data-video-id='{video_id}']")
    )
    assert listed[0].get_attribute("data-state") == "failed"
    assert "no video stream" in listed[0].find_element(By.CSS_SELECTOR, ".reason").text
    assert not listed[0].find_elements(By.TAG_NAME, "progress")
    name = listed[0].find_element(By.CSS_SELECTOR, ".name")
    assert name.get_attribute("title") == "only-sound.m4a"  # the full name, when the cell cuts it short


def test_the_admin_view_follows_a_reindex_to_its_end(live_server: LiveServer, browser: Any) -> None:
    wait = open_page(browser, live_server.url + "#admin")
    wait.until(lambda d: d.find_element(By.ID, "task-list").text)
    browser.find_element(By.CSS_SELECTOR, "#reindex-form button[type=submit]").click()
    task = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#task-list li[data-task-id]") or None)[0]
    task_id = task.get_attribute("data-task-id")
    assert task_id.startswith("toys.")
    # The list refreshes itself every second while the task runs, until it has ended.
    ended = WebDriverWait(browser, 180).until(
        lambda d: d.find_elements(
            By.CSS_SELECTOR,
            f"#task-list li[data-task-id='{task_id}']:is([data-state=done], [data-state=failed])",
        )
    )
    assert ended[0].get_attribute("data-state") == "done", ended[0].text
    assert "videos" in ended[0].text
