"""Shared fixtures: tiny random-init bundles with a random head in the official format.

Nothing here needs files beside the repository. The official UnivFD head is
only for the tests that check that exact release (``official_head``): it is
looked for in ``../shared/reference/univfd/``, in ufd's cache, then downloaded
(sha256-pinned); when none of these works those tests are skipped, with the
reason in pytest's summary.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import SHARED_HEAD, TINY_MODEL, random_head

USER_CACHE = Path(
    os.environ.get("UFD_CACHE_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ufd"
)  # before the tests point UFD_CACHE_DIR elsewhere


_MADE_CACHE: list[str] = []  # the cache folder this run made, removed when it ends


def pytest_configure(config: pytest.Config) -> None:
    """Keep ufd's caches (features, verified stamps, graphs) out of the user's home."""
    if "UFD_CACHE_DIR" not in os.environ:
        _MADE_CACHE.append(tempfile.mkdtemp(prefix="ufd-test-cache-"))
        os.environ["UFD_CACHE_DIR"] = _MADE_CACHE[0]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the cache this run made: its optimised graphs take gigabytes a run."""
    while _MADE_CACHE:
        shutil.rmtree(_MADE_CACHE.pop(), ignore_errors=True)


@pytest.fixture(scope="session")
def official_head() -> Path:
    """The official UnivFD head (MIT): ../shared, ufd's cache, or a verified download."""
    from ufd.export.heads import UNIVFD_HEAD_SHA256, fetch_univfd_head
    from ufd.runtime.bundle import sha256_file
    from ufd.runtime.errors import ModelLoadError

    for candidate in (SHARED_HEAD, USER_CACHE / "univfd_fc_weights.pth"):
        if candidate.is_file() and sha256_file(candidate) == UNIVFD_HEAD_SHA256:
            return candidate
    try:
        return fetch_univfd_head()  # the cache first, else a sha256-checked download
    except ModelLoadError as e:
        pytest.skip(f"official UnivFD head not available (no ../shared, no cache, offline): {e}")


@pytest.fixture(scope="session")
def head_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 768-d head in the official format (tests need no downloaded weights)."""
    return random_head(tmp_path_factory.mktemp("head") / "head.pth")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, head_file: Path) -> Path:
    """A bundle of the tiny 768-d ViT with a random head, in every precision."""
    from ufd.export.graph.build import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(
        ExportOptions(
            out=out,
            model=TINY_MODEL,
            pretrained="none",
            head=str(head_file),
            precisions=("fp32", "fp16", "int8", "int8-portable"),
        )
    )
    return out


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos (scikit-image data) in many sizes, modes and formats."""
    from ufd.export.graph.samples import write_samples

    folder = tmp_path_factory.mktemp("samples")
    write_samples(folder)
    return folder


@pytest.fixture(scope="session")
def checkpoint_bundle(tmp_path_factory: pytest.TempPathFactory, head_file: Path):
    """A seeded tiny model saved as a local checkpoint and exported with --pretrained PATH.

    Returns (bundle dir, the torch CLIP model) so tests can compare with torch.
    """
    import open_clip
    import torch

    from ufd.export.graph.build import ExportOptions, export_bundle

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(123)
    model = open_clip.create_model(TINY_MODEL).eval()
    checkpoint = folder / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    out = folder / "bundle"
    export_bundle(
        ExportOptions(
            out=out,
            model=TINY_MODEL,
            pretrained=str(checkpoint),
            head=str(head_file),
            precisions=("fp32", "int8"),
        )
    )
    return out, model


@pytest.fixture(scope="session")
def world_features(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic 768-d features (see ufd.export.train.synthetic) saved as .npy files."""
    import numpy as np

    from ufd.export.train.synthetic import SyntheticWorld

    world = SyntheticWorld(dim=768, seed=0)
    folder = tmp_path_factory.mktemp("features")
    sets = {
        "bank_real": world.reals(300, 1),
        "bank_fake": np.concatenate([world.fakes(75, g, 2) for g in range(4)]),
        "train_real": world.reals(200, 3),
        "train_fake": np.concatenate([world.fakes(50, g, 4) for g in range(4)]),
        "held_real": world.reals(200, 5),
        "test": np.concatenate([world.reals(20, 6), world.fakes(20, 4, 7)]),
    }
    files = {}
    for name, rows in sets.items():
        files[name] = folder / f"{name}.npy"
        np.save(files[name], rows.astype(np.float32))
    return files


def _ok(app, args: list[str]) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


FULL_BUNDLE_STEPS = {
    "linear": "exported with the head",
    "nn": "ufd-index --real-features --fake-features",
    "traces": "ufd-train --method traces",
    "realonly": "ufd-index --real-only, then ufd-calibrate --method realonly",
    "fused": "ufd-train --method fused",
}
"""How :func:`full_bundle` gets each method; a new method adds its line and its step."""


@pytest.fixture(scope="session")
def full_bundle(
    tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, world_features: dict[str, Path]
) -> Path:
    """The tiny bundle with every registered method, each made by its own command."""
    import shutil

    from ufd.cli.calibrate import app as calibrate_app
    from ufd.cli.index import app as index_app
    from ufd.cli.train import app as train_app

    bundle = tmp_path_factory.mktemp("full") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    f = world_features
    _ok(index_app, [bundle, "--real-features", f["bank_real"], "--fake-features", f["bank_fake"]])
    train = ["--real-features", f["train_real"], "--fake-features", f["train_fake"], "--no-cache"]
    _ok(train_app, [bundle, "--method", "traces", *train, "--epochs", "3", "--n-traces", "16"])
    _ok(index_app, [bundle, "--real-only", "--real-features", f["bank_real"]])
    _ok(
        calibrate_app,
        [
            bundle,
            "--method",
            "realonly",
            "--real-features",
            f["held_real"],
            "--k",
            "3",
            "--target-fpr",
            "0.1",
        ],
    )
    _ok(train_app, [bundle, "--method", "fused", *train, "--val-split", "0.3"])
    return bundle


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


SOFTWARE_WEBGPU = ("--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader")
"""Chromium flags for a WebGPU adapter without a GPU: SwiftShader's, in software."""


def launch_chromium(profile: Path, gpu_flags: tuple[str, ...] = ()):
    """Headless Debian chromium driven by selenium; skips when it is not installed.

    Without ``gpu_flags`` the GPU is off (no WebGPU adapter); with them, they say which.
    """
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("chromium/chromedriver not installed: make test installs them (apt-get)")
    os.environ["SE_OFFLINE"] = "true"  # selenium must not look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        *(gpu_flags or ("--disable-gpu",)),
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture
def browser(tmp_path: Path):
    """Headless Debian chromium driven by selenium (``make test`` installs both)."""
    driver = launch_chromium(tmp_path / "profile")
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def _no_trust_policy_leaks():
    """``--trust-key`` sets the process's trust policy (for its workers too); tests run
    commands in-process, so each test starts and ends without one."""
    names = ("UFD_TRUSTED_KEYS", "UFD_TRUSTED_CERTS")
    for name in names:
        os.environ.pop(name, None)
    yield
    for name in names:
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def dda_bundle(tmp_path_factory: pytest.TempPathFactory):
    """(bundle, official DDA): a tiny DINOv2 + LoRA in DDA's checkpoint format."""
    from detector_bundles import build_dda

    return build_dda(tmp_path_factory.mktemp("dda"))


@pytest.fixture(scope="session")
def bfree_bundle(tmp_path_factory: pytest.TempPathFactory):
    """(bundle, official B-Free): five 504-px crops, B-Free's folder layout."""
    from detector_bundles import build_bfree

    return build_bfree(tmp_path_factory.mktemp("bfree"))


@pytest.fixture(scope="session")
def aligned_bundle(tmp_path_factory: pytest.TempPathFactory):
    """(bundle, official model, checkpoint): AlignedForensics on whole images (cap 300,000 px)."""
    from detector_bundles import build_aligned

    return build_aligned(tmp_path_factory.mktemp("aligned"))


@pytest.fixture(scope="session")
def spai_bundle(tmp_path_factory: pytest.TempPathFactory):
    """(bundle, official SPAI): 224-px tiles and the attention aggregator."""
    from detector_bundles import build_spai

    return build_spai(tmp_path_factory.mktemp("spai"))


@pytest.fixture(scope="session")
def ort_tarball() -> Path:
    """onnxruntime-web's pinned tarball: the user's cached one, else npm pack (once a run)."""
    from ufd.runtime.web import ort_package

    cached = USER_CACHE / "web" / ort_package.TARBALL
    if cached.is_file():
        return cached
    if shutil.which("npm") is None:
        pytest.skip(f"npm not installed, so no onnxruntime-web: {ort_package.NO_NPM}")
    return ort_package.tarball()
