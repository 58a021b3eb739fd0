# The two commands of the README: `make up` runs the platform, `make test` runs the tests.
# Both install what is missing first (uv, the Python environment; Kafka, Weaviate and Redis on first use).
# `make bench` measures the running platform (`make bench QUICK=1` for a reduced run).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV_BIN := .venv/bin
RAGSTREAM := $(VENV_BIN)/ragstream

.PHONY: up down status install test lint unit bench clean-stack

install: .venv/.synced

$(UV):
	@echo "==> installing uv $(UV_VERSION)"
	$(PYTHON) -m pip install --quiet --user "uv==$(UV_VERSION)" || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"

# Re-sync whenever the lockfile or a member's pyproject changes; otherwise this is instant.
.venv/.synced: uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml) | $(UV)
	@echo "==> syncing the Python environment from uv.lock (first time: torch and friends, a few minutes)"
	$(UV) sync --frozen --compile-bytecode
	@touch $@

up: install
	$(RAGSTREAM) up

down:
	@if [ -x $(RAGSTREAM) ]; then $(RAGSTREAM) down; else echo "nothing to stop"; fi

status: install
	$(RAGSTREAM) status

lint: install
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/ruff format --check .
	$(VENV_BIN)/mypy
	$(VENV_BIN)/lint-imports

# Unit and handler tests only: no Kafka, no Weaviate.
unit: install
	$(VENV_BIN)/pytest -m "not stack"

# Everything: lint, unit and handler tests, then the tests on the real stack (which provision and
# start Kafka, Weaviate, Redis and the services themselves, reusing whatever is already running).
test: lint
	$(VENV_BIN)/pytest

# The benchmarks on the local stack (started if need be): bench/results/*.json, PNG plots and a
# summary table. QUICK=1 runs a reduced set in a few minutes; BENCH_ARGS passes more options
# (for example BENCH_ARGS="--skip sweep": the sweep restarts the embedder).
bench: install
	$(VENV_BIN)/python -m bench.run $(if $(QUICK),--quick) $(BENCH_ARGS)

clean-stack: down
	rm -rf .stack
