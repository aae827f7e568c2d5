# minicomp: one command to open the course, one to test it.
#
#   make lab     create .venv if needed, install, open JupyterLab on the start page
#   make test    create .venv if needed, install, run every test (notebooks included)
#   make tour    the end-to-end demonstration in the terminal, with a results table
#
# torch is never pinned here. If .venv has no torch yet, `pip install $(TORCH)` picks the right
# build for your machine. To choose one yourself, for example the CPU-only wheel on Linux:
#   make lab TORCH="torch --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.minicomp-installed
# Per-cell limit for notebook tests, in seconds (a whole lesson should take about a minute).
CELL_TIMEOUT ?= 600
PYTEST_ARGS ?=

.PHONY: lab test tour install lint clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/minicomp lab

test: $(STAMP)
	$(VENV)/bin/ruff check minicomp tests lessons exercises solutions
	$(VENV)/bin/minicomp course check
	$(PY) -m pytest tests lessons exercises solutions --nbval-lax --nbval-cell-timeout=$(CELL_TIMEOUT) -p no:cacheprovider $(PYTEST_ARGS)

tour: $(STAMP)
	$(VENV)/bin/minicomp tour

lint: $(STAMP)
	$(VENV)/bin/ruff check minicomp tests lessons exercises solutions

clean-venv:
	rm -rf $(VENV)
