# Two entry points for a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: quickstart test test-all install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject (torch==2.13.0, the local CPU wheel here)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	@$(PY) -c "import torch, transformers, lmforge.cli; from importlib.metadata import version; print(f'installed: lmforge {version(\"lmforge\")}, torch {torch.__version__} (CUDA: {torch.cuda.is_available()}), transformers {transformers.__version__}, in $(VENV)')"
	$(VENV)/bin/lmforge run quickstart
	$(VENV)/bin/lmforge generate runs/quickstart/pretrain --prompt "Return the" --max-new-tokens 60

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 tests

test-all: $(STAMP)
	LMFORGE_SLOW=1 $(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/bench_data.py

clean:
	rm -rf runs .pytest_cache
