"""What ``--views N`` costs: one batched pass against N + 1 separate passes.

    python benchmarks/views_cost.py --bundle B --images DIR [--views 4] [--repeats 3]

Three ways to score every image and its first N re-upload views, with one
loaded detector (load time excluded), medians of ``--repeats`` taken in turns:

* ``views 0``: the images alone (the baseline);
* ``--views N``: ``Detector.score_images(views=N)``: each image decoded once,
  its views made from the decoded image, all rows in the same encoder calls;
* ``N + 1 runs``: the images, then N more runs, each decoding every image again
  and scoring one view of it (the view made in memory: a user without
  ``--views`` would also have to write and read the view files, not counted).

Prints a Markdown table and writes JSON next to it (``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from ufd.runtime import Detector
from ufd.runtime.evaluation.evaluate import view_preparer
from ufd.runtime.io.inputs import InputItem, expand_inputs
from ufd.runtime.transforms import reupload_views


def _interleaved_medians(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns (a busy host slows all alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="Use the first N images.")
    args = parser.parse_args()

    detector = Detector.open(args.bundle, precision=args.precision, provider="cpu")
    paths = [i.path for i in expand_inputs([args.images]) if i.error is None]
    paths = [p for p in paths if detector.score_images([p])[0].ok][: args.limit]
    views = reupload_views(args.views)
    detector.score_images(paths[:2], views=args.views)  # warm up
    items = [InputItem(p) for p in paths]
    methods, options = detector.plan("linear")

    def one_run(prepare) -> None:
        for batch in detector.feature_batches(items, None, prepare):
            detector.records(*batch, methods, options)

    def separate() -> None:
        one_run(detector.prepare)
        for view in views:
            one_run(view_preparer(detector, view))

    seconds = _interleaved_medians(
        {
            "views 0": lambda: detector.score_images(paths),
            f"--views {args.views}": lambda: detector.score_images(paths, views=args.views),
            f"{args.views + 1} runs": separate,
        },
        args.repeats,
    )
    base = seconds["views 0"]
    result = {
        "cpu": _cpu(),
        "encoder_batch_invariant": detector.encoder.batch_invariant,
        "bundle": Path(args.bundle).name,
        "precision": detector.precision,
        "images": len(paths),
        "views": args.views,
        "seconds": seconds,
        "ms_per_image": {k: 1000 * v / len(paths) for k, v in seconds.items()},
        "relative_to_views_0": {k: v / base for k, v in seconds.items()},
    }
    rows = "one row per call" if not detector.encoder.batch_invariant else "batched rows"
    print(
        f"{result['cpu']}; {result['bundle']} {detector.precision} ({rows}); {len(paths)} images\n"
    )
    print("| run | seconds | ms / image | x views 0 |\n|---|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.2f} | {1000 * value / len(paths):.1f} | {value / base:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
