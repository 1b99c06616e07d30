# medvision: two commands a newcomer needs. Each creates .venv if it is missing.
#   make train   run the default experiment (3D U-Net on the embedded MNI152 tissue data, CPU)
#   make lint    ruff (lint + format check) and the import-linter contracts (pyproject.toml)
#   make test    lint, then run the test suite
#   make bench   benchmark suite vs a plain MONAI loop -> BENCHMARKS.md (BENCH_ARGS="--only 1,2")
# GPU users: set TORCH_SPEC to the torch build for their CUDA, e.g.
#   make train TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.medvision-installed

LINT_PATHS := medvision hydra_plugins tests scripts

.PHONY: train lint test bench venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[test]"
	# an older medvision installed the Hydra Optuna plugin (it pins Optuna 2.10); ours replaces it
	$(BIN)/python -m pip uninstall -y -q hydra-optuna-sweeper 2>/dev/null || true
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/medvision-train $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/lint-imports --no-cache --no-logo

# the test files are spread over the cores (pytest-xdist; every test runs torch with one thread, and
# a file's tests stay on one worker so its module fixtures run once; the longest files go out first:
# tests/conftest.py HEAVY_FILES); PYTEST_WORKERS=0 runs serially
PYTEST_WORKERS ?= auto
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python scripts/bench/run.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
