"""Provider choice (the one place it happens) and IO-bound runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from ufd.runtime import providers
from ufd.runtime.errors import ProviderError
from ufd.runtime.providers import PROVIDERS, start_provider
from ufd.runtime.sessions import EncoderSession

CPU_ONLY = ["CPUExecutionProvider"]
GPU_ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def fake_ort(monkeypatch: pytest.MonkeyPatch):
    """Pretend onnxruntime has ``available`` providers, of which ``starting`` really start."""

    def configure(available: list[str], starting: set[str]) -> None:
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
        monkeypatch.setattr(providers, "_STARTED", {})
        monkeypatch.setattr(providers, "_starts", lambda p: p.ort_name in starting)

    return configure


@pytest.mark.parametrize(
    ("available", "starting", "asked", "started"),
    [
        (CPU_ONLY, set(), "auto", "cpu"),
        (CPU_ONLY, set(), "cpu", "cpu"),
        (GPU_ALL, set(GPU_ALL), "auto", "cuda"),  # never TensorRT unless asked: slow first start
        (GPU_ALL, set(GPU_ALL), "tensorrt", "tensorrt"),
        (GPU_ALL, set(GPU_ALL), "cpu", "cpu"),
        (GPU_ALL, set(), "auto", "cpu"),  # onnxruntime-gpu without CUDA libraries: the CPU
    ],
)
def test_start_provider(fake_ort, available, starting, asked: str, started: str) -> None:
    fake_ort(available, starting)
    assert start_provider(asked).name == started


def test_auto_without_cuda_libraries_picks_the_cpu_precision(fake_ort, caplog) -> None:
    """onnxruntime-gpu installed, CUDA missing: int8 on the CPU, not fp32 (4x slower)."""
    fake_ort(GPU_ALL, set())
    with caplog.at_level("WARNING"):
        provider = start_provider("auto")
    assert provider.best_precision(["fp32", "fp16", "int8"]) == "int8"
    assert "failed to start" in caplog.text


@pytest.mark.parametrize("asked", ["cuda", "tensorrt"])
def test_a_named_provider_that_cannot_start_is_an_error(fake_ort, asked: str) -> None:
    fake_ort(GPU_ALL, {"CPUExecutionProvider"})
    with pytest.raises(ProviderError, match="failed to start") as info:
        start_provider(asked)
    assert "--provider cpu" in str(info.value)


@pytest.mark.parametrize(("asked", "hint"), [("cuda", r"ufd\[gpu\]"), ("tensorrt", "TensorRT")])
def test_missing_gpu_provider_says_how_to_fix(fake_ort, asked: str, hint: str) -> None:
    fake_ort(CPU_ONLY, set(CPU_ONLY))
    with pytest.raises(ProviderError, match=hint) as info:
        start_provider(asked)
    assert "--provider" in str(info.value)


def test_unknown_provider_lists_the_choices(fake_ort) -> None:
    fake_ort(CPU_ONLY, set(CPU_ONLY))
    with pytest.raises(ProviderError, match="auto, tensorrt, cuda, cpu"):
        start_provider("rocm")


def test_other_execution_providers_pass_through_with_cpu_fallback(fake_ort, caplog) -> None:
    fake_ort(["OpenVINOExecutionProvider", *CPU_ONLY], {"OpenVINOExecutionProvider"})
    with caplog.at_level("WARNING"):
        provider = start_provider("openvino")
    assert provider.chain() == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert not provider.tuned and provider.batch_size == PROVIDERS["cpu"].batch_size
    assert caplog.text.count("passing OpenVINOExecutionProvider through") == 1
    assert start_provider("OpenVINOExecutionProvider").ort_name == "OpenVINOExecutionProvider"


def test_the_real_cpu_provider_starts() -> None:
    assert start_provider("cpu").name == "cpu" and start_provider("auto").name in ("cpu", "cuda")


def test_tensorrt_engines_are_cached_under_ufds_cache_folder(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    (name, options), *fallbacks = PROVIDERS["tensorrt"].chain()
    assert name == "TensorrtExecutionProvider" and options["trt_fp16_enable"]
    assert options["trt_engine_cache_path"] == str(tmp_path / "cache" / "tensorrt")
    assert fallbacks == ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("available", "starting", "precisions", "chosen"),
    [
        (CPU_ONLY, set(CPU_ONLY), ("fp32", "fp16", "int8"), "int8"),
        (GPU_ALL, set(GPU_ALL), ("fp32", "fp16", "int8"), "fp16"),
        (GPU_ALL, set(GPU_ALL), ("fp32", "int8"), "fp32"),  # dynamic int8 is slow on CUDA
        (GPU_ALL, set(), ("fp32", "fp16", "int8"), "int8"),  # no CUDA libraries: the CPU's
    ],
)
def test_auto_takes_the_fastest_precision_of_the_provider_that_started(
    fake_ort, tiny_bundle: Path, available, starting, precisions, chosen: str
) -> None:
    from ufd.runtime.encoder_choice import choose_precision
    from ufd.runtime.methods import open_bundle

    fake_ort(available, starting)
    manifest = open_bundle(tiny_bundle).manifest
    manifest = dataclasses.replace(
        manifest, encoders={p: g for p, g in manifest.encoders.items() if p in precisions}
    )
    assert choose_precision(manifest, start_provider("auto"), None) == chosen
    assert choose_precision(manifest, start_provider("auto"), "fp32") == "fp32"


def test_fp16_graphs_run_on_the_cpu(tiny_bundle: Path, sample_dir: Path) -> None:
    """onnxruntime crashes on CPU fp16 graphs at full optimisation; ufd runs them."""
    from ufd.runtime import Detector

    image = sorted(sample_dir.glob("*.jpg"))[0]
    fp16, fp32 = (
        Detector.open(tiny_bundle, precision=p, provider="cpu").score([image])
        for p in ("fp16", "fp32")
    )
    (a,), (b,) = list(fp16), list(fp32)
    assert a.ok and abs(a.logit - b.logit) < 0.1


def test_io_bound_runs_equal_plain_runs(tiny_bundle: Path) -> None:
    path = tiny_bundle / "encoder.fp32.onnx"
    plain = EncoderSession(path)
    bound = EncoderSession(path, io_binding=True)
    assert not plain.io_binding and bound.io_binding
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
    from ufd.runtime.io.inputs import expand_inputs

    for i in range(10):
        random_image(tmp_path / f"{i}.png", (40, 30), seed=i)
    detector = Detector.open(tiny_bundle, precision="fp32", provider="cpu")
    sizes = [len(b) for b, _, _ in detector.feature_batches(expand_inputs([tmp_path]))]
    cpu = PROVIDERS["cpu"].batch_size
    assert sizes == [cpu, 10 - cpu]


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
