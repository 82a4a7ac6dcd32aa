# Two entry points for a fresh machine; each one sets up the virtualenv it needs.
#   make demo   label generated shapes with the trained demo model on the embedded default (local Ray, local files,
#               CPU) and print its evaluation against the committed validation number
#   make test   run the test suite (CPU; starts its own local Ray and moto S3 server)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,onnx,yolo,train,text

.PHONY: setup browser demo test lint

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/.installed

# The demo: generated shapes (validation split), labeled from their GT boxes by the committed demo model, then scored.
DEMO := out/demo
demo: setup
	$(BIN)/samlabel shapes --out $(DEMO)/shapes --split val --num-images 200 --seed 1
	$(BIN)/samlabel label --config jobs/configs/demo.yaml --input $(DEMO)/shapes/val \
	  --prompts-file $(DEMO)/shapes/val.json --output $(DEMO)/labels
	$(BIN)/samlabel evaluate --gt $(DEMO)/shapes/val.json --labels $(DEMO)/labels --protocols box \
	  --compare pipeline/models/weights/demo_shapes.json --output $(DEMO)/evaluation.json

# The review report's screenshot test drives a headless Chromium (Debian package); installed when missing and possible.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium could not be installed; the report screenshot test will be skipped"

test: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
