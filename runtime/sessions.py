"""onnxruntime sessions: providers are chosen here and nowhere else.

One small class per graph kind over a shared :class:`OrtSession` base, in the
way rembg wraps one session per model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ufd.runtime.errors import BundleError, ProviderError

logger = logging.getLogger(__name__)

PROVIDERS = ("auto", "tensorrt", "cuda", "cpu")
_TRT = "TensorrtExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_NAMES = {_TRT: "tensorrt", _CUDA: "cuda", _CPU: "cpu"}
_ORT_TYPES = {np.dtype(np.float32): "tensor(float)", np.dtype(np.float16): "tensor(float16)"}
TRT_CACHE = Path.home() / ".cache" / "ufd" / "tensorrt"

GPU_INSTALL_HINT = "pip install 'ufd[gpu]' (onnxruntime-gpu) and check the CUDA/cuDNN libraries"


def resolve_provider(provider: str) -> str:
    """Map ``auto``/``tensorrt``/``cuda``/``cpu`` to the provider that will actually run.

    ``auto`` never picks TensorRT: its first start builds engines for minutes,
    so it is asked for by name.

    Returns:
        ``"tensorrt"``, ``"cuda"`` or ``"cpu"``.

    Raises:
        ProviderError: unknown name, or ``tensorrt``/``cuda`` asked for but not available.
    """
    if provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if provider == "cpu":
        return "cpu"
    if provider == "tensorrt":
        if _TRT in available:
            return "tensorrt"
        raise ProviderError(
            "provider 'tensorrt' asked for, but this onnxruntime has no TensorRT support "
            f"(it has {', '.join(available)}); install onnxruntime-gpu with the TensorRT "
            "libraries, or use --provider cuda"
        )
    if _CUDA in available:
        return "cuda"
    if provider == "cuda":
        raise ProviderError(
            "provider 'cuda' asked for, but this onnxruntime has no CUDA support "
            f"(it has {', '.join(available)}); {GPU_INSTALL_HINT}, or use --provider cpu"
        )
    logger.info("CUDA is not available to onnxruntime; running on CPU")
    return "cpu"


def provider_chain(provider: str, trt_cache: Path = TRT_CACHE) -> list:
    """The onnxruntime ``providers`` list for a resolved provider, fallbacks last.

    TensorRT builds fp16 engines and caches them under ``trt_cache`` (the
    first start is slow, later ones load the cache); CUDA runs what TensorRT
    cannot (onnxruntime's contrib ops such as ``MultiHeadAttention``).
    """
    if provider == "tensorrt":
        options = {
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(trt_cache),
        }
        return [(_TRT, options), _CUDA, _CPU]
    return [_CUDA, _CPU] if provider == "cuda" else [_CPU]


def best_precision(available: list[str], provider: str) -> str:
    """The fastest precision of ``available`` for a resolved provider."""
    gpu = provider in ("cuda", "tensorrt")
    order = ("fp16", "fp32", "int8") if gpu else ("int8", "fp32", "fp16")
    for precision in order:
        if precision in available:
            return precision
    raise BundleError("the bundle has no encoder graph; re-export it with ufd-export")


class OrtSession:
    """One onnxruntime inference session over one graph of a bundle.

    On CUDA/TensorRT the graph runs through IO binding: the input buffer stays
    on the device between calls (refilled in place while the batch shape is
    unchanged) and the output is bound there too, so a call does one
    host-to-device and one device-to-host copy and no device allocation.
    """

    def __init__(
        self,
        model_path: Path,
        provider: str = "cpu",
        threads: int | None = None,
        optimization: str = "all",
        io_binding: bool | None = None,
    ) -> None:
        """Create the session.

        Args:
            model_path: ONNX file (already hash-verified by the bundle).
            provider: a resolved provider, ``tensorrt``, ``cuda`` or ``cpu``.
            threads: intra-op threads; ``None`` lets onnxruntime decide.
            optimization: ``all``, ``extended`` or ``basic`` graph optimisation.
            io_binding: run through IO binding; ``None``: on GPU providers only.
        """
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        }[optimization]
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=provider_chain(provider)
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            reason = str(e).strip().splitlines()[0]
            fix = (
                "this onnxruntime lacks the contrib op the fused graph uses; use the standard "
                "onnxruntime package, or re-export with ufd-export --no-fuse-attention"
                if "MultiHeadAttention" in str(e)
                else "the bundle is damaged or was made by an incompatible exporter; re-export it"
            )
            raise BundleError(f"onnxruntime cannot load {model_path.name}: {reason}; {fix}") from e
        self.provider = _NAMES.get(self.session.get_providers()[0], "cpu")
        if self.provider != provider:
            logger.warning(
                "%s provider failed to start for %s (missing CUDA/TensorRT libraries?); "
                "running on %s. Fix: %s",
                provider,
                model_path.name,
                self.provider,
                GPU_INSTALL_HINT,
            )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        bind = self.provider != "cpu" if io_binding is None else io_binding
        self.device = "cpu" if self.provider == "cpu" else "cuda"
        self._binding = self.session.io_binding() if bind else None
        self._device_input: ort.OrtValue | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run the graph on one input batch and return its first output."""
        if self._binding is None:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        return self._run_bound(np.ascontiguousarray(batch))

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        held = self._device_input
        if (
            held is None
            or held.shape() != list(batch.shape)
            or held.data_type() != _ORT_TYPES.get(batch.dtype)
        ):
            # on the CPU the OrtValue wraps the array itself: own a copy, so that later
            # in-place refills never write into a caller's array
            owned = batch.copy() if self.device == "cpu" else batch
            held = self._device_input = ort.OrtValue.ortvalue_from_numpy(owned, self.device, 0)
        else:
            held.update_inplace(batch)
        self._binding.bind_ortvalue_input(self.input_name, held)
        self._binding.bind_output(self.output_name, self.device)
        self.session.run_with_iobinding(self._binding)
        return self._binding.copy_outputs_to_cpu()[0]


class EncoderSession(OrtSession):
    """The CLIP visual encoder: (N, 3, H, W) float32 -> (N, D) float32 features.

    With ``batch_invariant=False`` (dynamic int8 graphs) images are run one per
    call, so an image's score never depends on its batch neighbours.
    """

    batch_invariant: bool = True

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Encode a batch of preprocessed images."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if self.batch_invariant or len(pixels) <= 1:
            return np.asarray(self.run(pixels), np.float32)
        return np.concatenate([np.asarray(self.run(x[None]), np.float32) for x in pixels])


class LinearHeadSession(OrtSession):
    """The UnivFD linear head: (N, D) features -> (N,) logits (p(fake) = sigmoid)."""

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Score a batch of features; returns one logit per row."""
        out = self.run(np.ascontiguousarray(features, dtype=np.float32))
        return np.asarray(out, dtype=np.float32).reshape(-1)


def check_feature_dim(
    feature_dim: int, encoder: EncoderSession, head: LinearHeadSession | None
) -> None:
    """The encoder's output, the head's input and the manifest must agree.

    Raises:
        BundleError: the bundle mixes graphs of different models.
    """
    shapes = {"encoder output": encoder.session.get_outputs()[0].shape}
    if head is not None:
        shapes["head input"] = head.session.get_inputs()[0].shape
    for name, shape in shapes.items():
        width = shape[-1] if shape else None
        if isinstance(width, int) and width != feature_dim:
            raise BundleError(
                f"the {name} is {width}-d but the manifest says {feature_dim}-d features: "
                "the bundle mixes graphs of different models; re-export it"
            )
