# `make run` starts the whole portal on the embedded default; `make test` runs the test suite.
# Both create .venv and install the package first (again whenever pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format static clean screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/portal dev

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-vendor htmx and Tabler from the npm registry (versions in scripts/vendor-static.sh).
static:
	scripts/vendor-static.sh

clean:
	rm -rf $(VENV) tests/artifacts

# Refresh the README's screenshots (docs/screenshots) from the end-to-end tests.
screenshots: $(STAMP)
	PORTAL_SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest -q tests/e2e
