# The README's two commands are `make run` and `make test`; everything they need is installed here.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the Azure CLI for the examples/azure-cli tests: its own venv, as its hundreds of packages must
# not touch the app's pins; installed once per version
AZ_CLI_VERSION := 2.91.0
AZ_VENV := .venv-azcli
AZ_STAMP := $(AZ_VENV)/.azure-cli-$(AZ_CLI_VERSION)

.PHONY: run test lint unit bench install browser azurite azcli clean devstack-down

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

# Azurite, and the Azure SDK packages the JavaScript consumer example uses (package.json)
node_modules/.bin/azurite: package.json package-lock.json
	npm install --no-audit --no-fund --silent
	@touch $@

azurite: node_modules/.bin/azurite

$(AZ_STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 2; }
	@[ -x $(AZ_VENV)/bin/python ] || $(PYTHON) -m venv $(AZ_VENV)
	@echo "installing azure-cli $(AZ_CLI_VERSION) into $(AZ_VENV) (once)"
	$(AZ_VENV)/bin/python -m pip install --quiet --disable-pip-version-check azure-cli==$(AZ_CLI_VERSION)
	@rm -f $(AZ_VENV)/.azure-cli-*
	@touch $@

azcli: $(AZ_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# `make run PORT=8080` moves the consent site; `DEVSTACK_PORT_BASE=0` gives devstack free ports
PORT ?= 47400
DEVSTACK_PORT_BASE ?=
run: $(STAMP)
	$(PY) -m broker dev --port $(PORT)$(if $(DEVSTACK_PORT_BASE), --devstack-port-base $(DEVSTACK_PORT_BASE))

test: $(STAMP) browser azurite azcli lint
	bash infra/check.sh
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest tests/unit

bench: $(STAMP)
	$(PY) -m bench

devstack-down: $(STAMP)
	$(PY) -m devstack down

clean:
	rm -rf $(VENV) .venv-checkov $(AZ_VENV) node_modules .devstack .pytest_cache .ruff_cache \
		.import_linter_cache
