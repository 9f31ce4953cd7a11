# wsrl: `make run` trains and evaluates the default policy; `make test` runs the test suite.
# Both create the virtual environment first. TORCH picks the torch build (CPU wheel by default), e.g.
#   make install TORCH="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install run test test-all lint bench datasets gpu-wheels gpu-smoke clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,video,cluster]"
	touch $@

run: install  ## the main job on the built-in data, CPU budget (~10 min on 2 cores, data generation included)
	$(BIN)/python -m wsrl.train experiment=quick env=hopper_medium_expert method=rvs_r

test: install  ## the default (fast) test suite
	$(BIN)/python -m pytest -q

test-all: install  ## including the slow end-to-end tests
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: install
	$(BIN)/ruff check wsrl tests experiments

bench: install  ## speed figures and ratios (see docs/performance.md, "`make bench`")
	$(BIN)/python experiments/bench.py

datasets: install  ## all nine generated datasets at D4RL size
	$(BIN)/python -m wsrl.datasets generate all all

# What the lent GPU machine (Python 3.12, x86-64, PyTorch and Lightning installed) lacks, as wheels in .whl/ for
# experiments/gpu.sh: pinned to the versions of this virtual environment, the ones the CPU suite is made with (keep
# them in step with `.venv/bin/pip list`). antlr4-python3-runtime 4.9.3 exists on PyPI only as a source archive; it
# is pure Python, so the wheel built here serves any Python 3.
GPU_WHEELS ?= mujoco==4.0.1 mujoco-core==4.0.1 glfw==2.11.0 gymnasium==1.4.0 farama-notifications==0.0.6 \
	minari==0.5.4 hydra-core==1.3.8 omegaconf==2.3.1
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
	manylinux1_x86_64

PIP := $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m pip

gpu-wheels:  ## wheels for the GPU machine into .whl/ (git-ignored; carry it: carry [".whl"])
	rm -rf .whl && mkdir -p .whl
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(addprefix --platform ,$(GPU_PLATFORMS)) -d .whl $(GPU_WHEELS)
	$(PIP) wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
	@ls .whl && du -ch .whl/*.whl | tail -1

gpu-smoke: install  ## experiments/gpu.sh --smoke on this machine (small datasets in /tmp, a 2 x 2 stacked sweep, out in gpu-out/)
	PYTHON=$(BIN)/python SKIP_INSTALL=1 experiments/gpu.sh --smoke

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
