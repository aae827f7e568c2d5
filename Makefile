# minicomp: one command to open the course, one to test it.
#
#   make lab     create .venv if needed, install, open JupyterLab on the start page
#   make test    create .venv if needed, install, run every test (notebooks included)
#   make tour    the end-to-end demonstration in the terminal, with a results table
#
# torch is never pinned here, and installed only when .venv has none: any build you put there
# yourself is kept. To choose the build, for example the CPU-only wheel on Linux:
#   make lab TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
# `make lab` and `make tour` install the course's packages; `make test` adds the test tools.

PYTHON ?= python3
VENV   ?= .venv
# On Linux without an NVIDIA driver (no nvidia-smi), PyPI's torch is a CUDA build of several GB
# that cannot be used: take the CPU build instead. Elsewhere (macOS, Windows, a GPU machine),
# plain torch is the right build. TORCH=... (above) overrides this.
TORCH_AUTO := $(shell if [ "$$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; \
                then echo "torch --index-url https://download.pytorch.org/whl/cpu"; else echo torch; fi)
TORCH  ?= $(TORCH_AUTO)
PY     := $(VENV)/bin/python
COURSE := $(VENV)/.minicomp-course
DEV    := $(VENV)/.minicomp-dev
# Per-cell limit for notebook tests, in seconds (a whole lesson should take about a minute).
CELL_TIMEOUT ?= 600
# Processes for the tests in tests/ (pytest-xdist; 0: in this process): the CPU's cores, at most 4.
# The notebooks run after them one at a time, since the lessons time their kernels.
TEST_JOBS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))" 2>/dev/null || echo 2)
PYTEST_ARGS ?=

.PHONY: lab test tour install lint clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

define install_torch
	@$(PY) -c "import torch" 2>/dev/null || { echo "installing $(TORCH)"; $(PY) -m pip install $(TORCH) || \
	  { echo "error: could not install $(TORCH); choose a build yourself, e.g. make TORCH=torch" >&2; exit 1; }; }
endef

# learners: the course (JupyterLab, the models, the kernels); tests and linters come with `make test`
$(COURSE): pyproject.toml | $(PY)
	$(install_torch)
	$(PY) -m pip install -e ".[course]"
	@touch $(COURSE)

$(DEV): pyproject.toml | $(PY)
	$(install_torch)
	$(PY) -m pip install -e ".[dev]"
	@touch $(COURSE) $(DEV)

install: $(COURSE)

lab: $(COURSE)
	$(VENV)/bin/minicomp lab

test: $(DEV)
	$(VENV)/bin/ruff check minicomp tests lessons exercises solutions
	$(VENV)/bin/minicomp course check
	$(PY) -m pytest tests -n $(TEST_JOBS) -p no:cacheprovider $(PYTEST_ARGS)
	$(PY) -m pytest lessons exercises solutions --nbval-lax --nbval-cell-timeout=$(CELL_TIMEOUT) -p no:cacheprovider $(PYTEST_ARGS)

tour: $(COURSE)
	$(VENV)/bin/minicomp tour

lint: $(DEV)
	$(VENV)/bin/ruff check minicomp tests lessons exercises solutions

clean-venv:
	rm -rf $(VENV)
