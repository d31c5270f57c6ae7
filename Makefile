# The two commands of the README: `make demo` and `make test`. Each creates .venv
# when it is missing and installs what it needs from this project's own files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test lint format bench docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps record which extras are installed; they are redone when pyproject.toml changes.
$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[testing,oauth]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/postbud demo

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check src integrations tests benchmarks docs/examples
	$(VENV)/bin/ruff format --check src integrations tests benchmarks docs/examples
	$(VENV)/bin/mypy --strict src integrations

test: lint
	$(PY) -m pytest --cov --cov-branch --cov-report=term --junitxml=build/junit.xml $(PYTEST_ARGS)

format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check --fix src integrations tests benchmarks docs/examples
	$(VENV)/bin/ruff format src integrations tests benchmarks docs/examples

bench: $(VENV)/.dev-installed
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist .coverage .mypy_cache .ruff_cache .pytest_cache
