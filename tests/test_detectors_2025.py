"""Today's detectors (DDA, AlignedForensics, B-Free, SPAI), exported exactly, at any resolution.

As for the detectors before them (tests/test_detectors.py): weights in each
official file format from an independent reference of the official pipeline
(random weights), ``ufd-export --detector NAME``, and the bundle's fp32 logits
must equal the reference's within 1e-4 on real photos of many sizes and modes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from official_aligned import ALIGNED_TRANSFORM
from official_detectors import logits
from official_dinov2 import BFREE_TRANSFORM, DDA_TRANSFORM
from official_spai import spai_logit

from ufd.export.graph.build import ExportOptions, export_bundle
from ufd.runtime import Detector
from ufd.runtime.errors import ModelLoadError

MAX_LOGIT_ERROR = 1e-4


def photos(sample_dir: Path) -> list[Path]:
    """Real photos in many sizes and modes (the scikit-image samples and their variants)."""
    return sorted(p for p in sample_dir.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:14]


@pytest.fixture(scope="module")
def dda(dda_bundle):
    return dda_bundle


@pytest.fixture(scope="module")
def bfree(bfree_bundle):
    return bfree_bundle


@pytest.fixture(scope="module")
def aligned(aligned_bundle):
    return aligned_bundle


@pytest.fixture(scope="module")
def spai(spai_bundle):
    return spai_bundle


def assert_faithful(bundle: Path, official, transform, paths: list[Path]) -> None:
    """fp32 logits within 1e-4 of the official pipeline's; where it cannot run (an image
    smaller than a patch), ufd gives an error record instead of a crash."""
    runs, crashes = [], []
    for path in paths:
        try:
            runs.append((path, logits(official, transform, [path])[0]))
        except RuntimeError:
            crashes.append(path)
    records = Detector.open(bundle, precision="fp32", provider="cpu").score_images(paths)
    by_path = {r.path: r for r in records}
    errors = [abs(by_path[str(p)].logit - e) for p, e in runs]
    assert max(errors) <= MAX_LOGIT_ERROR, max(errors)
    assert np.std([e for _, e in runs]) > 1e-3  # the images really differ: no constant passes
    assert len(runs) >= 8 and all(by_path[str(p)].error for p in crashes)


def test_dda_equals_the_official_pipeline(dda, sample_dir: Path) -> None:
    bundle, official = dda
    assert_faithful(bundle, official, DDA_TRANSFORM, photos(sample_dir))
    manifest = Detector.open(bundle, precision="fp32", provider="cpu").bundle.manifest
    assert manifest.model.detector == "dda" and manifest.preprocess.crop_size == 336


def test_dda_refuses_a_checkpoint_with_missing_keys(dda, tmp_path: Path) -> None:
    _, official = dda
    state = official.state_dict()
    state.pop("base_model.model.blocks.1.mlp.fc2.lora.lora_B")
    broken = tmp_path / "broken.pth"
    torch.save({"model": state}, broken)
    with pytest.raises(ModelLoadError, match=r"lora_B|missing"):
        export_bundle(ExportOptions(out=tmp_path / "b", detector="dda", pretrained=str(broken)))
    torch.save(state, tmp_path / "bare.pth")  # not the official {'model': ...} layout
    with pytest.raises(ModelLoadError, match="no 'model' entry"):
        export_bundle(
            ExportOptions(out=tmp_path / "c", detector="dda", pretrained=str(tmp_path / "bare.pth"))
        )


def test_bfree_equals_the_official_five_crop_wrapper(bfree, sample_dir: Path, tmp_path) -> None:
    """Larger, equal and smaller than 504 (tiled), and thin strips."""
    from PIL import Image

    bundle, official = bfree
    paths = photos(sample_dir)[:8]
    rng = np.random.default_rng(3)
    for size in ((504, 504), (200, 600), (900, 120), (520, 530)):
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    assert_faithful(bundle, official, BFREE_TRANSFORM, paths)
    manifest = Detector.open(bundle, precision="fp32", provider="cpu").bundle.manifest
    assert manifest.preprocess.mode == "five_crops" and manifest.preprocess.grid == 14
    assert any("non-commercial" in note for note in manifest.notes)


def test_aligned_equals_the_official_pipeline_on_whole_images(aligned, sample_dir: Path) -> None:
    bundle, official, _ = aligned
    paths = [p for p in photos(sample_dir) if _pixels(p) <= 300_000]
    assert_faithful(bundle, official, ALIGNED_TRANSFORM, paths)
    manifest = Detector.open(bundle, precision="fp32", provider="cpu").bundle.manifest
    assert manifest.preprocess.mode == "whole" and manifest.preprocess.max_input_pixels == 300_000


def test_an_image_over_the_input_cap_is_centre_cropped_and_says_so(aligned, tmp_path: Path) -> None:
    from PIL import Image
    from torchvision.transforms import functional as tf

    bundle, official, _ = aligned
    rng = np.random.default_rng(5)
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)).save(big)  # 480,000 px
    (record,) = Detector.open(bundle, precision="fp32", provider="cpu").score_images([big])
    assert record.input == "centre 632x474 of 800x600 (this detector's input cap: 300,000 pixels)"
    with Image.open(big) as image:
        cropped = tf.center_crop(image.convert("RGB"), [474, 632])
    with torch.no_grad():
        expected = float(official(ALIGNED_TRANSFORM(cropped)[None]).reshape(-1)[0])
    assert abs(record.logit - expected) <= MAX_LOGIT_ERROR


def test_aligned_int8_is_static_qdq_with_the_stem_in_fp32(aligned) -> None:
    """A ResNet's convolutions take static int8 (dynamic int8 quantises MatMuls only);
    the stem, whose error every later layer amplifies, stays fp32."""
    import onnx

    bundle, _, _ = aligned
    graph = Detector.open(bundle, precision="int8", provider="cpu").bundle.manifest.encoders["int8"]
    assert graph.quantization == "static" and graph.batch_invariant
    nodes = onnx.load(str(bundle / graph.file), load_external_data=False).graph.node
    conv_inputs = {n.name: n.input[0] for n in nodes if n.op_type == "Conv"}
    producers = {out: n.op_type for n in nodes for out in n.output}
    fed_by_dq = {name for name, x in conv_inputs.items() if producers.get(x) == "DequantizeLinear"}
    stem = {name for name in conv_inputs if name.startswith(("/conv1/", "/layer1/"))}
    assert stem and not stem & fed_by_dq  # the stem reads fp32 activations
    assert set(conv_inputs) - stem <= fed_by_dq  # every later convolution is int8


@pytest.mark.parametrize("layout", ["model", "state_dict", "net", "bare"])
def test_aligned_reads_every_layout_of_the_official_loader(
    aligned, tmp_path: Path, layout: str
) -> None:
    bundle, official, _ = aligned
    state = official.state_dict()
    saved = state if layout == "bare" else {layout: state}
    path = tmp_path / f"{layout}.pth"
    torch.save(saved, path)
    out = tmp_path / "b"
    export_bundle(
        ExportOptions(out=out, detector="aligned", pretrained=str(path), precisions=("fp32",))
    )
    assert open_sha(out) == open_sha(bundle)
    state.pop("layer2.1.bn2.running_var")
    torch.save({"model": state}, path)
    with pytest.raises(ModelLoadError, match=r"running_var|missing"):
        export_bundle(ExportOptions(out=tmp_path / "c", detector="aligned", pretrained=str(path)))


def open_sha(bundle: Path) -> str:
    return (
        Detector.open(bundle, precision="fp32", provider="cpu")
        .bundle.manifest.files["encoder.fp32.onnx"]
        .sha256
    )


def _pixels(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return image.width * image.height


def test_spai_equals_the_official_tiled_pipeline(spai, sample_dir: Path, tmp_path: Path) -> None:
    """Smaller than a tile (mirrored), one to three tiles (five crops), many tiles (12 in
    one image: more than one encoder call)."""
    from PIL import Image

    bundle, official = spai
    paths = photos(sample_dir)[:8]
    rng = np.random.default_rng(7)
    for size in (
        (224, 224),
        (100, 60),
        (300, 230),
        (700, 500),
        (224, 1000),
        (50, 400),
        (1000, 700),
    ):
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    expected = [spai_logit(official, p) for p in paths]
    records = Detector.open(bundle, precision="fp32", provider="cpu").score_images(paths)
    errors = [abs(r.logit - e) for r, e in zip(records, expected, strict=True)]
    assert max(errors) <= MAX_LOGIT_ERROR, max(errors)
    assert np.std(expected) > 1e-3
    manifest = Detector.open(bundle, precision="fp32", provider="cpu").bundle.manifest
    assert manifest.preprocess.mode == "tiles" and manifest.aggregator is not None


def test_spai_reads_a_pretraining_prefix_and_refuses_missing_keys(spai, tmp_path: Path) -> None:
    bundle, official = spai
    state = official.state_dict()
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"model": {f"encoder.{k}": v for k, v in state.items()}}, prefixed)
    out = tmp_path / "b"
    export_bundle(
        ExportOptions(out=out, detector="spai", pretrained=str(prefixed), precisions=("fp32",))
    )
    assert open_sha(out) == open_sha(bundle)
    state.pop("mfvit.features_processor.patch_projector.projectors.1.norm2.bias")
    broken = tmp_path / "broken.pth"
    torch.save({"model": state}, broken)
    with pytest.raises(ModelLoadError, match=r"projectors\.1\.norm2\.bias"):
        export_bundle(ExportOptions(out=tmp_path / "c", detector="spai", pretrained=str(broken)))


def test_the_dft_filter_equals_torch_fft() -> None:
    """SPAI's low/high-pass as matrix products, against ``torch.fft`` (float64 truth)."""
    from official_spai import circular_mask, filter_frequencies

    from ufd.export.detectors.spai_model import FrequencyFilter

    torch.manual_seed(0)
    x = torch.rand(2, 3, 224, 224)
    mask = circular_mask(224, 16)
    low, high = filter_frequencies(x.double(), mask)
    ours = FrequencyFilter(mask)(x).double()
    assert torch.allclose(ours, low, atol=2e-5)
    assert torch.allclose(x.double() - ours, high, atol=2e-5)
    assert float((low - low.mean()).abs().max()) > 0.01  # a real filter, not the identity


def test_whole_image_sessions_plan_no_memory_pattern(aligned, dda) -> None:
    """onnxruntime's memory pattern is planned per input shape: for a graph that takes
    every size it only holds memory (twice the peak of a ResNet at 1 MP)."""
    from ufd.runtime.encoder_choice import open_session
    from ufd.runtime.methods import open_bundle
    from ufd.runtime.providers import PROVIDERS

    def mem_pattern(folder: Path) -> bool:
        session = open_session(open_bundle(folder), PROVIDERS["cpu"], "fp32")
        return session.session.get_session_options().enable_mem_pattern

    assert mem_pattern(aligned[0]) is False
    assert mem_pattern(dda[0]) is True
