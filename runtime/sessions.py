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

PROVIDERS = ("auto", "cuda", "cpu")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"

GPU_INSTALL_HINT = "pip install 'ufd[gpu]' (onnxruntime-gpu) and check the CUDA/cuDNN libraries"


def resolve_provider(provider: str) -> str:
    """Map ``auto``/``cuda``/``cpu`` to the provider that will actually run.

    Returns:
        ``"cuda"`` or ``"cpu"``.

    Raises:
        ProviderError: unknown name, or ``cuda`` asked for but not available.
    """
    if provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if provider == "cpu":
        return "cpu"
    if _CUDA in available:
        return "cuda"
    if provider == "cuda":
        raise ProviderError(
            "provider 'cuda' asked for, but this onnxruntime has no CUDA support "
            f"(it has {', '.join(available)}); {GPU_INSTALL_HINT}, or use --provider cpu"
        )
    logger.info("CUDA is not available to onnxruntime; running on CPU")
    return "cpu"


def best_precision(available: list[str], provider: str) -> str:
    """The fastest precision of ``available`` for a resolved provider."""
    order = ("fp16", "fp32", "int8") if provider == "cuda" else ("int8", "fp32", "fp16")
    for precision in order:
        if precision in available:
            return precision
    raise BundleError("the bundle has no encoder graph; re-export it with ufd-export")


class OrtSession:
    """One onnxruntime inference session over one graph of a bundle."""

    def __init__(
        self,
        model_path: Path,
        provider: str = "cpu",
        threads: int | None = None,
        optimization: str = "all",
    ) -> None:
        """Create the session.

        Args:
            model_path: ONNX file (already hash-verified by the bundle).
            provider: a resolved provider, ``cuda`` or ``cpu``.
            threads: intra-op threads; ``None`` lets onnxruntime decide.
            optimization: ``all``, ``extended`` or ``basic`` graph optimisation.
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
        providers = [_CUDA, _CPU] if provider == "cuda" else [_CPU]
        try:
            self.session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=providers
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(
                f"onnxruntime cannot load {model_path.name}: {str(e).strip().splitlines()[0]}; "
                "the bundle is damaged or was made by an incompatible exporter; re-export it"
            ) from e
        if provider == "cuda" and _CUDA not in self.session.get_providers():
            logger.warning(
                "CUDA provider failed to start for %s (missing CUDA libraries?); "
                "running on CPU. Fix: %s",
                model_path.name,
                GPU_INSTALL_HINT,
            )
        self.provider = "cuda" if _CUDA in self.session.get_providers() else "cpu"
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run the graph on one input batch and return its first output."""
        return self.session.run([self.output_name], {self.input_name: batch})[0]


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
