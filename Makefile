# `make demo` and `make test` do all set-up on a fresh machine: they create .venv if it is
# missing and install camkit with what it needs (the stamp file is redone when pyproject.toml changes).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.camkit-installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench lint clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev,notebooks]'
	$(PIP) --no-deps 'grad-cam>=1.5'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/camkit demo

test: $(STAMP)
	$(PY) -m ruff check camkit tests benchmarks
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_explain.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
