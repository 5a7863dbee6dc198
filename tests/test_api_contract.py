"""ufd-serve against its own OpenAPI contract (schemathesis), with and without an API key.

Every operation of ``/openapi.json``, schema-valid and schema-violating requests:
no 5xx, every answer documented and matching its schema, valid requests
accepted, invalid ones refused with a 4xx. A bounded run with a fixed seed here;
``benchmarks/contract.py`` runs longer ones with new seeds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from serving import schemathesis_command, serving

pytestmark = pytest.mark.slow


def run_schemathesis(url: str, *args: str, examples: int = 25, seed: int = 1) -> str:
    command = schemathesis_command(url, examples, seed, *args)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)

    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or "passed" in done.stdout
    return done.stdout


def test_every_operation_keeps_its_contract(full_bundle: Path) -> None:
    with serving(full_bundle, "--provenance") as server:
        out = run_schemathesis(server.url)
    assert "Selected: 5/5" in out and "Tested: 5" in out


def test_with_and_without_the_api_key(full_bundle: Path, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    with serving(full_bundle, "--api-key-file", str(key)) as server:
        run_schemathesis(server.url)  # every guarded operation: a documented 401
        run_schemathesis(server.url, "-H", "Authorization: Bearer s3cret")
        assert _status(server.url + "/v1/info") == 401
        assert _status(server.url + "/v1/info", "Bearer s3cret") == 200
        assert _status(server.url + "/v1/info", "Bearer wrong") == 401


def _status(url: str, authorization: str | None = None) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
