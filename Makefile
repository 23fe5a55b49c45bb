# Two entry points, both self-contained on a fresh machine with Python 3.11:
#   make demo  - train -> export -> serve (embedded) -> predict --plot, end to end
#   make test  - the whole test suite
#   make ui    - after make demo: serve its model and open `mlserve ui` (draw a digit in the browser)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
STAMP   := $(VENV)/.installed-test

.PHONY: demo test ui install clean

# The runtime set alone (what `pip install mlserve` gives a user): enough for `make demo`.
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(RUNTIME)

# Plus the test tools (the `test` extra) and the benchmark baselines (`bench`).
$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install -q -e ".[bench,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(RUNTIME)
	MLSERVE_HOME=$${MLSERVE_HOME:-$(CURDIR)/out/demo} MLSERVE=$(CURDIR)/$(BIN)/mlserve \
		bash examples/demo.sh

ui: $(RUNTIME)
	MLSERVE_HOME=$${MLSERVE_HOME:-$(CURDIR)/out/demo} MLSERVE=$(CURDIR)/$(BIN)/mlserve \
		bash examples/ui.sh

test: $(STAMP)
	$(BIN)/ruff check mlserve tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
