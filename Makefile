# hierbayes: make demo | make test | make lint | make sbc | make bench
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# python3.12 on the PATH, else the pyenv install of 3.12.
PYTHON312 := $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then echo $$p; break; fi; done)
# Link PyTensor's C backend to OpenBLAS when the system has it (make blas installs it).
ifneq ($(wildcard /usr/lib/x86_64-linux-gnu/libopenblas.so /usr/lib/aarch64-linux-gnu/libopenblas.so),)
export PYTENSOR_FLAGS ?= blas__ldflags=-lopenblas
endif

.PHONY: demo test test-fast lint sbc bench docs katex notebooks clean venv dev blas

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found: install it (python3.12 on the PATH)"; exit 1; }
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev,docs]"
	@# Headless Chromium for the report's browser test (skipped without it); optional, never fatal.
	-@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null || true; fi
	touch $@

$(VENV)/.docs: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.dev

# Optional: a system BLAS speeds up PyMC's own sampler (numpyro, the default, and nutpie do not need it).
blas:
	@if [ ! -e /usr/lib/x86_64-linux-gnu/libopenblas.so ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq libopenblas-dev >/dev/null || true; fi

demo: $(VENV)/.installed
	$(VENV)/bin/hierbayes demo --overwrite

test: $(VENV)/.dev
	$(PY) -m pytest

test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow and not sbc"

# Lint, formatting and types (CI runs this before the tests).
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check hierbayes tests
	$(VENV)/bin/ruff format --check hierbayes
	$(VENV)/bin/mypy hierbayes

# The documentation site (mkdocs-material + mkdocstrings), warnings as errors; output in site/.
docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Execute every example notebook with the real draws of its analysis and save it with its outputs
# (tables and figures; seeded, so reproducible with the same libraries). Several minutes on 2 cores.
notebooks: $(VENV)/.dev
	$(PY) examples/_build_notebooks.py
	$(PY) examples/_build_notebooks.py --execute

# KaTeX, vendored into docs/vendor/katex so that the site renders math offline (committed; this
# target re-vendors it from the npm registry: the script, the style sheet, auto-render and the
# woff2 fonts, about 0.6 MB; the style sheet is rewritten to reference only the woff2 fonts).
KATEX_VERSION := 0.16.22
KATEX_DIR := docs/vendor/katex
katex:
	@command -v npm >/dev/null || { echo "make katex needs npm (apt-get install npm)"; exit 1; }
	tmp=$$(mktemp -d) && cd $$tmp && npm pack -q katex@$(KATEX_VERSION) >/dev/null && tar xzf katex-$(KATEX_VERSION).tgz && cd - >/dev/null && \
	rm -rf $(KATEX_DIR) && mkdir -p $(KATEX_DIR)/contrib $(KATEX_DIR)/fonts && \
	cp $$tmp/package/dist/katex.min.js $$tmp/package/LICENSE $(KATEX_DIR)/ && \
	cp $$tmp/package/dist/contrib/auto-render.min.js $(KATEX_DIR)/contrib/ && \
	cp $$tmp/package/dist/fonts/*.woff2 $(KATEX_DIR)/fonts/ && \
	sed -E 's/,url\(fonts\/[A-Za-z0-9_-]+\.(woff|ttf)\) format\("(woff|truetype)"\)//g' \
		$$tmp/package/dist/katex.min.css > $(KATEX_DIR)/katex.min.css && \
	echo "KaTeX $(KATEX_VERSION) from the npm registry (MIT licence, see LICENSE); re-vendor with make katex." \
		> $(KATEX_DIR)/VENDORED.txt && rm -rf $$tmp && du -sh $(KATEX_DIR)

sbc: $(VENV)/.dev
	$(PY) -m pytest -m sbc -p no:cacheprovider -o addopts=""

# hierbayes against bambi (benchmarks/README.md), in its own environment .bench-venv; BENCH_ARGS=--help
BENCH_VENV := .bench-venv
$(BENCH_VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found: install it (python3.12 on the PATH)"; exit 1; }
	$(PYTHON312) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e ".[jax]" "bambi==0.21.0"
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache site results
