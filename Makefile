# One command per gate. Python packages go into .venv; the real mail lab
# (Dovecot, Postfix) comes from Debian via tests/lab/install-servers.sh.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The bench's own environment: peer tools, pinned, kept out of maildiag's.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
SSLYZE_VERSION := 6.3.1
# The lowest declared version of every runtime dependency (tests/constraints-min.txt).
MIN_VENV := .venv-min
MIN_STAMP := $(MIN_VENV)/.installed
# The unit tests: all that need neither the real lab nor minutes of load
# (the fault suite and batch's many-domain runs stay with `make test`).
MIN_TESTS := -m "not lab" --ignore=tests/test_fault_suite.py --ignore=tests/test_batch.py

.PHONY: venv test test-min lint bench bench-env demo docs lab-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(BENCH_STAMP):
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet 'sslyze==$(SSLYZE_VERSION)'
	touch $(BENCH_STAMP)

bench-env: $(BENCH_STAMP)

lab-deps:
	bash tests/lab/install-servers.sh
	bash tests/lab/install-courier.sh
	bash tests/lab/install-exim.sh
	bash tests/lab/install-tools.sh

test: venv lab-deps
	$(PY) -m pytest

$(MIN_STAMP): pyproject.toml tests/constraints-min.txt
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --constraint tests/constraints-min.txt -e '.[test]'
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	MAILDIAG_MIN_VERSIONS=1 $(MIN_VENV)/bin/python -m pytest $(MIN_TESTS)

lint: venv
	$(VENV)/bin/ruff check maildiag tests
	$(VENV)/bin/ruff format --check maildiag tests
	$(VENV)/bin/mypy maildiag

bench: venv lab-deps bench-env
	$(PY) -m tests.bench

demo: venv
	$(PY) -m tests.lab.demo

docs: venv
	$(PY) -m tests.update_docs

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(MIN_VENV) build *.egg-info
