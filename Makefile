# One command per gate. Everything installs into .venv; the real mail lab
# (Dovecot, Postfix) is installed from Debian by tests/lab/install-servers.sh.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint bench demo lab-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lab-deps:
	bash tests/lab/install-servers.sh

test: venv lab-deps
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check maildiag tests
	$(VENV)/bin/mypy maildiag

bench: venv
	$(PY) -m tests.bench

demo: venv
	$(PY) -m tests.lab.demo

clean:
	rm -rf $(VENV) build *.egg-info
