"""Videos in ufd-detect: frames sampled with PyAV, scored as images, one record per video.

Every video here is encoded by the test (tests/videos.py): H.264 in MP4, MOV and
Matroska, VP9 in WebM, MJPEG in AVI, a variable frame rate, a truncated file, a
file with no frame, audio only, frames over the pixel cap.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner
from videos import CODECS, make_audio_only, make_empty_video, make_video

from ufd.cli.detect import app as detect_app
from ufd.runtime.io.containers import is_video_header, looks_like_video
from ufd.runtime.video.frames import VideoOptions, VideoReader

pytest.importorskip("av", reason="videos need PyAV: pip install 'ufd[video]' (make test has it)")


def detect(*args: str | Path) -> list[dict]:
    result = CliRunner().invoke(detect_app, [str(a) for a in (*args, "--format", "jsonl")])
    assert result.exit_code in (0, 1), result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for ext in CODECS:
        make_video(folder / f"clip.{ext}")
    return folder


@pytest.mark.parametrize("ext", sorted(CODECS))
def test_each_container_gives_one_video_record(tiny_bundle: Path, videos: Path, ext: str) -> None:
    (record,) = detect(tiny_bundle, videos / f"clip.{ext}")
    assert record["error"] is None, record
    assert record["frames"] == 5 and record["frame_errors"] == 0  # 5 s at --fps 1
    assert record["video_rule"] == "mean" and record["label"] in ("real", "fake")
    assert 0.0 <= record["prob_mean"] <= record["prob_max"] <= 1.0


def test_frames_equal_ufd_detect_on_the_same_frames_saved_as_png(
    full_bundle: Path, videos: Path, tmp_path: Path
) -> None:
    video = videos / "clip.mp4"
    records = detect(full_bundle, video, "--frames", "--method", "all", "--fps", "2")
    *frames, whole = records
    assert whole["path"] == str(video) and whole["frames"] == len(frames) == 10
    with VideoReader(video, VideoOptions(fps=2)) as reader:
        for frame in reader.frames():
            assert frame.image is not None
            frame.image.save(tmp_path / f"t{frame.time:g}.png")
    for record in frames:
        stamp = record["path"].rsplit("#t=", 1)[1]
        (png,) = detect(full_bundle, tmp_path / f"t{stamp}.png", "--method", "all")
        assert {k: v for k, v in record.items() if k != "path" and v is not None} == {
            k: v for k, v in png.items() if k != "path" and v is not None
        }


@pytest.mark.parametrize("rule", ["mean", "max", "share"])
def test_the_video_record_follows_its_frames_and_rule(
    tiny_bundle: Path, videos: Path, rule: str
) -> None:
    *frames, whole = detect(
        tiny_bundle, videos / "clip.webm", "--frames", "--video-rule", rule, "--threshold", "0.4"
    )
    probs = np.array([f["prob"] for f in frames])
    fake = np.array([f["label"] == "fake" for f in frames])
    assert whole["prob_mean"] == pytest.approx(probs.mean(), abs=1e-12)
    assert whole["prob_max"] == max(probs) and whole["fake_share"] == fake.mean()
    value = {"mean": probs.mean(), "max": probs.max(), "share": fake.mean()}[rule]
    assert whole["prob"] == pytest.approx(value, abs=1e-12)
    decided = value > (0.5 if rule == "share" else 0.4)
    assert whole["label"] == ("fake" if decided else "real")
    times = [float(f["path"].rsplit("#t=", 1)[1]) for f in frames]
    assert whole["timeline"] == [
        {"t": t, "prob": f["prob"]} for t, f in zip(times, frames, strict=True)
    ]


def test_max_frames_spread_over_the_whole_video(tiny_bundle: Path, tmp_path: Path) -> None:
    video = make_video(tmp_path / "long.mp4", seconds=20, rate=4, size=(32, 32))
    *frames, whole = detect(tiny_bundle, video, "--frames", "--max-frames", "4", "--fps", "2")
    assert [f["path"].rsplit("#t=", 1)[1] for f in frames] == ["0", "5", "10", "15"]
    assert whole["frames"] == 4


def test_keyframes_takes_key_frames_only(tmp_path: Path) -> None:
    import av

    video = make_video(tmp_path / "gop.mp4", seconds=5, rate=10, gop=15)
    with av.open(str(video)) as container:
        keys = [float(f.time) for f in container.decode(video=0) if f.key_frame]
    with VideoReader(video, VideoOptions(keyframes=True)) as reader:
        taken = [f.time for f in reader.frames()]
    assert taken and set(taken) <= set(keys)
    assert taken == sorted(set(taken)) and len(taken) < 5  # fewer key frames than seconds


def test_variable_frame_rate_takes_the_first_frame_at_or_after_each_second(
    tmp_path: Path,
) -> None:
    video = make_video(tmp_path / "vfr.mkv", times=[0, 0.1, 0.5, 2.3, 2.4, 3.0, 4.9])
    with VideoReader(video, VideoOptions()) as reader:
        assert [f.time for f in reader.frames()] == [0.0, 2.3, 3.0, 4.9]


def test_bad_videos_are_error_records_and_the_run_goes_on(
    tiny_bundle: Path, videos: Path, tmp_path: Path
) -> None:
    whole = (videos / "clip.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(whole[: len(whole) // 3])
    (tmp_path / "cut.mkv").write_bytes((videos / "clip.mkv").read_bytes()[:40_000])
    make_empty_video(tmp_path / "empty.mkv")
    make_audio_only(tmp_path / "audio.webm")
    (tmp_path / "junk.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + b"\x00" * 64)
    names = ["truncated.mp4", "cut.mkv", "empty.mkv", "audio.webm", "junk.avi"]
    records = detect(tiny_bundle, *(tmp_path / n for n in names), videos / "clip.avi")
    by_name = {Path(r["path"]).name: r for r in records}
    assert list(by_name) == [*names, "clip.avi"]  # one record each, in order
    assert "no video stream" in by_name["audio.webm"]["error"]
    assert by_name["empty.mkv"]["error"] and by_name["junk.avi"]["error"]
    assert by_name["truncated.mp4"]["error"]  # the index (moov) is at the end: nothing to read
    cut = by_name["cut.mkv"]  # frames before the cut are scored, the rest noted
    assert cut["error"] is None and 0 < cut["frames"] < 5, cut
    assert by_name["clip.avi"]["error"] is None and by_name["clip.avi"]["frames"] == 5


def test_frames_over_the_pixel_cap_are_refused_on_the_header(
    tiny_bundle: Path, videos: Path
) -> None:
    (record,) = detect(tiny_bundle, videos / "clip.mp4", "--max-pixels", "1000")
    assert "over the cap of 1,000" in record["error"]


def test_a_video_that_decodes_too_long_stops_with_a_reason(videos: Path) -> None:
    with VideoReader(videos / "clip.mp4", VideoOptions(timeout=0.0)) as reader:
        (frame,) = list(reader.frames())
    assert frame.image is None and "stopped after 0 s" in (frame.error or "")


def test_rotation_metadata_is_not_applied(tiny_bundle: Path, tmp_path: Path) -> None:
    import struct

    import av

    data = bytearray(make_video(tmp_path / "plain.mp4", size=(64, 48)).read_bytes())
    box = data.find(b"tkhd") - 4  # version 0: the display matrix is 48 bytes in
    assert data[box + 8] == 0
    data[box + 48 : box + 84] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
    rotated = tmp_path / "rotated.mp4"
    rotated.write_bytes(data)
    with av.open(str(rotated)) as container:
        assert next(container.decode(video=0)).rotation == -90  # the file says: turn it
    with VideoReader(rotated, VideoOptions()) as reader:
        sizes = {f.image.size for f in reader.frames() if f.image is not None}
    assert sizes == {(64, 48)}  # coded size, as the official pipelines read images
    (plain,) = detect(tiny_bundle, tmp_path / "plain.mp4")
    (turned,) = detect(tiny_bundle, rotated)
    assert turned["prob"] == plain["prob"]  # the same pixels scored


def test_folders_take_videos_images_and_skip_the_rest(
    tiny_bundle: Path, videos: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.webm").write_bytes((videos / "clip.webm").read_bytes())
    Image.new("RGB", (40, 30), (10, 200, 30)).save(folder / "b.png")
    (folder / "c.txt").write_text("not media")
    result = CliRunner().invoke(detect_app, [str(tiny_bundle), str(folder), "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "frames" in lines[0] and "prob_mean" in lines[0]
    assert [line.split(",")[0] for line in lines[1:]] == [
        str(folder / n) for n in ("a.webm", "b.png")
    ]
    assert "1 skipped" in result.stderr


def test_without_pyav_a_video_says_how_to_get_it(
    tiny_bundle: Path, videos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    (record,) = detect(tiny_bundle, videos / "clip.mp4")
    assert "pip install 'ufd[video]'" in record["error"]


@pytest.mark.parametrize(
    ("head", "video"),
    [
        (b"\x00\x00\x00\x18ftypmp42", True),
        (b"\x00\x00\x00\x14ftypqt  ", True),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81", True),
        (b"RIFF\x00\x00\x00\x00AVI ", True),
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x00", True),
        (b"\x00\x00\x00\x18ftypheic", False),
        (b"\x00\x00\x00\x1cftypavif", False),
        (b"RIFF\x00\x00\x00\x00WEBP", False),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", False),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\r", False),
        (b"short", False),
    ],
)
def test_videos_are_told_from_images_by_their_first_bytes(head: bytes, video: bool) -> None:
    assert is_video_header(head) is video
    assert looks_like_video(head) is video


def test_sampling_times() -> None:
    assert VideoOptions().targets(5.0) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert VideoOptions(fps=2).targets(1.2) == [0.0, 0.5, 1.0]
    spread = VideoOptions(max_frames=4).targets(100.0)
    assert spread == [0.0, 25.0, 50.0, 75.0]
    assert VideoOptions(max_frames=4, max_seconds=8.0).targets(100.0) == [0.0, 2.0, 4.0, 6.0]
    assert VideoOptions().targets(None) is None


def test_the_python_api_scores_videos_given_as_bytes(tiny_bundle: Path, videos: Path) -> None:
    import io

    from ufd.runtime import Detector
    from ufd.runtime.video.run import VideoRun

    still = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 30)).save(still, "PNG")
    detector = Detector.open(tiny_bundle, precision="fp32")
    images = [(videos / "clip.webm").read_bytes(), still.getvalue()]
    records = detector.score_images(images, names=["clip.webm", "still.png"], video=VideoRun())
    assert [r.path for r in records] == ["clip.webm", "still.png"]
    assert records[0].get("frames") == 5 and records[0].ok and records[1].get("frames") is None
    plain = detector.score_images(images, names=["clip.webm", "still.png"])
    assert plain[0].error and plain[1].prob == records[1].prob  # no video: an image error


def test_decoding_ahead_stops_when_the_consumer_does() -> None:
    from ufd.runtime.video.frames import Frame
    from ufd.runtime.video.run import decoded_ahead

    made = []

    def endless():
        while True:
            made.append(len(made))
            yield Frame(float(len(made)))

    ahead = decoded_ahead(endless(), depth=3)
    assert [next(ahead).time for _ in range(2)] == [1.0, 2.0]
    ahead.close()  # joins the decoding thread
    count = len(made)
    assert count <= 2 + 3 + 1  # two taken, three queued, one waiting to be queued
    assert len(made) == count  # nothing decoded after the close


def test_a_decoder_that_raises_ends_the_frames_with_its_error() -> None:
    from ufd.runtime.video.frames import Frame
    from ufd.runtime.video.run import decoded_ahead

    def broken():
        yield Frame(0.0)
        raise RuntimeError("codec fell over")

    frames = list(decoded_ahead(broken()))
    assert frames[0].time == 0.0 and "codec fell over" in (frames[1].error or "")


def test_an_unknown_video_rule_is_a_usage_error(tiny_bundle: Path, videos: Path) -> None:
    result = CliRunner().invoke(
        detect_app, [str(tiny_bundle), str(videos / "clip.mp4"), "--video-rule", "median"]
    )
    assert result.exit_code == 2 and "unknown video rule 'median'" in result.output


def test_ufd_serve_answers_an_uploaded_video_as_ufd_detect_does(
    full_bundle: Path, videos: Path, tmp_path: Path
) -> None:
    from serving import multipart, post, serving

    still = tmp_path / "still.png"
    Image.new("RGB", (40, 30), (200, 10, 30)).save(still)
    video, audio = videos / "clip.mkv", make_audio_only(tmp_path / "audio.webm")
    args = ("--method", "all", "--video-rule", "max", "--fps", "2")
    expected = detect(full_bundle, video, still, audio, *args)
    parts = [(p.name, p.name, p.read_bytes()) for p in (video, still, audio)]
    with serving(full_bundle, "--method", "all", "--video-rule", "max", "--fps", "2") as server:
        status, body, _ = post(
            server.url + "/v1/detect",
            multipart([("file", name, data) for _, name, data in parts]),
            "multipart/form-data; boundary=ufdtest",
        )
    assert status == 200, body
    got = body["records"]
    assert [r["path"] for r in got] == ["clip.mkv", "still.png", "audio.webm"]
    for mine, theirs in zip(got, expected, strict=True):
        assert {k: v for k, v in mine.items() if k != "path"} == {
            k: v for k, v in theirs.items() if k != "path"
        }
    assert got[0]["frames"] == 10 and "no video stream" in got[2]["error"]


CORPUS_VIDEO = Path(__file__).parent / "fixtures" / "provenance" / "c2pa-rs" / "video1.mp4"


def test_a_signed_video_says_so_and_a_changed_one_is_broken(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    pytest.importorskip("c2pa", reason="C2PA needs pip install 'ufd[provenance]'")
    (record,) = detect(tiny_bundle, CORPUS_VIDEO, "--provenance")
    assert record["error"] is None and record["frames"] > 0
    credentials = record["provenance"]["c2pa"]
    assert credentials["intact"] and credentials["validation_state"] == "Valid"
    assert credentials["claim_generator"].startswith("TestApp c2patool")
    changed = bytearray(CORPUS_VIDEO.read_bytes())
    changed[-2000] ^= 0xFF  # one byte of the last video sample
    (tmp_path / "changed.mp4").write_bytes(changed)
    (after,) = detect(tiny_bundle, tmp_path / "changed.mp4", "--provenance")
    assert after["provenance"]["c2pa"]["intact"] is False
    assert after["provenance"]["c2pa"]["broken"], after["provenance"]


def test_a_run_closed_mid_video_stops_its_decoding_thread(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    import threading

    from ufd.runtime import Detector
    from ufd.runtime.io.inputs import InputItem
    from ufd.runtime.video.run import VideoRun

    video = make_video(tmp_path / "long.mkv", seconds=20, rate=5, size=(48, 32))
    detector = Detector.open(tiny_bundle, precision="fp32")
    run = VideoRun(VideoOptions(fps=2, max_frames=40), frames=True)
    batches = detector.score_batches([InputItem(str(video))], batch_size=2, video=run)
    first = next(batches)
    assert first and first[0].path.endswith("#t=0")
    assert any(t.name == "ufd-video-decode" for t in threading.enumerate())
    batches.close()  # as a --strict stop or an interrupted run does
    assert not any(t.name == "ufd-video-decode" for t in threading.enumerate())


@pytest.fixture(scope="module")
def eval_root(tmp_path_factory: pytest.TempPathFactory, videos: Path) -> Path:
    root = tmp_path_factory.mktemp("eval") / "sets" / "clips"
    for sub in ("0_real", "1_fake"):
        (root / sub).mkdir(parents=True)
    for i, colour in enumerate([(10, 120, 30), (200, 180, 20)]):
        Image.new("RGB", (64, 48), colour).save(root / "0_real" / f"still{i}.png")
    Image.new("RGB", (64, 48), (90, 10, 200)).save(root / "1_fake" / "still.png")
    (root / "0_real" / "clip.webm").write_bytes((videos / "clip.webm").read_bytes())
    (root / "1_fake" / "clip.mp4").write_bytes((videos / "clip.mp4").read_bytes())
    make_audio_only(root / "1_fake" / "audio.webm")
    return root.parent


def test_an_eval_set_scores_each_video_as_ufd_detect_does(
    tiny_bundle: Path, eval_root: Path
) -> None:
    from ufd.runtime import Detector
    from ufd.runtime.evaluation.evaluate import EvalOptions, discover_sets, score_set
    from ufd.runtime.transforms import condition
    from ufd.runtime.video.run import VideoRun

    detector = Detector.open(tiny_bundle, precision="fp32")
    (test_set,) = discover_sets(eval_root)
    skipped: list[tuple[str, str]] = []
    options = EvalOptions(video=VideoRun(VideoOptions(fps=2), "max"))
    scored = score_set(
        detector, test_set, options, condition(0.0, None), lambda p, why: skipped.append((p, why))
    )
    names = [Path(p).name for p in scored.paths]
    assert names == ["still0.png", "still1.png", "still.png", "clip.webm", "clip.mp4"]
    assert list(scored.labels) == [False, False, True, False, True]
    assert [Path(p).name for p, _ in skipped] == ["audio.webm"]
    for path in scored.paths[3:]:
        (record,) = detect(tiny_bundle, path, "--precision", "fp32", "--fps", "2",
                           "--video-rule", "max")  # fmt: skip
        index = scored.paths.index(path)
        assert scored.scores["linear"][index] == pytest.approx(record["prob"], abs=1e-12)
        assert scored.predictions["linear"][index] == (record["label"] == "fake")
        assert scored.timelines[path]["timeline"] == record["timeline"]


def test_ufd_eval_counts_videos_and_plots_them(
    tiny_bundle: Path, eval_root: Path, tmp_path: Path
) -> None:
    from ufd.cli.eval import app as eval_app

    out = tmp_path / "out"
    args = [str(tiny_bundle), str(eval_root), "--out", str(out), "--no-cache", "--jpeg", "75"]
    result = CliRunner().invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    row = next(iter(results["conditions"].values()))["sets"]["clips"]["linear"]
    assert (row["n_real"], row["n_fake"]) == (3, 2)
    assert any(path.endswith("audio.webm") for path, _ in results["skipped"])
    report = (out / "report.html").read_text()
    assert report.count("alt='videos over time'") == 1  # the first condition only


def test_frames_that_claim_a_huge_size_are_an_error_not_an_allocation(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    import struct

    data = bytearray(make_video(tmp_path / "small.avi", seconds=1, size=(64, 48)).read_bytes())
    start, patched = 0, 0
    while (start := data.find(b"\xff\xc0", start) + 1) > 0:  # each MJPEG frame's SOF0
        if struct.unpack(">HH", data[start + 4 : start + 8]) == (48, 64):
            data[start + 4 : start + 8] = struct.pack(">HH", 12000, 12000)  # 144 MP
            patched += 1
    assert patched == 10
    (tmp_path / "huge.avi").write_bytes(data)
    (record,) = detect(tiny_bundle, tmp_path / "huge.avi")
    assert record["error"] and "no frame of the video could be decoded" in record["error"]


def test_ufd_scan_videos_rows_equal_ufd_detect(
    full_bundle: Path, videos: Path, tmp_path: Path
) -> None:
    pytest.importorskip("pyarrow", reason="ufd-scan needs pip install 'ufd[scale]'")
    import pyarrow.dataset as ds

    from ufd.cli.scan import app as scan_app

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.mkv").write_bytes((videos / "clip.mkv").read_bytes())
    Image.new("RGB", (70, 50), (40, 90, 160)).save(folder / "b.png")
    make_audio_only(folder / "c.webm")
    args = ["--method", "all", "--fps", "2", "--video-rule", "share"]
    expected = {r["path"]: r for r in detect(full_bundle, folder, *args)}
    out = tmp_path / "scan"
    result = CliRunner().invoke(
        scan_app, [str(full_bundle), str(folder), "--out", str(out), "--videos", *args]
    )
    assert result.exit_code in (0, 1), result.output
    table = ds.dataset(out, format="parquet").to_table().to_pylist()
    assert sorted(r["path"] for r in table) == sorted(expected)
    for row in table:
        want = expected[row["path"]]
        assert (row["graph_precision"] is None) == (want["error"] is not None)
        got = {k: v for k, v in row.items() if not k.startswith("graph_")}
        got["timeline"] = json.loads(got["timeline"]) if got["timeline"] else None
        got["nn_source_share"] = dict(got["nn_source_share"] or []) or None
        assert got == want, row["path"]
    plain = CliRunner().invoke(
        scan_app, [str(full_bundle), str(folder), "--out", str(tmp_path / "p")]
    )
    assert "2 skipped" in plain.output or "skipped" in plain.output  # without --videos: not taken


def test_gif_as_video_scores_an_animation_over_time(tiny_bundle: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)) for _ in range(6)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=500, loop=0)
    (still,) = detect(tiny_bundle, gif)  # as before: the first frame, an image
    assert "frames" not in still and still["error"] is None
    *per_frame, whole = detect(tiny_bundle, gif, "--gif-as-video", "--frames")
    assert [f["path"].rsplit("#t=", 1)[1] for f in per_frame] == ["0", "1", "2"]
    assert whole["frames"] == 3 and whole["error"] is None
    assert per_frame[0]["logit"] == pytest.approx(still["logit"], abs=1e-6)  # same first frame
