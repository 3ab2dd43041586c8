# foojob — `make run` to watch it work, `make test` to prove it does.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# `make run`: embedded PostgreSQL under ./.data (unless DATABASE_URL is set), results on stdout
# (unless SLACK_WEBHOOK_URL is set), the job every 3 seconds (unless FOOJOB_CRON is set).
export FOOJOB_CRON ?= */3 * * * * *

.PHONY: run test lint bench clean

$(VENV)/.installed-run: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/python -m bot

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Not part of `make test`: about two minutes of measurements, printed as a table and written
# to bench/results/ (latest.json is the one the README quotes).
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check bot jobs tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
