# One entry point. Every target creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
SERVE_STAMP := $(VENV)/.installed-service
PATHS := src tests benchmarks scripts examples

.PHONY: install test check sync bench serve smoke clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# make serve needs only the service; make test and make check need everything.
$(SERVE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[service]'
	touch $(SERVE_STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

check: $(STAMP)
	$(BIN)/ruff check $(PATHS)
	$(BIN)/ruff format --check $(PATHS)
	$(BIN)/mypy
	$(BIN)/python scripts/gen_sync.py --check

sync: $(STAMP)
	$(BIN)/python scripts/gen_sync.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The service on the embedded SQLite default (sqlite:///sessionward.db here), 127.0.0.1:8000.
serve: $(SERVE_STAMP)
	$(BIN)/sessionward serve

# make serve on a clean clone, then a login with curl (CI runs it).
smoke:
	scripts/smoke-serve

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
