"""The web page in headless Chromium: search and play from a clip's start (also a file that needed a playback
copy), a player error with a download link, an upload that fails with its reason, a thumbs-up and a described
moment becoming training pairs, the admin view following a re-index, a rollback and a retrain to their end.

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

import httpx
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
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
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
    toys: tuple[Toy, ...]  # all of them, for the tests that caption the collection


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
            f"http://127.0.0.1:{port}/",
            runtime.context.layout,
            mp4s[0],
            avis[0],
            avis[1],
            mp4s[1],
            (*mp4s, *avis),
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


def api_get(server: LiveServer, route: str, **params: Any) -> Any:
    response = httpx.get(server.url + route, params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def require_route(server: LiveServer, route: str) -> None:
    """Skip where the live server's API has no ``route`` yet: asked at run time, of the app under test."""
    if route not in api_get(server, "openapi.json")["paths"]:
        pytest.skip(f"this API has no {route} yet")


def task_ids(browser: Any) -> list[str]:
    ids: list[str] = browser.execute_script(
        "return [...document.querySelectorAll('#task-list li[data-task-id]')].map((li) => li.dataset.taskId)"
    )
    return ids


def new_task_id(browser: Any, known: list[str]) -> str | None:
    return next((task_id for task_id in task_ids(browser) if task_id not in known), None)


def ended_task(browser: Any, task_id: str) -> dict[str, str] | None:
    """The task's row (state, kind, text) once it has ended, read in one go: the list re-renders every second."""
    row: dict[str, str] | None = browser.execute_script(
        """const li = [...document.querySelectorAll('#task-list li[data-task-id]')]
             .find((node) => node.dataset.taskId === arguments[0]);
           const ended = li && ['done', 'failed', 'cancelled'].includes(li.dataset.state);
           return ended ? {state: li.dataset.state, kind: li.dataset.kind, text: li.textContent} : null;""",
        task_id,
    )
    return row


def click(browser: Any, selector: str) -> None:
    """Click what ``selector`` finds, again if a re-render replaced it in the meantime."""

    def clicked(driver: Any) -> bool:
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True

    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(clicked)


def run_task_from(browser: Any, button: str, timeout_s: float) -> dict[str, str]:
    """Click the button (a CSS selector) that starts a task, then follow the task's new row to its end."""
    known = task_ids(browser)
    click(browser, button)
    task_id: str = WebDriverWait(browser, 60).until(lambda d: new_task_id(d, known))
    assert task_id.startswith("toys.")
    # The list refreshes itself every second while the task runs, until it has ended.
    ended: dict[str, str] = WebDriverWait(browser, timeout_s).until(lambda d: ended_task(d, task_id))
    return ended


def open_admin(browser: Any, server: LiveServer) -> WebDriverWait:
    wait = open_page(browser, server.url + "#admin")
    wait.until(lambda d: d.find_element(By.ID, "task-list").text)  # tasks listed (or "No tasks yet.")
    return wait


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

    listed[0].find_element(By.CSS_SELECTOR, "button.danger").click()  # read why: dismiss it
    browser.switch_to.alert.accept()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f"#video-rows tr[data-video-id='{video_id}']"))


def test_a_thumbs_up_on_a_result_becomes_a_positive_feedback_pair(
    live_server: LiveServer, browser: Any
) -> None:
    wait = open_page(browser, live_server.url)
    card = search_for(browser, wait, live_server.mp4)[0]
    clip_id = card.get_attribute("data-clip-id")
    up = card.find_element(By.CSS_SELECTOR, ".feedback .up")
    up.click()
    wait.until(lambda d: up.get_attribute("aria-pressed") == "true")  # set once the API stored it

    pairs = api_get(live_server, "collections/toys/feedback", kind="feedback_positive")["pairs"]
    assert [(p["text"], p["video_id"]) for p in pairs if p["clip_id"] == clip_id] == [
        (live_server.mp4.caption, live_server.mp4.video_id)
    ], pairs


def test_describing_a_moment_in_the_player_adds_a_caption_pair(live_server: LiveServer, browser: Any) -> None:
    wait = open_page(browser, live_server.url)
    search_for(browser, wait, live_server.mp4)[0].find_element(By.CSS_SELECTOR, ".thumb").click()
    wait.until(lambda d: player(d, "v.readyState") >= 1)
    text = "the moment the browser test described"
    browser.find_element(By.ID, "caption-text").send_keys(text, Keys.ENTER)
    wait.until(lambda d: "Saved" in d.find_element(By.ID, "caption-status").text)

    pairs = api_get(live_server, "collections/toys/captions", video_id=live_server.mp4.video_id)["pairs"]
    assert [(p["kind"], p["source"]) for p in pairs if p["text"] == text] == [("caption", "api")], pairs
    browser.find_element(By.ID, "player-close").click()


def test_the_admin_view_follows_a_reindex_to_its_end(live_server: LiveServer, browser: Any) -> None:
    open_admin(browser, live_server)
    ended = run_task_from(browser, "#reindex-form button[type=submit]", timeout_s=180)
    assert (ended["state"], ended["kind"]) == ("done", "reindex"), ended
    assert "Re-indexed with" in ended["text"] and "videos" in ended["text"], ended


def test_the_admin_view_rolls_back_to_an_earlier_version(live_server: LiveServer, browser: Any) -> None:
    require_route(live_server, "/collections/{name}/versions")
    started = httpx.post(live_server.url + "collections/toys/reindex", json={"adapter": None}, timeout=30)
    assert started.status_code == 202, started.text  # a version of its own to roll back from
    wait = open_admin(browser, live_server)
    ended = WebDriverWait(browser, 180).until(lambda d: ended_task(d, started.json()["task_id"]))
    assert ended["state"] == "done", ended
    browser.find_element(By.ID, "versions-refresh").click()
    physical: str = wait.until(
        lambda d: d.execute_script(
            "const li = document.querySelector('#version-list li[data-live=false]');"
            "return li && li.dataset.physical;"
        )
    )

    # Read in one script: the list may be re-rendered between a find and a read of the element.
    row_text: str = wait.until(
        lambda d: d.execute_script(
            f"const li = document.querySelector(\"#version-list li[data-physical='{physical}']\");"
            "return li && li.textContent;"
        )
    )
    assert "plain CLIP" in row_text and "text-conditioned pooling" in row_text, row_text
    rollback = f"#version-list li[data-physical='{physical}'] button"
    ended = run_task_from(browser, rollback, timeout_s=180)
    assert (ended["state"], ended["kind"]) == ("done", "rollback"), ended
    assert "Rolled back to" in ended["text"] and f"(version {physical})" in ended["text"], ended
    # A finished task reloads the versions: the one rolled back to is the live one now.
    wait.until(
        lambda d: d.find_elements(
            By.CSS_SELECTOR, f"#version-list li[data-physical='{physical}'][data-live=true]"
        )
    )


@pytest.mark.timeout(600)
def test_the_admin_view_retrains_on_the_collections_own_pairs_and_says_what_it_kept(
    live_server: LiveServer, browser: Any
) -> None:
    require_route(live_server, "/collections/{name}/versions")
    captions = [{"video_id": toy.video_id, "text": toy.caption} for toy in live_server.toys]
    added = httpx.post(live_server.url + "collections/toys/captions", json={"captions": captions}, timeout=30)
    assert added.status_code == 201, added.text
    open_admin(browser, live_server)
    assert browser.find_element(By.ID, "retrain-advanced").get_attribute("open") is None  # defaults: send {}

    ended = run_task_from(browser, "#retrain-form button[type=submit]", timeout_s=480)
    assert (ended["state"], ended["kind"]) == ("done", "retrain"), ended
    words = ended["text"].lower()
    assert "installed the new adapter" in words or "kept the current adapter" in words, words
    assert "r@1" in words
