"""The page at ``/`` in a real headless browser (Debian's chromium, driven by selenium)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import random_image
from serving import serving

from ufd.runtime import Detector

pytestmark = pytest.mark.slow


def test_page_scores_an_uploaded_image(browser, full_bundle: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    image = random_image(tmp_path / "upload.png", (320, 240), seed=5)
    expected = Detector.open(full_bundle, provider="cpu").score_images([image], method="all")[0]
    with serving(full_bundle) as server:
        browser.get(server.url + "/")
        WebDriverWait(browser, 20).until(
            lambda d: "methods:" in d.find_element(By.ID, "about").text
        )
        browser.find_element(By.ID, "files").send_keys(str(image))
        row = WebDriverWait(browser, 30).until(
            ready.presence_of_element_located((By.CSS_SELECTOR, "tr.record"))
        )
        headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#head th")]
        cells = dict(
            zip(headers, [td.text for td in row.find_elements(By.TAG_NAME, "td")], strict=True)
        )
    assert cells["image"] == "upload.png"
    assert cells["prob"] == f"{expected.prob:.4f}" and cells["label"] == expected.label
    assert cells["nn_label"] == expected.nn_label and cells["fused_label"] == expected.fused_label
    assert cells["error"] == ""
