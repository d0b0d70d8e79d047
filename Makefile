# Two commands on a fresh machine: `make run` (the console on the offline path) and `make test`.
# `run` installs only what running needs; `test` adds the test extra (pytest, and torch for the
# tests' ART tokenizer oracle: several GB that the console never imports).
VENV   ?= .venv
PYTHON ?= $(shell scripts/find-python)
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "No Python >= 3.12 found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(BIN)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(BIN)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(BIN)/.installed-run

run: $(BIN)/.installed-run
	$(BIN)/babylon-console demo

test: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .

bench: $(BIN)/.installed-dev
	for b in readiness seed batch_prep judging offline_loop startup responsiveness faults; do \
		$(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
