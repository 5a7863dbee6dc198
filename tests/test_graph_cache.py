"""A fast start: this CPU's optimised, pre-packed copy of a graph, kept in ufd's cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ufd.runtime import Detector, graph_cache


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "graphs"


def _features(bundle: Path, images: list[Path], precision: str) -> np.ndarray:
    detector = Detector.open(bundle, precision=precision, provider="cpu")
    return np.stack([detector.encoder(detector.prepare(p)[None])[0] for p in images])


def test_the_copy_gives_the_graphs_numbers_bit_for_bit(
    tiny_bundle: Path, sample_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = sorted(sample_dir.glob("*.png"))[:4]
    first = _features(tiny_bundle, images, "int8")  # makes the copy
    (copy,) = cache.iterdir()
    made = json.loads((copy / "made.json").read_text())
    assert set(made["sha256"]) == {"encoder.onnx", "encoder.onnx.data"}
    again = _features(tiny_bundle, images, "int8")  # opens it, optimisation off
    monkeypatch.setenv("UFD_GRAPH_CACHE", "off")
    plain = _features(tiny_bundle, images, "int8")
    assert np.array_equal(first, again) and np.array_equal(again, plain)
    assert len(list(cache.iterdir())) == 1


def test_a_changed_copy_is_made_again(tiny_bundle: Path, sample_dir: Path, cache: Path) -> None:
    images = sorted(sample_dir.glob("*.png"))[:2]
    expected = _features(tiny_bundle, images, "int8")
    (copy,) = cache.iterdir()
    data = copy / "encoder.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert np.array_equal(_features(tiny_bundle, images, "int8"), expected)
    made = json.loads((copy / "made.json").read_text())
    assert graph_cache.sha256_file(data) == made["sha256"]["encoder.onnx.data"]  # made again


def test_a_copy_that_computes_other_numbers_is_not_kept(
    tiny_bundle: Path, sample_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared = []

    def differs(found: np.ndarray, expected: np.ndarray) -> bool:
        compared.append(found.shape)  # a copy was made and checked
        return False

    monkeypatch.setattr(graph_cache, "same_numbers", differs)
    images = sorted(sample_dir.glob("*.png"))[:2]
    got = _features(tiny_bundle, images, "int8")
    assert compared == [(1, 768)]
    assert not cache.exists() or not any(p.name[0] != "." for p in cache.iterdir())
    monkeypatch.setenv("UFD_GRAPH_CACHE", "off")
    assert np.array_equal(got, _features(tiny_bundle, images, "int8"))  # the graph itself ran


def test_gpu_and_fp16_graphs_keep_no_copy(cache: Path) -> None:
    from ufd.runtime.providers import PROVIDERS

    assert graph_cache.enabled(PROVIDERS["cpu"], "all")
    assert not graph_cache.enabled(PROVIDERS["cpu"], "extended")  # fp16 on the CPU
    assert not graph_cache.enabled(PROVIDERS["cuda"], "all")
