"""A service that cannot fail quietly: faults inside the engine, and a worker that stops.

In-process tests drive :class:`Engine` directly with injected faults; the
process tests start real ``ufd-serve`` processes with ``UFD_TEST_FAULTS``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from helpers import fault_env, random_image
from serving import Server, multipart, post

from ufd.runtime import Detector
from ufd.runtime.faults import WorkerStopped
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.methods import ScoreOptions
from ufd.runtime.serve.engine import Engine, EngineStats, Overloaded


@pytest.fixture(scope="module")
def detector(tiny_bundle: Path) -> Detector:
    return Detector.open(tiny_bundle, precision="fp32", provider="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fault-images")
    return [random_image(folder / f"{i}.png", (240, 230), seed=i) for i in range(4)]


def _ask(engine: Engine, images: list[Path], timeout: float = 60) -> list:
    """Submit and wait for the answer (records, or the exception the request gets)."""
    answered = threading.Event()
    result: list = []

    def done(value) -> None:
        result.append(value)
        answered.set()

    items = [InputItem(str(p), data=p.read_bytes()) for p in images]
    engine.submit(items, ("linear",), ScoreOptions(), done)
    assert answered.wait(timeout), "the request was never answered"
    return result[0]


def _engine(detector: Detector, **kwargs) -> Engine:
    return Engine(detector, max_batch=2, max_wait=0.0, queue_images=64, decode_workers=2, **kwargs)


def test_a_failing_metrics_hook_never_fails_a_request(detector: Detector, images) -> None:
    def broken(*args) -> None:
        raise RuntimeError("metrics backend gone")

    engine = _engine(detector, stats=EngineStats(broken, broken))
    for _ in range(2):  # the worker lives on after the hook failed
        records = _ask(engine, images)
        assert [r.ok for r in records] == [True] * 4
    assert engine.alive
    engine.stop(5)


def test_a_failing_batch_answers_its_images_and_the_worker_goes_on(
    detector: Detector, images, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(detector)
    original = engine._encode
    calls = []

    def fails_once(batch) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("a bug in one batch")
        original(batch)

    monkeypatch.setattr(engine, "_encode", fails_once)
    records = _ask(engine, images)
    errors = [r.error for r in records]
    assert errors.count("internal error: RuntimeError") == calls[0]  # that batch's images
    assert all(e is None for e in errors if e != "internal error: RuntimeError")
    assert all(r.ok for r in _ask(engine, images)) and engine.alive
    engine.stop(5)


def test_a_failing_decode_thread_answers_its_image(
    detector: Detector, images, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ufd.runtime.serve import engine as engine_module

    real = engine_module.prepare_item

    def broken(item, prepare):
        if item.path.endswith("1.png"):
            raise MemoryError("decode thread ran out of memory")
        return real(item, prepare)

    monkeypatch.setattr(engine_module, "prepare_item", broken)
    engine = _engine(detector)
    records = _ask(engine, images)
    assert [r.error for r in records] == [None, "internal error: MemoryError", None, None]
    engine.stop(5)


def test_a_stopped_worker_answers_everything_and_refuses_new_work(
    detector: Detector, images, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fault_env("stop-worker-after=1").items():
        monkeypatch.setenv(name, value)
    reasons: list[str] = []
    engine = Engine(
        detector,
        max_batch=1,
        max_wait=0.0,
        queue_images=64,
        decode_workers=2,
        on_failure=reasons.append,
    )
    records = _ask(engine, images)  # one image per batch: the second batch meets the stop
    assert sum(r.ok for r in records) == 1
    stopped = [r.error for r in records if not r.ok]
    assert stopped == ["the encoder worker stopped (WorkerStopped: stopped by UFD_TEST_FAULTS)"] * 3

    assert not engine.alive and reasons == [engine.failure]
    with pytest.raises(Overloaded, match="encoder worker stopped"):
        _ask(engine, images)
    assert engine.depth == 0  # every accepted image was answered
    assert issubclass(WorkerStopped, BaseException) and not issubclass(WorkerStopped, Exception)


def test_a_service_whose_worker_stops_is_not_ready_and_exits_3(full_bundle: Path, images) -> None:
    server = Server(full_bundle, "--max-batch", "1", faults="stop-worker-after=1")
    try:
        body = multipart([("file", p.name, p.read_bytes()) for p in images[:2]])
        status, answer, _ = post(
            server.url + "/v1/detect", body, "multipart/form-data; boundary=ufdtest"
        )
        assert status == 200  # accepted before the worker stopped: answered
        errors = sorted(str(r["error"]) for r in answer["records"])
        assert errors[0] == "None" and "encoder worker stopped" in errors[1]

        code = server.proc.wait(timeout=60)  # the process ends by itself
    finally:
        server.stop()
    assert code == 3
    assert "the encoder worker stopped" in server.stderr()


def test_readyz_is_503_once_the_worker_stopped(
    detector: Detector, images, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asyncio
    import json

    from ufd.runtime.serve.app import create_app
    from ufd.runtime.serve.config import ServeConfig

    app = create_app(ServeConfig(bundle=tmp_path), open_detector=lambda: detector)
    readyz = next(r.endpoint for r in app.routes if getattr(r, "path", "") == "/readyz")
    state = app.state.ufd
    for name, value in fault_env("stop-worker-after=0").items():
        monkeypatch.setenv(name, value)
    state.engine, state.detector = _engine(detector), detector
    state.ready.set()
    answer = _ask(state.engine, images[:1])  # the first batch meets the stop
    assert "encoder worker stopped" in answer[0].error
    response = asyncio.run(readyz())
    assert response.status_code == 503
    assert "encoder worker stopped" in json.loads(response.body)["error"]
