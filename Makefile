# Signpost — make targets. Python 3.12 is required (see .python-version).
SHELL := /bin/bash
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTENSOR_FLAGS ?= base_compiledir=$(CURDIR)/var/pytensor

.PHONY: install test lint bench bench-core clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 && $(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 12)' 2>/dev/null || { \
	  echo "error: Signpost needs Python 3.12 as '$(PYTHON)' (pyenv: 'pyenv install 3.12' — .python-version selects it; or set PYTHON=/path/to/python3.12)." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)
	@mkdir -p var/pytensor

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check forecast indicators priors service tests bench

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis

bench-core: install
	$(BIN)/python bench/core_fit.py
