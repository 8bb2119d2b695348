# The two README commands: `make demo` and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MPLBACKEND := Agg
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lab venv notebooks clean-venv

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

test: $(STAMP)
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

# Re-execute every notebook in place (outputs are committed and checked by nbval).
notebooks: $(STAMP)
	$(PY) scripts/run_notebooks.py notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
