"""Decode -> preprocess, ahead of the encoder, in input order: the one prepare step.

:class:`Preparer` turns an image (path, bytes, file) into the encoder's input
(or, for a scan that ships pixels between processes, into the uint8 crop that
input is normalised from). :func:`prepare_item` makes each input a
:class:`Prepared`: its pixels, or the reason there are none, with one error
mapping for ufd-detect, the service and the scanner. :func:`prepare_stream`
runs that step in worker threads a bounded distance ahead, so decoding overlaps
inference without holding a whole folder in memory.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ufd.runtime.bundle import PreprocessConfig
from ufd.runtime.errors import ImageError, stable_text
from ufd.runtime.io.decode import ImageSource, decode_image
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS
from ufd.runtime.preprocess import build_preprocessor
from ufd.runtime.transforms import View
from ufd.runtime.units import UNIT_PREPROCESSORS, Units

logger = logging.getLogger(__name__)


Pixels = np.ndarray | Units
"""One prepared image: an array (single-crop bundles: (3, S, S), or (1 + V, 3, S, S)
with views; uint8 (S, S, 3) crops before normalising) or :class:`Units`."""


@dataclass
class Prepared:
    """One input after decoding and preprocessing: its pixels, or why there are none.

    ``error`` decides: an input without one is scored (its pixels may be dropped once
    encoded, as the service does to free memory early).
    """

    item: InputItem
    pixels: Pixels | None = None
    error: str | None = None


FeatureBatch = tuple[list[Prepared], np.ndarray | None, str | None]
"""A batch of inputs, the features of those that decoded, and an encoder failure."""


class Preparer:
    """A bundle's preprocessing of one image: decode, crop (and pad), normalise.

    ``crop`` gives the uint8 pixels, ``normalise`` the float32 encoder input made
    from them; calling it does both. Single-crop bundles give an (S, S, 3) crop and
    a (3, S, S) input; bundles whose images give several inputs (or one of their own
    size: :mod:`ufd.runtime.units`) give :class:`Units`. With views
    (:mod:`ufd.runtime.transforms`), :meth:`crops` and :meth:`with_views` give the
    image and each view of it: stacked, (1 + V, S, S, 3) and (1 + V, 3, S, S), or
    one :class:`Units` part each.
    """

    def __init__(self, config: PreprocessConfig, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.config = config
        self.max_pixels = max_pixels
        self.preprocessor = build_preprocessor(config)
        self.normalizer = self.preprocessor.normalizer
        self.units = UNIT_PREPROCESSORS[config.mode](config) if config.units_per_image else None

    def decode(self, source: ImageSource) -> Image.Image:
        """The RGB image of ``source`` (bounded by ``max_pixels``).

        Raises:
            ImageError: the image cannot be decoded.
        """
        return decode_image(source, self.max_pixels, self.config.exif_transpose)

    def crop(self, source: ImageSource) -> Pixels:
        """The uint8 pixels the encoder input is normalised from.

        Raises:
            ImageError: the image cannot be decoded or cropped.
        """
        return self.crops(source, ())

    def crops(self, source: ImageSource, views: tuple[View, ...]) -> Pixels:
        """The image's uint8 pixels, then each view's, decoded once.

        Single-crop bundles: (1 + V, S, S, 3), or (S, S, 3) without views.

        Raises:
            ImageError: the image cannot be decoded, transformed or cropped.
        """
        image = self.decode(source)
        if self.units is not None:
            own, note = self._units(image)
            return Units((own, *(self._units(image, view)[0] for view in views)), note)
        if not views:
            return self._crop(image)
        return np.stack([self._crop(image), *(self._crop(image, view) for view in views)])

    def view_crop(self, source: ImageSource, view: View) -> Pixels:
        """The uint8 pixels of one view of the image only (evaluation under a condition)."""
        image = self.decode(source)
        if self.units is not None:
            return Units((self._units(image, view)[0],))
        return self._crop(image, view)

    def _crop(self, image: Image.Image, view: View | None = None) -> np.ndarray:
        try:
            return self.preprocessor.crop(image if view is None else view(image))
        except ImageError:
            raise
        except Exception as e:
            step = "preprocessing" if view is None else f"the view {view.name}"
            raise ImageError(f"{step} failed ({type(e).__name__}: {stable_text(e)})") from e

    def _units(self, image: Image.Image, view: View | None = None) -> tuple[np.ndarray, str | None]:
        if self.units is None:
            raise RuntimeError("a single-crop bundle has no units")
        try:
            return self.units.units(image if view is None else view(image))
        except ImageError:
            raise
        except Exception as e:
            step = "preprocessing" if view is None else f"the view {view.name}"
            raise ImageError(f"{step} failed ({type(e).__name__}: {stable_text(e)})") from e

    def normalise(self, pixels: Pixels) -> Pixels:
        """uint8 pixels -> float32 encoder inputs (channels first), units part by part."""
        if isinstance(pixels, Units):
            return Units(tuple(self.normalizer(part) for part in pixels.parts), pixels.note)
        return self.normalizer(pixels)

    def __call__(self, source: ImageSource) -> Pixels:
        """The encoder input of ``source``.

        Raises:
            ImageError: the image cannot be decoded or preprocessed.
        """
        return self.normalise(self.crop(source))

    def with_views(self, views: tuple[View, ...]) -> Callable[[ImageSource], Pixels]:
        """``source`` -> the encoder inputs of the image and its views."""
        if not views:
            return self
        return lambda source: self.normalise(self.crops(source, views))


def prepare_stream(
    items: Iterable[InputItem],
    prepare: Callable[[ImageSource], Pixels],
    workers: int,
    lookahead: int,
) -> Iterator[Prepared]:
    """Decode and preprocess items, in input order, ``workers`` threads ahead.

    Pillow's decoders and numpy release the GIL, so with one worker the next
    images are decoded while the encoder runs the current batch; at most
    ``lookahead`` prepared images wait in memory.
    """
    if workers < 1:
        for item in items:
            yield prepare_item(item, prepare)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="ufd-decode") as pool:
        queue: deque[Future[Prepared]] = deque()
        try:
            for item in items:
                queue.append(pool.submit(prepare_item, item, prepare))
                if len(queue) >= lookahead:
                    yield queue.popleft().result()
            while queue:
                yield queue.popleft().result()
        finally:
            for future in queue:
                future.cancel()


def prepare_item(item: InputItem, prepare: Callable[[ImageSource], Pixels]) -> Prepared:
    """One item decoded and preprocessed, or its error; never raises."""
    if item.error is not None:
        return Prepared(item, error=item.error)
    try:
        return Prepared(item, pixels=prepare(item.source))
    except ImageError as e:
        return Prepared(item, error=str(e))
    except Exception as e:
        logger.info("preparing %s failed", item.path, exc_info=True)
        return Prepared(item, error=f"preprocessing failed ({type(e).__name__}: {stable_text(e)})")
