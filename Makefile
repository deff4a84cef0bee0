# Two entry points (see README): `make run` (set up, run the smoke suite, build its report)
# and `make test` (set up, lint, run the tests). Both create .venv on first use.
#
# torch: on a machine without an NVIDIA driver we pin the CPU build that pip finds locally
# (torch==2.13.0); an unpinned torch would pull a multi-GB CUDA build. On a GPU machine that
# already has torch (e.g. the H100/H200 image), use `make VENV_FLAGS=--system-site-packages`.
PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
SUITE ?= suites/smoke.toml
RUN_DIR ?= runs/smoke
# Test processes: the suite is mostly single-threaded (interpreter, simulator, subprocess workers),
# so two pytest-xdist workers roughly halve its wall time on a 2-core machine. TEST_WORKERS=0 runs
# it in one process.
TEST_WORKERS ?= 2

.PHONY: setup setup-test run test lint clean cpu-checks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q -c constraints-ci.txt $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -c constraints-ci.txt -e ".[triton,numba,cupy]"

setup-test: setup
	$(BIN)/python -m pip install -q -c constraints-ci.txt -e ".[triton,numba,cupy,test,compile,cluster]"

run: setup
	$(BIN)/wkvbench run $(SUITE) --out $(RUN_DIR) --resume
	$(BIN)/wkvbench report $(RUN_DIR)

lint: setup-test
	$(BIN)/ruff check wkvbench tests benchmarks
	$(BIN)/ruff format --check wkvbench tests benchmarks

test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests
	$(BIN)/python -m pytest -q benchmarks --benchmark-disable

clean:
	rm -rf $(VENV) runs .pytest_cache

# reports/cpu-checks/*: regenerated on a machine without a GPU, each file stamped with its commit
# and the hashes of the kernel sources (tests/test_cpu_checks_stamps.py fails when they change).
cpu-checks:
	PYTHON=$(BIN)/python scripts/cpu_checks.sh
