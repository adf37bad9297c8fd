# The targets a newcomer guesses. Everything installs into .venv from this project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export POWERTOOLS_TRACE_DISABLED := true

.PHONY: install system-packages run test lint synth deploy bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

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

synth: install $(CDK)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) synth --quiet
	$(BIN)/cfn-lint cdk.out/*.template.json

deploy: install $(CDK)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) deploy $(CDK_ARGS)

bench: install system-packages
	$(BIN)/python bench/bench_hashing.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) cdk.out node_modules .pytest_cache .mypy_cache .ruff_cache
