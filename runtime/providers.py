"""The provider table: how ufd runs graphs on each onnxruntime execution provider.

One :class:`Provider` per provider ufd is tuned for (CPU, CUDA, TensorRT):
its onnxruntime chain (fallbacks last), where IO-binding buffers live, the
default batch size and decode workers, the precision order (fastest first)
and optimisation quirks. Any other onnxruntime execution provider (OpenVINO,
CoreML, DirectML...) passes through by name with CPU fallback and CPU
defaults, and one line says so.

A provider is *started* before any graph is chosen: a 74-byte probe graph is
loaded on it, so ``--provider auto`` picks its precision for the provider
that really runs (CUDA libraries missing: the CPU, with int8), and a provider
asked for by name that cannot start is a :class:`ProviderError`.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

from ufd.runtime.cache import cache_dir
from ufd.runtime.errors import ProviderError

logger = logging.getLogger(__name__)

CPU_EP, CUDA_EP, TRT_EP = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
)
GPU_INSTALL_HINT = "pip install 'ufd[gpu]' (onnxruntime-gpu) and check the CUDA/cuDNN libraries"
# Identity on a float[1] (opset 13): onnx.helper.make_model(..., ir_version=8).SerializeToString()
_PROBE_GRAPH = base64.b64decode(
    "CAgSA3VmZDo7ChAKAXgSAXkiCElkZW50aXR5EgVwcm9iZVoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAES"
    "BAoCCAFCBAoAEA0="
)


@dataclass(frozen=True)
class Provider:
    """How ufd runs graphs on one execution provider.

    Attributes:
        name: ufd's name for it (``cpu``, ``cuda``, ``tensorrt``, ``openvino``...).
        ort_name: onnxruntime's name (``CUDAExecutionProvider``).
        device: where IO-binding buffers live (``cpu`` or ``cuda``).
        io_binding: run graphs through IO binding (inputs stay on the device).
        batch_size: default images per encoder call.
        decode_workers: default threads decoding ahead of the encoder.
        batch_wait_ms: how long the service waits to fill a batch (0 where batches
            buy nothing: dynamic int8 on the CPU runs one image per call anyway).
        precision_order: encoder precisions, fastest first.
        fallbacks: providers onnxruntime may use for what this one cannot run.
        options: provider options passed to onnxruntime.
        cache_option: the provider option that names a cache folder; ufd sets it to
            ``cache_dir(<name>)`` (:mod:`ufd.runtime.cache`) when the chain is made.
        in_auto: whether ``--provider auto`` tries it.
        install_hint: how to make it available.
        tuned: False for providers passed through with CPU defaults.
    """

    name: str
    ort_name: str
    device: str = "cpu"
    io_binding: bool = False
    batch_size: int = 8
    decode_workers: int = 0
    batch_wait_ms: float = 0.0
    precision_order: tuple[str, ...] = ("int8", "int8-portable", "fp32", "fp16")
    fallbacks: tuple[str, ...] = (CPU_EP,)
    options: dict[str, Any] = field(default_factory=dict[str, Any])
    cache_option: str | None = None
    in_auto: bool = False
    install_hint: str = ""
    tuned: bool = True

    def chain(self) -> list[Any]:
        """The ``providers`` list for onnxruntime, fallbacks last."""
        options = dict(self.options)
        if self.cache_option:
            options[self.cache_option] = str(cache_dir(self.name))
        head = (self.ort_name, options) if options else self.ort_name
        return [head, *(f for f in self.fallbacks if f != self.ort_name)]

    def optimization(self, precision: str) -> str:
        """Graph optimisation level for a precision.

        fp16 graphs crash onnxruntime's CPU provider at ENABLE_ALL (RUNTIME-NOTES):
        wherever the CPU may run them, they get EXTENDED.
        """
        return "extended" if precision == "fp16" and self.device == "cpu" else "all"

    def best_precision(self, available: list[str]) -> str | None:
        """The fastest of ``available`` here, or ``None``."""
        return next((p for p in self.precision_order if p in available), None)


# (decode_workers, batch_size) measured on 2 cores: decoding costs ~3 ms per image
# and a decode thread slowed ViT-B-16 int8 by 4-8 ms per image on the CPU; on a GPU
# one thread keeps the device fed and batches of 32 fill it.
PROVIDERS: dict[str, Provider] = {
    "cpu": Provider("cpu", CPU_EP),
    "cuda": Provider(
        "cuda",
        CUDA_EP,
        device="cuda",
        io_binding=True,
        batch_size=32,
        decode_workers=1,
        batch_wait_ms=2.0,
        precision_order=("fp16", "fp32", "int8", "int8-portable"),
        in_auto=True,
        install_hint=GPU_INSTALL_HINT,
    ),
    "tensorrt": Provider(
        "tensorrt",
        TRT_EP,
        device="cuda",
        io_binding=True,
        batch_size=32,
        decode_workers=1,
        batch_wait_ms=2.0,
        precision_order=("fp16", "fp32", "int8", "int8-portable"),
        fallbacks=(CUDA_EP, CPU_EP),
        options={"trt_fp16_enable": True, "trt_engine_cache_enable": True},
        cache_option="trt_engine_cache_path",
        install_hint="install onnxruntime-gpu with the TensorRT libraries, or use --provider cuda",
    ),
}
"""ufd's tuned providers. ``auto`` tries those with ``in_auto`` (CUDA; never
TensorRT, whose first start builds engines for minutes), then the CPU."""
PROVIDER_CHOICES = ("auto", *reversed(PROVIDERS))
PROVIDER_HELP = (
    "auto (CUDA when it starts, else CPU), tensorrt (fp16 engines cached in ufd's "
    "cache folder, tensorrt/; slow first start), cuda, cpu, or any other onnxruntime "
    "execution provider by name (openvino, coreml...: passed through, CPU fallback)."
)


def start_provider(requested: str) -> Provider:
    """The provider that will really run graphs for ``requested``.

    Raises:
        ProviderError: unknown name, or a provider asked for by name that this
            onnxruntime lacks or that fails to start.
    """
    import onnxruntime as ort  # here, not at import: the CLI's help and a service client need none

    available = ort.get_available_providers()
    if requested == "auto":
        for provider in PROVIDERS.values():
            if provider.in_auto and provider.ort_name in available:
                if _starts(provider):
                    return provider
                logger.warning(
                    "%s is installed but failed to start (missing CUDA/cuDNN libraries?); "
                    "running on the CPU with its fastest precision. Fix: %s",
                    provider.name,
                    provider.install_hint,
                )
                return PROVIDERS["cpu"]
        logger.info("no GPU provider in this onnxruntime; running on the CPU")
        return PROVIDERS["cpu"]
    provider = PROVIDERS.get(requested) or _pass_through(requested, available)
    if provider.ort_name not in available:
        raise ProviderError(
            f"provider {requested!r} asked for, but this onnxruntime has no "
            f"{provider.ort_name} (it has {', '.join(available)}); {provider.install_hint}"
            + ("" if "--provider" in provider.install_hint else ", or use --provider cpu")
        )
    if provider.ort_name != CPU_EP and not _starts(provider):
        raise ProviderError(
            f"provider {requested!r} is installed but failed to start (see onnxruntime's "
            f"log above); fix: {provider.install_hint or 'check its libraries'}, or use "
            "--provider cpu"
        )
    return provider


def _pass_through(requested: str, available: list[str]) -> Provider:
    """A CPU-like :class:`Provider` for an onnxruntime provider ufd has no settings for."""
    wanted = requested.lower().removesuffix("executionprovider")
    for ort_name in available:
        if ort_name.lower().removesuffix("executionprovider") == wanted:
            logger.warning(
                "passing %s through to onnxruntime with CPU fallback; ufd has no tuned "
                "settings for it (CPU batch size and precision order)",
                ort_name,
            )
            return Provider(wanted, ort_name, tuned=False, install_hint="")
    raise ProviderError(
        f"unknown provider {requested!r}; use one of {', '.join(PROVIDER_CHOICES)}, or another "
        f"execution provider of this onnxruntime ({', '.join(available)})"
    )


_STARTED: dict[str, bool] = {}


def _starts(provider: Provider) -> bool:
    """Whether onnxruntime really runs the probe graph on ``provider`` (once per process)."""
    if provider.ort_name not in _STARTED:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                _PROBE_GRAPH, options, providers=[provider.chain()[0], CPU_EP]
            )
            _STARTED[provider.ort_name] = session.get_providers()[0] == provider.ort_name
        except Exception as e:
            logger.info("%s failed to start: %s", provider.ort_name, e, exc_info=True)
            _STARTED[provider.ort_name] = False
    return _STARTED[provider.ort_name]
