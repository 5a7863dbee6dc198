"""The UnivFD linear head: the official release, a local file, or none.

The official head (``fc_weights.pth``, MIT, WisconsinAIVision/UniversalFakeDetect)
is a torch zip pickle of ``{'weight': float32[1, 768], 'bias': float32[1]}`` with
storages tagged ``cuda:0``. It is loaded with ``weights_only=True`` and
``map_location="cpu"``; a download is checked against its known sha256.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from ufd.runtime.bundle import sha256_file
from ufd.runtime.cache import cache_dir
from ufd.runtime.errors import ModelLoadError

logger = logging.getLogger(__name__)

UNIVFD_HEAD_URL = (
    "https://github.com/WisconsinAIVision/UniversalFakeDetect/raw/main/"
    "pretrained_weights/fc_weights.pth"
)
UNIVFD_HEAD_SHA256 = "477100745713bcc957beb2b40859536859b6483fd6301b3b9293151b194c7847"
UNIVFD_HEAD_FILE = "univfd_fc_weights.pth"


@dataclass(frozen=True)
class HeadInfo:
    """Provenance of a linear head: ``univfd``, a file, ``ufd-train``, or ``none``."""

    kind: str
    source: str
    sha256: str | None = None


@dataclass
class LoadedHead:
    """A linear head ready to export (``None`` for a features-only bundle)."""

    linear: torch.nn.Linear | None
    info: HeadInfo


def is_official_head(spec: str) -> bool:
    """Whether ``spec`` names the official UnivFD head: ``univfd``, or a file of its sha256."""
    if spec.lower() == "univfd":
        return True
    path = Path(spec).expanduser()
    return path.is_file() and sha256_file(path) == UNIVFD_HEAD_SHA256


def load_head(spec: str, feature_dim: int) -> LoadedHead:
    """Load the head named by ``spec``: ``univfd``, a ``.pth`` path, or ``none``.

    Raises:
        ModelLoadError: unreadable file, wrong format, wrong feature dimension,
            or a failed download.
    """
    if spec.lower() == "none":
        return LoadedHead(None, HeadInfo(kind="none", source="none"))
    if spec.lower() == "univfd":
        path = fetch_univfd_head()
        source = "univfd"
    else:
        path = Path(spec).expanduser()
        source = path.name
        if not path.is_file():
            raise ModelLoadError(
                f"head file {spec} not found; pass --head univfd, a .pth path, or none"
            )
    linear = linear_from_state(read_head_file(path), feature_dim, path.name)
    return LoadedHead(linear, HeadInfo(kind="linear", source=source, sha256=sha256_file(path)))


def read_head_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a head ``.pth`` safely (``weights_only=True``, CPU)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, zip errors, refused globals
        raise ModelLoadError(
            f"cannot read head {path}: {e}; it must be a torch state dict saved with torch.save"
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"head {path} holds a {type(state).__name__}, not a state dict")
    return state


def linear_from_state(
    state: dict[str, torch.Tensor], feature_dim: int, name: str = "head"
) -> torch.nn.Linear:
    """Build ``nn.Linear(feature_dim, 1)`` from ``{'weight', 'bias'}`` (``fc.`` prefix allowed)."""
    state = {k.removeprefix("fc."): v for k, v in state.items()}
    if set(state) != {"weight", "bias"}:
        raise ModelLoadError(
            f"{name} has keys {sorted(state)}; a UnivFD head has exactly 'weight' and 'bias'"
        )
    weight, bias = state["weight"], state["bias"]
    if tuple(weight.shape) != (1, feature_dim) or tuple(bias.shape) != (1,):
        raise ModelLoadError(
            f"{name} has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}, but the "
            f"model gives {feature_dim}-d features (expected weight (1, {feature_dim})); "
            "use the model the head was trained on (UnivFD: ViT-L-14, 768-d)"
        )
    linear = torch.nn.Linear(feature_dim, 1)
    with torch.no_grad():
        linear.weight.copy_(weight.float())
        linear.bias.copy_(bias.float())
    return linear.eval()


def fetch_univfd_head(url: str = UNIVFD_HEAD_URL) -> Path:
    """The official head from the cache, downloading and verifying it once.

    Raises:
        ModelLoadError: offline or a hash mismatch; says how to pass a local copy.
    """
    target = cache_dir() / UNIVFD_HEAD_FILE
    if target.is_file() and sha256_file(target) == UNIVFD_HEAD_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading the official UnivFD head from %s", url)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            tmp_path.write_bytes(response.read(1 << 20))
        digest = sha256_file(tmp_path)
        if digest != UNIVFD_HEAD_SHA256:
            raise ModelLoadError(
                f"downloaded head has sha256 {digest}, expected {UNIVFD_HEAD_SHA256}; "
                "not using it. Download fc_weights.pth by hand and pass --head PATH"
            )
        os.replace(tmp_path, target)
    except ModelLoadError:
        raise
    except Exception as e:  # URLError, timeouts, HTTP errors
        raise ModelLoadError(
            f"could not download the UnivFD head ({e}). Offline? Copy "
            "pretrained_weights/fc_weights.pth of WisconsinAIVision/UniversalFakeDetect "
            "here and pass --head /path/to/fc_weights.pth"
        ) from e
    finally:
        tmp_path.unlink(missing_ok=True)
    return target
