# The targets a newcomer guesses. Everything installs into .venv from this project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export POWERTOOLS_TRACE_DISABLED := true

.PHONY: install install-deploy system-packages run test lint synth deploy bench clean

# One stamp per extra of pyproject.toml. `deploy` (CDK, cdk-nag, cfn-lint) is all synth and
# deploy need; `dev` adds the test and lint tools (libtorrent, moto, pytest...) and includes
# deploy, so installing dev stamps both and a later `make synth` installs nothing.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-deploy: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[deploy]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed-deploy $@

install: $(VENV)/.installed-dev
install-deploy: $(VENV)/.installed-deploy

# mktorrent, aria2, nginx and Ceph's radosgw, which the tests drive (apt, when missing).
system-packages:
	bash .ci/system-packages

run: install
	$(BIN)/s3torrent serve

# Test files spread over the cores (one file stays on one worker: its module and session
# fixtures, e.g. the radosgw, start once). PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= auto
test: install system-packages
	$(BIN)/pytest -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(CDK): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $(CDK)

synth: install-deploy $(CDK)
	PATH="$(abspath $(BIN)):$$PATH" $(CDK) synth --quiet
	$(BIN)/cfn-lint cdk.out/*.template.json

deploy: install-deploy $(CDK)
	PATH="$(abspath $(BIN)):$$PATH" $(CDK) deploy $(CDK_ARGS)

bench: install system-packages
	$(BIN)/python bench/bench_hashing.py $(BENCH_ARGS)
	$(BIN)/python bench/bench_threads.py $(BENCH_THREADS_ARGS)
	$(BIN)/python bench/bench_collections.py $(BENCH_COLLECTIONS_ARGS)

clean:
	rm -rf $(VENV) cdk.out node_modules .pytest_cache .mypy_cache .ruff_cache
