"""Provenance read right on real files that public repositories ship (tests/fixtures/provenance).

Each file's expected reading is in ``expected.json`` (sources and licences in the
README there). Every generator rule is proven by a file: without the rule, that
file reads differently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ufd.runtime.provenance import generators, read_provenance

CORPUS = Path(__file__).parent / "fixtures" / "provenance"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text())


def test_every_corpus_file_is_listed_and_exists() -> None:
    on_disk = {
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.is_file() and p.name not in ("README.md", "expected.json")
    }
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_reads_as_expected(name: str) -> None:
    expected = EXPECTED[name]
    found = read_provenance(CORPUS / name)
    if "record" in expected:
        assert found == expected["record"]
        return
    assert found is not None and found["says"] == expected["says"]
    if "generator" in expected:
        got = found.get("generator")
        want = expected["generator"]
        assert (got and {k: got[k] for k in want}) == want if want else got is None
    if "c2pa" in expected:
        assert {k: found["c2pa"].get(k) for k in expected["c2pa"]} == expected["c2pa"]
        assert "errors" not in found  # a remote manifest is a field, not an error


def test_intact_agrees_with_validation_state_or_says_why() -> None:
    for name in EXPECTED:
        credentials = (read_provenance(CORPUS / name) or {}).get("c2pa")
        if credentials is None or credentials["manifest"] == "remote":
            continue
        valid = credentials["validation_state"] in ("Valid", "Trusted")
        assert credentials["intact"] == (valid and not credentials["broken"]), name
        assert credentials["intact"] or credentials["broken"], name  # not intact: says which part


@pytest.mark.parametrize("index", range(len(generators.RULES)))
def test_each_generator_rule_is_needed_by_its_proof_file(
    index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = generators.RULES[index]
    assert rule.proof in EXPECTED, f"rule {index} names a file the corpus lacks"
    with_rule = read_provenance(CORPUS / rule.proof)
    monkeypatch.setattr(
        generators, "RULES", generators.RULES[:index] + generators.RULES[index + 1 :]
    )
    without = read_provenance(CORPUS / rule.proof)
    assert (without or {}).get("generator") != with_rule["generator"]


def test_records_carry_no_run_dependent_text(tmp_path: Path) -> None:
    first = {name: read_provenance(CORPUS / name) for name in EXPECTED}
    copies = {}
    for name in EXPECTED:  # the same bytes elsewhere read the same
        copy = tmp_path / name.replace("/", "_")
        copy.write_bytes((CORPUS / name).read_bytes())
        copies[name] = read_provenance(copy)
    assert copies == first
    text = json.dumps(first)
    assert str(CORPUS) not in text and str(tmp_path) not in text and " at 0x" not in text
