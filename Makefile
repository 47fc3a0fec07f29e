# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration clean codegen

# setup.py compiles these modules (mypyc): a change to one needs a new build.
$(STAMP): pyproject.toml setup.py dispatcher/_hpack.py dispatcher/_h2transport.py dispatcher/_apns.py \
          dispatcher/_loop.py pushline/consumer_service.py schemas/_avro_prims.py schemas/_avro_generated.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pushline demo

test: $(STAMP) lint typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info dispatcher/*.so schemas/*.so *__mypyc*.so

# schemas/_avro_generated.py: the codec generated from the Avro schemas and event classes
codegen: $(STAMP)
	$(BIN)/python -c 'from schemas._fastcodec import write_generated_module as w; print("wrote", w())'
