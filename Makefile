# hushmetric — every target bootstraps .venv from pyproject.toml when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv services test lint pytest proto demo bench proof airgap-bundle clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s '	'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hushmetric needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,postgres]'
	@touch $(STAMP)

venv: $(STAMP)  ## create or refresh .venv

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check agent collector hushmetric tests bench scripts packaging
	$(BIN)/mypy

services:  ## test services the project installs itself: Prometheus (remote-write tests), Chromium (dashboard tests); root + apt
	@scripts/ensure-prometheus.sh
	@scripts/ensure-chromium.sh

pytest: $(STAMP) services  ## the test suite only
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: lint pytest  ## lint, type-check and run the whole suite (short proof families included)

proto: $(STAMP)  ## regenerate the committed gRPC stubs from proto/
	$(BIN)/python -m hushmetric.protogen

demo: $(STAMP)  ## collector + agent end to end on embedded defaults, then the reports
	$(BIN)/python scripts/demo.py $(ARGS)

bench: $(STAMP)  ## throughput ratios against baselines measured in the same run
	$(BIN)/python -m bench

proof: $(STAMP) services  ## long fault, misuse and privacy families with a table of figures
	HUSH_PROOF=long HUSH_PROOF_OUT=$${HUSH_PROOF_OUT:-build/proof-figures.json} $(BIN)/python -m pytest -q -s -p no:cacheprovider -m 'slow or not slow' tests/proof

airgap-bundle: $(STAMP)  ## signed offline installer: make airgap-bundle RELEASE_KEY=FILE
	$(BIN)/python packaging/airgap.py $(if $(RELEASE_KEY),--release-key '$(RELEASE_KEY)')

clean:  ## remove the venv and build leftovers
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
