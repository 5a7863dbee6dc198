"""Decode -> preprocess, ahead of the encoder, in input order.

Each input becomes a :class:`Prepared`: its encoder input, or the reason there
is none. :func:`prepare_stream` runs that step in worker threads a bounded
distance ahead, so decoding overlaps inference without holding a whole folder
in memory.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ufd.runtime.errors import ImageError
from ufd.runtime.io.decode import ImageSource
from ufd.runtime.io.inputs import InputItem

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One input after decoding and preprocessing: its pixels, or why there are none."""

    item: InputItem
    pixels: np.ndarray | None = None
    error: str | None = None


FeatureBatch = tuple[list[Prepared], np.ndarray | None, str | None]
"""A batch of inputs, the features of those that decoded, and an encoder failure."""


def prepare_stream(
    items: Iterable[InputItem],
    prepare: Callable[[ImageSource], np.ndarray],
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


def prepare_item(item: InputItem, prepare: Callable[[ImageSource], np.ndarray]) -> Prepared:
    """One item decoded and preprocessed, or its error; never raises."""
    if item.error is not None:
        return Prepared(item, error=item.error)
    try:
        return Prepared(item, pixels=prepare(item.source))
    except ImageError as e:
        return Prepared(item, error=str(e))
    except Exception as e:
        logger.info("preparing %s failed", item.path, exc_info=True)
        return Prepared(item, error=f"preprocessing failed ({type(e).__name__}: {e})")
