# The README's two commands. Each sets itself up from nothing: a virtual environment with the
# CPU build of torch 2.13.0 installed first (an unpinned torch would download CUDA), then the
# project with its extras.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/hrnas flops --preset digits_seg
	$(VENV)/bin/hrnas demo --out runs/demo

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_train_step.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
