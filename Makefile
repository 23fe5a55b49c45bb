# Two entry points, both self-contained on a fresh machine with Python 3.11:
#   make demo  - train -> export -> serve (embedded) -> predict --plot, end to end
#   make test  - the whole test suite
#   make ui    - after make demo: serve its model and open `mlserve ui` (draw a digit in the browser)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test ui install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	MLSERVE_HOME=$${MLSERVE_HOME:-$(CURDIR)/out/demo} MLSERVE=$(CURDIR)/$(BIN)/mlserve \
		bash examples/demo.sh

ui: $(STAMP)
	MLSERVE_HOME=$${MLSERVE_HOME:-$(CURDIR)/out/demo} MLSERVE=$(CURDIR)/$(BIN)/mlserve \
		bash examples/ui.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
