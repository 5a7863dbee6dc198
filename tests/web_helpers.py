"""Driving the web page from tests: wait for it, upload files, read its records and the
units its preprocessing makes, and what ufd-detect and Python make of the same files."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.runtime.bundle import PreprocessConfig
from ufd.runtime.io.decode import decode_image
from ufd.runtime.preprocess import build_preprocessor
from ufd.runtime.units import UNIT_PREPROCESSORS

runner = CliRunner()


@contextmanager
def opened(browser, site: Path, timeout: float = 120) -> Iterator[None]:
    """``site`` served on loopback and loaded in ``browser``, its graph chosen; then stopped."""
    from ufd.runtime.web.static_server import serve_in_background

    server, url = serve_in_background(site)
    try:
        browser.set_script_timeout(120)
        browser.get(url)
        wait_ready(browser, timeout)
        yield
    finally:
        server.shutdown()
        server.server_close()


def wait_ready(browser, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while browser.execute_script("return window.ufdState") in (None, "loading"):
        assert time.monotonic() < deadline, "the page did not load its model"
        time.sleep(0.1)
    state = browser.execute_script("return [window.ufdState, window.ufdError]")
    assert state[0] == "ready", f"the page failed: {state[1]}"


def upload(browser, files: list[Path], timeout: float = 300) -> list[dict]:
    """Pick ``files`` in the page's file input; wait for one record each."""
    from selenium.webdriver.common.by import By

    before = browser.execute_script("return window.ufdRecords.length")
    browser.find_element(By.ID, "files").send_keys("\n".join(str(f) for f in files))
    deadline = time.monotonic() + timeout
    done = "return window.ufdIdle && window.ufdRecords.length"
    while (browser.execute_script(done) or 0) < before + len(files):
        assert time.monotonic() < deadline, "the page stopped scoring (a frozen tab?)"
        time.sleep(0.1)
    lines = browser.execute_script("return window.ufdJsonl()").splitlines()
    return [json.loads(line) for line in lines[before:]]  # in the page's field order


def detect_records(bundle: Path, files: list[Path], precision: str) -> dict[str, dict]:
    args = [str(bundle), *map(str, files), "--format", "jsonl", "--precision", precision]
    result = runner.invoke(detect_app, args)
    assert result.exit_code in (0, 1), result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(row["path"]).name: row for row in rows}


UNITS_JS = """
const [b64, config, reasons, done] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const modules = [import('./ufd-web/decode.js'), import('./ufd-web/preprocess.js')];
Promise.all(modules).then(async ([d, p]) => {
  try {
    const image = await d.decodeImage(bytes, {maxPixels: 64e6, exifTranspose: false, reasons});
    const {units, note} = p.unitsOf(image, config);
    const b64 = (u) => { let s = ''; for (let i = 0; i < u.rgb.length; i += 0x8000)
      s += String.fromCharCode(...u.rgb.subarray(i, i + 0x8000)); return btoa(s); };
    done({units: units.map((u) => [u.height, u.width, b64(u)]), note});
  } catch (e) { done({error: String(e.message || e)}); }
});
"""


def page_units(browser, path: Path, config: PreprocessConfig, site: dict) -> dict:
    """The uint8 units the page's decode + preprocessing make of ``path`` under ``config``."""

    data = base64.b64encode(path.read_bytes()).decode()
    got = browser.execute_async_script(UNITS_JS, data, asdict(config), site["reasons"])
    if "error" in got:
        return got
    units = [
        np.frombuffer(base64.b64decode(b), np.uint8).reshape(h, w, 3) for h, w, b in got["units"]
    ]
    return {"units": np.stack(units), "note": got["note"]}


def python_units(path: Path, config: PreprocessConfig) -> tuple[np.ndarray, str | None]:
    image = decode_image(path)
    if config.units_per_image:
        return UNIT_PREPROCESSORS[config.mode](config).units(image)
    return build_preprocessor(config).crop(image)[None], None
