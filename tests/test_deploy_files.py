"""The KServe files the README points to (runtime/oip/deploy/) name only options
ufd-serve has, and they parse: a renamed flag fails here, not in someone's cluster."""

from __future__ import annotations

import json
import re

import yaml
from helpers import REPO
from typer.testing import CliRunner

from ufd.cli.serve import app as serve_app

DEPLOY = REPO / "runtime" / "oip" / "deploy"


def _flags(words: list[str]) -> set[str]:
    return {w.split("=")[0] for w in words if w.startswith("--")}


def test_the_image_and_the_inference_service_use_real_options() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    entry = re.search(r"ENTRYPOINT (\[.*?\])", text.replace("\\\n", " "), re.S)
    assert entry is not None
    command = json.loads(entry.group(1))
    service = yaml.safe_load((DEPLOY / "inferenceservice.yaml").read_text())
    (container,) = service["spec"]["predictor"]["containers"]
    assert command[0] == "ufd-serve" and "v2" in command
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    help_text = CliRunner().invoke(serve_app, ["--help"], terminal_width=200).output
    for flag in _flags(command) | _flags(container["args"]):
        assert flag in help_text, flag
