# The two README commands: `make run` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check lint types unit integration bench ops-tools docs

# Debian's prometheus (with promtool), alertmanager (amtool) and docker-compose: the ops tests
# check the files with them and run a real Prometheus against a worker. Debian's chromium and
# chromedriver: the seller page's browser tests (never a browser download).
OPS_TOOLS := prometheus promtool amtool docker-compose chromium chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/starcast run --simulate

ops-tools:
	@for t in $(OPS_TOOLS); do command -v $$t >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
			prometheus prometheus-alertmanager docker-compose chromium chromium-driver >/dev/null; \
	fi

lint: $(BIN)/.installed
	$(BIN)/ruff check streams tests

types: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m unit

# Under a minute, no broker, no apt: lint, types and the unit tests.
check: lint types unit

integration: $(BIN)/.installed ops-tools
	$(BIN)/python -m pytest -q -m integration

# Everything, and what CI runs.
test: check integration

docs: $(BIN)/.installed
	$(BIN)/starcast config --markdown > docs/configuration.md

bench: $(BIN)/.installed
	$(BIN)/starcast bench
