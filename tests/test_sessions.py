"""Provider choice (the one place it happens) and IO-bound runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ufd.runtime import sessions
from ufd.runtime.errors import ProviderError
from ufd.runtime.sessions import EncoderSession, best_precision, provider_chain, resolve_provider

CPU_ONLY = ["CPUExecutionProvider"]
GPU_ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("available", "asked", "resolved"),
    [
        (CPU_ONLY, "auto", "cpu"),
        (CPU_ONLY, "cpu", "cpu"),
        (GPU_ALL, "auto", "cuda"),  # never TensorRT unless asked: engine builds take minutes
        (GPU_ALL, "tensorrt", "tensorrt"),
        (GPU_ALL, "cpu", "cpu"),
    ],
)
def test_resolve_provider(monkeypatch, available: list[str], asked: str, resolved: str) -> None:
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: available)
    assert resolve_provider(asked) == resolved


@pytest.mark.parametrize(("asked", "hint"), [("cuda", r"ufd\[gpu\]"), ("tensorrt", "TensorRT")])
def test_missing_gpu_provider_says_how_to_fix(monkeypatch, asked: str, hint: str) -> None:
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: CPU_ONLY)
    with pytest.raises(ProviderError, match=hint) as info:
        resolve_provider(asked)
    assert "--provider" in str(info.value)


def test_unknown_provider_lists_the_choices() -> None:
    with pytest.raises(ProviderError, match="auto, tensorrt, cuda, cpu"):
        resolve_provider("rocm")


def test_provider_chains_fall_back_in_order(tmp_path: Path) -> None:
    trt, cuda, cpu = provider_chain("tensorrt", trt_cache=tmp_path)
    assert trt[0] == "TensorrtExecutionProvider"
    assert trt[1]["trt_fp16_enable"] and trt[1]["trt_engine_cache_path"] == str(tmp_path)
    assert (cuda, cpu) == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert provider_chain("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_chain("cpu") == ["CPUExecutionProvider"]


def test_best_precision_per_provider() -> None:
    assert best_precision(["fp32", "fp16", "int8"], "cpu") == "int8"
    assert best_precision(["fp32", "fp16", "int8"], "tensorrt") == "fp16"
    assert best_precision(["fp32", "int8"], "cuda") == "fp32"


def test_io_bound_runs_equal_plain_runs(tiny_bundle: Path) -> None:
    path = tiny_bundle / "encoder.fp32.onnx"
    plain = EncoderSession(path, "cpu")
    bound = EncoderSession(path, "cpu", io_binding=True)
    assert plain._binding is None and bound._binding is not None
    rng = np.random.default_rng(0)
    held, inputs = [], []
    for n in (2, 2, 3, 1):  # same shape refills the device buffer, a new shape replaces it
        x = rng.normal(size=(n, 3, 224, 224)).astype(np.float32)
        inputs.append((x, x.copy()))
        np.testing.assert_allclose(bound(x), plain(x), atol=1e-6)
        held.append(bound._device_input)
    for x, original in inputs:  # refills never write into the caller's arrays
        np.testing.assert_array_equal(x, original)
    assert held[0] is held[1] and held[1] is not held[2] and held[2] is not held[3]


def test_default_batch_is_sized_for_the_provider(tiny_bundle: Path, tmp_path: Path) -> None:
    from helpers import random_image

    from ufd.runtime import Detector
    from ufd.runtime.detector import DEFAULT_BATCH_SIZE
    from ufd.runtime.inputs import expand_inputs

    for i in range(10):
        random_image(tmp_path / f"{i}.png", (40, 30), seed=i)
    detector = Detector.open(tiny_bundle, precision="fp32", provider="cpu")
    sizes = [len(b) for b, _, _ in detector.feature_batches(expand_inputs([tmp_path]))]
    assert sizes == [DEFAULT_BATCH_SIZE["cpu"], 10 - DEFAULT_BATCH_SIZE["cpu"]]
    assert DEFAULT_BATCH_SIZE["cuda"] > DEFAULT_BATCH_SIZE["cpu"]


def test_unloadable_fused_graph_names_the_fix(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from ufd.runtime.errors import BundleError
    from ufd.runtime.sessions import OrtSession

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])
    node = helper.make_node(  # num_heads missing: as an onnxruntime without the op would fail
        "MultiHeadAttention", ["x", "x", "x"], ["y"], domain="com.microsoft"
    )
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    path = tmp_path / "encoder.onnx"
    onnx.save(model, path)
    with pytest.raises(BundleError, match="--no-fuse-attention"):
        OrtSession(path)
