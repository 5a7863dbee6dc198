"""ufd-eval's verdicts: unsure shares, the attribution matrix, and report.html in a browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import random_image
from typer.testing import CliRunner

from ufd.cli.calibrate import app as calibrate_app
from ufd.cli.eval import app as eval_app
from ufd.cli.index import app as index_app
from ufd.runtime.evaluation.report import paper_rows
from ufd.runtime.methods import open_bundle

runner = CliRunner()
SETS = ("setA", "setB")
PER_CLASS = 10  # 20 reals and 20 fakes in all: calibration needs 20


def _write_sets(root: Path, offset: int) -> Path:
    """Two sets of colour reals and grey fakes; setB's fakes are small (zero-padded)."""
    for s, name in enumerate(SETS):
        for cls, mode in (("0_real", "RGB"), ("1_fake", "L")):
            folder = root / name / cls
            folder.mkdir(parents=True)
            size = (120, 120) if (name, mode) == ("setB", "L") else (230, 230)
            for i in range(PER_CLASS):
                seed = offset + 1000 * s + i + (100 if mode == "L" else 0)
                random_image(folder / f"{i}.png", size, mode, seed=seed)
    return root


@pytest.fixture(scope="module")
def evaluated_sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evaluated images: never in the bank (other seeds than :func:`bank_sets`)."""
    return _write_sets(tmp_path_factory.mktemp("sets"), offset=0)


@pytest.fixture(scope="module")
def bank_sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The images the nn bank and the calibration are made of."""
    return _write_sets(tmp_path_factory.mktemp("bank"), offset=50_000)


def _ok(app, *args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def evaluated(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_bundle: Path,
    evaluated_sets: Path,
    bank_sets: Path,
):
    """A bank with a source per set, a banded linear head, and ufd-eval's outputs."""
    work = tmp_path_factory.mktemp("evaluated")
    bundle = work / "my-bundle"
    shutil.copytree(tiny_bundle, bundle)
    reals = [a for name in SETS for a in ("--real", bank_sets / name / "0_real")]
    fakes = [a for name in SETS for a in ("--fake", f"{name}={bank_sets / name / '1_fake'}")]
    _ok(index_app, bundle, *reals, *fakes, "--precision", "fp32")
    plain_fakes = [a for name in SETS for a in ("--fake", bank_sets / name / "1_fake")]
    _ok(
        calibrate_app,
        bundle,
        *reals,
        *plain_fakes,
        "--precision",
        "fp32",
        "--target-fpr",
        "0.25",
        "--target-fnr",
        "0.25",
    )
    out = work / "eval"
    _ok(
        eval_app,
        bundle,
        evaluated_sets,
        "--out",
        out,
        "--method",
        "linear,nn",
        "--precision",
        "fp32",
        "--no-cache",
    )
    return bundle, out, json.loads((out / "results.json").read_text())


def _nearest_source_matrix(bundle: Path, bank: Path, sets: Path) -> dict:
    """The attribution matrix by brute force, without ufd's search or vote code.

    Features from the bundle's fp32 encoder; each test image takes the source of its
    nearest bank image by cosine (k = 1: the vote and the attribution are the nearest's).
    """
    from ufd.runtime import Detector

    detector = Detector.open(bundle, precision="fp32", provider="cpu")

    def features(folder: Path) -> np.ndarray:
        pixels = [detector.prepare(p) for p in sorted(folder.glob("*.png"))]
        unit = detector.features(np.stack(pixels)).astype(np.float64)
        return unit / np.linalg.norm(unit, axis=1, keepdims=True)

    names, rows = [], []
    for name in SETS:
        for cls, source in (("0_real", "real"), ("1_fake", name)):
            found = features(bank / name / cls)
            rows.append(found)
            names += [source] * len(found)
    bank_vectors = np.concatenate(rows)
    matrix: dict[str, dict[str, int]] = {}
    for name in SETS:
        for cls, truth in (("0_real", "real"), ("1_fake", name)):
            for query in features(sets / name / cls):
                predicted = names[int(np.argmax(bank_vectors @ query))]
                matrix.setdefault(truth, {}).setdefault(predicted, 0)
                matrix[truth][predicted] += 1
    return matrix


def test_attribution_matrix_names_each_set(
    evaluated, evaluated_sets: Path, bank_sets: Path
) -> None:
    bundle, out, results = evaluated
    matrix = results["conditions"]["clean"]["attribution"]
    assert matrix["sources"] == list(SETS)
    expected = _nearest_source_matrix(bundle, bank_sets, evaluated_sets)
    assert matrix["matrix"] == expected
    right = sum(expected.get(name, {}).get(name, 0) for name in SETS)
    assert matrix["accuracy"] == pytest.approx(right / (2 * PER_CLASS))
    table = (out / "table.md").read_text()
    row = expected.get("setA", {})
    cells = [row.get(c, 0) for c in ("real", "setA", "setB", "unknown")]
    assert "### attribution (nn)" in table and f"| setA | {' | '.join(map(str, cells))} |" in table


def test_unsure_share_is_reported_per_set_and_mean(evaluated) -> None:
    bundle, out, results = evaluated
    block = results["conditions"]["clean"]
    band = open_bundle(bundle).manifest.methods["linear"]
    assert results["unsure_bands"] == {"linear": band.real_below, "nn": None}
    for name in SETS:
        row = block["sets"][name]["linear"]
        assert 0 <= row["unsure"] <= 1 and "sure_acc" in row
        assert "unsure" not in block["sets"][name]["nn"]  # no band, no column
    shares = [block["sets"][n]["linear"]["unsure"] for n in SETS]
    assert block["mean"]["linear"]["unsure"] == pytest.approx(sum(shares) / 2)
    assert "linear unsure" in (out / "table.md").read_text()


def test_report_names_the_model_not_the_machine_path(evaluated) -> None:
    bundle, out, _ = evaluated
    html = (out / "report.html").read_text()
    model = open_bundle(bundle).manifest.model.name
    assert f"<h1>ufd-eval: {model}" in html
    assert str(bundle) not in html and str(bundle.parent) not in html
    assert html.index("<table>") < html.index("<img")  # the table opens the report


@pytest.mark.slow
def test_report_renders_the_paper_table_in_chromium(evaluated, browser) -> None:
    from selenium.webdriver.common.by import By

    _, out, results = evaluated
    browser.get((out / "report.html").as_uri())
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("ufd-eval: ")
    table = browser.find_elements(By.TAG_NAME, "table")[0]
    header = [th.text for th in table.find_elements(By.TAG_NAME, "th")]
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    expected_header, expected_rows = paper_rows(results, "clean")
    assert header == expected_header and rows == expected_rows
    assert rows[-1][0] == "mean" and [r[0] for r in rows[:-1]] == list(SETS)
    md = (out / "table.md").read_text()
    for cells in rows[:-1]:  # the numbers table.md holds
        assert "| " + " | ".join(cells) + " |" in md
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == len(SETS) and all(
        browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images
    )  # the figures decode
