"""Provenance coverage on the real-file corpus: per source, files read as expected / total.

    python benchmarks/provenance_corpus.py [--extra DIR ...]

Reads every file of ``tests/fixtures/provenance`` (sources and licences in its
README) and compares it with ``expected.json`` the way the corpus test does;
prints a Markdown table per source folder and the files that differ. ``--extra``
reads more folders (e.g. fixture folders of a fetched repository) and prints
what ufd says of each, for a look by eye.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from ufd.runtime.provenance import read_provenance

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "provenance"


def reads_as_expected(found: dict | None, expected: dict) -> bool:
    """The corpus test's comparison, as a yes or no."""
    if "record" in expected:
        return found == expected["record"]
    if found is None or found.get("says") != expected["says"]:
        return False
    if "generator" in expected:
        got, want = found.get("generator"), expected["generator"]
        if (want is None) != (got is None) or (want and {k: got.get(k) for k in want} != want):
            return False
    if "c2pa" in expected:
        c2pa = found.get("c2pa") or {}
        if {k: c2pa.get(k) for k in expected["c2pa"]} != expected["c2pa"]:
            return False
    return True


def main() -> None:
    """Read, compare, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", type=Path, action="append", default=[])
    args = parser.parse_args()
    expected = json.loads((CORPUS / "expected.json").read_text())
    right: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    wrong = []
    for name, want in sorted(expected.items()):
        source = name.split("/", 1)[0]
        total[source] += 1
        if reads_as_expected(read_provenance(CORPUS / name), want):
            right[source] += 1
        else:
            wrong.append(name)
    print("| source | read as expected |\n|---|---|")
    for source in sorted(total):
        print(f"| {source} | {right[source]} / {total[source]} |")
    print(f"| all | {sum(right.values())} / {sum(total.values())} |")
    for name in wrong:
        print(f"differs: {name}")
    for folder in args.extra:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            found = read_provenance(path)
            said = None if found is None else found.get("says")
            where = (found or {}).get("generator", {}).get("name") if found else None
            print(f"{path.relative_to(folder)}: says {said}" + (f" ({where})" if where else ""))


if __name__ == "__main__":
    main()
