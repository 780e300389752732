# `make demo` and `make test` work on a fresh machine with Python >= 3.11: each creates and uses
# a local virtual environment (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test docs lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/jaxtune run configs/demo.toml --plot runs/demo.png
	@echo "the jaxtune command is $(BIN)/jaxtune: 'source $(BIN)/activate' makes it plain 'jaxtune' (README's CLI lines)"

# Two workers, a test file each (module fixtures stay shared), the slowest files first (see
# tests/conftest.py): on 2 cores the suite takes about three quarters of the serial time;
# `$(BIN)/python -m pytest` alone runs it serially.
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The guide (docs/, mkdocs.yml) as a site in site/; --strict: a broken link or docstring fails it.
docs: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/masking.py
	$(BIN)/python benchmarks/cnn.py
	$(BIN)/python benchmarks/cnn2d.py
	$(BIN)/python benchmarks/strategies.py

clean:
	rm -rf runs site .pytest_cache
