# `make test` and `make demo` do all the set-up: a .venv with the pinned environment, then vapi in editable mode.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test test-all demo reproduce clean

$(STAMP): pyproject.toml requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: install
	$(BIN)/vapi demo

# The four studies of `vapi ablate` on the shipped demo stages (each: runs/ablate-<study>-<time>/report.md).
reproduce: install
	$(BIN)/vapi ablate main reuse_runs=true
	$(BIN)/vapi ablate reward reuse_runs=true
	$(BIN)/vapi ablate prior reuse_runs=true
	$(BIN)/vapi ablate noise reuse_runs=true

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
