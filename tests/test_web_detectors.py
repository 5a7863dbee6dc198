"""Every detector ufd exports, as a web page: each with its own preprocessing (centre crop,
resize + crop, whole image, B-Free's five crops, SPAI's tiles and aggregator), scored in
headless Chromium and compared with ufd-detect on the same graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import random_image
from test_detectors import c2p_clip, commfor, rine, tiny_clip  # noqa: F401 - their bundles
from web_helpers import detect_records, opened, upload

pytestmark = pytest.mark.slow
KINDS = {
    "univfd": "tiny_bundle",
    "rine": "rine",
    "c2p-clip": "c2p_clip",
    "commfor": "commfor",
    "dda": "dda_bundle",
    "aligned": "aligned_bundle",
    "bfree": "bfree_bundle",
    "spai": "spai_bundle",
    "probe": "probe_bundle",
}


@pytest.fixture(scope="module")
def probe_bundle(tmp_path_factory) -> Path:
    """A timm ViT probe (timm's own resize + crop) with a head from ufd-train."""
    from typer.testing import CliRunner

    from ufd.cli.train import app as train_app
    from ufd.export.graph.build import ExportOptions, export_bundle

    root = tmp_path_factory.mktemp("probe")
    for cls, mode in (("real", "RGB"), ("fake", "L")):
        (root / cls).mkdir()
        for i in range(8):
            random_image(root / cls / f"{i}.png", (300, 260), mode, seed=i + 50 * (mode == "L"))
    bundle = root / "bundle"
    export_bundle(
        ExportOptions(
            out=bundle,
            detector="probe",
            model="timm:vit_tiny_patch16_224",
            pretrained="none",
            precisions=("fp32", "int8"),
        )
    )
    args = [str(bundle), "--real", str(root / "real"), "--fake", str(root / "fake")]
    args += ["--val-split", "0.25", "--epochs", "3", "--precision", "fp32", "--no-cache"]
    result = CliRunner().invoke(train_app, args)
    assert result.exit_code == 0, result.output
    return bundle


@pytest.fixture(scope="module")
def images(tmp_path_factory, sample_dir: Path) -> list[Path]:
    """Photos of many sizes and modes (one over AlignedForensics' cap), a strip, a bad file."""
    folder = tmp_path_factory.mktemp("web-kinds")
    names = ("astronaut.png", "chelsea_large.JPG", "coffee_gray.png", "coffee_small_120x90.jpg")
    for name in names:
        shutil.copy(sample_dir / name, folder / name)
    random_image(folder / "strip.png", (600, 9), seed=3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return sorted(folder.iterdir())


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_detector_scores_in_the_browser_as_ufd_detect(
    kind: str, request, browser, tmp_path: Path, ort_tarball: Path, images: list[Path]
) -> None:
    from ufd.runtime.web.site import WebOptions, build_site

    made = request.getfixturevalue(KINDS[kind])
    bundle = made if isinstance(made, Path) else made[0]
    site = build_site(WebOptions(bundle=bundle, out=tmp_path / "site", ort_tarball=ort_tarball))
    assert site["detector"] == kind
    with opened(browser, tmp_path / "site", timeout=300):
        took = next(p for p in browser.execute_script("return window.ufdParity") if p["ok"])
        records = {r["path"]: r for r in upload(browser, images)}
    wanted = detect_records(bundle, images, took["precision"])
    limit = site["probes"]["tolerance"]["max_abs_logit"] or 0.05
    for image in images:
        got, want = records[image.name], wanted[image.name]
        assert list(got) == list(want), image.name
        assert (got["error"] is None) == (want["error"] is None), (image.name, got, want)
        if want["error"] is None:
            assert got["label"] == want["label"], (image.name, got, want)
            assert abs(got["logit"] - want["logit"]) <= limit, (image.name, got, want)
            assert got.get("input") == want.get("input"), image.name
    print(kind, took["precision"], json.dumps({k: r["logit"] for k, r in records.items()}))
