"""Every source package is shipped: a folder left out of pyproject's list still works
in the editable install the tests use and fails only in users' wheel installs."""

from __future__ import annotations

import tomllib

from helpers import REPO


def source_packages(package_dirs: dict[str, str]) -> set[str]:
    """Dotted names of the folders with an ``__init__.py`` under each mapped folder."""
    found = set()
    for name, top in package_dirs.items():
        for init in (REPO / top).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / top).parts
            if "__pycache__" not in parts:
                found.add(".".join((name, *parts)))
    return found


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = source_packages(config["package-dir"])
    # runtime/client is shipped as ufd.client (its own package-dir entry), not ufd.runtime.client
    found.discard("ufd.runtime.client")
    missing = found - set(config["packages"])
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
