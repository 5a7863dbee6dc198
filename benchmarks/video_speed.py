"""Videos: frames/s and wall per minute of 1080p H.264 video at 1 fps, decode share.

Per model (random-init OpenAI-CLIP architecture, int8 bundle from
benchmarks/speed.py's ``prepare``), on one 1080p H.264 MP4 made here (30 fps,
``--seconds`` long, a pan over a sample photo, libx264 defaults), each in this
process after one warm-up, median of ``--runs``:

* ``decode``: sampling alone (``VideoReader.frames`` at 1 fps, every frame kept:
  ``--max-frames`` = the video's seconds): the serial decode cost;
* ``video``: ``Detector.score`` on the video (1 fps, same cap): decode ahead in
  its thread, preprocess, encoder, head: frames/s and wall per minute of video;
* ``keyframes``: the same with ``--keyframes`` (key frames only);
* the encoder's own batch-1 p50 times the frames, for scale.

The decode share is decode / video wall (decode overlaps the encoder, so this
is what decode would cost if it did not).

Usage:
    python benchmarks/video_speed.py [--models ViT-B-16-quickgelu,ViT-L-14-quickgelu]
        [--seconds 60] [--runs 3] [--work /tmp/ufd-speed]
Writes benchmarks/results/video-speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from ufd.runtime import Detector
from ufd.runtime.video.frames import VideoOptions, VideoReader
from ufd.runtime.video.run import VideoRun


def make_1080p(path: Path, seconds: int, rate: int = 30) -> Path:
    """A 1080p H.264 MP4: a slow pan over a sample photo (libx264 defaults)."""
    import av
    from PIL import Image

    from ufd.export.graph.samples import source_photos

    photo = source_photos()[0][1].convert("RGB").resize((1920 + seconds * rate, 1080))
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        for i in range(seconds * rate):
            view: Image.Image = photo.crop((i, 0, i + 1920, 1080))
            frame = av.VideoFrame.from_ndarray(np.asarray(view), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _median_wall(run, runs: int) -> tuple[float, object]:
    out = run()  # warm-up
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        out = run()
        walls.append(time.perf_counter() - started)
    return float(np.median(walls)), out


def bench(bundle: Path, video: Path, seconds: int, runs: int) -> dict:
    """Every measurement on one bundle."""
    detector = Detector.open(bundle, precision="int8", provider="cpu")
    sampling = VideoOptions(fps=1.0, max_frames=seconds)

    def decode() -> int:
        with VideoReader(video, sampling) as reader:
            return sum(1 for f in reader.frames() if f.image is not None)

    def score(keyframes: bool = False) -> dict:
        options = VideoOptions(fps=1.0, max_frames=seconds, keyframes=keyframes)
        (record,) = detector.score([video], video=VideoRun(options))
        assert record.ok, record.error
        return record.values

    decode_s, frames = _median_wall(decode, runs)
    video_s, record = _median_wall(score, runs)
    key_s, key_record = _median_wall(lambda: score(True), runs)
    pixels = detector.prepare(str(_frame_png(video)))
    encoder = []
    for _ in range(10):
        started = time.perf_counter()
        detector.features(pixels[None] if pixels.ndim == 3 else pixels)
        encoder.append(time.perf_counter() - started)
    return {
        "frames": record["frames"],
        "decoded_frames": frames,
        "decode_s": decode_s,
        "video_s": video_s,
        "frames_per_s": record["frames"] / video_s,
        "wall_per_minute_s": video_s * 60 / seconds,
        "decode_share": decode_s / video_s,
        "keyframes_s": key_s,
        "keyframes_frames": key_record["frames"],
        "encoder_p50_s": float(np.median(encoder[2:])),
    }


def _frame_png(video: Path) -> Path:
    out = video.with_suffix(".png")
    if not out.exists():
        with VideoReader(video, VideoOptions(max_frames=1)) as reader:
            frame = next(iter(reader.frames()))
            assert frame.image is not None
            frame.image.save(out)
    return out


def markdown(rows: dict, seconds: int) -> str:
    lines = [
        f"{seconds} s of 1080p H.264 (30 fps), 1 fps, int8, CPU: {platform.processor() or ''}",
        "",
        "| model | frames | wall s (per minute of video) | frames/s | decode s (share) "
        "| --keyframes s (frames) | encoder p50 s |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, r in rows.items():
        lines.append(
            f"| {model} | {r['frames']} | {r['video_s']:.2f} ({r['wall_per_minute_s']:.2f}) "
            f"| {r['frames_per_s']:.2f} | {r['decode_s']:.2f} ({r['decode_share']:.0%}) "
            f"| {r['keyframes_s']:.2f} ({r['keyframes_frames']}) | {r['encoder_p50_s']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ViT-B-16-quickgelu,ViT-L-14-quickgelu")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ufd-speed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    from speed import prepare

    args.work.mkdir(parents=True, exist_ok=True)
    video = args.work / f"video-1080p-{args.seconds}s.mp4"
    if not video.exists():
        make_1080p(video, args.seconds)
    rows = {}
    for model in args.models.split(","):
        _, bundle = prepare(model, args.work / model, "fp32,int8", fresh=False)
        rows[model] = bench(bundle, video, args.seconds, args.runs)
        print(model, json.dumps(rows[model]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "seconds": args.seconds, "rows": rows}
    (args.out / "video-speed.json").write_text(json.dumps(meta, indent=2) + "\n")
    (args.out / "video-speed.md").write_text(markdown(rows, args.seconds))
    print(markdown(rows, args.seconds))


if __name__ == "__main__":
    main()
