"""The page at ``/`` in a real headless browser (Debian's chromium, driven by selenium).

What a person sees is checked on screenshots: the thumbnail shows the uploaded
picture, the bar is filled to p(generated), the verdict is in plain words.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from serving import serving

from ufd.runtime import Detector

pytestmark = pytest.mark.slow
VERDICT = {"fake": "Likely generated", "real": "Likely camera-made", "unsure": "Unsure"}
FAKE_RED = np.array([0xB3, 0x26, 0x1E])


def _blue_upload(path: Path) -> Path:
    """A blue picture that says, in its PNG text, that AUTOMATIC1111 made it."""
    rng = np.random.default_rng(5)
    pixels = np.clip(rng.normal((30, 70, 200), 12, (300, 300, 3)), 0, 255).astype(np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a photo of a cat\nSteps: 20, Model: sd_xl_base_1.0")
    Image.fromarray(pixels).save(path, pnginfo=info)
    return path


def _shot(element) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"), np.int64)


def _wait(browser, css: str, timeout: float = 30):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(
        ready.visibility_of_element_located((By.CSS_SELECTOR, css))
    )


def test_page_shows_a_plain_verdict_a_bar_and_the_picture(
    browser, full_bundle: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    image = _blue_upload(tmp_path / "cat.png")
    expected = Detector.open(full_bundle, provider="cpu").score_images([image], method="all")[0]
    with serving(full_bundle, "--provenance") as server:
        browser.set_window_size(1100, 900)
        browser.get(server.url + "/")
        _wait(browser, "#about")
        assert not browser.find_element(By.ID, "keybox").is_displayed()  # no key asked for
        browser.find_element(By.ID, "files").send_keys(str(image))
        card = _wait(browser, ".card.record")
        browser.save_screenshot(str(tmp_path / "page.png"))  # for a person to look at
        verdict = card.find_element(By.CSS_SELECTOR, ".verdict").text
        score = card.find_element(By.CSS_SELECTOR, ".score").text
        provenance = card.find_element(By.CSS_SELECTOR, ".provenance").text
        bar, thumb = (
            _shot(card.find_element(By.CSS_SELECTOR, ".bar")),
            _shot(card.find_element(By.CSS_SELECTOR, ".thumb")),
        )
        raw = card.find_element(By.CSS_SELECTOR, "pre.raw")
        assert not raw.is_displayed()  # the raw record is behind a toggle
        card.find_element(By.TAG_NAME, "summary").click()
        assert raw.is_displayed() and '"nn_label"' in raw.text
    assert verdict == VERDICT[expected.label]
    assert score == f"p(generated) = {expected.prob:.4f}"
    assert provenance.startswith("The file's own metadata says it was generated")
    row = bar[bar.shape[0] // 2]  # one row across the bar: red fill, then grey track
    filled = np.abs(row - FAKE_RED).sum(axis=1) < 40
    assert abs(filled.mean() - expected.prob) <= 3 / len(row)
    centre = thumb[32:-32, 32:-32].reshape(-1, 3).mean(axis=0)  # the picture, scaled down
    assert np.abs(centre - (30, 70, 200)).max() < 25


def test_page_asks_for_a_key_only_when_the_server_wants_one(
    browser, full_bundle: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    image = _blue_upload(tmp_path / "cat.png")
    with serving(full_bundle, "--api-key-file", str(key_file)) as server:
        browser.get(server.url + "/")
        _wait(browser, "#keybox")
        assert "needs an API key" in _wait(browser, "#alert").text
        browser.find_element(By.ID, "key").send_keys("wrong")
        browser.find_element(By.ID, "usekey").click()
        browser.find_element(By.ID, "files").send_keys(str(image))
        alert = browser.find_element(By.ID, "alert")
        _wait_text(browser, alert, "The API key was not accepted. Check it and try again.")
        box = browser.find_element(By.ID, "key")
        box.clear()
        box.send_keys("s3cret")
        browser.find_element(By.ID, "usekey").click()
        _wait_text(browser, browser.find_element(By.ID, "about"), "Model: ufd-tiny-vit")
        assert not alert.is_displayed()
        browser.find_element(By.ID, "files").send_keys(str(image))
        assert _wait(browser, ".card.record .verdict").text in VERDICT.values()


def _wait_text(browser, element, text: str, timeout: float = 30) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(lambda _: text in element.text)


def test_the_api_docs_render_offline(browser, full_bundle: Path) -> None:
    """Chromium runs without network here: Swagger UI must come from the service itself."""
    with serving(full_bundle) as server:
        browser.get(server.url + "/docs")
        title = _wait(browser, ".swagger-ui .info .title")
        assert title.text.startswith("ufd-serve")
        assert "/v1/detect" in _wait(browser, ".opblock-summary-path").text + browser.page_source


def test_a_video_card_plots_p_generated_over_time(
    browser, full_bundle: Path, tmp_path: Path
) -> None:
    pytest.importorskip("av", reason="videos need PyAV: pip install 'ufd[video]'")
    from selenium.webdriver.common.by import By
    from videos import make_video

    video = make_video(tmp_path / "clip.webm", seconds=6, size=(96, 64))
    with serving(full_bundle, "--fps", "2") as server:
        browser.set_window_size(1100, 900)
        browser.get(server.url + "/")
        _wait(browser, "#about")
        browser.find_element(By.ID, "files").send_keys(str(video))
        plot = _wait(browser, ".record svg.timeline")
        card = browser.find_element(By.CSS_SELECTOR, ".record")
        raw = card.find_element(By.CSS_SELECTOR, "pre.raw").get_attribute("textContent")
        record = __import__("json").loads(raw)
        points = plot.find_element(By.TAG_NAME, "polyline").get_attribute("points").split()
        label = plot.get_attribute("aria-label")
        pixels = _shot(plot)
    assert record["frames"] == 12 and len(record["timeline"]) == 12
    assert len(points) == 12  # one per scored frame
    xs = [float(p.split(",")[0]) for p in points]
    assert xs == sorted(xs) and xs[0] == 0.0 and xs[-1] == 240.0  # time runs left to right
    ys = [58 - 56 * p["prob"] for p in record["timeline"]]
    assert [float(p.split(",")[1]) for p in points] == pytest.approx(ys, abs=0.06)
    assert f"12 frames; decided: {record['label']}" in label
    red = np.abs(pixels - FAKE_RED).sum(axis=2) < 60
    assert red.any()  # the line is drawn
