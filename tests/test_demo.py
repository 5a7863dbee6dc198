"""``make demo`` end to end, in its own process as the Makefile runs it.

In-process tests share one interpreter whose method registry other tests have
already filled; a fresh process is what catches a step that forgets to load it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DEMO = Path(sys.executable).with_name("ufd-demo")


def test_offline_demo_exports_detects_and_prints_every_record(tmp_path: Path) -> None:
    """Offline (no hub): the loud fallback, one record per sample, the table shows them all."""
    out = tmp_path / "demo-output"
    env = os.environ | {"HF_HUB_OFFLINE": "1"}  # never download ViT-L weights from a test
    done = subprocess.run(
        [str(DEMO), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OFFLINE FALLBACK" in done.stderr
    assert "SCORES MEAN NOTHING" in done.stderr

    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    images = sorted(p for p in (out / "images").iterdir() if p.is_file())
    assert sorted(r["path"] for r in records) == sorted(str(p) for p in images)
    broken = [r for r in records if r["path"].endswith("broken.jpg")]
    assert broken and broken[0]["error"]
    (clip,) = [r for r in records if r["path"].endswith("clip.mp4")]  # one record per video
    assert clip["error"] is None and clip["frames"] == 3, clip
    scored = [r for r in records if r.get("error") is None]
    assert scored and all(0.0 <= r["prob"] <= 1.0 for r in scored)

    table = done.stdout.splitlines()
    assert table[0].split()[:3] == ["label", "p(fake)", "logit"], table[0]
    assert len(table) == 1 + len(records)
    for record, line in zip(records, table[1:], strict=True):
        assert line.rstrip().split("  (")[0].endswith(record["path"]), line
        if record.get("error") is None:
            assert line.split()[0] == record["label"]
            assert line.split()[1] == f"{record['prob']:.4f}"
