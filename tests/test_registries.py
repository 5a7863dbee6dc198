"""Every registry is complete whenever it is asked, and refuses a name that is taken.

"Complete" is checked in fresh processes that import only the module a caller
would (nothing imports the methods or detectors by hand first), against the
lists the tests expect; the in-process registries are the reference.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ufd.export.detectors import DETECTORS
from ufd.export.detectors import register as register_detector
from ufd.runtime.io.writers import FORMATS, JsonlWriter, register_format
from ufd.runtime.methods import REGISTRY, Method, register
from ufd.runtime.registry import DuplicateName
from ufd.runtime.transforms import TRANSFORMS, transform

ASKED = {  # what a caller imports, and how it reads the names
    "methods": ("ufd.runtime.registry", "method_names()"),
    "fields": ("ufd.runtime.registry", "sorted(all_fields())"),
    "columns": ("ufd.runtime.registry", "list(table_columns())"),
    "configs": ("ufd.runtime.registry", "list(config_types())"),
    "formats": ("ufd.runtime.io.writers", "list(FORMATS)"),
    "transforms": ("ufd.runtime.transforms", "list(TRANSFORMS)"),
    "providers": ("ufd.runtime.providers", "list(PROVIDERS)"),
    "detectors": ("ufd.export.detectors.registry", "list(DETECTORS)"),
}


def _in_a_fresh_process(module: str, names: str) -> list[str]:
    code = (
        f"import ufd.runtime\nfrom {module} import *\nimport json; print(json.dumps(list({names})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _expected(kind: str) -> list[str]:
    from ufd.runtime.providers import PROVIDERS
    from ufd.runtime.registry import all_fields, config_types, table_columns

    return {
        "methods": list(REGISTRY),
        "fields": sorted(all_fields()),
        "columns": list(table_columns()),
        "configs": list(config_types()),
        "formats": list(FORMATS),
        "transforms": list(TRANSFORMS),
        "providers": list(PROVIDERS),
        "detectors": list(DETECTORS),
    }[kind]


@pytest.mark.parametrize("kind", list(ASKED))
def test_a_registry_is_complete_in_a_process_that_imported_only_ufd_runtime(kind: str) -> None:
    found = _in_a_fresh_process(*ASKED[kind])
    assert found == _expected(kind) and len(found) >= 3


def test_the_methods_are_all_the_built_ins_in_canonical_order() -> None:
    assert list(REGISTRY) == ["linear", "nn", "traces", "realonly", "fused"]


def test_a_duplicate_method_is_refused_and_the_first_stays() -> None:
    first = REGISTRY["linear"]

    class Impostor(Method):
        name = "linear"

    with pytest.raises(DuplicateName, match="method 'linear' is registered already"):
        register(Impostor)
    assert REGISTRY["linear"] is first
    assert register(first) is first  # the same class again: nothing changes


def test_duplicate_detectors_transforms_and_formats_are_refused() -> None:
    original = type(DETECTORS["univfd"])

    class Another(original):
        pass

    with pytest.raises(DuplicateName, match="detector 'univfd'"):
        register_detector(Another)
    assert type(DETECTORS["univfd"]) is original
    assert register_detector(original) is original and type(DETECTORS["univfd"]) is original
    jpeg = TRANSFORMS["jpeg"]
    with pytest.raises(DuplicateName, match="transformation 'jpeg'"):
        transform("jpeg")(lambda image, value: image)
    assert TRANSFORMS["jpeg"] is jpeg
    with pytest.raises(DuplicateName, match="output format 'jsonl'"):
        register_format("jsonl", lambda stream, fields, appending: JsonlWriter(stream, fields))


def test_test_faults_need_both_switches_and_known_names(monkeypatch, caplog) -> None:
    """UFD_TEST_FAULTS alone (a copied environment file, say) switches nothing on."""
    from ufd.runtime.faults import Faults

    monkeypatch.setenv("UFD_TEST_FAULTS", "stop-worker-after=0")
    monkeypatch.delenv("UFD_TEST_FAULTS_ARE_MEANT", raising=False)
    with caplog.at_level("WARNING", logger="ufd.runtime.faults"):
        assert Faults().stop_after is None
    assert "ignored (tests only)" in caplog.text
    monkeypatch.setenv("UFD_TEST_FAULTS_ARE_MEANT", "1")
    monkeypatch.setenv("UFD_TEST_FAULTS", "stop-worker-after=0,sleep-forever=1")
    caplog.clear()
    with caplog.at_level("WARNING", logger="ufd.runtime.faults"):
        faults = Faults()
    assert faults.stop_after == 0 and "'sleep-forever=1' is not a fault" in caplog.text
    assert "test faults on in this process" in caplog.text
