"""The runtime's Python API: open a bundle, score images.

>>> detector = Detector.open("bundle/", precision="fp32", provider="cpu")
>>> for record in detector.score(["photo.jpg", "folder/"]):
...     print(record.path, record.prob, record.label)

Data flows one way: path -> :func:`decode_image` -> preprocessor ->
:class:`EncoderSession` -> feature -> each method's head or bank
(:class:`MethodRunner`) -> :class:`Record`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from ufd.runtime.bundle import Bundle
from ufd.runtime.decode import DEFAULT_MAX_PIXELS, decode_image
from ufd.runtime.errors import ImageError
from ufd.runtime.inputs import InputItem, expand_inputs
from ufd.runtime.methods import MethodRunner
from ufd.runtime.neighbours import LabelledBank
from ufd.runtime.pipeline import FeatureBatch, Prepared, prepare_stream
from ufd.runtime.preprocess import build_preprocessor
from ufd.runtime.records import Record
from ufd.runtime.scoring import batch_records
from ufd.runtime.sessions import (
    EncoderSession,
    LinearHeadSession,
    best_precision,
    check_feature_dim,
    resolve_provider,
)

logger = logging.getLogger(__name__)


DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 32, "tensorrt": 32}
"""Images per encoder call when none is given: small on the CPU (dynamic int8 runs
one image per call anyway), larger where a GPU needs batches to fill it."""


class Detector:
    """A bundle loaded for inference: encoder, head, preprocessing and threshold."""

    def __init__(
        self,
        bundle: Bundle,
        encoder: EncoderSession,
        head: LinearHeadSession | None,
        precision: str,
        threshold: float,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        verify: bool = True,
        decode_workers: int = 1,
    ) -> None:
        self.bundle = bundle
        self.encoder = encoder
        self.head = head
        self.precision = precision
        self.threshold = threshold
        self.max_pixels = max_pixels
        self.preprocess_config = bundle.manifest.preprocess
        self.preprocessor = build_preprocessor(self.preprocess_config)
        self.verify = verify
        self.decode_workers = decode_workers
        self.methods = MethodRunner(bundle, head, self.threshold, verify)

    @classmethod
    def open(
        cls,
        bundle: str | Path | Bundle,
        precision: str | None = None,
        provider: str = "auto",
        threads: int | None = None,
        threshold: float | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        verify: bool = True,
        decode_workers: int | None = None,
    ) -> Detector:
        """Load a bundle.

        Args:
            bundle: bundle directory (or an opened :class:`Bundle`).
            precision: ``fp32``, ``fp16`` or ``int8``; ``None`` picks the fastest
                the bundle has for the provider (CPU: int8, CUDA: fp16).
            provider: ``auto`` (CUDA when available, else CPU), ``tensorrt``, ``cuda``
                or ``cpu``.
            threads: onnxruntime intra-op threads (``None``: onnxruntime's default).
            threshold: decision threshold on p(fake); ``None`` uses the manifest's.
            max_pixels: refuse images with more decoded pixels than this.
            verify: check each loaded file's sha256 against the manifest.
            decode_workers: threads decoding images ahead of the encoder; ``None``:
                one on CUDA, none on the CPU provider (measured on 2 cores: decoding
                costs ~3 ms per image and a third thread slowed ViT-B-16 int8 by
                4-8 ms per image).

        Raises:
            BundleError: the bundle is damaged or lacks what was asked for.
            ProviderError: the provider cannot be used.
        """
        if not isinstance(bundle, Bundle):
            bundle = Bundle.open(bundle)
        manifest = bundle.manifest
        resolved = resolve_provider(provider)
        precision = precision or best_precision(manifest.precisions, resolved)
        encoder_graph = manifest.encoder(precision)
        # fp16 graphs on the CPU provider crash onnxruntime at ENABLE_ALL (RUNTIME-NOTES).
        level = "extended" if precision == "fp16" and resolved == "cpu" else "all"
        encoder = EncoderSession(bundle.graph_path(encoder_graph, verify), resolved, threads, level)
        encoder.batch_invariant = encoder_graph.batch_invariant
        head_graph = manifest.head_graph()
        head = None
        if head_graph is not None:
            head = LinearHeadSession(bundle.graph_path(head_graph, verify), "cpu", threads)
        check_feature_dim(manifest.model.feature_dim, encoder, head)
        logger.info(
            "loaded %s (%s %s, %s on %s)",
            bundle.root,
            manifest.model.name,
            manifest.model.pretrained,
            precision,
            encoder.provider,
        )
        return cls(
            bundle,
            encoder,
            head,
            precision,
            manifest.threshold if threshold is None else threshold,
            max_pixels,
            verify,
            (1 if encoder.provider != "cpu" else 0) if decode_workers is None else decode_workers,
        )

    @property
    def provider(self) -> str:
        """The provider the encoder actually runs on (``tensorrt``, ``cuda`` or ``cpu``)."""
        return self.encoder.provider

    def prepare(self, path: str | Path) -> np.ndarray:
        """Decode and preprocess one image file to the encoder's input.

        Raises:
            ImageError: the file cannot be decoded or preprocessed.
        """
        image = decode_image(path, self.max_pixels, self.preprocess_config.exif_transpose)
        try:
            return self.preprocessor(image)
        except Exception as e:
            raise ImageError(f"preprocessing failed ({type(e).__name__}: {e})") from e

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Encoder features (N, D) of a preprocessed batch (N, 3, H, W)."""
        return self.encoder(pixels)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Linear-head logits (N,) of a feature batch.

        Raises:
            BundleError: the bundle has no head.
        """
        return self.methods.linear_head(features)

    @property
    def nn_bank(self) -> LabelledBank:
        """The bundle's nearest-neighbour bank, loaded (and verified) on first use."""
        return self.methods.nn_bank

    def score(
        self,
        inputs: Iterable[str | Path],
        batch_size: int | None = None,
        method: str = "linear",
        k: int | None = None,
        exact: bool | None = None,
    ) -> Iterator[Record]:
        """One record per input file, in input order (directories and globs expand)."""
        for batch in self.score_batches(expand_inputs(inputs), batch_size, method, k, exact):
            yield from batch

    def score_batches(
        self,
        items: Iterable[InputItem],
        batch_size: int | None = None,
        method: str = "linear",
        k: int | None = None,
        exact: bool | None = None,
    ) -> Iterator[list[Record]]:
        """Score expanded items, yielding the records of each batch in input order.

        Args:
            items: expanded inputs.
            batch_size: images per encoder call (``None``: :data:`DEFAULT_BATCH_SIZE`
                for the provider).
            method: ``linear``, ``nn``, ``traces``, ``realonly``, a comma-separated
                list of them, or ``all`` (every method the bundle has).
            k: neighbours (``nn`` vote, ``realonly`` mean distance).
            exact: force exact (True) or HNSW (False) search; ``None`` chooses
                by bank size.

        Raises:
            BundleError: the bundle lacks what a method needs.
            ValueError: bad ``method``, ``k`` or ``batch_size``.
        """
        methods = self.methods.resolve(method)
        self.methods.check(methods, k)
        for batch, features, failure in self.feature_batches(items, batch_size):
            yield self._records(batch, features, failure, methods, k, exact)

    def score_features(
        self, features: np.ndarray, names: list[str], method: str = "linear",
        k: int | None = None, exact: bool | None = None,
    ) -> list[Record]:  # fmt: skip
        """Records for precomputed features (one row per image), skipping the encoder."""
        methods = self.methods.resolve(method)
        self.methods.check(methods, k)
        columns = self.methods.columns(methods, np.asarray(features, np.float32), k, exact)
        return batch_records(names, [None] * len(names), columns)

    def feature_batches(
        self,
        items: Iterable[InputItem],
        batch_size: int | None = None,
        prepare: Callable[[str], np.ndarray] | None = None,
    ) -> Iterator[FeatureBatch]:
        """Decode, preprocess and encode items in batches.

        Args:
            items: inputs, in order.
            batch_size: images per encoder call (``None``: :data:`DEFAULT_BATCH_SIZE`
                for the provider).
            prepare: path -> encoder input; default :meth:`prepare` (evaluation
                and training pass perturbing or augmenting versions).

        Yields:
            ``(batch, features, failure)``: the batch's items in input order
            (each with its pixels or its error), the features of the items that
            have pixels (in order), and the reason the encoder failed, if it did.
        """
        batch_size = batch_size or DEFAULT_BATCH_SIZE[self.provider]
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        prepare = prepare or self.prepare
        pending: list[Prepared] = []
        n_ready = 0
        lookahead = max(2 * batch_size, 4)
        for prepared in prepare_stream(items, prepare, self.decode_workers, lookahead):
            pending.append(prepared)
            n_ready += prepared.pixels is not None
            if n_ready >= batch_size:
                yield self._encode(pending)
                pending, n_ready = [], 0
        if pending:
            yield self._encode(pending)

    def encode_for_cache(
        self,
        items: list[InputItem],
        batch_size: int | None = None,
        prepare: Callable[[str], np.ndarray] | None = None,
    ) -> Iterator[tuple[list[InputItem], np.ndarray, list[tuple[str, str]]]]:
        """Batches of (encoded items, their features, skipped (path, reason))."""
        for batch, features, failure in self.feature_batches(items, batch_size, prepare):
            done = [p.item for p in batch if p.pixels is not None and failure is None]
            skipped = [
                (p.item.path, p.error or failure or "unknown error")
                for p in batch
                if p.pixels is None or failure is not None
            ]
            if features is None or failure is not None:
                features = np.zeros((0, 0), np.float32)
            yield done, features, skipped

    def _encode(self, batch: list[Prepared]) -> FeatureBatch:
        ready = [p.pixels for p in batch if p.pixels is not None]
        if not ready:
            return batch, None, None
        try:
            return batch, self.features(np.stack(ready)), None
        except Exception as e:  # noqa: BLE001 - report, never crash the run
            logger.error("inference failed on a batch of %d: %s", len(ready), e)
            return batch, None, f"inference failed: {type(e).__name__}: {e}"

    def _records(
        self,
        batch: list[Prepared],
        features: np.ndarray | None,
        failure: str | None,
        methods: tuple[str, ...],
        k: int | None,
        exact: bool | None,
    ) -> list[Record]:
        columns = {}
        if features is not None and failure is None:
            columns = self.methods.columns(methods, features, k, exact)
        errors = [p.error or failure if p.pixels is None or failure else None for p in batch]
        return batch_records([p.item.path for p in batch], errors, columns)
