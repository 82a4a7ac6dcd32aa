# Two entry points for a fresh machine; each one sets up the virtualenv it needs.
#   make demo   label the bundled sample images on the embedded default (local Ray, local files, CPU)
#   make test   run the test suite (CPU; starts its own local Ray and moto S3 server)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,onnx,yolo,train

.PHONY: setup demo test lint

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python -m jobs.label --config jobs/configs/demo.yaml --input tests/data/images --output out/demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
