"""ufd-train augments in the bundle's own geometry: its sizes, mean/std, resize mode, units.

Before, the augmentation was the 224-px CLIP recipe for every bundle: a 384-px
ImageNet bundle skipped every image ("Got: 224 Expected: 384") and then stopped
with a ZeroDivisionError. Here each kind of bundle's augmented input, with blur
and JPEG switched off, must be exactly the bundle's own preprocessing of the
same image (or of its mirror image) up to where the recipe crops at random.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import random_image
from PIL import Image
from typer.testing import CliRunner

from ufd.cli.train import app as train_app
from ufd.export.train.augment import PaperAugmentation
from ufd.runtime.bundle.manifest import Manifest, PreprocessConfig
from ufd.runtime.methods import config_types
from ufd.runtime.pipeline import Preparer
from ufd.runtime.units import Units

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
runner = CliRunner()


def clean(augmentation: PaperAugmentation) -> PaperAugmentation:
    """The recipe without blur and JPEG: only its geometry and normalisation are left."""
    augmentation.degrade = lambda image, rng: image
    return augmentation


def mirrored(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def photo(sample_dir: Path) -> Image.Image:
    with Image.open(sample_dir / "astronaut.png") as image:
        return image.convert("RGB").resize((520, 400))


def test_a_384_imagenet_bundle_gets_384_crops_of_its_own_resize(sample_dir: Path) -> None:
    config = PreprocessConfig(
        mode="resize_center_crop",
        crop_size=384,
        resize_size=440,
        resize_interpolation="bicubic",
        mean=IMAGENET[0],
        std=IMAGENET[1],
    )
    image = photo(sample_dir)
    resized = image.resize((572, 440), Image.Resampling.BICUBIC)  # shorter side 440, bicubic
    augmentation = clean(PaperAugmentation(seed=1, preprocess=config))
    normalise = Preparer(config).normalizer
    sources = [normalise(np.asarray(resized)), normalise(np.asarray(mirrored(resized)))]
    for view in range(6):
        out = augmentation(image, augmentation.rng("p", view))
        assert out.shape == (3, 384, 384)
        assert any(is_window(out, source) for source in sources), f"view {view}"


def is_window(crop: np.ndarray, image: np.ndarray) -> bool:
    """Whether (3, s, s) ``crop`` is a window of (3, H, W) ``image``."""
    size = crop.shape[-1]
    starts = np.argwhere(np.all(image == crop[:, :1, :1], axis=0))
    return any(
        np.array_equal(image[:, top : top + size, left : left + size], crop) for top, left in starts
    )


def test_a_pe_probe_trains_on_squashed_images(sample_dir: Path) -> None:
    config = PreprocessConfig(
        mode="resize",
        crop_size=384,
        resize_interpolation="bilinear",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    image = photo(sample_dir)
    preparer = Preparer(config)
    squash = preparer.preprocessor.crop
    expected = {preparer.normalizer(squash(i)).tobytes() for i in (image, mirrored(image))}
    augmentation = clean(PaperAugmentation(seed=2, preprocess=config))
    outs = [augmentation(image, augmentation.rng("p", v)) for v in range(8)]
    assert all(o.tobytes() in expected for o in outs)
    assert len({o.tobytes() for o in outs}) == 2  # flipped and not, both drawn


@pytest.mark.parametrize(
    "config",
    [
        PreprocessConfig(
            mode="tiles",
            crop_size=224,
            tile_stride=224,
            min_tiles=4,
            mean=(0.0,) * 3,
            std=(1.0,) * 3,
        ),
        PreprocessConfig(
            mode="five_crops", crop_size=112, grid=14, mean=IMAGENET[0], std=IMAGENET[1]
        ),
        PreprocessConfig(
            mode="whole", crop_size=256, max_input_pixels=150_000, mean=IMAGENET[0], std=IMAGENET[1]
        ),
    ],
    ids=lambda c: c.mode,
)
def test_units_bundles_train_on_their_own_units(config: PreprocessConfig, sample_dir: Path) -> None:
    image = photo(sample_dir)
    preparer = Preparer(config)
    expected = []
    for version in (image, mirrored(image)):
        own, note = preparer.units.units(version)
        expected.append(preparer.normalise(Units((own,), note)))
    augmentation = clean(PaperAugmentation(seed=3, preprocess=config))
    for view in range(4):
        out = augmentation(image, augmentation.rng("p", view))
        assert isinstance(out, Units)
        assert any(
            np.array_equal(out.parts[0], e.parts[0]) and out.note == e.note for e in expected
        )
    if config.mode == "whole":
        assert out.note is not None and "input cap" in out.note  # 520x400 is over 150,000


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classes")
    for cls, mode in (("real", "RGB"), ("fake", "L")):
        (root / cls).mkdir()
        for i in range(10):
            random_image(root / cls / f"{i}.png", (300, 260), mode, seed=i + 50 * (mode == "L"))
    return root


def train(bundle: Path, folders: Path, tmp_path: Path) -> Manifest:
    result = runner.invoke(
        train_app,
        [str(bundle), "--real", str(folders / "real"), "--fake", str(folders / "fake"),
         "--val-split", "0.3", "--epochs", "5", "--precision", "fp32", "--no-cache"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output
    return Manifest.read(bundle / "manifest.json", config_types())


@pytest.mark.slow
def test_ufd_train_on_a_384_imagenet_bundle_and_a_pe_probe(
    folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from official_detectors import OfficialViTClassifier

    from ufd.export.graph.build import ExportOptions, export_bundle

    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(5)
    weights = tmp_path / "commfor.pth"
    torch.save({"model": OfficialViTClassifier("vit_tiny_patch16_384", 192).state_dict()}, weights)
    bundles = {
        "commfor": ExportOptions(
            out=tmp_path / "commfor", detector="commfor", pretrained=str(weights)
        ),
        "pe": ExportOptions(
            out=tmp_path / "pe", detector="probe", model="PE-Core-T-16-384", pretrained="none"
        ),
    }  # fmt: skip
    for name, options in bundles.items():
        options.precisions = ("fp32",)
        export_bundle(options)
        manifest = train(options.out, folders, tmp_path)
        assert manifest.preprocess.crop_size == 384
        training = manifest.method_provenance("linear")["training"]
        assert training["n_val"] == 6, name  # every image encoded: none skipped


def test_a_class_with_no_encodable_image_is_named_not_a_crash(
    tiny_bundle: Path, folders: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(4):
        (junk / f"{i}.png").write_bytes(b"not an image")
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    result = runner.invoke(
        train_app, [str(bundle), "--real", str(folders / "real"), "--fake", str(junk), "--no-cache"]
    )
    assert result.exit_code == 2
    assert "training has no fake features: see the skipped images above" in result.output
