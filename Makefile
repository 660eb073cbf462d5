# One command each: `make demo` (set up + run the quickstart and the nightly pipeline example),
# `make test` (set up + lint + type-check + the whole test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/quickstart/demo.sh
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/nightly/run.sh

lint: $(VENV)/.installed
	$(PY) -m ruff check datavc tests benchmarks examples
	$(PY) -m mypy datavc

test: lint
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info
