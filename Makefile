# The two commands of the README: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format install browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the whole gateway (web, MCP transport, worker, beat, demo upstream) on http://127.0.0.1:8000
run: install
	$(PY) -m gateway_project.run

## Install what the browser tests need (Debian's chromium), if it is missing
browser:
	@bash .ci/install-chromium

## Lint, type-check, check migrations, then run the whole test suite
test: install browser lint
	@bash .ci/install-peers
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) data .mypy_cache .pytest_cache .ruff_cache

## The interop suite: third-party MCP servers and clients through a live gateway (.ci/interop)
.PHONY: interop
interop: install
	bash .ci/interop

## Benchmarks: direct vs FastMCP's proxy vs the gateway (benchmarks/README.md);
## e.g. make bench BENCH_ARGS=--quick, or with DATABASE_URL and REDIS_URL set (production path)
.PHONY: bench
bench: install
	$(PY) benchmarks/run.py $(BENCH_ARGS)
