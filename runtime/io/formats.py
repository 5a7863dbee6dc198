"""Which image formats this install reads: Pillow's decoders, plus optional plugins.

Folder and glob expansion takes every file whose extension belongs to a format
Pillow can open here: Pillow's own (JPEG, PNG, WebP, AVIF, TIFF, MPO, JPEG 2000,
BMP, GIF, PSD, DDS, ...), and HEIC/HEIF and JPEG XL when the ``[formats]`` extra
is installed (``pillow-heif``, ``pillow-jxl-plugin``), which register themselves
here. Formats Pillow only identifies (stubs such as BUFR/GRIB/HDF5/WMF, MPEG
video) and EPS without Ghostscript are left out: they would only give errors.
"""

from __future__ import annotations

import functools
import importlib
import logging

from PIL import Image, ImageFile

logger = logging.getLogger(__name__)

PLUGINS = {
    "pillow_heif": "HEIC/HEIF",
    "pillow_jxl": "JPEG XL",
}
"""Optional decoder plugins (module -> what it reads); ``pip install 'ufd[formats]'``."""
_NOT_DECODABLE = frozenset({"MPEG"})
"""Formats Pillow identifies but cannot decode."""
_ALIASES = {".mpo": "JPEG"}
"""Extensions Pillow reads through another format's opener without registering them
(camera MPO files open as JPEG: their first frame)."""


@functools.cache
def register_plugins() -> tuple[str, ...]:
    """Register the optional decoder plugins that are installed; their names."""
    found = []
    for module, what in PLUGINS.items():
        try:
            plugin = importlib.import_module(module)
        except ImportError:
            continue
        opener = getattr(plugin, "register_heif_opener", None)
        if opener is not None:
            opener()
        found.append(what)
    return tuple(found)


def _decodable(fmt: str) -> bool:
    factory = Image.OPEN.get(fmt, (None,))[0]
    if fmt in _NOT_DECODABLE or factory is None:
        return False
    if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
        return False  # a factory function (JPEG's) opens real images
    if fmt == "EPS":
        from PIL import EpsImagePlugin

        return EpsImagePlugin.has_ghostscript()
    return True


@functools.cache
def image_extensions() -> frozenset[str]:
    """Lower-case extensions (with the dot) of every format this install can decode."""
    register_plugins()
    Image.init()
    registered = {**Image.registered_extensions(), **_ALIASES}
    return frozenset(ext.lower() for ext, fmt in registered.items() if _decodable(fmt))
