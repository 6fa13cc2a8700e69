# Signpost — make targets. Python 3.12 is required (see .python-version).
SHELL := /bin/bash
PYTHON ?= python3.12
# VENV and STAMP may be overridden (a test reuses an existing environment this way).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP ?= $(VENV)/.installed
# `make run` serves here; `make run HOST=0.0.0.0 PORT=9000` to change it.
HOST ?= 127.0.0.1
PORT ?= 8000
# Everything Signpost writes (SQLite database, fit artifacts, pytensor's compile cache) lives here.
export SIGNPOST_VAR_DIR ?= var
export PYTENSOR_FLAGS ?= base_compiledir=$(abspath $(SIGNPOST_VAR_DIR))/pytensor
SAMPLE := indicators/data/sample_observations.csv
# The sample was collected through this date: its import records a review of its indicators.
SAMPLE_REVIEWED_THROUGH := 2025-12-31

.PHONY: install run test test-tools lint fuzz bench bench-core bench-replays bench-refit bench-loop bench-rows bench-http bench-samplers bench-calibration bench-robustness bench-bias bench-quick soak clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 && $(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 12)' 2>/dev/null || { \
	  echo "error: Signpost needs Python 3.12 as '$(PYTHON)' (pyenv: 'pyenv install 3.12' — .python-version selects it; or set PYTHON=/path/to/python3.12)." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)
	@mkdir -p $(SIGNPOST_VAR_DIR)/pytensor

# Set up, load the bundled sets and the sample observations, fit every set, then serve the API
# and the refit scheduler. A second `make run` reuses the database (no duplicate import).
run: install
	$(BIN)/signpost init
	$(BIN)/signpost import $(SAMPLE) --if-empty --reviewed-through $(SAMPLE_REVIEWED_THROUGH)
	$(BIN)/signpost refit
	$(BIN)/signpost serve --host $(HOST) --port $(PORT)

# Besides Python, the suite drives Debian's docker-compose (it validates docker-compose.yml
# offline) and Debian's Chromium (the page's browser tests, tests/e2e/test_page.py: Playwright
# cannot download its own browser). Each is installed when missing and apt-get can (as root);
# otherwise the tests that need it skip.
test-tools:
	@command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -qq docker-compose >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        apt-get install -y -qq docker-compose >/dev/null 2>&1; }; }; } || \
	  echo "note: docker-compose is not installed; tests/test_compose.py will skip its check"
	@[ -x /usr/bin/chromium ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -qq chromium >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } || \
	  echo "note: chromium is not installed; tests/e2e/test_page.py will skip"

test: install test-tools
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check forecast indicators priors service tests bench

# The suite's fuzzer (tests/e2e/test_fuzz.py) at more examples per operation (FUZZ_EXAMPLES):
# every phase against a real server, ~4,700 requests in ~3 min at 100; prints what each
# operation answered (docs/hardening.md).
FUZZ_EXAMPLES ?= 100
fuzz: install
	SIGNPOST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -p no:cacheprovider -rP \
	  tests/e2e/test_fuzz.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis

bench-core: install
	$(BIN)/python bench/core_fit.py

bench-replays: install
	$(BIN)/python -m bench.replay_series

bench: bench-refit bench-loop bench-rows bench-http bench-samplers bench-calibration bench-core bench-replays bench-robustness bench-bias bench-quick

bench-refit: install
	$(BIN)/python -m bench.refit_latency

bench-loop: install
	$(BIN)/python -m bench.loop

bench-rows: install
	$(BIN)/python -m bench.rows

bench-http: install
	$(BIN)/python -m bench.http

bench-samplers: install
	$(BIN)/python -m bench.samplers

bench-calibration: install
	$(BIN)/python -m bench.calibration

bench-robustness: install
	$(BIN)/python -m bench.robustness

bench-bias: install
	$(BIN)/python -m bench.bias

bench-quick: install
	$(BIN)/python -m bench.quick_refits

# Load and faults (kill -9, a full disk, a locked SQLite, PostgreSQL stopped and started) on
# SQLite and PostgreSQL, with figures; the suite runs the short version (docs/soak.md).
# `make soak SOAK_ARGS="--seconds 20 --kills 5"` for a shorter one.
# the long fuzz (`make fuzz`: FUZZ_EXAMPLES per operation) is part of the soak
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
	$(MAKE) fuzz
