# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench lint sample-data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/recorder certs init
	$(BIN)/recorder serve

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m recorder.bench

lint: install
	$(BIN)/ruff check recorder tests

sample-data: install
	rm -rf sample_data/1M0Y*
	$(BIN)/recorder simulate --devices 3 --duration 2 --seed 7 --profile mp_streaming_demo \
		--session-id 08e3ef2b-f8ab-4966-9f9e-92a908c29ce2 --out sample_data

clean:
	rm -rf $(VENV) .pytest_cache build dist
