# The two commands of the README: `make demo` and `make test`. Each creates .venv
# when it is missing and installs what it needs from this project's own files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
# The other supported Pythons (`make test-pythons`, run by CI); 3.11 is .venv's.
OTHER_PYTHONS ?= 3.10 3.12 3.13

.PHONY: help demo test test-pythons test-django60 test-flask30 fuzz lint format docs bench clean

help:
	@echo "make demo          run the demo against an embedded fake Gmail (no account needed)"
	@echo "make test          lint, type checks, the layer check, the suite with coverage"
	@echo "make test-pythons  the suite on Python $(OTHER_PYTHONS) (each in .venv-3.X), Django 6.0, Flask 3.0"
	@echo "make fuzz          the property-based tests, random and longer (FUZZ_PYTHONS=...)"
	@echo "make lint          ruff, mypy --strict on src and integrations, mypy on tests, layers"
	@echo "make format        ruff's fixes and formatting"
	@echo "make docs          the documentation site into build/docs (offline, warnings are errors)"
	@echo "make bench         the benchmarks in benchmarks/ (not part of make test)"
	@echo "make clean         remove the virtualenvs and build artefacts"

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
	$(VENV)/bin/ruff check src integrations tests benchmarks docs/examples docs/conf.py tools
	$(VENV)/bin/ruff format --check src integrations tests benchmarks docs/examples docs/conf.py tools
	$(VENV)/bin/mypy --strict src integrations
	$(VENV)/bin/mypy --config-file tests/mypy.ini tests
	$(PY) tools/check_layers.py

# The core suite, then the Django test project (tests/integrations/django) once per
# settings module: the legacy EMAIL_* one, and with Django >= 6.1 the MAILERS one. Each
# is its own pytest invocation (one settings object cannot be both); coverage adds up
# over them and the last one reports it against the floor.
DJANGO_TESTS := tests/integrations/django
HAS_MAILERS = $(1) -c 'import django, sys; sys.exit(django.VERSION < (6, 1))'

test: lint
	$(PY) -m pytest -p no:django --cov --cov-branch --cov-report= --cov-fail-under=0 \
		--junitxml=build/junit.xml $(PYTEST_ARGS)
	if $(call HAS_MAILERS,$(PY)); then \
		$(PY) -m pytest $(DJANGO_TESTS) --ds=djangoproject.settings_mailers --cov --cov-branch \
			--cov-append --cov-report= --cov-fail-under=0 --junitxml=build/junit-django-mailers.xml $(PYTEST_ARGS); \
	fi
	$(PY) -m pytest $(DJANGO_TESTS) --ds=djangoproject.settings_legacy --cov --cov-branch \
		--cov-append --cov-report=term --junitxml=build/junit-django.xml $(PYTEST_ARGS)

# One virtualenv per Python, made with the pyenv (or system) interpreter of that version;
# a missing interpreter fails and says which.
.venv-%/.dev-installed: pyproject.toml
	@version=$$(pyenv versions --bare 2>/dev/null | grep -E '^$*\.[0-9]+$$' | sort -V | tail -n 1); \
	if [ -n "$$version" ]; then \
		PYENV_VERSION=$$version python$* -m venv .venv-$*; \
	elif command -v python$* >/dev/null 2>&1; then \
		python$* -m venv .venv-$*; \
	else \
		echo "Python $* is not installed (pyenv versions lists no $*.x): it is needed to test it" >&2; \
		exit 1; \
	fi
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

test-%: .venv-%/.dev-installed
	.venv-$*/bin/python -m pytest -p no:cacheprovider -p no:django --junitxml=build/junit-$*.xml $(PYTEST_ARGS)
	.venv-$*/bin/python -m pytest -p no:cacheprovider $(DJANGO_TESTS) --ds=djangoproject.settings_legacy \
		--junitxml=build/junit-$*-django.xml $(PYTEST_ARGS)
	if $(call HAS_MAILERS,.venv-$*/bin/python); then \
		.venv-$*/bin/python -m pytest -p no:cacheprovider $(DJANGO_TESTS) \
			--ds=djangoproject.settings_mailers --junitxml=build/junit-$*-django-mailers.xml $(PYTEST_ARGS); \
	fi

# $(call pinned_venv,DIR,PYTHON,REQUIREMENT): a virtualenv of that Python (pyenv's newest
# patch release, else the system's pythonX.Y) with the dev extra and one framework held
# at an older release.
comma := ,
define pinned_venv
	@version=$$(pyenv versions --bare 2>/dev/null | grep -E '^$(subst .,\.,$(2))\.[0-9]+$$' | sort -V | tail -n 1); \
	if [ -n "$$version" ]; then PYENV_VERSION=$$version python$(2) -m venv $(1); \
	else python$(2) -m venv $(1); fi
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet -e '.[dev]' '$(3)'
	touch $(1)/.dev-installed
endef

# Django 6.0 (the modern email API, no MAILERS) on Python 3.12, in its own virtualenv;
# .venv-3.12 has the newest Django (6.1).
.venv-django60/.dev-installed: pyproject.toml
	$(call pinned_venv,.venv-django60,3.12,Django>=6.0$(comma)<6.1)

test-django60: .venv-django60/.dev-installed
	.venv-django60/bin/python -m pytest -p no:cacheprovider $(DJANGO_TESTS) \
		--ds=djangoproject.settings_legacy --junitxml=build/junit-django60.xml $(PYTEST_ARGS)

# Flask 3.0 (the oldest supported) on Python 3.10, in its own virtualenv: only the Flask
# tests (tests/integrations/flask); every other virtualenv has the newest Flask (3.1).
FLASK_TESTS := tests/integrations/flask
.venv-flask30/.dev-installed: pyproject.toml
	$(call pinned_venv,.venv-flask30,3.10,Flask>=3.0$(comma)<3.1)

test-flask30: .venv-flask30/.dev-installed
	.venv-flask30/bin/python -m pytest -p no:cacheprovider -p no:django $(FLASK_TESTS) \
		--junitxml=build/junit-flask30.xml $(PYTEST_ARGS)

test-pythons: $(addprefix test-,$(OTHER_PYTHONS)) test-django60 test-flask30

# The property-based tests (tests/core/test_fuzz_message.py) with the random, longer
# hypothesis profile of conftest.py; make test runs them short and derandomized. A
# failure prints the example and a @reproduce_failure blob to replay it.
FUZZ_PYTHONS ?= 3.11 $(OTHER_PYTHONS)
fuzz: $(VENV)/.dev-installed $(patsubst %,.venv-%/.dev-installed,$(filter-out 3.11,$(FUZZ_PYTHONS)))
	@for version in $(FUZZ_PYTHONS); do \
		venv=.venv-$$version; [ "$$version" = 3.11 ] && venv=$(VENV); \
		echo "== Python $$version"; \
		$$venv/bin/python -m pytest -p no:cacheprovider -m fuzz --hypothesis-profile=postbud-fuzz \
			--hypothesis-show-statistics tests/core/test_fuzz_message.py $(PYTEST_ARGS) || exit 1; \
	done

format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check --fix src integrations tests benchmarks docs/examples docs/conf.py tools
	$(VENV)/bin/ruff format src integrations tests benchmarks docs/examples docs/conf.py tools

# The documentation site (docs/: Sphinx, Furo, MyST; docs/conf.py) into build/docs, in
# .venv (Python 3.11, every extra: autodoc imports the Django and Flask adapters). No
# network once installed: no intersphinx, nothing remote. -W makes every warning an
# error, -n checks every cross-reference, --keep-going reports all of them in one run,
# -E rereads every page (an incremental build would not warn again about a page it
# skips).
$(VENV)/.docs-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	touch $@ $(VENV)/.dev-installed $(VENV)/.demo-installed

docs: $(VENV)/.docs-installed
	$(PY) -m sphinx -b html -W --keep-going -n -E -q -d build/docs-doctrees docs build/docs
	@echo "the site: build/docs/index.html"

bench: $(VENV)/.dev-installed
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-3.* .venv-django60 .venv-flask30 build dist .coverage .mypy_cache .ruff_cache .pytest_cache
