# Two commands do all the set-up: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Without any webhook secret in the environment, `make run` is a local trial: unsigned deliveries
# are accepted (and a warning says so). With a secret set, signatures are required.
RUN_FLAGS ?= $(if $(GITHUB_WEBHOOK_SECRET)$(JIRA_WEBHOOK_SECRET),,--insecure-dev)

.PHONY: install run test test-servers lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/sopguard serve $(RUN_FLAGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# PostgreSQL, Redis (and Chromium unless SOPGUARD_TEST_BROWSER=0) from Debian's packages, when
# missing; the tests start and stop the servers themselves (tests/servers/plugin.py).
test-servers:
	bash tests/servers/install.sh

test: lint test-servers
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
