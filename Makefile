# `make test` is the one command that installs everything and runs the whole suite
# (lint, types, tests). It creates .venv on first use and reinstalls when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install lint typecheck test demo schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# Azurite (the Azure Blob emulator the tests run) comes from npm, pinned by package-lock.json.
$(NODE_STAMP): package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: install
	$(BIN)/mypy --strict src

test: lint typecheck
	$(BIN)/pytest

# A legacy web server, `backorigin serve` on an embedded S3 server, a lazy migration in action.
demo: install
	$(BIN)/python examples/demo/run_demo.py

# Regenerate the committed JSON Schema and config reference after changing the config models.
schema: install
	$(BIN)/backorigin schema > backorigin.schema.json
	$(BIN)/backorigin schema --format markdown > docs/CONFIG.md

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
