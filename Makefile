# Two commands do everything: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
FP     := $(VENV)/bin/fieldproof

.PHONY: run test bench venv up down clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

up: venv
	$(FP) db up

run: up
	$(FP) migrate
	$(FP) demo
	$(PY) -m api.supervise

test: up
	$(PY) -m pytest

bench: up
	$(PY) -m bench.run

down: venv
	$(FP) db down

clean: down
	rm -rf .data
