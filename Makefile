# `make demo` and `make test` set everything up on a fresh machine (Python 3.11, Java 17+) and run.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0

.PHONY: demo test lint install java dist clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

java:
	@scripts/check_java.sh

demo: install java
	$(BIN)/python scripts/demo.py

test: install java
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

# What a cluster needs (docs/cluster.md): the wheel (install it on every node, or in the image), the same wheel as
# dist/slm_pretrain.zip for --py-files (a pure-Python wheel is a zip with the packages at its root, which is what
# zipimport reads), and the spark-submit entry file. build/ goes first: setuptools would pack its stale files too.
dist: install
	rm -rf build dist
	$(BIN)/python -m pip wheel --no-deps -w dist .
	cp dist/slm_pretrain-*.whl dist/slm_pretrain.zip
	cp spark_jobs/submit.py dist/submit.py

clean:
	rm -rf out runs dist build *.egg-info
