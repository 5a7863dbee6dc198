"""Signed bundles: a device can tell its publisher's bundle from anybody's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ufd.cli.bundle import app as bundle_app
from ufd.cli.detect import app as detect_app
from ufd.runtime.bundle.signing import KEYS_ENV

runner = CliRunner()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("publisher", "stranger"):
        result = runner.invoke(bundle_app, ["keygen", str(folder / name)])
        assert result.exit_code == 0, result.output
    assert (folder / "publisher.pem").stat().st_mode & 0o777 == 0o600
    return {n: folder / f"{n}{s}" for n in ("publisher", "stranger") for s in (".pem",)} | {
        f"{n}.pub": folder / f"{n}.pub.pem" for n in ("publisher", "stranger")
    }


@pytest.fixture
def signed(tiny_bundle: Path, tmp_path: Path, keys) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    result = runner.invoke(bundle_app, ["sign", str(bundle), "--key", str(keys["publisher"])])
    assert result.exit_code == 0, result.output
    assert (bundle / "signature.sig").is_file()
    return bundle


def _detect(bundle: Path, image: Path, *args: str, env: dict | None = None):
    return runner.invoke(detect_app, [str(bundle), str(image), *args], env=env)


@pytest.fixture(scope="module")
def image(sample_dir: Path) -> Path:
    return sorted(sample_dir.glob("*.png"))[0]


def test_a_signed_bundle_loads_with_its_key(signed: Path, keys, image: Path) -> None:
    result = _detect(signed, image, "--trust-key", str(keys["publisher.pub"]))
    assert result.exit_code == 0, result.output
    verify = runner.invoke(
        bundle_app, ["verify", str(signed), "--trust-key", str(keys["publisher.pub"])]
    )
    assert "signature verified with the trusted key publisher.pub.pem" in verify.stdout


@pytest.mark.parametrize("case", ["unsigned", "other key", "manifest changed", "file changed"])
def test_a_trusting_run_refuses_the_wrong_bundle(
    case: str, signed: Path, tiny_bundle: Path, keys, image: Path
) -> None:
    bundle, trusted = signed, keys["publisher.pub"]
    if case == "unsigned":
        (bundle / "signature.sig").unlink()
    elif case == "other key":
        trusted = keys["stranger.pub"]
    elif case == "manifest changed":  # e.g. a threshold edited after signing
        data = json.loads((bundle / "manifest.json").read_text())
        data["methods"]["linear"]["threshold"] = 0.01
        (bundle / "manifest.json").write_text(json.dumps(data))
    else:  # a graph replaced: the signed manifest's sha256 catches it when it loads
        shutil.copy(bundle / "encoder.fp32.onnx", bundle / "encoder.int8.onnx")
    result = _detect(bundle, image, "--trust-key", str(trusted), "--precision", "int8")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    expected = {
        "unsigned": "is not signed",
        "other key": "not by a trusted key",
        "manifest changed": "changed after signing",
        "file changed": "encoder.int8.onnx",
    }
    assert line.startswith("error: ") and expected[case] in line


def test_the_environment_sets_the_policy_for_every_command(signed: Path, keys, image) -> None:
    env = {KEYS_ENV: str(keys["stranger.pub"])}
    assert _detect(signed, image, env=env).exit_code == 2
    info = runner.invoke(bundle_app, ["info", str(signed)], env=env)
    assert info.exit_code == 2 and "not by a trusted key" in info.stderr
    assert _detect(signed, image, env={KEYS_ENV: str(keys["publisher.pub"])}).exit_code == 0


def test_without_a_policy_signed_and_unsigned_bundles_load_as_before(
    signed: Path, tiny_bundle: Path, image: Path
) -> None:
    assert _detect(signed, image).stdout == _detect(tiny_bundle, image).stdout
    verify = runner.invoke(bundle_app, ["verify", str(signed)])
    assert verify.exit_code == 0 and "not checked: pass --trust-key" in verify.stdout


def test_ufd_serve_refuses_to_start_with_an_untrusted_bundle(signed: Path, keys) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ufd.cli.serve",
            str(signed),
            "--port",
            "1",
            "--trust-key",
            str(keys["stranger.pub"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "not by a trusted key" in result.stderr
    assert "listening" not in result.stderr and "on http" not in result.stderr


def test_changing_a_signed_bundle_says_it_needs_a_new_signature(
    signed: Path, keys, tmp_path: Path
) -> None:
    import numpy as np

    from ufd.cli.calibrate import app as calibrate_app

    reals = tmp_path / "reals.npy"
    np.save(reals, np.random.default_rng(0).normal(size=(40, 768)).astype(np.float32))
    result = runner.invoke(calibrate_app, [str(signed), "--real-features", str(reals)])
    assert result.exit_code == 0 and "sign it again" in result.stderr
    refused = _detect(signed, reals, "--trust-key", str(keys["publisher.pub"]))
    assert refused.exit_code == 2
