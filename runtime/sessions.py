"""onnxruntime sessions over a bundle's graphs, on a started :class:`Provider`.

One small class per graph kind over a shared :class:`OrtSession` base, in the
way rembg wraps one session per model. Sessions may be called from many
threads at once: onnxruntime's ``run`` is thread-safe, and IO-binding state is
kept per thread.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ufd.runtime.errors import BundleError, ProviderError
from ufd.runtime.providers import PROVIDERS, Provider

logger = logging.getLogger(__name__)

_ORT_TYPES = {np.dtype(np.float32): "tensor(float)", np.dtype(np.float16): "tensor(float16)"}
_LEVELS = {
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


class OrtSession:
    """One onnxruntime inference session over one graph of a bundle.

    With IO binding (GPU providers) the input buffer stays on the device between
    calls (refilled in place while the batch shape is unchanged) and the output
    is bound there too, so a call does one host-to-device and one device-to-host
    copy and no device allocation. Each calling thread has its own binding.
    """

    def __init__(
        self,
        model_path: Path,
        provider: Provider | None = None,
        threads: int | None = None,
        optimization: str = "all",
        io_binding: bool | None = None,
        save_optimized: Path | None = None,
        variable_size: bool = False,
    ) -> None:
        """Create the session.

        Args:
            model_path: ONNX file (already hash-verified by the bundle).
            provider: a started provider (:func:`ufd.runtime.providers.start_provider`);
                ``None``: the CPU.
            threads: intra-op threads; ``None`` lets onnxruntime decide.
            optimization: ``all``, ``extended``, ``basic`` or ``none`` (a graph
                optimised before: :mod:`ufd.runtime.graph_cache`).
            io_binding: run through IO binding; ``None``: as the provider says.
            save_optimized: also write the optimised graph there, its initializers
                (and their pre-packed forms) in ``<name>.data`` beside it, to be
                memory-mapped by later sessions.
            variable_size: the graph takes images of any size (``whole`` bundles):
                onnxruntime's memory pattern, planned per input shape, is turned
                off; it doubled the peak memory of a ResNet on a 1 MP image
                (benchmarks/fullres_speed.py) and saved no time.

        Raises:
            BundleError: onnxruntime cannot load the graph.
            ProviderError: the provider did not start for this graph.
        """
        provider = provider or PROVIDERS["cpu"]
        options = ort.SessionOptions()
        options.graph_optimization_level = _LEVELS[optimization]
        options.log_severity_level = 3
        options.enable_mem_pattern = not variable_size
        if threads:
            options.intra_op_num_threads = threads
        if save_optimized is not None:
            options.optimized_model_filepath = str(save_optimized)
            for key, value in SAVE_PREPACKED.items():
                options.add_session_config_entry(key, value.format(name=save_optimized.name))
        try:
            self.session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=provider.chain()
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(_load_failure(model_path, e)) from e
        if self.session.get_providers()[0] != provider.ort_name:
            raise ProviderError(
                f"{provider.name} did not start for {model_path.name} (onnxruntime fell back "
                f"to {self.session.get_providers()[0]}); fix: {provider.install_hint or '-'}, "
                "or use --provider cpu"
            )
        self.provider = provider
        self.device = provider.device
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.io_binding = provider.io_binding if io_binding is None else io_binding
        self._local = threading.local()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run the graph on one input batch and return its first output."""
        if not self.io_binding:
            return np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0])
        return self._run_bound(np.ascontiguousarray(batch))

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        local = self._local
        if not hasattr(local, "binding"):
            local.binding, local.held = self.session.io_binding(), None
        held = local.held
        if (
            held is None
            or held.shape() != list(batch.shape)
            or held.data_type() != _ORT_TYPES.get(batch.dtype)
        ):
            # on the CPU the OrtValue wraps the array itself: own a copy, so that later
            # in-place refills never write into a caller's array
            owned = batch.copy() if self.device == "cpu" else batch
            held = local.held = ort.OrtValue.ortvalue_from_numpy(owned, self.device, 0)
        else:
            held.update_inplace(batch)
        local.binding.bind_ortvalue_input(self.input_name, held)
        local.binding.bind_output(self.output_name, self.device)
        self.session.run_with_iobinding(local.binding)
        return np.asarray(local.binding.copy_outputs_to_cpu()[0])

    @property
    def _device_input(self) -> ort.OrtValue | None:
        """The calling thread's bound input buffer (``None`` before its first bound run)."""
        return getattr(self._local, "held", None)


SAVE_PREPACKED = {
    "session.optimized_model_external_initializers_file_name": "{name}.data",
    "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
    "session.save_external_prepacked_constant_initializers": "1",
}
"""Session settings that save an optimised graph with its weights, pre-packed for this CPU,
in a file beside it that later sessions memory-map instead of parsing and packing again."""


def _load_failure(model_path: Path, error: Exception) -> str:

    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    fix = (
        "this onnxruntime lacks the contrib op the fused graph uses; use the standard "
        "onnxruntime package, or re-export with ufd-export --no-fuse-attention"
        if "MultiHeadAttention" in str(error)
        else "the bundle is damaged or was made by an incompatible exporter; re-export it"
    )
    return f"onnxruntime cannot load {model_path.name}: {reason}; {fix}"


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


class HeadSession(OrtSession):
    """A features -> logit graph (the UnivFD linear head, the traces head): (N, D) -> (N,)."""

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Score a batch of features; returns one logit per row."""
        out = self.run(np.ascontiguousarray(features, dtype=np.float32))
        return np.asarray(out, dtype=np.float32).reshape(-1)


class AggregatorSession(OrtSession):
    """``tiles`` bundles: the tiles' features of one image -> its feature: (L, d) -> (D,)."""

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """The image's feature from its tiles' (one image per call: L varies)."""
        out = self.run(np.ascontiguousarray(tiles[None], dtype=np.float32))
        return np.asarray(out, dtype=np.float32).reshape(-1)


def check_feature_dim(feature_dim: int, graphs: dict[str, OrtSession]) -> None:
    """Every graph's feature width must match the manifest's.

    Args:
        feature_dim: the manifest's feature dimension.
        graphs: ``{"encoder output": session, "head input": session}``.

    Raises:
        BundleError: the bundle mixes graphs of different models.
    """
    for name, session in graphs.items():
        port = session.session.get_outputs() if "output" in name else session.session.get_inputs()
        shape = port[0].shape
        width = shape[-1] if shape else None
        if isinstance(width, int) and width != feature_dim:
            raise BundleError(
                f"the {name} is {width}-d but the manifest says {feature_dim}-d features: "
                "the bundle mixes graphs of different models; re-export it"
            )
