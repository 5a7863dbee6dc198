"""onnxruntime-web for a bundle's web page: one pinned npm tarball, checked, cached, unpacked.

The page runs graphs with onnxruntime-web (npm, MIT). ``ufd-bundle web`` takes it from
the npm registry at build time (``npm pack``: no ``node_modules``, no install scripts),
checks the tarball's sha256 against the pin below, keeps it in ufd's cache
(``web/``) and copies only the files the page loads. A machine without npm takes the
tarball as a file (``--ort-tarball``), made by ``npm pack`` elsewhere.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ufd.runtime.cache import cache_dir
from ufd.runtime.errors import UsageError

ORT_WEB_VERSION = "1.31.1"
ORT_WEB_SHA256 = "bdccdb9fbb9ab537247c0c734e9b1d2b1b338b4f2a09faa58f0dc1cfa27c312c"
ORT_WEB_LICENCE = "MIT"
TARBALL = f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
"""What the page loads for the WASM (CPU) backend: SIMD, threads when the host allows."""
WEBGPU_FILES = (
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
)
"""Added by ``--webgpu``: the WebGPU build (it runs WASM too), about 29 MB more."""
NO_NPM = (
    "npm is not installed: install Node.js (apt-get install npm), or run `npm pack "
    f"onnxruntime-web@{ORT_WEB_VERSION}` where npm is and pass the file with --ort-tarball"
)
MIT_TEXT = """onnxruntime-web {version} (npm), MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


@dataclass(frozen=True)
class OrtFiles:
    """The onnxruntime-web files a page ships, by name, with their sha256."""

    version: str
    tarball_sha256: str
    files: dict[str, bytes]

    def describe(self) -> dict[str, object]:
        """What ``web.json`` records of it (version, licence, hashes)."""
        return {
            "package": "onnxruntime-web",
            "version": self.version,
            "licence": ORT_WEB_LICENCE,
            "source": f"npm registry, {TARBALL}",
            "tarball_sha256": self.tarball_sha256,
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()},
        }


def tarball(given: Path | None = None) -> Path:
    """The pinned onnxruntime-web tarball: ``given``, the cached one, or ``npm pack``'s.

    Raises:
        UsageError: no npm and no file given, npm failed, or the sha256 is not the pin.
    """
    if given is not None:
        return _checked(Path(given))
    cached = cache_dir("web", TARBALL)
    if cached.is_file():
        return _checked(cached)
    npm = shutil.which("npm")
    if npm is None:
        raise UsageError(NO_NPM)
    cached.parent.mkdir(parents=True, exist_ok=True)
    command = [npm, "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--ignore-scripts"]
    try:
        subprocess.run(
            [*command, "--pack-destination", str(cached.parent)],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = getattr(e, "stderr", None) or str(e)
        raise UsageError(
            f"npm could not fetch onnxruntime-web@{ORT_WEB_VERSION} ({detail.strip()[-300:]}); "
            "check the npm registry is reachable, or pass a tarball with --ort-tarball"
        ) from e
    return _checked(cached)


def _checked(path: Path) -> Path:
    if not path.is_file():
        raise UsageError(f"{path}: no such file (expected {TARBALL} from npm pack)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != ORT_WEB_SHA256:
        raise UsageError(
            f"{path} has sha256 {digest}, not the pinned onnxruntime-web {ORT_WEB_VERSION} "
            f"({ORT_WEB_SHA256}); delete it and build again, or pass {TARBALL} itself"
        )
    return path


def unpack(path: Path, webgpu: bool = False) -> OrtFiles:
    """The page's onnxruntime-web files out of the (checked) tarball ``path``."""
    wanted = WASM_FILES + (WEBGPU_FILES if webgpu else ())
    data = path.read_bytes()
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for name in wanted:
            member = archive.getmember(f"package/dist/{name}")
            stream = archive.extractfile(member)
            if stream is None:  # pragma: no cover - the pinned tarball has regular files
                raise UsageError(f"{TARBALL} has no regular file dist/{name}")
            files[name] = stream.read()
    return OrtFiles(ORT_WEB_VERSION, hashlib.sha256(data).hexdigest(), files)
