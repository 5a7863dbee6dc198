"""Verdicts under re-upload: the transformation registry, ``--views`` and ``ufd-eval --stability``.

Every expected value is computed here directly: each view is made with Pillow
(or the registry, checked against Pillow), run through the encoder and head one
image at a time, and compared with what the runtime's batched paths report.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from helpers import random_image
from PIL import Image
from serving import multipart, post, serving
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.cli.eval import app as eval_app
from ufd.cli.scan import app as scan_app
from ufd.runtime import Detector
from ufd.runtime.errors import UsageError
from ufd.runtime.methods.base import sigmoid
from ufd.runtime.registry import fields_for, view_fields
from ufd.runtime.transforms import REUPLOAD_NAMES, REUPLOADS, parse_view, reupload_views

runner = CliRunner()
VIEW_FIELDS = ("views_prob_min", "views_prob_max", "views_agree")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """Real photos and noise, in one folder (a set for ufd-eval: 0_real / 1_fake)."""
    root = tmp_path_factory.mktemp("views")
    for sub in ("0_real", "1_fake"):
        (root / "set" / sub).mkdir(parents=True)
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "camera.png", "coins.png"):
        shutil.copy(sample_dir / name, root / "set" / "0_real" / name)
    for i, size in enumerate([(300, 260), (640, 480), (224, 224), (500, 231), (256, 400)]):
        random_image(root / "set" / "1_fake" / f"noise{i}.png", size, seed=70 + i)
    return root


def images(photos: Path) -> list[Path]:
    return sorted((photos / "set").rglob("*.png"))


def direct_probs(detector: Detector, path: Path, names: tuple[str, ...]) -> np.ndarray:
    """p(fake) of the image (first) and each named view, one encoder call per image."""
    image = detector.preparer.decode(path)
    probs = []
    for view in ("clean", *names):
        pixels = detector.preprocessor(parse_view(view)(image))[None]
        probs.append(sigmoid(float(detector.logits(detector.features(pixels))[0])))
    return np.array(probs)


def between(values: np.ndarray) -> float:
    """A threshold halfway between the two middle values (never on a value)."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    return float((ordered[middle - 1] + ordered[middle]) / 2)


# -- the registry -------------------------------------------------------------------------


def test_views_are_the_pillow_operations_they_name() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (90, 121, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    assert np.array_equal(np.asarray(parse_view("jpeg75")(image)), np.asarray(Image.open(buffer)))
    half = image.resize((60, 45), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(parse_view("down0.5")(image)), np.asarray(half))
    crop = image.crop((6, 4, 6 + 109, 4 + 81))  # 90 % of 121 x 90, centred
    assert np.array_equal(np.asarray(parse_view("crop0.9")(image)), np.asarray(crop))
    chained = parse_view("down0.5+jpeg75")
    assert chained.name == "down0.5+jpeg75"
    buffer = io.BytesIO()
    half.save(buffer, format="JPEG", quality=75)
    assert np.array_equal(np.asarray(chained(image)), np.asarray(Image.open(buffer)))


def test_every_reupload_view_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (70, 95, 3), dtype=np.uint8))
    for view in REUPLOADS:
        first, again = np.asarray(view(image)), np.asarray(view(image.copy()))
        assert first.dtype == np.uint8 and np.array_equal(first, again), view.name


def test_view_names_and_counts_are_checked() -> None:
    assert [v.name for v in REUPLOADS] == list(REUPLOAD_NAMES)
    assert reupload_views(0) == () and len(reupload_views(len(REUPLOADS))) == len(REUPLOADS)
    for bad in (-1, len(REUPLOADS) + 1):
        with pytest.raises(UsageError, match="views must be between 0 and"):
            reupload_views(bad)
    for bad in ("jpeg", "sharpen2", "jpeg75+", "down-1"):
        with pytest.raises(UsageError, match="cannot read the view"):
            parse_view(bad)


def test_view_fields_are_named_after_each_methods_score(full_bundle: Path) -> None:
    from ufd.runtime.registry import REGISTRY

    assert view_fields(REGISTRY["linear"]) == VIEW_FIELDS
    assert view_fields(REGISTRY["traces"])[2] == "traces_views_agree"
    assert view_fields(REGISTRY["nn"]) == (
        "nn_views_score_min",
        "nn_views_score_max",
        "nn_views_agree",
    )
    assert fields_for("linear") == ("path", "logit", "prob", "label", "error")
    assert fields_for("linear", views=True) == (
        "path",
        "logit",
        "prob",
        "label",
        *VIEW_FIELDS,
        "error",
    )


# -- --views at detection time ------------------------------------------------------------


def test_views_report_the_views_scores_and_straddling_images_are_unsure(
    tiny_bundle: Path, photos: Path
) -> None:
    detector = Detector.open(tiny_bundle, precision="fp32", provider="cpu")
    paths = images(photos)
    names = REUPLOAD_NAMES[:4]
    direct = np.stack([direct_probs(detector, p, names) for p in paths])
    # thresholds between sorted values: each gives some images views on both sides
    candidates = [between(direct.ravel()[i : i + 2]) for i in range(0, direct.size - 1, 3)]
    outcomes = set()
    for threshold in candidates:
        scored = Detector.open(tiny_bundle, precision="fp32", provider="cpu", threshold=threshold)
        records = scored.score_images(paths, views=4, batch_size=3)
        for record, probs in zip(records, direct, strict=True):
            assert record.prob == pytest.approx(probs[0], abs=1e-5)
            assert record.views_prob_min == pytest.approx(probs[1:].min(), abs=1e-5)
            assert record.views_prob_max == pytest.approx(probs[1:].max(), abs=1e-5)
            sides = probs > threshold
            agree = bool((sides[1:] == sides[0]).all())
            assert record.views_agree is agree
            own = "fake" if sides[0] else "real"
            assert record.label == (own if agree else "unsure")
            outcomes.add(agree)
    assert outcomes == {True, False}  # both cases were exercised


def test_without_views_records_are_unchanged(tiny_bundle: Path, photos: Path) -> None:
    detector = Detector.open(tiny_bundle, precision="fp32", provider="cpu")
    paths = images(photos)
    plain = detector.score_images(paths)
    assert all(set(r.values) == {"logit", "prob", "label"} for r in plain)
    with_views = detector.score_images(paths, views=2)
    for a, b in zip(plain, with_views, strict=True):
        assert a.prob == pytest.approx(b.prob, abs=1e-6)
        assert set(b.values) == {"logit", "prob", "label", *VIEW_FIELDS}
    result = runner.invoke(
        detect_app, [str(tiny_bundle), *map(str, paths), "--format", "jsonl", "-q"]
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [tuple(r) for r in rows] == [fields_for("linear")] * len(paths)


def test_every_method_gets_its_view_fields(full_bundle: Path, photos: Path) -> None:
    detector = Detector.open(full_bundle, precision="fp32", provider="cpu")
    records = detector.score_images(images(photos)[:3], method="all", views=3)
    expected = set(fields_for(detector.methods.available(), views=True))
    for record in records:
        assert set(record.values) | {"path", "error"} == expected
        for name in detector.methods.available():
            cls = type(detector.methods.get(name))
            low, high, agree = view_fields(cls)
            assert record.get(low) <= record.get(high)
            label = record.get(cls.label_field())
            assert isinstance(record.get(agree), bool)
            assert record.get(agree) or label == "unsure"


def test_views_need_images_not_features(tiny_bundle: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.zeros((2, 768), np.float32))
    result = runner.invoke(
        detect_app, [str(tiny_bundle), "--features", str(tmp_path / "f.npy"), "--views", "2"]
    )
    assert result.exit_code == 2 and "cannot score --features" in result.output
    result = runner.invoke(detect_app, [str(tiny_bundle), str(tmp_path), "--views", "11"])
    assert result.exit_code == 2 and "views must be between 0 and 10" in result.output


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
def test_view_fields_reach_every_output_format(tiny_bundle: Path, photos: Path, fmt: str) -> None:
    paths = [str(p) for p in images(photos)[:2]]
    args = [str(tiny_bundle), *paths, "--views", "2", "--format", fmt, "-q", "--precision", "fp32"]
    result = runner.invoke(detect_app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    if fmt == "jsonl":
        row = json.loads(lines[0])
        assert (
            isinstance(row["views_agree"], bool) and row["views_prob_min"] <= row["views_prob_max"]
        )
    elif fmt == "csv":
        header, first = lines[0].split(","), lines[1].split(",")
        assert header[4:7] == list(VIEW_FIELDS)
        assert first[6] in ("true", "false")
    else:
        assert lines[0].split()[:4] == ["label", "p(fake)", "logit", "views"]
        assert lines[1].split()[3] in ("true", "false")


def test_the_service_scores_views(full_bundle: Path, photos: Path) -> None:
    path = images(photos)[0]
    data = path.read_bytes()
    with serving(full_bundle, "--views", "1") as server:
        url = server.url + "/v1/detect"
        status, body, _ = post(
            url, multipart([("file", "a.png", data)]), "multipart/form-data; boundary=ufdtest"
        )
        assert status == 200 and set(VIEW_FIELDS) <= set(body["records"][0])  # the default, 1
        parts = [("file", "a.png", data), ("views", None, b"0")]
        status, body, _ = post(url, multipart(parts), "multipart/form-data; boundary=ufdtest")
        assert status == 200 and "views_agree" not in body["records"][0]
        doc = {"images": [{"data": base64.b64encode(data).decode()}], "views": 3}
        status, body, _ = post(url, json.dumps(doc).encode(), "application/json")
        local = Detector.open(full_bundle, provider="cpu").score_images([data], views=3)[0]
        record = body["records"][0]
        assert status == 200
        for name in VIEW_FIELDS:
            assert record[name] == pytest.approx(local.get(name), abs=1e-6)
        doc["views"] = 11
        status, body, _ = post(url, json.dumps(doc).encode(), "application/json")
        assert status == 400 and '"views" must be an integer from 0 to 10' in body["error"]


def test_scan_writes_view_fields_to_parquet(
    full_bundle: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scan"
    folder = photos / "set" / "0_real"
    result = runner.invoke(
        scan_app, [str(full_bundle), str(folder), "--out", str(out), "--views", "2"]
    )
    assert result.exit_code == 0, result.output
    table = ds.dataset(out, format="parquet").to_table()
    assert table.schema.field("views_agree").type == "bool"
    rows = {r["path"]: r for r in table.to_pylist()}
    expected = runner.invoke(
        detect_app, [str(full_bundle), str(folder), "--views", "2", "--format", "jsonl", "-q"]
    )
    for line in expected.stdout.splitlines():
        record = json.loads(line)
        row = rows[record["path"]]
        assert {k: row[k] for k in record} == record and row["graph_precision"] is not None


# -- ufd-eval --stability -----------------------------------------------------------------


def test_stability_flip_rates_equal_a_direct_computation(
    tiny_bundle: Path, photos: Path, tmp_path: Path
) -> None:
    paths = images(photos)
    detector = Detector.open(tiny_bundle, precision="fp32", provider="cpu")
    direct = np.stack([direct_probs(detector, p, REUPLOAD_NAMES) for p in paths])
    threshold = between(direct[:, 0])
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["methods"]["linear"]["threshold"] = threshold
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "eval"
    args = [str(bundle), str(photos), "--out", str(out), "--stability", "--no-cache"]
    result = runner.invoke(eval_app, [*args, "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    got = json.loads((out / "results.json").read_text())["stability"]["sets"]["set"]["linear"]

    sides = direct > threshold
    flips = sides[:, 1:] != sides[:, :1]
    deltas = np.abs(direct[:, 1:] - direct[:, :1])
    assert flips.any()  # the threshold sits where re-uploads move images across it
    assert got["flip_rate"] == pytest.approx(flips.mean(), abs=1e-12)
    assert got["images_flipped"] == pytest.approx(flips.any(axis=1).mean(), abs=1e-12)
    assert got["mean_abs_delta"] == pytest.approx(deltas.mean(), abs=1e-5)
    assert got["p95_abs_delta"] == pytest.approx(np.percentile(deltas, 95), abs=1e-5)
    for column, name in enumerate(REUPLOAD_NAMES):
        assert got["per_view"][name]["flip_rate"] == pytest.approx(flips[:, column].mean())
    rates = flips.mean(axis=0)
    assert rates[REUPLOAD_NAMES.index(got["worst_view"])] == rates.max()
    table = (out / "table.md").read_text()
    assert "stability under re-upload" in table and got["worst_view"] in table
    report = (out / "report.html").read_text()
    assert "stability under re-upload" in report and "alt='flip rate per view'" in report
