"""ufd-serve against its OpenAPI contract, longer than the test: schemathesis, several seeds.

For a bundle (default: a tiny one with every method, as the tests build it),
``ufd-serve`` runs without and with an API key; schemathesis runs every
operation with ``--checks all`` and ``--max-examples N`` for each seed, with and
without the key. Prints and writes the totals (cases generated, failures).

Usage:
    python benchmarks/contract.py --bundle B [--examples 500] [--seeds 3]
Writes benchmarks/results/contract.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from serving import schemathesis_command, serving  # noqa: E402


def one(url: str, examples: int, seed: int, headers: list[str]) -> dict:
    command = schemathesis_command(url, examples, seed, *headers)
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)

    generated = re.search(r"(\d+) generated", done.stdout)
    failures = re.search(r"(\d+) unique failures?", done.stdout)
    return {
        "seed": seed,
        "sends_key": bool(headers),
        "exit_code": done.returncode,
        "generated": int(generated.group(1)) if generated else 0,
        "failures": int(failures.group(1)) if failures else 0,
        "tail": done.stdout[-1500:] if done.returncode else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    seeds = [random.randrange(2**63) for _ in range(args.seeds)]
    with tempfile.TemporaryDirectory(prefix="ufd-contract-") as folder:
        runs = run_all(args.bundle, args.examples, seeds, Path(folder) / "key")
    write_summary(runs, args.examples, args.out)


def run_all(bundle: Path, examples: int, seeds: list[int], key: Path) -> list[dict]:
    """Each seed against a keyless service, then a keyed one with and without its key."""
    key.write_text("benchmark-key\n")
    runs = []
    with serving(bundle, "--provenance") as server:
        runs += [one(server.url, examples, s, []) | {"service_key": False} for s in seeds]
    with serving(bundle, "--api-key-file", str(key)) as server:
        for headers in ([], ["-H", "Authorization: Bearer benchmark-key"]):
            runs += [one(server.url, examples, s, headers) | {"service_key": True} for s in seeds]
    return runs


def write_summary(runs: list[dict], examples: int, out: Path) -> None:
    """``contract.json``: totals over all runs, and each run's details."""
    total = {
        "runs": len(runs),
        "generated": sum(r["generated"] for r in runs),
        "failures": sum(r["failures"] for r in runs),
        "failed_runs": sum(r["exit_code"] != 0 for r in runs),
        "examples": examples,
        "details": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "contract.json").write_text(json.dumps(total, indent=2))

    print(json.dumps({k: v for k, v in total.items() if k != "details"}))


if __name__ == "__main__":
    main()
