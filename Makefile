# make demo: create .venv, install osteolens, run the demo on the synthetic phantom cohort.
# make test: create .venv, install with dev extras (and Debian's chromium, dicom3tools, postgresql), run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -n 2

.PHONY: demo test install install-dev chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# Browser tests drive Debian's chromium (never 'playwright install').
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: browser tests will be skipped"; \
	fi
	@# The DICOM writer's tests validate files with dicom3tools' dciodvfy.
	@if ! command -v dciodvfy >/dev/null && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools >/dev/null) \
		|| echo "dicom3tools could not be installed: the dciodvfy tests will be skipped"; \
	fi
	@# Shared Optuna studies are tested on a PostgreSQL server that the tests start with initdb / pg_ctl.
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		&& [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "postgresql could not be installed: the PostgreSQL tests will be skipped"; \
	fi

demo: install
	$(BIN)/osteolens demo --out demo_output

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: install-dev chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

clean:
	rm -rf demo_output runs test-artifacts .pytest_cache
