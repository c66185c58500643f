# Two commands do all the set-up: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs what running needs, `make test` and `make lint` the dev tools too.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# Without any webhook secret in the environment, `make run` is a local trial: unsigned deliveries
# are accepted (and a warning says so). With a secret set, its tracker alone is enabled (unless
# SOPGUARD_TRACKERS says otherwise) and its signatures are required.
SECRETS := $(GITHUB_WEBHOOK_SECRET)$(SOPGUARD_GITHUB_WEBHOOK_SECRET)$(JIRA_WEBHOOK_SECRET)$(SOPGUARD_JIRA_WEBHOOK_SECRET)
# Tracker credentials without a secret are not a trial: `serve` refuses to start, naming the secret.
CREDENTIALS := $(GITHUB_TOKEN)$(GITHUB_APP_ID)$(JIRA_URL)$(JIRA_API_TOKEN)$(JIRA_PAT)
RUN_FLAGS ?= $(if $(SECRETS)$(CREDENTIALS),,--insecure-dev)

.PHONY: install run test test-servers lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) --upgrade pip
	$(PIP) -e .
	touch $@

# The dev extras include the package itself, so this stamp stands for both.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev]'
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/sopguard serve $(RUN_FLAGS)

lint: $(DEV_STAMP)
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
