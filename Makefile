# One-command set-up: every target below creates .venv on first use.
# torch is installed first and pinned: on machines with the local CPU wheel (torch==2.13.0) this
# avoids a multi-GB CUDA download; override with `make TORCH_SPEC="torch==2.x" ...` elsewhere.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sum_monai-installed

.PHONY: demo test test-slow lint bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sum-monai demo

lint: $(STAMP)
	$(VENV)/bin/ruff check sum_monai tests bench bundles

test: $(STAMP) lint
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) -m bench all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo_output
