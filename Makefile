# Two commands on a fresh machine: `make run` (the console on the offline path) and `make test`.
VENV   ?= .venv
PYTHON ?= $(shell scripts/find-python)
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "No Python >= 3.12 found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(BIN)/.installed
	$(BIN)/babylon-console demo

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .

bench: $(BIN)/.installed
	for b in readiness seed batch_prep judging offline_loop startup responsiveness faults; do \
		$(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
