"""The two stages of a scan, shared by both engines.

* :func:`crop_batch` (CPU tasks): read and decode each input and crop it to the
  encoder's (S, S, 3) uint8 pixels, or record why it cannot be (a quarter of the
  float input's size, so less to ship between tasks and actors);
* :class:`Scorer` (one per actor or worker process): normalise, encode and score
  with the same :class:`Detector` code ``ufd-detect`` runs, and return the rows as
  an Arrow table with exactly ``ufd-detect``'s record fields (plus ``feature``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ufd.runtime.bundle import Bundle, PreprocessConfig
from ufd.runtime.detector import Detector
from ufd.runtime.errors import ImageError
from ufd.runtime.io.decode import DEFAULT_MAX_PIXELS, decode_image
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.methods import REGISTRY, fields_for
from ufd.runtime.pipeline import Prepared
from ufd.runtime.preprocess import CenterCropPreprocessor, build_preprocessor
from ufd.runtime.scan.sources import is_uri, read_bytes

FEATURE = "feature"


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


def crop_batch(batch: dict[str, Any], settings: ScanSettings) -> dict[str, Any]:
    """Columns ``path``, ``error`` -> plus ``pixels`` (N, S, S, 3) uint8 and ``ok``."""
    config, preprocessor = _preprocessing(settings.bundle)
    size = config.crop_size
    paths = [str(p) for p in batch["path"]]
    errors = [e if isinstance(e, str) else None for e in batch["error"]]
    pixels = np.zeros((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        if errors[i] is not None:
            continue
        try:
            source = read_bytes(path, settings.max_bytes) if is_uri(path) else path
            image = decode_image(source, settings.max_pixels, config.exif_transpose)
            pixels[i] = preprocessor.crop(image)
        except ImageError as e:
            errors[i] = str(e)
        except OSError as e:
            errors[i] = f"cannot read: {e}"
        except Exception as e:  # noqa: BLE001 - one bad input never stops a scan
            errors[i] = f"preprocessing failed ({type(e).__name__}: {e})"
    ok = np.array([e is None for e in errors])
    return {"path": np.array(paths, object), "error": np.array(errors, object), "pixels": pixels,
            "ok": ok}  # fmt: skip


@functools.lru_cache(maxsize=4)
def _preprocessing(bundle: str) -> tuple[PreprocessConfig, CenterCropPreprocessor]:
    config = Bundle.open(bundle).manifest.preprocess
    return config, build_preprocessor(config)


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
        self.methods, self.options = self.detector.plan(settings.method, settings.k, settings.exact)
        self.schema = output_schema(
            self.methods, self.detector.bundle.manifest.model.feature_dim if settings.features
            else None,
        )  # fmt: skip
        self.normalise = self.detector.preprocessor.normalizer

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        """Rows for a :func:`crop_batch` batch, in its order."""
        items = [InputItem(str(p)) for p in batch["path"]]
        prepared = [
            Prepared(item, pixels=self.normalise(px)) if ok else Prepared(item, error=str(err))
            for item, px, ok, err in zip(items, batch["pixels"], batch["ok"], batch["error"],
                                         strict=True)
        ]  # fmt: skip
        _, features, failure = self.detector.encode(prepared)
        records = self.detector.records(prepared, features, failure, self.methods, self.options)
        rows = [r.to_dict(fields_for(self.methods)) for r in records]
        columns = {name: [row[name] for row in rows] for name in fields_for(self.methods)}
        if FEATURE in self.schema.names:
            columns[FEATURE] = _feature_column(prepared, features, failure)
        return pa.table(columns, schema=self.schema)


def _feature_column(prepared: list[Prepared], features, failure) -> list:
    out, row = [], 0
    for p in prepared:
        if p.pixels is None or failure is not None or features is None:
            out.append(None)
        else:
            out.append(features[row])
            row += 1
    return out


ARROW_TYPES = {"string": pa.string(), "float": pa.float64(), "int": pa.int64(),
               "shares": pa.map_(pa.string(), pa.float64())}  # fmt: skip


def field_type(name: str) -> pa.DataType:
    """The Arrow type of a record field: strings for names, labels and errors, else float64."""
    for cls in REGISTRY.values():
        declared = cls.field_types.get(name)
        if declared is not None:
            return ARROW_TYPES[declared]
    return pa.string() if name in ("path", "error") or name.endswith("label") else pa.float64()


def output_schema(methods: tuple[str, ...], feature_dim: int | None) -> pa.Schema:
    """The dataset's columns: ``ufd-detect``'s fields (plus ``feature`` with ``--features``)."""
    fields = [pa.field(name, field_type(name)) for name in fields_for(methods)]
    if feature_dim is not None:
        fields.append(pa.field(FEATURE, pa.list_(pa.float32(), feature_dim)))
    return pa.schema(fields)
