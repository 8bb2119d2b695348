# The two README commands: `make demo` and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MPLBACKEND := Agg
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lab venv notebooks browser-check clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, exactly this spec: a local CPU wheel (any other spec pulls CUDA packages)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m anse_lib demo

# Lint, unit tests, the entry points' docstring examples, then every notebook under nbval.
# Notebooks write their figures to an ignored folder here, so a test run leaves figures/ as committed.
test: $(STAMP)
	$(VENV)/bin/ruff check anse_lib tests benchmarks scripts notebooks
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --doctest-modules anse_lib/select.py anse_lib/probe.py anse_lib/bansa.py \
		anse_lib/rowstats.py anse_lib/capture.py anse_lib/widgets.py anse_lib/config.py anse_lib/calibrate.py \
		anse_lib/toyworld/pipeline.py
	ANSE_FIGURES_DIR=$(CURDIR)/.test-figures $(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks

# Notebook 04 in a real JupyterLab in Debian's Chromium (driven by Playwright, no browser download):
# run it, move an explorer slider, check the picture changes and nothing shows an error; screenshot
# to figures/04_explorer_in_jupyterlab.png (or $$ANSE_FIGURES_DIR).
CHROMIUM := /usr/lib/chromium/chromium
browser-check: $(STAMP)
	test -x $(CHROMIUM) || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install -q "playwright==1.65.2"
	$(PY) scripts/browser_check.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

# Re-execute every notebook in place (outputs are committed and checked by nbval).
notebooks: $(STAMP)
	$(PY) scripts/run_notebooks.py notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
