"""ufd-detect end to end: inputs, formats, order, errors, exit status."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from helpers import random_image
from typer.testing import CliRunner

from ufd.cli.detect import app

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "sub" / "deeper").mkdir(parents=True)
    random_image(root / "a.jpg", (300, 260), seed=1)
    random_image(root / "sub" / "B.PNG", (120, 90), seed=2)
    random_image(root / "sub" / "deeper" / "c d é.webp", (500, 231), "L", seed=3)
    random_image(root / "sub" / "strip.bmp", (1, 400), seed=4)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, not picked up from directories")
    return root


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_jsonl_one_record_per_input_in_order(tiny_bundle: Path, images: Path) -> None:
    inputs = [images / "sub" / "B.PNG", images / "missing.jpg", images / "a.jpg"]
    code, out = run(tiny_bundle, *inputs, "--format", "jsonl", "--precision", "fp32")
    records = jsonl(out)
    assert [r["path"] for r in records] == [str(p) for p in inputs]
    assert set(records[0]) == {"path", "logit", "prob", "label", "error"}
    assert records[1]["error"] == "no such file or directory" and records[1]["logit"] is None
    for r in (records[0], records[2]):
        assert r["error"] is None
        assert r["prob"] == pytest.approx(1 / (1 + math.exp(-r["logit"])), abs=1e-12)
        assert r["label"] == ("fake" if r["prob"] > 0.5 else "real")
    assert code == 1  # one input failed


def test_directory_is_recursive_and_case_insensitive(tiny_bundle: Path, images: Path) -> None:
    code, out = run(tiny_bundle, images, "--format", "jsonl", "-q")
    records = {Path(r["path"]).name: r for r in jsonl(out)}
    assert set(records) == {"a.jpg", "B.PNG", "c d é.webp", "strip.bmp", "broken.jpg", "empty.png"}
    assert records["empty.png"]["error"] == "empty file (0 bytes)"
    assert (
        "damaged" in records["broken.jpg"]["error"]
        or "not a recognised" in (records["broken.jpg"]["error"])
    )
    assert records["strip.bmp"]["error"] is None and records["c d é.webp"]["error"] is None
    assert code == 1


def test_all_good_exits_zero_and_glob_expands(tiny_bundle: Path, images: Path) -> None:
    code, out = run(tiny_bundle, str(images / "sub" / "*.PNG"), "--format", "jsonl")
    assert code == 0
    assert [Path(r["path"]).name for r in jsonl(out)] == ["B.PNG"]
    code, out = run(tiny_bundle, str(images / "*.nothing"), "--format", "jsonl")
    assert code == 1 and jsonl(out)[0]["error"] == "glob pattern matched no files"


def test_threshold_option_moves_the_decision(tiny_bundle: Path, images: Path) -> None:
    _, low = run(tiny_bundle, images / "a.jpg", "--format", "jsonl", "--threshold", "0")
    _, high = run(tiny_bundle, images / "a.jpg", "--format", "jsonl", "--threshold", "1")
    assert jsonl(low)[0]["label"] == "fake"
    assert jsonl(high)[0]["label"] == "real"


def test_csv_output_file_format_from_suffix(tiny_bundle: Path, images: Path, tmp_path: Path):
    target = tmp_path / "out.csv"
    code, _ = run(tiny_bundle, images / "a.jpg", images / "empty.png", "--output", target)
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert [Path(r["path"]).name for r in rows] == ["a.jpg", "empty.png"]
    assert rows[0]["label"] in ("fake", "real") and rows[1]["error"] == "empty file (0 bytes)"
    assert code == 1


def test_table_format_is_the_default(tiny_bundle: Path, images: Path) -> None:
    _, out = run(tiny_bundle, images / "a.jpg", images / "empty.png")
    lines = out.splitlines()
    assert lines[0].split() == ["label", "p(fake)", "logit", "path"]
    assert lines[2].startswith("ERROR") and "empty file" in lines[2]


def test_batch_size_does_not_change_scores(tiny_bundle: Path, images: Path) -> None:
    _, one = run(tiny_bundle, images, "--format", "jsonl", "--batch-size", "1", "-q")  # int8
    _, many = run(tiny_bundle, images, "--format", "jsonl", "--batch-size", "7", "-q")
    for a, b in zip(jsonl(one), jsonl(many), strict=True):
        assert a["path"] == b["path"] and a["error"] == b["error"]
        if a["logit"] is not None:
            assert a["logit"] == pytest.approx(b["logit"], abs=1e-5)


@pytest.mark.parametrize("int8_keeps_it", [True, False])
def test_default_precision_on_cpu_follows_the_parity_rule(
    tiny_bundle: Path, int8_keeps_it: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto takes int8 where it keeps the tolerance, else int8-portable: both on every host.

    A parity cache written for the test says how int8 measured "here" (VNNI-like: exact;
    AVX2-like: saturated), whatever this host's CPU is.
    """
    from parity_helpers import pretend_measured

    from ufd.runtime import Detector

    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    pretend_measured(tiny_bundle, "int8", keeps=int8_keeps_it)
    pretend_measured(tiny_bundle, "int8-portable", keeps=True)
    detector = Detector.open(tiny_bundle, provider="cpu")
    assert detector.precision == ("int8" if int8_keeps_it else "int8-portable")
    assert [p.precision for p in detector.passed_over] == ([] if int8_keeps_it else ["int8"])
    assert Detector.open(tiny_bundle, provider="auto").provider == "cpu"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/bundle", "x.jpg"], "not a directory"),
        (["{bundle}", "x.jpg", "--format", "xml"], "unknown --format"),
        (["{bundle}", "x.jpg", "--provider", "tpu"], "unknown provider"),
        (["{bundle}", "x.jpg", "--precision", "fp8"], "no fp8 encoder"),
    ],
)
def test_usage_and_bundle_errors_exit_2_without_traceback(
    tiny_bundle: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, [a.format(bundle=tiny_bundle) for a in args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_missing_inputs_is_a_usage_error(tiny_bundle: Path) -> None:
    assert runner.invoke(app, [str(tiny_bundle)]).exit_code == 2


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_scores_do_not_depend_on_batch_neighbours(
    tiny_bundle: Path, images: Path, precision: str
) -> None:
    """Dynamic int8 quantises activations per tensor: ufd runs it image by image."""
    from ufd.runtime import Detector

    detector = Detector.open(tiny_bundle, precision=precision, provider="cpu")
    alone = next(iter(detector.score([images / "a.jpg"]))).logit
    together = list(detector.score([images / "sub", images / "a.jpg"], batch_size=8))[-1]
    assert together.path.endswith("a.jpg")
    assert together.logit == pytest.approx(alone, abs=1e-5)


def test_a_bug_is_one_line_and_exit_3_never_some_inputs_failed(monkeypatch, tmp_path) -> None:
    from ufd.runtime.detector import Detector

    def broken(*args, **kwargs):
        raise TypeError("replace() should be called on dataclass instances")

    monkeypatch.setattr(Detector, "open", broken)

    image = random_image(tmp_path / "a.png", (64, 64))
    result = runner.invoke(app, [str(tmp_path), str(image)])
    assert result.exit_code == 3, result.output
    assert "internal error: TypeError: replace()" in result.output
    assert "Traceback" not in result.output


def test_demo_table_from_jsonl_equals_ufd_detect_table(
    tiny_bundle: Path, images: Path, tmp_path: Path, capsys
) -> None:
    from ufd.cli.demo import _print_table

    inputs = (images / "a.jpg", images / "empty.png")
    results = tmp_path / "results.jsonl"
    run(tiny_bundle, *inputs, "--output", results)
    _, table = run(tiny_bundle, *inputs)
    _print_table(results)
    assert capsys.readouterr().out == table
