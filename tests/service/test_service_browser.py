"""The web page in headless Chromium: type a query, see results, open one, it plays from the clip's start.

Skips cleanly when Chromium, its driver or selenium are missing (``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from service_helpers import runtime_for, settings_for

from videoseek.toy.generate import generate_videos

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """uvicorn on a free port with collection 'toys': toy videos cut into 2 s clips, so most clips start > 0."""
    import uvicorn

    from service.main import create_app
    from videoseek.runtime.embedded import EmbeddedRuntime

    root = tmp_path_factory.mktemp("browser")
    manifest = generate_videos(root / "videos", 3, seed=5, domain="A", durations_s=(6,))
    record = json.loads(manifest.read_text().splitlines()[0])
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
    from videoseek.collections import create_collection

    create_collection(runtime.context, "toys")  # in the server's process, on its runtime
    for line in manifest.read_text().splitlines():
        runtime.submit_ingest("toys", root / "videos" / json.loads(line)["video"])
    assert runtime.runner.join(timeout=180)
    try:
        yield f"http://127.0.0.1:{port}/", record
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
        yield driver


def test_search_then_play_a_result_from_its_start(
    live_server: tuple[str, dict[str, Any]], browser: Any
) -> None:
    url, record = live_server
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(
        lambda d: d.execute_script("return document.querySelectorAll('#collection option').length") > 0
    )
    assert browser.find_element(By.ID, "collection").get_attribute("value") == "toys"

    box = browser.find_element(By.ID, "query")
    box.send_keys(record["caption"], Keys.ENTER)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card")) > 0)
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert "result" in browser.find_element(By.ID, "status").text
    assert cards[0].find_element(By.CSS_SELECTOR, ".score").text
    later = [card for card in cards if float(card.get_attribute("data-start")) > 0]
    assert later, "expected clips that start after 0 s"
    card = later[0]
    start = float(card.get_attribute("data-start"))
    card.click()

    wait.until(lambda d: d.execute_script("return document.getElementById('player').open"))
    wait.until(lambda d: d.execute_script("return document.getElementById('player-video').readyState") >= 1)
    position = browser.execute_script("return document.getElementById('player-video').currentTime")
    error = browser.execute_script(
        "var e = document.getElementById('player-video').error; return e && e.message"
    )
    assert error is None
    # It starts playing at once, so allow for the moments between the seek and this read.
    assert start - 0.25 <= position <= start + 1.0, (position, start)
    source = browser.execute_script("return document.getElementById('player-video').currentSrc")
    assert "/collections/toys/videos/" in source and source.endswith(f"#t={start}")


def test_upload_form_shows_the_job_finishing(
    live_server: tuple[str, dict[str, Any]], browser: Any, tmp_path: Path
) -> None:
    url, _ = live_server
    manifest = generate_videos(tmp_path, 1, seed=99, domain="A", durations_s=(4,))
    video = tmp_path / json.loads(manifest.read_text().splitlines()[0])["video"]
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(
        lambda d: d.execute_script("return document.querySelectorAll('#collection option').length") > 0
    )
    browser.find_element(By.CSS_SELECTOR, "#manage summary").click()
    browser.find_element(By.ID, "upload-file").send_keys(str(video))
    browser.find_element(By.ID, "upload-metadata").send_keys('{"camera": "browser"}')
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    row = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs li") or None)[0]
    wait.until(lambda d: "ok" in row.get_attribute("class") or "failed" in row.get_attribute("class"))
    assert "ok" in row.get_attribute("class"), row.text
    assert row.find_element(By.CSS_SELECTOR, ".stage").text == "done"
    assert float(row.find_element(By.TAG_NAME, "progress").get_attribute("value")) == 1.0
