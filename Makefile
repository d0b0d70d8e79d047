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

# Until the console lands (issue: operations console), run shows configuration and window readiness.
run: $(BIN)/.installed
	$(BIN)/babylon-console doctor
	$(BIN)/babylon-console windows

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/readiness.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
