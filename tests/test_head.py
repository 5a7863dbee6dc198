"""Heads in the official UnivFD format: safe loading, format checks, ONNX == torch."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ufd.export.graph.onnx_export import export_linear_head
from ufd.export.heads import (
    UNIVFD_HEAD_SHA256,
    fetch_univfd_head,
    linear_from_state,
    load_head,
    read_head_file,
)
from ufd.runtime.bundle import sha256_file
from ufd.runtime.errors import ModelLoadError


def test_official_head_file_is_the_known_release(official_head: Path) -> None:
    assert official_head.stat().st_size == 4083
    assert sha256_file(official_head) == UNIVFD_HEAD_SHA256
    state = read_head_file(official_head)
    assert tuple(state["weight"].shape) == (1, 768)
    assert state["bias"].item() == pytest.approx(-0.5167, abs=1e-4)
    assert state["weight"].norm().item() == pytest.approx(6.20, abs=0.01)


def test_head_onnx_logits_match_torch(head_file: Path, tmp_path: Path) -> None:
    head = load_head(str(head_file), 768)
    assert head.info.kind == "linear" and head.info.sha256 == sha256_file(head_file)
    export_linear_head(head.linear, tmp_path / "head.onnx")
    session = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
    torch.manual_seed(0)
    features = torch.randn(7, 768) * 3
    with torch.no_grad():
        expected = head.linear(features).numpy()
    out = session.run(None, {"features": features.numpy()})[0]
    assert out.shape == (7, 1)
    assert np.abs(out - expected).max() <= 1e-4  # float32 sums of 768 terms


def test_head_of_wrong_dimension_is_refused(head_file: Path) -> None:
    with pytest.raises(ModelLoadError, match="768"):
        load_head(str(head_file), 512)


def test_head_with_unexpected_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    torch.save(OrderedDict(w=torch.zeros(1, 4)), path)
    with pytest.raises(ModelLoadError, match="exactly 'weight' and 'bias'"):
        load_head(str(path), 4)


def test_fc_prefixed_state_dict_is_accepted() -> None:
    linear = linear_from_state({"fc.weight": torch.ones(1, 4), "fc.bias": torch.zeros(1)}, 4)
    assert linear(torch.ones(1, 4)).item() == 4.0


def test_pickled_code_is_not_executed(tmp_path: Path) -> None:
    """weights_only=True: a .pth carrying arbitrary objects is refused."""

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"weight": Evil(), "bias": torch.zeros(1)}, path)
    with pytest.raises(ModelLoadError, match="cannot read head"):
        load_head(str(path), 4)


def test_univfd_download_offline_explains(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(ModelLoadError, match=r"--head /path/to/fc_weights\.pth"):
        fetch_univfd_head()
    assert list(tmp_path.iterdir()) == []  # no partial download left


def test_univfd_head_comes_from_a_verified_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, official_head: Path
) -> None:
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path))
    (tmp_path / "univfd_fc_weights.pth").write_bytes(official_head.read_bytes())
    assert fetch_univfd_head(url="http://unreachable.invalid/") == (
        tmp_path / "univfd_fc_weights.pth"
    )
    head = load_head("univfd", 768)
    assert head.info.source == "univfd"
