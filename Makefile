# wsrl: `make run` trains and evaluates the default policy; `make test` runs the test suite.
# Both create the virtual environment first. TORCH picks the torch build (CPU wheel by default), e.g.
#   make install TORCH="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install run test test-all lint bench datasets clean

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

bench: install  ## speed figures and ratios (see README, "Performance")
	$(BIN)/python experiments/bench.py

datasets: install  ## all nine generated datasets at D4RL size
	$(BIN)/python -m wsrl.datasets generate all all

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
