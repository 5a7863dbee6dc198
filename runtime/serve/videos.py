"""Videos in a ``/v1/detect`` upload: sampled in a thread, frames through the engine.

An uploaded video is one input of the request and gets one record, as in
``ufd-detect`` (:mod:`ufd.runtime.video`): its frames are sampled off the event
loop (``asyncio.to_thread``), scored by the same engine and batcher as images,
and turned into the video's record by the server's ``--video-rule``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ufd.runtime.io.inputs import InputItem
from ufd.runtime.methods import ScoreOptions
from ufd.runtime.records import Record
from ufd.runtime.serve.engine import Engine
from ufd.runtime.video.frames import VideoError
from ufd.runtime.video.records import video_record
from ufd.runtime.video.run import VideoRun, with_provenance


async def score_with_videos(
    engine: Engine,
    items: list[InputItem],
    methods: tuple[str, ...],
    options: ScoreOptions,
    loaded: list[Any],
    video: VideoRun,
    provenance: bool = False,
) -> tuple[list[Record], bool]:
    """Records for ``items`` in order, and whether any was a video.

    ``loaded``: the planned methods, loaded (for the video records' decisions).
    """
    is_video = [video.claims(item) for item in items]
    if not any(is_video):
        return await engine.score(items, methods, options), False
    images = [item for item, v in zip(items, is_video, strict=True) if not v]
    image_records = iter(await engine.score(images, methods, options) if images else [])
    records = []
    for item, v in zip(items, is_video, strict=True):
        if not v:
            records.append(next(image_records))
            continue
        try:
            frames, failed = await asyncio.to_thread(video.sample, item)
        except VideoError as e:
            records.append(with_provenance(Record(item.path, error=str(e)), item, provenance))
            continue
        scored = await engine.score(frames, methods, options) if frames else []
        record = video_record(item.path, scored, loaded, video.rule, failed)
        records.append(with_provenance(record, item, provenance))
    return records, True
