"""The detectors that followed UnivFD, exported exactly and run by the same runtime.

For each detector: its weights are written in the official file format from an
independent reference of its official pipeline (tests/official_detectors.py,
random weights), ``ufd-export --detector NAME`` exports them, and the bundle's
fp32 logits must equal the reference's within 1e-4 on real photos of many sizes
and modes. Then every method and the service run on each bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_MODEL
from official_detectors import (
    C2P_TRANSFORM,
    RINE_TRANSFORM,
    OfficialC2PClip,
    OfficialRine,
    OfficialViTClassifier,
    clip_config,
    commfor_transform,
    logits,
)
from serving import multipart, post, serving
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.cli.export import app as export_app
from ufd.cli.index import app as index_app
from ufd.export.detectors import DETECTORS, DetectorRequest
from ufd.export.graph.build import ExportOptions, export_bundle
from ufd.runtime import Detector
from ufd.runtime.bundle import sha256_file
from ufd.runtime.errors import ModelLoadError, UsageError

runner = CliRunner()
MAX_LOGIT_ERROR = 1e-4


def photos(sample_dir: Path) -> list[Path]:
    """Real photos in many sizes and modes (the scikit-image samples)."""
    return sorted(p for p in sample_dir.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:14]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory):
    """A seeded tiny open_clip tower saved as a local checkpoint: (path, model)."""
    import open_clip

    torch.manual_seed(11)
    model = open_clip.create_model(TINY_MODEL).eval()
    path = tmp_path_factory.mktemp("tiny-clip") / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="module")
def rine(tiny_clip, tmp_path_factory: pytest.TempPathFactory):
    """(bundle, official model) for RINE with a random trainable part in its checkpoint format."""
    import open_clip

    checkpoint, gelu_clip = tiny_clip
    clip = open_clip.create_model(TINY_MODEL, force_quick_gelu=True).eval()  # OpenAI's CLIP
    clip.load_state_dict(gelu_clip.state_dict())
    torch.manual_seed(12)
    official = OfficialRine(clip.visual, nproj=2, proj_dim=16).eval()
    with torch.no_grad():  # spread the random weights so that images score apart
        for name, parameter in official.named_parameters():
            if not name.startswith("visual."):
                parameter.normal_(0.0, 0.5)
    folder = tmp_path_factory.mktemp("rine")
    trainable = folder / "model_2class_trainable.pth"
    torch.save(official.trainable_state(), trainable)
    reloaded = OfficialRine(clip.visual, nproj=2, proj_dim=16).eval()
    reloaded.load_trainable(torch.load(trainable, weights_only=True))
    bundle = folder / "bundle"
    export_bundle(
        ExportOptions(
            out=bundle,
            detector="rine",
            model=TINY_MODEL,
            pretrained=str(checkpoint),
            head=str(trainable),
            precisions=("fp32", "int8"),
        )
    )
    return bundle, reloaded, RINE_TRANSFORM


@pytest.fixture(scope="module")
def c2p_clip(tmp_path_factory: pytest.TempPathFactory):
    """(bundle, official model) for C2P-CLIP from a random CLIPModel saved as its release."""
    torch.manual_seed(13)
    official = OfficialC2PClip(clip_config()).eval()
    folder = tmp_path_factory.mktemp("c2p")
    release = folder / "C2P_CLIP_release_tiny.pth"
    torch.save(official.state_dict(), release)
    bundle = folder / "bundle"
    export_bundle(
        ExportOptions(
            out=bundle, detector="c2p-clip", pretrained=str(release), precisions=("fp32", "int8")
        )
    )
    return bundle, official, C2P_TRANSFORM


@pytest.fixture(scope="module")
def commfor(tmp_path_factory: pytest.TempPathFactory):
    """(bundle, official model) for Community Forensics, its .pth {'model': ...} format."""
    torch.manual_seed(14)
    official = OfficialViTClassifier("vit_tiny_patch16_224", 192).eval()
    folder = tmp_path_factory.mktemp("commfor")
    checkpoint = folder / "commfor_tiny.pth"
    state = {f"_orig_mod.{k}": v for k, v in official.state_dict().items()}  # torch.compile'd
    torch.save({"model": state, "epoch": 3}, checkpoint)
    bundle = folder / "bundle"
    export_bundle(
        ExportOptions(
            out=bundle, detector="commfor", pretrained=str(checkpoint), precisions=("fp32", "int8")
        )
    )
    return bundle, official, commfor_transform(224)


@pytest.mark.parametrize("name", ["rine", "c2p_clip", "commfor"])
def test_fp32_logits_equal_the_official_pipeline(name: str, request, sample_dir: Path) -> None:
    bundle, official, transform = request.getfixturevalue(name)
    paths = photos(sample_dir)
    expected = logits(official, transform, paths)
    records = Detector.open(bundle, precision="fp32", provider="cpu").score_images(paths)
    errors = [abs(r.logit - e) for r, e in zip(records, expected, strict=True)]
    assert max(errors) <= MAX_LOGIT_ERROR, (name, max(errors))
    assert np.std(expected) > 1e-3  # the images really differ: a constant could not pass
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["detector"] == name.replace("_", "-")
    parity = manifest["provenance"]["parity"]
    assert parity["fp32"]["max_abs_logit_error"] <= MAX_LOGIT_ERROR  # checked at export too
    assert parity["int8"]["max_abs_logit_error"] is not None  # measured and recorded


def test_commfor_reads_the_hugging_face_safetensors_too(tmp_path: Path, sample_dir: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(15)
    official = OfficialViTClassifier("vit_tiny_patch16_384", 192).eval()
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in official.state_dict().items()}, str(weights))
    bundle = tmp_path / "bundle"
    manifest = export_bundle(
        ExportOptions(out=bundle, detector="commfor", pretrained=str(weights), precisions=("fp32",))
    )
    assert manifest.model.image_size == 384 and manifest.preprocess.resize_size == 440
    paths = photos(sample_dir)[:4]
    expected = logits(official, commfor_transform(384), paths)
    records = Detector.open(bundle, provider="cpu").score_images(paths)
    assert max(abs(r.logit - e) for r, e in zip(records, expected, strict=True)) <= 1e-4


@pytest.mark.parametrize("features", ["cls", "blocks"])
def test_probe_features_equal_the_backbone(features: str, tmp_path: Path, sample_dir: Path) -> None:
    import timm
    from torchvision import transforms

    bundle = tmp_path / "probe"
    manifest = export_bundle(
        ExportOptions(
            out=bundle,
            detector="probe",
            model="timm:vit_tiny_patch16_224",
            pretrained="none",
            detector_settings={"features": features},
            precisions=("fp32",),
        )
    )
    assert "linear" not in manifest.methods  # the head comes from ufd-train
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).eval()
    outputs = []
    handles = [
        block.norm2.register_forward_hook(lambda m, a, out: outputs.append(out[:, 0]))
        for block in model.blocks
    ]
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)  # timm's own evaluation transform
    assert isinstance(transform.transforms[0], transforms.Resize)
    detector = Detector.open(bundle, precision="fp32", provider="cpu")
    for path in photos(sample_dir)[:4]:
        outputs.clear()
        with torch.no_grad():
            from PIL import Image

            x = transform(Image.open(path).convert("RGB")).unsqueeze(0)
            pooled = model(x)
        expected = pooled[0] if features == "cls" else torch.cat(outputs, dim=1)[0]
        got = detector.features(detector.prepare(path)[None])[0]
        assert got.shape == (manifest.model.feature_dim,)
        assert np.abs(got - expected.numpy()).max() <= 1e-4
    for handle in handles:
        handle.remove()


def test_every_method_and_the_service_run_on_each_detector(
    rine, c2p_clip, commfor, sample_dir: Path, tmp_path: Path
) -> None:
    reals = tmp_path / "reals"
    fakes = tmp_path / "fakes"
    reals.mkdir()
    fakes.mkdir()
    for i, path in enumerate(photos(sample_dir)):
        (reals if i % 2 else fakes).joinpath(path.name).write_bytes(path.read_bytes())
    for bundle, _, _ in (rine, c2p_clip, commfor):
        result = runner.invoke(index_app, [str(bundle), "--real", str(reals), "--fake", str(fakes)])
        assert result.exit_code == 0, result.output
        result = runner.invoke(index_app, [str(bundle), "--real-only", "--real", str(reals)])
        assert result.exit_code == 0, result.output
        args = [str(bundle), str(reals), "--method", "linear,nn", "--format", "jsonl", "-q"]
        result = runner.invoke(detect_app, [*args, "--provenance", "--views", "1"])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert rows and all(
            r["error"] is None and r["nn_label"] in ("real", "fake", "unsure") for r in rows
        )
        assert all(0.0 <= r["prob"] <= 1.0 and "views_agree" in r for r in rows)
    bundle = rine[0]
    data = photos(sample_dir)[0].read_bytes()
    with serving(bundle, "--method", "linear,nn") as server:
        status, body, _ = post(
            server.url + "/v1/detect",
            multipart([("file", "a.png", data)]),
            "multipart/form-data; boundary=ufdtest",
        )
    local = Detector.open(bundle, provider="cpu").score_images([data], method="linear,nn")[0]
    assert status == 200 and body["records"][0]["logit"] == pytest.approx(local.logit, abs=1e-6)


def test_list_names_every_detector_and_its_files() -> None:
    result = runner.invoke(export_app, ["--list"])
    assert result.exit_code == 0
    for name, detector in DETECTORS.items():
        assert f"{name}: {detector.summary}" in result.stdout
        assert detector.weights in result.stdout
        assert detector.licence in result.stdout
    assert list(DETECTORS) == [
        "univfd",
        "rine",
        "c2p-clip",
        "commfor",
        "probe",
        "dda",
        "bfree",
        "aligned",
        "spai",
    ]


def test_weight_errors_name_the_file_and_what_is_missing(tiny_clip, tmp_path: Path) -> None:
    checkpoint, _ = tiny_clip
    broken = tmp_path / "model_4class_trainable.pth"
    torch.save({"alpha": torch.zeros(1, 2, 8)}, broken)
    options = {"out": tmp_path / "b", "model": TINY_MODEL, "pretrained": str(checkpoint)}
    with pytest.raises(ModelLoadError, match=r"model_4class_trainable.pth lacks proj1.1.weight"):
        export_bundle(ExportOptions(detector="rine", head=str(broken), **options))
    wrong = tmp_path / "wrong_backbone.pth"
    torch.save(
        {
            "alpha": torch.zeros(1, 24, 8),
            "proj1.1.weight": torch.zeros(8, 1024),
            "head.6.weight": 0,
        },
        wrong,
    )
    with pytest.raises(ModelLoadError, match=r"trained on 24 blocks of 1024-d tokens"):
        export_bundle(ExportOptions(detector="rine", head=str(wrong), **options))
    with pytest.raises(ModelLoadError, match="c2p-clip needs its release file"):
        export_bundle(ExportOptions(out=tmp_path / "c", detector="c2p-clip"))
    empty = tmp_path / "commfor.pth"
    torch.save({"model": {"vit.cls_token": torch.zeros(1, 1, 8)}}, empty)
    with pytest.raises(ModelLoadError, match=r"commfor.pth lacks pos_embed"):
        export_bundle(ExportOptions(out=tmp_path / "d", detector="commfor", pretrained=str(empty)))
    result = runner.invoke(export_app, ["--out", str(tmp_path / "e"), "--detector", "dire"])
    assert result.exit_code == 2 and "unknown detector 'dire'" in result.output


def test_rine_always_runs_openai_clip_with_quick_gelu(rine, tiny_clip, tmp_path: Path) -> None:
    """A local checkpoint without --quick-gelu still gets QuickGELU (the fixture exports so,
    and its logits equal RINE's on a QuickGELU tower); --no-quick-gelu is refused."""
    bundle, _, _ = rine
    assert Detector.open(bundle, provider="cpu").bundle.manifest.model.quick_gelu is True
    checkpoint, _ = tiny_clip
    with pytest.raises(UsageError, match="QuickGELU"):
        export_bundle(
            ExportOptions(
                out=tmp_path / "b",
                detector="rine",
                model=TINY_MODEL,
                pretrained=str(checkpoint),
                head=str(checkpoint),
                detector_settings={"quick_gelu": False},
            )
        )


def test_univfd_takes_a_local_checkpoint_under_the_official_head_as_openai(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ufd.export.heads as heads
    from ufd.export.detectors import get_detector

    weights, head = tmp_path / "open_clip_pytorch_model.bin", tmp_path / "fc_weights.pth"
    weights.write_bytes(b"weights")
    head.write_bytes(b"the official head")
    monkeypatch.setattr(heads, "UNIVFD_HEAD_SHA256", sha256_file(head))
    univfd = get_detector("univfd")

    def quick_gelu(**asked) -> bool | None:
        settings = univfd.settings_for(asked.pop("settings", {}))
        request = DetectorRequest(pretrained=str(weights), settings=settings, **asked)
        return univfd._quick_gelu(request)

    assert quick_gelu(model="ViT-L-14", head=str(head)) is True
    assert quick_gelu(model="ViT-L-14", head="univfd") is True
    assert quick_gelu(model="ViT-L-14", head=str(weights)) is None  # not the official head
    assert quick_gelu(model="ViT-B-16", head=str(head)) is None
    assert quick_gelu(model="ViT-L-14", head=str(head), settings={"quick_gelu": False}) is False
