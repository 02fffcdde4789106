# TickStockPL. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install test unit integration lint format mypy bench publish-test clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(STAMP) ## create .venv and install the project with its test tools

test: $(STAMP) lint mypy ## lint, type-check, and run unit + integration tests against real servers
	$(BIN)/pytest -q

unit: $(STAMP) ## pure tests only (no servers)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) ## tests against real Redis and PostgreSQL (started on free ports)
	$(BIN)/pytest -q tests/integration

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

mypy: $(STAMP) ## type-check
	$(BIN)/mypy

bench: $(STAMP) ## run every benchmark; figures merge into bench/results.json
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python -m bench.$$(basename $$b .py) || exit 1; done

publish-test: $(STAMP) ## publish one test pattern to the configured Redis/PostgreSQL
	$(BIN)/tickstockpl publish-test

clean: ## remove caches (keeps .venv and var/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
