"""The ``kserve.Model`` that serves a bundle: ufd-serve's engine behind KServe's protocol.

KServe decodes the request (REST JSON, REST with binary tensors, gRPC) into an
``InferRequest``; :meth:`UfdModel.predict` turns its tensors into images
(:mod:`.tensors`), scores them on the same engine, batching and records as
``ufd-serve``'s own API, and answers one tensor per record field. A request
KServe cannot take is its 4xx; one image that does not decode is an ``error``
element, never a failed request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput, ServerNotReady
from kserve.protocol.infer_type import to_http_parameters

from ufd.runtime.detector import Detector
from ufd.runtime.errors import UfdError
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.methods import ScoreOptions
from ufd.runtime.oip import tensors
from ufd.runtime.records import Record
from ufd.runtime.serve import loading
from ufd.runtime.serve.config import ServeConfig
from ufd.runtime.serve.engine import Engine, Overloaded
from ufd.runtime.units import UNIT_MODES

logger = logging.getLogger(__name__)
TRANSPORT_PARAMETERS = ("binary_data_output", "priority", "timeout")
"""Request parameters Triton's clients may send about delivery, not scoring: accepted."""
REPLICA = f"{socket.gethostname()}/{os.getpid()}"
"""Which process answered (response parameter ``ufd_replica``): host name and pid."""


class UfdModel(Model):  # type: ignore[misc]  # kserve ships no type information
    """One bundle as a v2 model: ``image`` (BYTES) or ``pixels`` (FP32) in, records out."""

    def __init__(self, name: str, config: ServeConfig) -> None:
        super().__init__(name)
        self.config = config
        self.detector: Detector | None = None
        self.batcher: Engine | None = None
        """ufd-serve's batching engine (not KServe's ``engine`` flag, which stays False)."""

    def load(self) -> bool:
        """Open the bundle (precision by the parity measured here), warm it, start the engine."""
        detector = loading.open_detector(self.config)
        loading.warm(detector, self.config)
        self.batcher = loading.start_engine(detector, self.config, on_failure=self._failed)
        self.detector = detector
        self.ready = True
        logger.warning(
            "ready: %s as v2 model %r (%s on %s)",
            self.config.bundle,
            self.name,
            detector.precision,
            detector.provider,
        )
        return True

    def _failed(self, reason: str) -> None:
        logger.error("the encoder worker stopped: %s", reason)
        self.ready = False

    def stop(self) -> None:
        """Answer what was accepted, then stop the engine (KServe calls this at shutdown)."""
        if self.batcher is not None:
            self.batcher.stop(self.config.drain_timeout)
        super().stop()

    def get_input_types(self) -> list[dict[str, Any]]:
        """The inputs metadata lists: ``image`` and, for fixed-crop bundles, ``pixels``."""
        inputs = [{"name": tensors.IMAGE, "datatype": "BYTES", "shape": [-1]}]
        size = self._crop_size()
        if size is not None:
            inputs.append(
                {"name": tensors.PIXELS, "datatype": "FP32", "shape": [-1, 3, size, size]}
            )
        return inputs

    def get_output_types(self) -> list[dict[str, Any]]:
        """Every output a request can get (those of every method of the bundle, with views)."""
        detector = self._detector()
        fields = detector.fields(tuple(detector.methods.available()), views=1)
        specs = tensors.output_specs(fields)
        return [{"name": name, "datatype": kind, "shape": [-1]} for name, kind in specs]

    async def predict(
        self, payload: InferRequest, headers: Mapping[str, str] | None = None
    ) -> InferResponse:
        """Score the request's images; one output tensor per record field, in input order."""
        detector = self._detector()
        parameters = to_http_parameters(payload.parameters or {})
        methods, options = self._plan(detector, parameters)
        records = await self._records(detector, payload, methods, options)
        fields = detector.fields(methods, options.views)
        binary = payload.use_binary_outputs
        outputs = []
        for tensor in tensors.record_tensors(records, fields):
            output = InferOutput(tensor.name, [len(records)], tensor.datatype)
            output.set_data_from_numpy(tensor.data, binary_data=binary)
            outputs.append(output)
        return InferResponse(
            payload.id or "",
            self.name,
            outputs,
            use_binary_outputs=binary,
            parameters={"ufd_precision": detector.precision, "ufd_replica": REPLICA},
        )

    def _plan(
        self, detector: Detector, parameters: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], ScoreOptions]:
        unknown = set(parameters) - {"method", "k", "views", *TRANSPORT_PARAMETERS}
        if unknown:
            raise InvalidInput(
                f"unknown request parameters {sorted(unknown)}: this model takes method, k, views"
            )
        method = parameters.get("method", self.config.method)
        k = parameters.get("k")
        views = parameters.get("views", self.config.views)
        if not isinstance(method, str) or not isinstance(views, int):
            raise InvalidInput("parameter method is a string, views an integer")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
            raise InvalidInput("parameter k is an integer")
        try:
            return detector.plan(method[:200], k, views=views)
        except UfdError as e:
            raise InvalidInput(str(e)) from e

    async def _records(
        self,
        detector: Detector,
        payload: InferRequest,
        methods: tuple[str, ...],
        options: ScoreOptions,
    ) -> list[Record]:
        names = [i.name for i in payload.inputs]
        if sorted(names) not in ([tensors.IMAGE], [tensors.PIXELS]):
            raise InvalidInput(
                f"send one input, {tensors.IMAGE!r} (BYTES [N], encoded images) or "
                f"{tensors.PIXELS!r} (FP32 [N, 3, S, S]); got {names}"
            )
        given = payload.inputs[0]
        try:
            if given.name == tensors.PIXELS:
                return await self._pixel_records(detector, given, methods, options)
            if given.datatype != "BYTES":
                raise InvalidInput(f"input {tensors.IMAGE!r} is BYTES, not {given.datatype}")
            items = tensors.image_items(given.as_numpy())
        except tensors.BadTensors as e:
            raise InvalidInput(str(e)) from e
        self._check_count(len(items))
        return await self._score(self._bounded(items), methods, options)

    def _check_count(self, count: int) -> None:
        if count == 0 or count > self.config.max_images:
            raise InvalidInput(f"send 1 to {self.config.max_images} images, not {count}")

    def _bounded(self, items: list[InputItem]) -> list[InputItem]:
        """Images over ``max_image_bytes`` get an error record instead of a decode."""
        limit = self.config.max_image_bytes
        return [
            InputItem(i.path, error=f"larger than {limit} bytes")
            if isinstance(i.data, bytes) and len(i.data) > limit
            else i
            for i in items
        ]

    async def _score(
        self, items: list[InputItem], methods: tuple[str, ...], options: ScoreOptions
    ) -> list[Record]:
        batcher = self.batcher
        if batcher is None:
            raise ServerNotReady("the bundle is still loading")
        try:
            return await asyncio.wait_for(
                batcher.score(items, methods, options), self.config.request_timeout
            )
        except Overloaded as e:
            raise ServerNotReady(f"overloaded: {e}; retry shortly") from e

    async def _pixel_records(
        self, detector: Detector, given: Any, methods: tuple[str, ...], options: ScoreOptions
    ) -> list[Record]:
        if given.datatype != "FP32":
            raise InvalidInput(f"input {tensors.PIXELS!r} is FP32, not {given.datatype}")
        pixels = tensors.pixel_batch(np.asarray(given.as_numpy()), self._crop_size())
        self._check_count(len(pixels))
        if options.views:
            raise InvalidInput("views are made from images: send 'image' to use views")
        names = [f"{tensors.PIXELS}-{i}" for i in range(len(pixels))]
        features = await asyncio.to_thread(detector.features, pixels)
        return detector.feature_records(features, names, methods, options)

    def _crop_size(self) -> int | None:
        detector = self._detector()
        if detector.preprocess_config.mode in UNIT_MODES:
            return None
        return int(detector.bundle.manifest.model.image_size)

    def _detector(self) -> Detector:
        if self.detector is None:
            raise ServerNotReady("the bundle is still loading")
        return self.detector
