# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install install-test system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python system-deps
	$(BIN)/pip install --quiet -e '.[test,postgres]'

# Dovecot is the real IMAP server the integration tests start on loopback; chromium the real
# browser of the console's browser test.
system-deps:
	@command -v dovecot >/dev/null 2>&1 || { \
	  echo "installing dovecot-imapd (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; }
	@command -v openssl >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
	@# Debian's chromium, driven by Playwright in tests/test_web_browser.py (no browser download).
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: install
	$(BIN)/mailbot demo --dir demo

test: install-test
	$(BIN)/ruff check mailbot tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest -q

bench: install-test
	$(BIN)/python benchmarks/imap_throughput.py

clean:
	rm -rf $(VENV) demo var build *.egg-info .pytest_cache
