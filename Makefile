# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration clean codegen

# The modules setup.py compiles (mypyc), read from its list (the quoted paths): a change to one
# needs a new build.
COMPILED := $(shell grep -o '"[a-z0-9_/]*\.py"' setup.py | tr -d '"')

$(STAMP): pyproject.toml setup.py $(COMPILED)
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
