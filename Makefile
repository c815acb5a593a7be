PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_SRC := $(wildcard protos/clawq/v1/*.proto)

.PHONY: help install proto lint typecheck test test-fast bench run clean image

help:  ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: $(STAMP)  ## Create .venv with clawq (editable, server extra) and the dev tools.

$(STAMP): pyproject.toml
	./scripts/install-system-deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,dev]'
	touch $(STAMP)

proto: $(STAMP)  ## Regenerate the Python stubs from protos/.
	$(BIN)/python -m scripts.genproto client

lint: $(STAMP)  ## ruff and mypy --strict.
	$(BIN)/ruff check .
	$(BIN)/python -m scripts.buflint
	$(BIN)/ruff format --check .
	$(BIN)/mypy server client tests benchmarks examples scripts

typecheck: lint

test: $(STAMP)  ## The whole suite.
	$(BIN)/pytest -q

test-fast: $(STAMP)  ## The suite without slow fault and benchmark smoke tests.
	$(BIN)/pytest -q -m 'not slow'

bench: $(STAMP)  ## Benchmarks against raw limits and peers; writes benchmarks/results/latest.json.
	$(BIN)/pip install --quiet -e '.[server,dev,bench]'
	$(BIN)/python -m benchmarks

run: $(STAMP)  ## Start the embedded server on 127.0.0.1:50051.
	@mkdir -p .clawq/workspace
	$(BIN)/clawq serve --listen 127.0.0.1:50051 --db .clawq/clawq.db --root .clawq/workspace

image:  ## Build the container image (podman or docker); BASE=... to pull a base image.
	./scripts/container/build-image.sh

clean:
	rm -rf $(VENV) .clawq .mypy_cache .pytest_cache .ruff_cache
