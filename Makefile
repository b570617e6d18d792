# The README's two commands are `make run` and `make test`; everything they need is installed here.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint unit bench install browser azurite clean devstack-down

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# Debian's chromium where we can install it; otherwise Playwright's own browser build.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	else $(PY) -m playwright install chromium; fi

node_modules/.bin/azurite: package.json
	npm install --no-audit --no-fund --silent
	@touch $@

azurite: node_modules/.bin/azurite

lint: $(STAMP)
	$(VENV)/bin/ruff check .

run: $(STAMP)
	$(PY) -m broker dev

test: $(STAMP) browser azurite lint
	bash infra/check.sh
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest tests/unit

bench: $(STAMP)
	$(PY) -m bench

devstack-down: $(STAMP)
	$(PY) -m devstack down

clean:
	rm -rf $(VENV) .venv-checkov node_modules .devstack .pytest_cache .ruff_cache
