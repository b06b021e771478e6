# Two entry points for a fresh clone: `make demo` and `make test`. Both create the venv on first use.
# `make demo PORT=8080` serves on another port.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: demo test lint venv

venv: $(VENV)/.installed

# The first install takes a few minutes (torch alone is several hundred MB); pip prints what it fetches.
$(VENV)/.installed: pyproject.toml
	@echo "== creating $(VENV) and installing videoseek with its pinned dependencies"
	@echo "== (first time only: a few minutes, most of it torch; later runs reuse $(VENV))"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@
	@echo "== installed: use $(BIN)/videoseek, or 'source $(BIN)/activate' to have videoseek on PATH"

demo: venv
	$(BIN)/videoseek demo --port $(PORT)

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
