# `make run` and `make test` each bootstrap .venv from scratch on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= routes.yaml

.PHONY: run test lint format bench clean

$(BIN)/switchboard: pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(BIN)/switchboard
	$(BIN)/switchboard run -c $(CONFIG)

# pytest exits 5 when it collects no test, so an empty run fails here too.
test: $(BIN)/switchboard
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/switchboard
	$(BIN)/ruff check engine tests bench transforms
	$(BIN)/ruff format --check engine tests bench transforms

format: $(BIN)/switchboard
	$(BIN)/ruff format engine tests bench transforms
	$(BIN)/ruff check --fix engine tests bench transforms

bench: $(BIN)/switchboard
	$(BIN)/python bench/mllp_intake.py

clean:
	rm -rf $(VENV) build *.egg-info
