# Two commands: `make demo` and `make test`. Both set up .venv on first use (a re-run is a no-op).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.evalsuite-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit notebook perf perf-eval clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV)
	touch $@

demo: setup
	$(VENV)/bin/evalsuite demo

test: setup
	$(PY) -m pytest -q -rs --durations=15 $(PYTEST_ARGS)

# The DPO plasticity notebook executed on RUN (one or more run folders; none: the paper's grids only) →
# $(NOTEBOOK_OUT)/dpo_plasticity-<run>.ipynb and .html
NOTEBOOK_OUT ?= reports/notebooks
notebook: setup
	$(PY) -m evalsuite.report.notebook $(RUN) --out $(NOTEBOOK_OUT)

test-unit: setup
	$(PY) -m pytest -q -m "not integration" $(PYTEST_ARGS)

perf: setup
	$(PY) perf/backends.py

perf-eval: setup
	$(PY) perf/eval_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
