# Two commands set everything up on a fresh machine:
#   make demo   - create .venv, install ufd with its export extra, run export -> detect
#   make test   - create .venv, install, run the whole test suite (slow tests included)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test test-fast lint bench clean test-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[export,serve,kserve,kserve-ray,scale,formats,video,dev]'
	touch $(STAMP)

install: $(STAMP)

# Offline with local weights: make demo DEMO_ARGS='--pretrained FILE --quick-gelu --head FILE'
demo: $(STAMP)
	$(VENV)/bin/ufd-demo --out demo-output $(DEMO_ARGS)

# Debian packages the tests use: chromium + chromedriver (the page tests), npm (fetches
# onnxruntime-web for ufd-bundle web) and qemu-user (an emulated AVX2 CPU for the
# device-parity test). Missing ones skip those tests, with why.
APT_PACKAGES := chromium chromium-driver qemu-user npm
test-packages:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && \
	  command -v qemu-x86_64 >/dev/null && command -v npm >/dev/null || \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES) >/dev/null 2>&1 || \
	  { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES) >/dev/null; } || \
	  echo "could not install $(APT_PACKAGES): those tests will be skipped (see their reasons)"

test: $(STAMP) test-packages

	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m 'not slow'

# ruff (lint and format), the import contract (pyproject.toml [tool.importlinter]: layers
# import downward only), then mypy --strict on the plain install ([tool.mypy]).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	@mkdir -p .typecheck/ufd && for part in runtime:runtime export:export cli:cli client:runtime/client; do \
	  ln -sfn "$(CURDIR)/$${part#*:}" ".typecheck/ufd/$${part%%:*}"; done
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
