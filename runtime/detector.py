"""The runtime's Python API: open a bundle, score images.

>>> detector = Detector.open("bundle/", precision="fp32", provider="cpu")
>>> for record in detector.score_images(["photo.jpg", open("b.png", "rb").read()]):
...     print(record.path, record.prob, record.label)

Data flows one way: image -> :func:`decode_image` -> preprocessor ->
:class:`EncoderSession` -> feature -> each method (:class:`MethodSet`) ->
:class:`Record`. The CLI, the service and the scanner all go through here.
A :class:`Detector` may be used from many threads at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ufd.runtime.bundle import Bundle
from ufd.runtime.encoder_choice import open_encoder
from ufd.runtime.errors import BundleError, UsageError
from ufd.runtime.io.decode import ImageSource
from ufd.runtime.io.inputs import InputItem, expand_inputs
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS
from ufd.runtime.methods import MethodSet, ScoreOptions, fields_for, open_bundle
from ufd.runtime.parity import GraphParity
from ufd.runtime.pipeline import FeatureBatch, Pixels, Prepared, Preparer, prepare_stream
from ufd.runtime.providers import PROVIDERS, Provider, start_provider
from ufd.runtime.records import Record, records_from_columns
from ufd.runtime.registry import INPUT_NOTE
from ufd.runtime.sessions import AggregatorSession, EncoderSession, check_feature_dim
from ufd.runtime.transforms import reupload_views
from ufd.runtime.units import Units
from ufd.runtime.video.run import VideoRun, with_videos

logger = logging.getLogger(__name__)


class Detector:
    """A bundle loaded for inference: encoder, methods, preprocessing."""

    def __init__(
        self,
        bundle: Bundle,
        encoder: EncoderSession,
        precision: str,
        provider: Provider,
        methods: MethodSet,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode_workers: int | None = None,
        provenance: bool = False,
    ) -> None:
        self.bundle = bundle
        self.provenance = provenance
        self.encoder = encoder
        self.precision = precision
        self.provider_spec = provider
        self.methods = methods
        self.max_pixels = max_pixels
        self.preprocess_config = bundle.manifest.preprocess
        self.preparer = Preparer(self.preprocess_config, max_pixels)
        self.preprocessor = self.preparer.preprocessor
        self.decode_workers = provider.decode_workers if decode_workers is None else decode_workers
        self.aggregator: AggregatorSession | None = None
        """``tiles`` bundles: the graph that turns an image's tile features into its own."""
        self.parity: GraphParity | None = None
        """How the encoder measured on this host against the bundle's probes (``None``:
        not measured: the bundle has no probes)."""
        self.passed_over: tuple[GraphParity, ...] = ()
        """Faster graphs ``auto`` passed over here: they break the tolerance on this host."""

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
        provenance: bool = False,
    ) -> Detector:
        """Load a bundle.

        Args:
            bundle: bundle directory (or an opened :class:`Bundle`).
            precision: ``fp32``, ``fp16``, ``int8`` or ``int8-portable``; ``None``
                takes the fastest graph the bundle has for the provider that started
                (CPU: int8, CUDA: fp16) that keeps the bundle's tolerance on this host
                (:mod:`ufd.runtime.encoder_choice`).
            provider: ``auto``, ``tensorrt``, ``cuda``, ``cpu``, or another
                onnxruntime execution provider by name (see :mod:`ufd.runtime.providers`).
            threads: onnxruntime intra-op threads of every session (``None``:
                onnxruntime's default).
            threshold: the linear head's threshold on p(fake); ``None``: the bundle's.
            max_pixels: refuse images with more decoded pixels than this.
            verify: check each loaded file's sha256 against the manifest.
            decode_workers: threads decoding images ahead of the encoder; ``None``:
                the provider's default (none on the CPU, one on a GPU).
            provenance: add each file's own provenance to its record
                (:mod:`ufd.runtime.provenance`).

        Raises:
            BundleError: the bundle is damaged or lacks what was asked for.
            ProviderError: the provider cannot be used.
        """
        if not isinstance(bundle, Bundle):
            bundle = open_bundle(bundle)
        manifest = bundle.manifest
        started = start_provider(provider)
        thresholds = {} if threshold is None else {"linear": threshold}
        methods = MethodSet(bundle, started, threads, verify, thresholds)
        head, head_sha = None, None
        if manifest.method("linear") is not None:  # load (and verify) the head up front
            head = methods.head_method("linear").head
            check_feature_dim(manifest.model.feature_dim, {"head input": head})
            head_sha = manifest.files[manifest.methods["linear"].files["graph"]].sha256
        choice = open_encoder(bundle, started, precision, threads, verify, head, head_sha)
        encoder, precision = choice.session, choice.precision
        logger.info(
            "loaded %s (%s %s, %s on %s)",
            bundle.root,
            manifest.model.name,
            manifest.model.pretrained,
            precision,
            started.name,
        )
        detector = cls(
            bundle, encoder, precision, started, methods, max_pixels, decode_workers, provenance
        )
        detector.parity, detector.passed_over = choice.parity, choice.passed_over
        if manifest.aggregator is not None:
            path = bundle.graph_path(manifest.aggregator.file, verify)
            detector.aggregator = AggregatorSession(path, PROVIDERS["cpu"], threads)
        return detector

    @property
    def provider(self) -> str:
        """The provider the encoder runs on (``cpu``, ``cuda``, ``tensorrt``...)."""
        return self.provider_spec.name

    @property
    def threshold(self) -> float:
        """The linear head's decision threshold on p(fake)."""
        return self.methods.get("linear").threshold

    def prepare(self, source: ImageSource) -> Pixels:
        """Decode and preprocess one image (path, bytes or file object) to the encoder's input.

        Raises:
            ImageError: the image cannot be decoded or preprocessed.
        """
        return self.preparer(source)

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Encoder features (N, D) of a preprocessed batch (N, 3, H, W)."""
        return self.encoder(pixels)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Linear-head logits (N,) of a feature batch.

        Raises:
            BundleError: the bundle has no linear head.
        """
        return self.methods.head_method("linear").logits(features)

    def plan(
        self, method: str, k: int | None = None, exact: bool | None = None, views: int = 0
    ) -> tuple[tuple[str, ...], ScoreOptions]:
        """Validated ``(methods, options)`` for a scoring call, methods loaded.

        Raises:
            UsageError: unknown method, bad ``k`` or ``views``.
            BundleError: the bundle lacks a method or its threshold.
        """
        names = self.methods.resolve(method)
        reupload_views(views)
        options = ScoreOptions(k, exact, views)
        self.methods.check(names, options)
        return names, options

    def prepare_for(self, options: ScoreOptions) -> Callable[[ImageSource], Pixels]:
        """The prepare step of a call: :meth:`prepare`, or with views the image and its views.

        With ``options.views`` = V, an image becomes (1 + V, 3, S, S): itself, then its views.
        """
        return self.preparer.with_views(reupload_views(options.views))

    def score(
        self,
        inputs: Iterable[str | Path],
        batch_size: int | None = None,
        method: str = "linear",
        k: int | None = None,
        exact: bool | None = None,
        views: int = 0,
        video: VideoRun | None = None,
    ) -> Iterator[Record]:
        """One record per input file, in input order; directories and globs expand.

        For command-line style inputs only: never pass untrusted strings here
        (they may name any file or folder); use :meth:`score_images`. With
        ``video`` (:class:`~ufd.runtime.video.run.VideoRun`) videos are scored
        too, and folders take them: one record per video (and its frames').
        """
        items = expand_inputs(inputs, videos=video is not None)
        batches = self.score_batches(items, batch_size, method, k, exact, views, video)
        for batch in batches:
            yield from batch

    def score_images(
        self,
        images: Sequence[ImageSource],
        names: Sequence[str] | None = None,
        method: str = "linear",
        k: int | None = None,
        exact: bool | None = None,
        batch_size: int | None = None,
        views: int = 0,
        video: VideoRun | None = None,
    ) -> list[Record]:
        """One record per image, in order; nothing is expanded or searched for.

        Args:
            images: each a path (read as one file), the file's bytes, or a
                binary file object.
            names: each record's ``path``; default: the path, or ``image-<i>``.
            method: a method, a comma-separated list, or ``all``.
            k: neighbours for k-NN methods; ``None``: each method's default.
            exact: force exact (True) or HNSW (False) search.
            batch_size: images per encoder call.
            views: also score this many re-upload views of each image
                (:func:`~ufd.runtime.transforms.reupload_views`): each method adds
                its views' lowest and highest score and whether they agree, and
                labels ``unsure`` an image whose views disagree.
            video: score videos among ``images`` too
                (:class:`~ufd.runtime.video.run.VideoRun`): one record per video,
                after its frames' with ``video.frames``.
        """
        if names is not None and len(names) != len(images):
            raise UsageError(f"{len(names)} names for {len(images)} images")
        items = [_item(image, i, names) for i, image in enumerate(images)]
        batches = self.score_batches(items, batch_size, method, k, exact, views, video)
        return [r for batch in batches for r in batch]

    def score_batches(
        self,
        items: Iterable[InputItem],
        batch_size: int | None = None,
        method: str = "linear",
        k: int | None = None,
        exact: bool | None = None,
        views: int = 0,
        video: VideoRun | None = None,
    ) -> Iterator[list[Record]]:
        """Score items, yielding the records of each batch in input order.

        Raises:
            UsageError: bad ``method``, ``k``, ``views`` or ``batch_size``.
            BundleError: the bundle lacks what a method needs.
        """
        names, options = self.plan(method, k, exact, views)
        yield from self.planned_batches(items, names, options, batch_size, video)

    def planned_batches(
        self,
        items: Iterable[InputItem],
        methods: tuple[str, ...],
        options: ScoreOptions,
        batch_size: int | None = None,
        video: VideoRun | None = None,
    ) -> Iterator[list[Record]]:
        """Record batches of ``items`` with ``methods`` and ``options`` from :meth:`plan`."""
        prepare = self.prepare_for(options)

        def score(group: Iterable[InputItem]) -> Iterator[list[Record]]:
            for batch, features, failure in self.feature_batches(group, batch_size, prepare):
                yield self.records(batch, features, failure, methods, options)

        if video is None:
            yield from score(items)
            return
        loaded = [self.methods.get(m) for m in methods]
        yield from with_videos(items, video, score, loaded, self.provenance)

    def score_features(
        self,
        features: np.ndarray,
        names: list[str],
        method: str = "linear",
        k: int | None = None,
        exact: bool | None = None,
    ) -> list[Record]:
        """Records for precomputed features (one row per image), skipping the encoder."""
        return self.feature_records(features, names, *self.plan(method, k, exact))

    def feature_records(
        self,
        features: np.ndarray,
        names: Sequence[str],
        methods: tuple[str, ...],
        options: ScoreOptions,
    ) -> list[Record]:
        """Records for precomputed features, with methods and options from :meth:`plan`.

        Raises:
            UsageError: ``views`` asked for (views are made from images).
        """
        if options.views:
            raise UsageError("views are made from images: --views cannot score features")
        columns = self.methods.columns(methods, np.asarray(features, np.float32), options)
        return records_from_columns(names, [None] * len(names), columns)

    def records(
        self,
        batch: list[Prepared],
        features: np.ndarray | None,
        failure: str | None,
        methods: tuple[str, ...],
        options: ScoreOptions,
    ) -> list[Record]:
        """The records of one encoded batch (:meth:`plan` gives ``methods`` and ``options``).

        ``features`` holds one row per image that has pixels: (M, D), or with
        ``--views`` (M, 1 + V, D), the image's feature first.
        """
        columns = {}
        if features is not None and failure is None:
            own, views = (
                (features[:, 0], features[:, 1:]) if features.ndim == 3 else (features, None)
            )
            columns = self.methods.columns(methods, own, options, views)
        errors = [p.error if p.error is not None else failure for p in batch]
        records = records_from_columns([p.item.path for p in batch], errors, columns)
        if self.notes_input:
            records = [
                dataclasses.replace(r, values={**r.values, INPUT_NOTE: _note(p.pixels)})
                for r, p in zip(records, batch, strict=True)
            ]
        if not self.provenance:
            return records
        from ufd.runtime.provenance import read_provenance

        return [
            dataclasses.replace(
                r, values={**r.values, "provenance": read_provenance(p.item.source)}
            )
            for r, p in zip(records, batch, strict=True)
        ]

    def fields(self, methods: tuple[str, ...], views: int = 0) -> tuple[str, ...]:
        """The record fields of ``methods``.

        With ``provenance`` when it is read, the views' fields with ``views``, and
        ``input`` for bundles that may change an image to fit the encoder.
        """
        return fields_for(methods, self.provenance, views > 0, self.notes_input)

    @property
    def notes_input(self) -> bool:
        """Whether records say what was done to an image to fit the encoder (``whole``)."""
        return self.preprocess_config.mode == "whole"

    def feature_batches(
        self,
        items: Iterable[InputItem],
        batch_size: int | None = None,
        prepare: Callable[[ImageSource], Pixels] | None = None,
    ) -> Iterator[FeatureBatch]:
        """Decode, preprocess and encode items in batches.

        Args:
            items: inputs, in order.
            batch_size: encoder rows per call (``None``: the provider's default); an
                image with V views takes 1 + V rows, and a batch holds at least one image.
            prepare: image -> encoder input; default :meth:`prepare` (evaluation
                and training pass perturbing or augmenting versions).

        Yields:
            ``(batch, features, failure)``: the batch's items in input order
            (each with its pixels or its error), the features of the items that
            have pixels (in order), and the reason the encoder failed, if it did.
        """
        batch_size = batch_size or self.provider_spec.batch_size
        if batch_size < 1:
            raise UsageError("batch_size must be at least 1")
        prepare = prepare or self.prepare
        pending: list[Prepared] = []
        n_ready = 0
        lookahead = max(2 * batch_size, 4)
        for prepared in prepare_stream(items, prepare, self.decode_workers, lookahead):
            pending.append(prepared)
            n_ready += _rows(prepared.pixels)
            if n_ready >= batch_size:
                yield self.encode(pending)
                pending, n_ready = [], 0
        if pending:
            yield self.encode(pending)

    def encode(self, batch: list[Prepared]) -> FeatureBatch:
        """Encode the prepared images of a batch; a failure is reported, never raised."""
        ready = [p.pixels for p in batch if p.pixels is not None]
        if not ready:
            return batch, None, None
        features, failure = self.encode_pixels(ready)
        if isinstance(features, list):  # one prepare step gives every image the same views
            features = np.stack(features)
        return batch, features, failure

    def _encode_units(self, pixels: list[Pixels]) -> np.ndarray | list[np.ndarray]:
        """:meth:`encode_pixels` for units, one feature per image (or view).

        Every part's units go through the encoder (one call per input size), then
        :func:`aggregate_units` makes their features one.
        """
        units = [p for p in pixels if isinstance(p, Units)]
        if len(units) != len(pixels):
            raise ValueError("a batch mixes units with single crops")
        parts = [part for unit in units for part in unit.parts]
        encoded = self._encode_parts(parts)
        mode = self.preprocess_config.mode
        per_image, at = [], 0
        for unit in units:
            own = [
                aggregate_units(mode, self.aggregator, f)
                for f in encoded[at : at + len(unit.parts)]
            ]
            at += len(unit.parts)
            per_image.append(own[0] if len(own) == 1 else np.stack(own))
        if len({f.shape for f in per_image}) == 1:
            return np.stack(per_image)
        return per_image

    def _encode_parts(self, parts: list[np.ndarray]) -> list[np.ndarray]:
        """The encoder's features of each part's units, in order.

        Units of one size go through the encoder together, at most the provider's
        batch size per call, so memory does not grow with an image's tile count.
        """
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, part in enumerate(parts):
            groups.setdefault(part.shape[1:], []).append(i)
        encoded: dict[int, np.ndarray] = {}
        step = self.provider_spec.batch_size  # a 4K image has ~200 tiles: memory stays bounded
        for indices in groups.values():
            stacked = np.concatenate([parts[i] for i in indices])
            rows = np.concatenate(
                [self.features(stacked[at : at + step]) for at in range(0, len(stacked), step)]
            )
            start = 0
            for i in indices:
                encoded[i] = rows[start : start + len(parts[i])]
                start += len(parts[i])
        return [encoded[i] for i in range(len(parts))]

    def encode_pixels(
        self, pixels: list[Pixels]
    ) -> tuple[np.ndarray | list[np.ndarray] | None, str | None]:
        """Features of preprocessed images, or why the encoder failed (never raised).

        The one encode step of ufd-detect, the service and the scanner. Each entry
        is one image, (3, S, S), or an image and its views, (1 + V, 3, S, S), or
        :class:`Units`: all go through the encoder together, and the features come
        back one entry per image: (N, D), or (N, 1 + V, D) when every entry has the
        same V (else a list of (1 + V, D) arrays).
        """
        try:
            arrays = [p for p in pixels if isinstance(p, np.ndarray)]
            if len(arrays) < len(pixels):
                return self._encode_units(pixels), None
            if all(p.ndim == 3 for p in arrays):
                return self.features(np.stack(arrays)), None
            counts = [1 if p.ndim == 3 else len(p) for p in arrays]
            flat = self.features(np.concatenate([p.reshape(-1, *p.shape[-3:]) for p in arrays]))
            if len(set(counts)) == 1:
                return flat.reshape(len(arrays), counts[0], -1), None
            ends = np.cumsum(counts)
            return [
                flat[end - c : end] if p.ndim == 4 else flat[end - 1]
                for p, c, end in zip(arrays, counts, ends, strict=True)
            ], None
        except Exception as e:
            logger.error(
                "inference failed on a batch of %d: %s",
                len(pixels),
                e,
                exc_info=logger.isEnabledFor(logging.INFO),
            )
            return None, f"inference failed: {type(e).__name__}: {e}"


def aggregate_units(
    mode: str, aggregator: AggregatorSession | None, rows: np.ndarray
) -> np.ndarray:
    """One image's feature from its units' (K, d) features, as the bundle's mode says.

    ``tiles``: the aggregator graph; ``five_crops``: their mean (float32, as the official
    wrapper's mean of logits: the head is linear); ``whole``: the only one.
    """
    if mode == "tiles":
        if aggregator is None:
            raise BundleError("a tiles bundle without its aggregator graph: re-export it")
        return aggregator(rows)
    if mode == "five_crops":
        return np.asarray(rows.mean(axis=0, dtype=np.float32), np.float32)
    return np.asarray(rows[0], np.float32)


def _rows(pixels: Pixels | None) -> int:
    """Encoder rows of one prepared image: 0 (none), 1, 1 + V with views, or its units'."""
    if pixels is None:
        return 0
    if isinstance(pixels, Units):
        return pixels.rows
    return 1 if pixels.ndim == 3 else len(pixels)


def _note(pixels: Pixels | None) -> str | None:
    """What was done to the image to fit the encoder (``whole``'s input cap), if anything."""
    return pixels.note if isinstance(pixels, Units) else None


def _item(image: ImageSource, index: int, names: Sequence[str] | None) -> InputItem:
    """An input item for :meth:`Detector.score_images` (paths are never expanded)."""
    default = str(image) if isinstance(image, (str, os.PathLike)) else f"image-{index}"
    return InputItem(names[index] if names else default, data=image)
