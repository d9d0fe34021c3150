# desilab: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test lint install install-dev system-deps bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## The main job: sample sky -> store -> all pipelines -> report, into ./desilab-out
run: install
	$(BIN)/desilab run

## Everything CI runs: system packages (PostgreSQL q3c/pgsphere), lint, the whole test suite
test: install-dev system-deps
	$(BIN)/ruff check desilab tests bench
	$(BIN)/pytest

system-deps:
	bash scripts/system-deps.sh

lint: install-dev
	$(BIN)/ruff check desilab tests bench

bench: install-dev
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) desilab-out desilab-data .pytest_cache .ruff_cache
