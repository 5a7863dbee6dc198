"""The two stages of a scan, shared by both engines.

* :func:`crop_batch` (CPU tasks): read and decode each input and crop it to the
  encoder's (S, S, 3) uint8 pixels, or record why it cannot be (a quarter of the
  float input's size, so less to ship between tasks and actors);
* :class:`Scorer` (one per actor or worker process): normalise, encode and score
  with the same :class:`Detector` code ``ufd-detect`` runs, and return the rows as
  an Arrow table with exactly ``ufd-detect``'s record fields, then the graph that
  scored the row (``graph_precision``, ``graph_sha256``: with ``auto`` each worker
  chooses on its own host, :mod:`ufd.runtime.scan.nodes`) and, with
  ``--features``, ``feature``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ufd.runtime.detector import Detector
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS, unreadable
from ufd.runtime.methods import open_bundle
from ufd.runtime.pipeline import Prepared, Preparer, prepare_item
from ufd.runtime.records import Record
from ufd.runtime.registry import field_kind
from ufd.runtime.scan.sources import is_uri, read_bytes
from ufd.runtime.transforms import reupload_views
from ufd.runtime.video.records import video_fields
from ufd.runtime.video.run import VideoRun

FEATURE = "feature"
VIDEO_ROW = "\x00video"
"""A :func:`crop_batch` row the :class:`Scorer` scores as a video (never written)."""
GRAPH_COLUMNS = ("graph_precision", "graph_sha256")
"""Which encoder graph scored a row (``None`` in error rows: no graph scored them)."""


@dataclass(frozen=True)
class ScanSettings:
    """How a scan scores (the same knobs as ``ufd-detect``)."""

    bundle: str
    method: str = "linear"
    k: int | None = None
    exact: bool | None = None
    precision: str | None = None
    provider: str = "auto"
    threads: int | None = None
    features: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = 256 << 20
    batch_size: int | None = None
    views: int = 0
    """Re-upload views scored with each image (``--views``)."""
    video: VideoRun | None = None
    """``--videos``: videos are inputs too (one row each, from its sampled frames)."""


def crop_batch(batch: dict[str, Any], settings: ScanSettings) -> dict[str, Any]:
    """Columns ``path``, ``error`` -> plus ``pixels`` (uint8, not yet normalised) and ``ok``.

    Each input goes through the same prepare step as ufd-detect's
    (:func:`~ufd.runtime.pipeline.prepare_item`). ``pixels`` is (N, S, S, 3), with
    ``views`` (N, 1 + V, S, S, 3): the image, then its views; for bundles whose
    images give several encoder inputs, one :class:`~ufd.runtime.units.Units` per row.
    """
    preparer = _preparer(settings.bundle, settings.max_pixels)
    items = [_item(str(p), e, settings) for p, e in zip(batch["path"], batch["error"], strict=True)]
    views = reupload_views(settings.views)
    crop = functools.partial(preparer.crops, views=views)
    video = settings.video
    prepared = [
        Prepared(item, error=VIDEO_ROW)
        if video is not None and video.claims(item)
        else prepare_item(item, crop)
        for item in items
    ]
    errors = [p.error for p in prepared]
    if preparer.units is not None:
        pixels: np.ndarray = np.empty(len(items), object)
        pixels[:] = [p.pixels for p in prepared]
    else:
        size = preparer.config.crop_size
        shape = (len(items), 1 + len(views)) if views else (len(items),)
        pixels = np.zeros((*shape, size, size, 3), np.uint8)
        for i, p in enumerate(prepared):
            if p.pixels is not None:
                pixels[i] = p.pixels
    return {
        "path": np.array([item.path for item in items], object),
        "error": np.array(errors, object),
        "pixels": pixels,
        "ok": np.array([e is None for e in errors]),
    }


def _item(path: str, error: Any, settings: ScanSettings) -> InputItem:
    """The input of one row: an error, a local path, or a URI's bytes (bounded)."""
    if isinstance(error, str):
        return InputItem(path, error)
    if not is_uri(path):
        return InputItem(path)
    try:
        return InputItem(path, data=read_bytes(path, settings.max_bytes))
    except OSError as e:
        return InputItem(path, unreadable(e))


@functools.lru_cache(maxsize=4)
def _preparer(bundle: str, max_pixels: int) -> Preparer:
    return Preparer(open_bundle(bundle).manifest.preprocess, max_pixels)


class Scorer:
    """Encodes and scores cropped batches; one per actor (or local worker process)."""

    def __init__(self, settings: ScanSettings) -> None:
        self.settings = settings
        self.detector = Detector.open(
            settings.bundle,
            precision=settings.precision,
            provider=settings.provider,
            threads=settings.threads,
            max_pixels=settings.max_pixels,
        )
        self.methods, self.options = self.detector.plan(
            settings.method, settings.k, settings.exact, settings.views
        )
        self.fields = self.detector.fields(self.methods, settings.views)
        self.loaded = [self.detector.methods.get(m) for m in self.methods]
        if settings.video is not None:
            self.fields = (*self.fields[:-1], *video_fields(self.loaded), "error")
        self.schema = output_schema(
            self.fields,
            self.detector.bundle.manifest.model.feature_dim if settings.features else None,
        )
        self.normalise = self.detector.preparer.normalise
        manifest = self.detector.bundle.manifest
        self.graph = (
            self.detector.precision,
            manifest.files[manifest.encoder(self.detector.precision).file].sha256,
        )

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        """Rows for a :func:`crop_batch` batch, in its order."""
        items = [InputItem(str(p)) for p in batch["path"]]
        prepared = [
            Prepared(item, pixels=self.normalise(px)) if ok else Prepared(item, error=str(err))
            for item, px, ok, err in zip(
                items, batch["pixels"], batch["ok"], batch["error"], strict=True
            )
        ]
        _, features, failure = self.detector.encode(prepared)
        records = self.detector.records(prepared, features, failure, self.methods, self.options)
        records = [
            self._video(path) if p.error == VIDEO_ROW else r
            for path, p, r in zip(batch["path"], prepared, records, strict=True)
        ]
        rows = [r.to_dict(self.fields) for r in records]
        columns = {name: [_cell(name, row[name]) for row in rows] for name in self.fields}
        for name, value in zip(GRAPH_COLUMNS, self.graph, strict=True):
            columns[name] = [None if row["error"] else value for row in rows]
        if FEATURE in self.schema.names:
            columns[FEATURE] = _feature_column(prepared, features, failure)
        return pa.table(columns, schema=self.schema)

    def _video(self, path: str) -> Record:
        """The row of a video: its frames through this worker's detector, as ufd-detect does."""
        video = self.settings.video
        assert video is not None  # only --videos makes video rows
        item = _item(path, None, self.settings)
        batches = self.detector.planned_batches(
            [item], self.methods, self.options, self.settings.batch_size, video
        )
        return list(batches)[-1][-1]


def _cell(name: str, value: Any) -> Any:
    """A record value as its column holds it (JSON text for ``json`` fields)."""
    if value is not None and field_kind(name) == "json":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _feature_column(
    prepared: list[Prepared], features: np.ndarray | None, failure: str | None
) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    row = 0
    for p in prepared:
        if p.pixels is None or failure is not None or features is None:
            out.append(None)
        else:
            out.append(features[row] if features.ndim == 2 else features[row, 0])
            row += 1
    return out


ARROW_TYPES = {
    "string": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "shares": pa.map_(pa.string(), pa.float64()),
    "bool": pa.bool_(),
    "json": pa.string(),  # provenance: the JSON text (scans do not read it today)
}


def field_type(name: str) -> pa.DataType:
    """The Arrow type of a record field: strings for names, labels and errors, else float64."""
    return ARROW_TYPES[field_kind(name)]


def output_schema(record_fields: tuple[str, ...], feature_dim: int | None) -> pa.Schema:
    """The dataset's columns: ``ufd-detect``'s fields, the graph's, ``feature`` (``--features``).

    ``record_fields`` are the detector's (:meth:`Detector.fields`: the methods', the
    views' with ``--views``, ``input`` for bundles that may change an image to fit);
    ``feature`` is the image's own.
    """
    fields = [pa.field(name, field_type(name)) for name in record_fields]
    fields += [pa.field(name, pa.string()) for name in GRAPH_COLUMNS]
    if feature_dim is not None:
        fields.append(pa.field(FEATURE, pa.list_(pa.float32(), feature_dim)))
    return pa.schema(fields)
