"""``unclip serve`` over real sockets on 127.0.0.1: 20 concurrent API clients, and the page
in headless chromium (Debian's ``chromium`` and ``chromium-driver``; .ci/run installs them)."""
from __future__ import annotations

import base64
import io
import json
import shutil
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="unclip serve needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="unclip serve needs the 'serve' extra")

FAST = ["prior.sampler.config.steps=4", "decoder.sampler.config.steps=4", "upsamplers.0.sampler.config.steps=4"]


@pytest.fixture(scope="module")
def server_url():
    from unclip_core.serve.app import create_app
    from unclip_core.serve.server import background_server

    app = create_app(["shapes"], overrides=FAST, window_s=0.05)
    with background_server(app) as url:
        app.state.url = url
        yield url, app


def post(url: str, body: dict, timeout: float = 300) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def pixels(url: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_twenty_concurrent_clients_are_all_answered_with_their_own_images(server_url):
    url, app = server_url
    assert url.startswith("http://127.0.0.1:")
    prompts = ["a red circle", "a blue square", "a green triangle", "a yellow circle"]
    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: post(f"{url}/api/generate", {"prompt": prompts[i % 4], "seed": i}), range(20)))
    elapsed = time.monotonic() - started
    assert elapsed < 240, f"20 requests took {elapsed:.0f} s"
    assert all(status == 200 for status, _ in answers), [body for status, body in answers if status != 200][:2]
    assert [body["seeds"] for _, body in answers] == [[i] for i in range(20)]
    images = [pixels(body["images"][0]) for _, body in answers]
    for i in range(20):  # distinct per seed: no request got another's image
        for j in range(i + 1, 20):
            assert np.abs(images[i] - images[j]).max() > 2, (i, j)
    assert max(app.state.worker.batches) > 1, "concurrent requests were never batched"
    # the same request alone again draws the same image
    status, again = post(f"{url}/api/generate", {"prompt": prompts[7 % 4], "seed": 7})
    assert status == 200 and np.abs(pixels(again["images"][0]) - images[7]).max() <= 2


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the test extra)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no chromium and chromedriver here (Debian: apt-get install chromium chromium-driver; .ci/run does)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1000,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_page_generates_an_image_in_a_real_browser(server_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server_url
    browser = _browser()
    try:
        browser.get(url + "/")
        WebDriverWait(browser, 30).until(lambda b: "recipe shapes" in b.find_element(By.ID, "about").text)
        prompt = browser.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys("a blue square to the right of a red circle")
        browser.find_element(By.ID, "n").clear()
        browser.find_element(By.ID, "n").send_keys("2")
        browser.find_element(By.ID, "generate").click()
        WebDriverWait(browser, 240).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#gallery img.result")) == 2)
        sources = [image.get_attribute("src") for image in browser.find_elements(By.CSS_SELECTOR, "#gallery img.result")]
        assert all(source.startswith("data:image/png;base64,") for source in sources)
        assert pixels(sources[0]).shape == (64, 64, 3)
        loaded = browser.execute_script("return [...document.querySelectorAll('#gallery img.result')].map(i => i.naturalWidth)")
        assert loaded == [64, 64]  # the browser decoded the PNGs it shows
        assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")
    finally:
        browser.quit()


def test_the_page_sends_the_mask_painted_on_the_image_for_inpainting(server_url, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = server_url
    photo = tmp_path / "scene.png"
    scene = Image.new("RGB", (64, 64), "white")
    scene.paste(Image.new("RGB", (24, 24), "red"), (8, 20))
    scene.save(photo)
    browser = _browser()
    try:
        browser.get(url + "/")
        WebDriverWait(browser, 30).until(lambda b: "recipe shapes" in b.find_element(By.ID, "about").text)
        browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=inpaint]").click()
        browser.find_element(By.ID, "ip_image").send_keys(str(photo))
        canvas = browser.find_element(By.ID, "ip_canvas")  # 256 × 256; offsets are from its centre
        WebDriverWait(browser, 10).until(lambda b: b.execute_script(
            "return document.getElementById('ip_canvas').getContext('2d').getImageData(40, 120, 1, 1).data[1]") < 100)
        ActionChains(browser).move_to_element_with_offset(canvas, 40, -60).click_and_hold().move_by_offset(0, 120).release().perform()
        browser.find_element(By.ID, "inpaint").click()
        WebDriverWait(browser, 240).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#gallery img.result"))
        assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")
    finally:
        browser.quit()
    job = list(app.state.worker._jobs.values())[-1]
    mask = np.asarray(job.uploads["mask"].convert("L")).astype(int)
    image = np.asarray(job.uploads["image"]).astype(int)
    assert mask.shape == (256, 256) and image.shape == (256, 256, 3)
    assert mask[128, 128 + 40] > 200 and mask[80, 128 + 40] > 200 and mask[170, 128 + 40] > 200  # the whole stroke
    assert mask[128, 20] < 50 and mask[20, 128] < 50 and (mask > 127).mean() < 0.2  # nothing else
    assert image[128, 60, 0] > 200 and image[128, 60, 1] < 60  # the red square, under no paint
