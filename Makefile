# The two commands: `make dev` and `make test`. Both install what they need into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test install browser clean

dev: $(STAMP)
	$(PY) -m devserver

test: $(STAMP) browser
	$(PY) -m pytest

# Chromium for the browser tests of web/ (tests/e2e/test_web_browser.py): Debian's package where
# we may install it; elsewhere those tests are skipped, and pytest's summary says why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; } || \
		echo "could not install chromium: the browser tests will be skipped"; \
	else \
		echo "no chromium, and not root with apt-get: the browser tests will be skipped"; \
	fi

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV) .dev .pytest_cache
