"""``ufd-bundle web``: the page in a real headless Chromium, against ufd-detect.

The site is built from the test bundle, served on loopback with the isolation headers,
and fed every image flavour of :mod:`web_images`; each record must be ufd-detect's
(same fields, same label, logit within the bundle's tolerance, the same errors), and
the pixels the page feeds its encoder must be Pillow's. Needs chromium (``make test``
installs it) and npm (onnxruntime-web comes from the npm registry); without them these
tests skip and say so.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_MODEL
from PIL import Image
from web_helpers import detect_records, opened, page_units, python_units, upload, wait_ready
from web_images import web_corpus

from ufd.runtime.bundle import PreprocessConfig
from ufd.runtime.errors import ImageError

pytestmark = pytest.mark.slow
EXACT = (".png", ".gif", ".bmp", ".webp")
"""Formats whose pixels the page must give exactly as Pillow (lossy WebP included: one libwebp)."""
JPEG_LEVELS = 2
"""What two libjpeg-turbo builds may differ by, per channel level (measured here: 0)."""


@pytest.fixture(scope="session")
def tiny_site(tmp_path_factory, tiny_bundle: Path, ort_tarball: Path) -> Path:
    from ufd.runtime.web.site import WebOptions, build_site

    out = tmp_path_factory.mktemp("web") / "site"
    build_site(WebOptions(bundle=tiny_bundle, out=out, ort_tarball=ort_tarball))
    return out


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str | None]]:
    root = tmp_path_factory.mktemp("web-images")
    return root, web_corpus(root)


@pytest.fixture
def page(browser, tiny_site: Path):
    """The page loaded from a loopback server, its graph chosen."""
    browser.set_window_size(1280, 1400)
    with opened(browser, tiny_site):
        yield browser


def test_every_record_is_ufd_detects(page, tiny_site: Path, tiny_bundle: Path, corpus) -> None:
    root, expect = corpus
    files = sorted(root / name for name in expect)
    site = json.loads((tiny_site / "web.json").read_text())
    parity = page.execute_script("return window.ufdParity")
    took = next(p for p in parity if p["ok"])
    records = {r["path"]: r for r in upload(page, files)}
    assert len(records) == len(files)
    wanted = detect_records(tiny_bundle, files, took["precision"])
    limit = site["probes"]["tolerance"]["max_abs_logit"]
    for name, reason in expect.items():
        got, want = records[name], wanted[name]
        assert list(got) == list(want) == site["fields"], name
        if reason is not None:
            assert reason in (got["error"] or ""), (name, got["error"])
            assert reason in (want["error"] or ""), (name, want["error"])
            continue
        assert got["error"] is None and want["error"] is None, (name, got["error"], want["error"])
        assert got["label"] == want["label"], name
        assert abs(got["logit"] - want["logit"]) <= limit, (name, got["logit"], want["logit"])
        assert abs(got["prob"] - want["prob"]) <= limit / 4, name


def test_the_page_feeds_the_encoder_pillows_pixels(page, tiny_site: Path, corpus) -> None:
    root, expect = corpus
    site = json.loads((tiny_site / "web.json").read_text())
    config = PreprocessConfig(**{**site["preprocess"], "mean": (0, 0, 0), "std": (1, 1, 1)})
    for name, reason in expect.items():
        if reason is not None:
            continue
        got = page_units(page, root / name, config, site)
        assert "error" not in got, (name, got)
        want, _ = python_units(root / name, config)
        diff = np.abs(got["units"].astype(int) - want.astype(int)).max()
        assert diff <= (0 if name.endswith(EXACT) else JPEG_LEVELS), (name, diff)


MODES = [
    PreprocessConfig(mode="resize_center_crop", resize_size=256, resize_interpolation="bilinear"),
    PreprocessConfig(
        mode="resize_center_crop", crop_size=384, resize_size=384, resize_interpolation="bicubic"
    ),
    PreprocessConfig(mode="resize", crop_size=224, resize_interpolation="bicubic"),
    PreprocessConfig(mode="resize", crop_size=224, resize_interpolation="nearest"),
    PreprocessConfig(mode="whole", max_input_pixels=30_000),
    PreprocessConfig(mode="five_crops", crop_size=504, grid=14),
    PreprocessConfig(mode="tiles", crop_size=224, tile_stride=224, min_tiles=4),
    PreprocessConfig(mode="tiles", crop_size=96, tile_stride=64, min_tiles=4),
]


@pytest.mark.parametrize(
    "config", MODES, ids=lambda c: f"{c.mode}-{c.resize_interpolation}-{c.crop_size}"
)
def test_every_preprocessing_mode_gives_pythons_units(
    page, tiny_site: Path, corpus, config
) -> None:
    root, _ = corpus
    site = json.loads((tiny_site / "web.json").read_text())
    names = [
        "photo.png",
        "small_90x60.png",
        "odd_interlaced_13x7.png",
        "palette.gif",
        "large_1200x900.jpg",
    ]
    for name in names:
        got = page_units(page, root / name, config, site)
        try:
            want, note = python_units(root / name, config)
        except ImageError as e:  # the image does not fit this mode: the page must say the same
            assert got.get("error") == str(e), (name, got)
            continue
        assert "error" not in got, (name, got)
        assert got["units"].shape == want.shape, name
        assert np.array_equal(got["units"], want), (
            name,
            np.abs(got["units"].astype(int) - want).max(),
        )
        assert got["note"] == note, name


def test_parity_is_measured_in_the_browser_and_shown(page) -> None:
    from selenium.webdriver.common.by import By

    parity = page.execute_script("return window.ufdParity")
    assert parity[0]["precision"] == "int8" and parity[0]["n_probes"] == 8
    took = next(p for p in parity if p["ok"])
    assert took["min_feature_cosine"] >= took["tolerance"]["min_feature_cosine"]
    text = page.find_element(By.ID, "parity").text
    assert f"took the {took['precision']} graph" in text and "cosine" in text
    assert page.execute_script("return self.crossOriginIsolated") is True  # threads on


def test_parity_is_measured_once_per_browser(page) -> None:
    """A second visit takes the graph its first visit measured (localStorage), and says so."""
    from selenium.webdriver.common.by import By

    first = page.execute_script("return window.ufdParity")
    assert not any(p.get("cached") for p in first)
    page.refresh()
    wait_ready(page)
    again = page.execute_script("return window.ufdParity")
    assert [p["precision"] for p in again] == [p["precision"] for p in first]
    assert all(p["cached"] for p in again)
    assert again[0]["min_feature_cosine"] == first[0]["min_feature_cosine"]
    assert "measured in this browser on" in page.find_element(By.ID, "parity").text


def test_result_cards_on_a_screenshot(page, corpus) -> None:
    from selenium.webdriver.common.by import By

    root, _ = corpus
    records = upload(page, [root / "photo.png", root / "truncated.png", root / "grey.jpg"])
    cards = page.find_elements(By.CSS_SELECTOR, "#cards .card")
    assert len(cards) == 3
    for card, record in zip(cards, records, strict=True):
        shot = np.asarray(Image.open(io.BytesIO(card.screenshot_as_png)).convert("RGB"), np.int64)
        if record["error"]:
            assert "Could not score" in card.text and record["error"] in card.text
            assert not card.find_elements(By.TAG_NAME, "img")
            continue
        colour = {"fake": (0xB3, 0x26, 0x1E), "real": (0x14, 0x6C, 0x2E)}[record["label"]]
        bar = page.execute_script(
            "return arguments[0].querySelector('.bar span').offsetWidth", card
        )
        track = page.execute_script("return arguments[0].querySelector('.bar').offsetWidth", card)
        assert abs(bar / track - record["prob"]) < 0.02  # filled to p(generated)
        painted = (np.abs(shot - colour).sum(axis=2) < 30).sum()
        assert painted > 20, f"the {record['label']} bar colour is not on the card"
        thumb = card.find_element(By.TAG_NAME, "img")
        assert page.execute_script("return arguments[0].naturalWidth", thumb) == 320


def test_bad_files_never_freeze_the_page(page, corpus) -> None:
    root, expect = corpus
    bad = [root / n for n, reason in expect.items() if reason is not None]
    records = upload(page, bad)
    assert all(r["error"] for r in records)
    # still answering, and still scoring
    assert page.execute_script("return 1 + 1") == 2
    assert upload(page, [root / "photo.png"])[0]["error"] is None
    from selenium.webdriver.common.by import By

    status = page.find_element(By.ID, "progress").text
    assert status == f"{len(bad) + 1} images: 1 scored, {len(bad)} could not be", status


def test_the_site_loads_nothing_from_elsewhere(tiny_site: Path) -> None:
    for path in [tiny_site / "index.html", *(tiny_site / "ufd-web").glob("*.js")]:
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path
    source = json.loads((tiny_site / "ort" / "SOURCE.json").read_text())
    assert source["licence"] == "MIT" and len(source["tarball_sha256"]) == 64
    assert (tiny_site / "ort" / "LICENSE").read_text().startswith("onnxruntime-web")


RESIZE_JS = """
const [b64, w, h, ow, oh, interpolation, done] = arguments;
const rgb = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
import('./ufd-web/preprocess.js').then((p) => {
  const out = p.resize({width: w, height: h, rgb}, ow, oh, interpolation).rgb;
  let s = '';
  for (let i = 0; i < out.length; i += 0x8000) {
    s += String.fromCharCode(...out.subarray(i, i + 0x8000));
  }
  done(btoa(s));
});
"""


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_resize_is_pillows_byte_for_byte(page, interpolation: str) -> None:
    """Random sizes up and down, both pass orders of Pillow 13: the same bytes as Pillow."""
    rng = np.random.default_rng(len(interpolation))
    resample = getattr(Image.Resampling, interpolation.upper())
    for _ in range(25):
        (w, h), (ow, oh) = rng.integers(1, 300, 2), rng.integers(1, 260, 2)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        data = base64.b64encode(pixels.tobytes()).decode()
        got = page.execute_async_script(
            RESIZE_JS, data, int(w), int(h), int(ow), int(oh), interpolation
        )
        js = np.frombuffer(base64.b64decode(got), np.uint8).reshape(oh, ow, 3)
        want = np.asarray(Image.fromarray(pixels).resize((int(ow), int(oh)), resample))
        assert np.array_equal(js, want), (w, h, ow, oh)


@pytest.fixture
def gpu_browser(tmp_path: Path):
    """Headless Chromium with a WebGPU adapter: SwiftShader's, a GPU in software."""
    from conftest import SOFTWARE_WEBGPU, launch_chromium

    driver = launch_chromium(tmp_path / "profile", SOFTWARE_WEBGPU)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def webgpu_site(tmp_path_factory, head_file: Path, ort_tarball: Path) -> tuple[Path, Path]:
    """(site, bundle): a --webgpu page of a tiny bundle in standard ONNX attention.

    onnxruntime-web's WebGPU MultiHeadAttention (the fused graph) measured cosine 0.9895
    here, outside any tolerance; the plain graph is exact there.
    """
    from ufd.export.graph.build import ExportOptions, export_bundle
    from ufd.runtime.web.site import WebOptions, build_site

    folder = tmp_path_factory.mktemp("webgpu")
    bundle = folder / "bundle"
    export_bundle(
        ExportOptions(
            out=bundle,
            model=TINY_MODEL,
            pretrained="none",
            head=str(head_file),
            precisions=("fp32", "fp16", "int8"),
            fuse_attention=False,
        )
    )
    options = WebOptions(
        bundle, folder / "site", ("fp16", "int8", "fp32"), ort_tarball, webgpu=True
    )
    build_site(options)
    return folder / "site", bundle


def test_webgpu_runs_the_float_graphs_on_the_gpu(gpu_browser, webgpu_site, corpus) -> None:
    root, _ = corpus
    site_dir, bundle = webgpu_site
    with opened(gpu_browser, site_dir):
        parity = gpu_browser.execute_script("return window.ufdParity")
        files = [root / "photo.png", root / "grey.jpg", root / "palette.gif"]
        records = {r["path"]: r for r in upload(gpu_browser, files)}
    took = next(p for p in parity if p["ok"])
    assert parity[0]["ep"] == "webgpu" and parity[0]["precision"] == "fp16"
    # SwiftShader has no shader-f16: fp16 says so and the page goes on; fp32 keeps it
    assert took["ep"] == "webgpu" and took["precision"] in ("fp16", "fp32"), parity
    site = json.loads((site_dir / "web.json").read_text())
    limit = site["probes"]["tolerance"]["max_abs_logit"]
    wanted = detect_records(bundle, files, "fp32")
    for name, want in wanted.items():
        assert records[name]["label"] == want["label"], name
        assert abs(records[name]["logit"] - want["logit"]) <= limit, (name, records[name], want)


def test_a_webgpu_page_without_a_gpu_runs_on_webassembly(browser, webgpu_site) -> None:
    with opened(browser, webgpu_site[0]):  # --disable-gpu: no adapter
        parity = browser.execute_script("return window.ufdParity")
    assert all(p["ep"] == "wasm" for p in parity)
    assert next(p for p in parity if p["ok"])["precision"] == "int8"


def test_a_calibrated_threshold_and_unsure_band_label_as_ufd_detect(
    browser, tiny_bundle: Path, ort_tarball: Path, corpus, tmp_path: Path
) -> None:
    """The bundle's own threshold and unsure band: fake, unsure and real, as ufd-detect says."""
    from ufd.runtime.web.site import WebOptions, build_site

    root, expect = corpus
    files = sorted(root / n for n, reason in expect.items() if reason is None)
    probs = sorted(r["prob"] for r in detect_records(tiny_bundle, files, "int8").values())
    bundle = tmp_path / "calibrated"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    distinct = sorted({round(p, 4) for p in probs})  # edges between images, not on one

    def edge(at: int) -> float:
        return (distinct[at] + distinct[at + 1]) / 2

    low, high = edge(len(distinct) // 3), edge(2 * len(distinct) // 3)
    manifest["methods"]["linear"] |= {"threshold": high, "real_below": low}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    build_site(WebOptions(bundle=bundle, out=tmp_path / "site", ort_tarball=ort_tarball))
    with opened(browser, tmp_path / "site"):
        records = {r["path"]: r for r in upload(browser, files)}
    wanted = detect_records(bundle, files, "int8")
    labels = {name: r["label"] for name, r in wanted.items()}
    assert set(labels.values()) == {"fake", "unsure", "real"}, labels
    checked = 0
    for name, want in wanted.items():
        got = records[name]
        assert abs(got["prob"] - want["prob"]) < 1e-3, (name, got, want)
        pair = sorted((got["prob"], want["prob"]))
        if not any(pair[0] <= edge <= pair[1] for edge in (low, high)):  # no edge between them
            assert got["label"] == want["label"], (name, got, want)
            checked += 1
    assert checked >= len(files) - 2, checked
