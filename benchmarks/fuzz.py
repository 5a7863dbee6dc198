"""Coverage-guided fuzzing (atheris, libFuzzer) of every parser of untrusted input.

Targets (``tests/fuzz_targets.py``): ``decode`` (image decoding), ``provenance``
(every reader on a whole file), ``xmp``, ``png-text``, ``exif``, ``c2pa``,
``multipart`` and ``json`` (the service's request parsers), ``manifest`` (the
bundle manifest parser). Each starts from its seed corpus in
``tests/fixtures/fuzz/<target>/`` and grows a working corpus under ``--work``;
a crash, an input taking over ``--timeout`` seconds or memory over ``--rss-mb``
is a finding, saved under ``--work/findings/<target>/``. Fixed findings become
seeds (``tests/test_fuzz_regressions.py`` replays every seed).

Usage:
    python benchmarks/fuzz.py --target decode --minutes 10
    python benchmarks/fuzz.py --target all --minutes 8 --jobs 2   # every target, 2 at a time
    python benchmarks/fuzz.py --make-seeds                        # (re)write the seed corpora
Writes benchmarks/results/fuzz-<target>.json (executions, findings).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import fuzz_targets  # noqa: E402 - the shared targets


def child(target: str, argv: list[str]) -> None:
    """Run libFuzzer on one target in this process (atheris instruments ufd's code)."""
    import atheris

    with atheris.instrument_imports(include=["ufd", "PIL"]):
        import PIL.Image  # noqa: F401 - Pillow's Python plugins are fuzzed too

        import ufd.runtime.bundle
        import ufd.runtime.io.decode
        import ufd.runtime.methods
        import ufd.runtime.provenance
        import ufd.runtime.serve.uploads  # noqa: F401
    function = fuzz_targets.TARGETS[target]

    def one(data: bytes) -> None:
        with contextlib.suppress(fuzz_targets.Refused):
            function(data)

    atheris.Setup([sys.argv[0], *argv], one)
    atheris.Fuzz()


def run(target: str, minutes: float, work: Path, timeout: int, rss_mb: int) -> dict:
    """Fuzz one target for ``minutes`` in a child process; its figures."""
    corpus = work / "corpus" / target
    findings = work / "findings" / target
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    seeds = fuzz_targets.CORPUS / target
    for seed in seeds.glob("*"):
        shutil.copy(seed, corpus / seed.name)
    argv = [
        str(corpus),
        f"-max_total_time={int(minutes * 60)}",
        f"-timeout={timeout}",
        f"-rss_limit_mb={rss_mb}",
        f"-artifact_prefix={findings}/",
        "-print_final_stats=1",
        "-max_len=65536",
    ]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", target, "--", *argv],
        capture_output=True,
        text=True,
        env=os.environ | {"UFD_CACHE_DIR": str(work / "cache")},
    )
    log = done.stdout + done.stderr
    (work / f"{target}.log").write_text(log)
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", log))
    found = sorted(p.name for p in findings.iterdir())
    return {
        "target": target,
        "minutes": minutes,
        "seconds": round(time.perf_counter() - started, 1),
        "executions": int(stats.get("number_of_executed_units", 0)),
        "peak_rss_mb": int(stats.get("peak_rss_mb", 0)),
        "corpus_files": len(list(corpus.iterdir())),
        "exit_code": done.returncode,
        "findings": found,
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="all", help="a target name, or all")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once")
    parser.add_argument("--timeout", type=int, default=10, help="seconds per input")
    parser.add_argument("--rss-mb", type=int, default=2048)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ufd-fuzz"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--make-seeds", action="store_true")
    args = parser.parse_args()
    if args.make_seeds:
        import fuzz_seeds

        fuzz_seeds.write_all(fuzz_targets.CORPUS)
        return
    targets = list(fuzz_targets.TARGETS) if args.target == "all" else [args.target]
    args.out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        jobs = [
            pool.submit(run, t, args.minutes, args.work, args.timeout, args.rss_mb) for t in targets
        ]
        for job in jobs:
            result = job.result()
            (args.out / f"fuzz-{result['target']}.json").write_text(json.dumps(result, indent=2))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
