# foojob — `make run` to watch it work, `make test` to prove it does.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --quiet --disable-pip-version-check

# The venv belongs to the Python that made it. With another PYTHON (python3.13 after python3.11, or
# a Python since removed) it is made again instead of being reused broken: each venv carries a stamp
# naming its maker, and a missing stamp means "check, and rebuild if it was another".
PY_ID_CODE := import sys; print(sys.implementation.name + "-" + ".".join(map(str, sys.version_info[:2])))
PYTHON_ID  := $(shell $(PYTHON) -c '$(PY_ID_CODE)' 2>/dev/null)
VENV_STAMP := $(VENV)/.made-by-$(PYTHON_ID)

# pgserver (the embedded PostgreSQL) has wheels for CPython 3.11-3.12 on x86-64 Linux and macOS
# only: elsewhere foojob installs without it and runs against DATABASE_URL.
NO_EMBEDDED = echo "make: the embedded PostgreSQL (foojob[embedded]: pgserver) has no wheel for $(PYTHON_ID) on \
	this platform ($(VENV)/pip-embedded.log says why); installing without it: set DATABASE_URL"

.PHONY: run test lint lock bench chaos clean

$(VENV_STAMP):
	@test -n "$(PYTHON_ID)" || { echo "make: PYTHON=$(PYTHON) does not run: point it at a Python 3.11+ (PYTHON=python3.12 make run)"; exit 2; }
	@if [ "$$($(BIN)/python -c '$(PY_ID_CODE)' 2>/dev/null)" != "$(PYTHON_ID)" ]; then \
	  if [ -e $(VENV) ]; then echo "make: $(VENV) was made by another Python: making it again with $(PYTHON) ($(PYTHON_ID))"; fi; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	fi
	@touch $@

$(VENV)/.installed-run: pyproject.toml $(VENV_STAMP)
	@echo "pip install -e '.[embedded]'  (into $(VENV), $(PYTHON_ID))"
	@$(PIP) install --only-binary pgserver -e '.[embedded]' > $(VENV)/pip-embedded.log 2>&1 \
	  || { $(NO_EMBEDDED); $(PIP) install -e .; }
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV_STAMP)
	@echo "pip install -e '.[dev,embedded]'  (into $(VENV), $(PYTHON_ID))"
	@$(PIP) install --only-binary pgserver -e '.[dev,embedded]' > $(VENV)/pip-embedded.log 2>&1 \
	  || { $(NO_EMBEDDED); $(PIP) install -e '.[dev]'; }
	@touch $@ $(VENV)/.installed-run

# `make run`: embedded PostgreSQL under ./.data (unless DATABASE_URL is set), results on stdout
# (unless SLACK_WEBHOOK_URL is set), the job every 3 seconds (unless FOOJOB_CRON is set to
# something: set but empty counts as unset, as it does for foojob itself).
run: $(VENV)/.installed-run
	FOOJOB_CRON='$(or $(strip $(FOOJOB_CRON)),*/3 * * * * *)' $(BIN)/python -m bot

# The tests use TEST_DATABASE_URL, else an embedded PostgreSQL, which needs pgserver.
test: $(VENV)/.installed-dev
	@if [ -z "$$TEST_DATABASE_URL" ] && ! $(BIN)/python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("pgserver") is None)'; then \
	  echo "make test: no embedded PostgreSQL on $(PYTHON_ID) here: set TEST_DATABASE_URL=postgresql://user@host:5432/dbname"; exit 2; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# requirements.txt: the exact versions deploys install, resolved from pyproject.toml for the Python
# that deploys use (.python-version), without the embedded extra (deploys set DATABASE_URL).
# Keeps the pins that still fit; `make lock LOCK_ARGS=--upgrade` takes the newest of everything.
lock: $(VENV)/.installed-dev
	@test "$(PYTHON_ID)" = "cpython-$$(cat .python-version)" || { \
	  echo "make lock: deploys run Python $$(cat .python-version) (.python-version): run it as PYTHON=python$$(cat .python-version) make lock"; exit 2; }
	CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.txt $(LOCK_ARGS) pyproject.toml

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	@echo "pip install -e '.[bench]'  (matplotlib, for the picture)"
	@$(PIP) install -e '.[bench]'
	@touch $@

# Not part of `make test`: about five minutes of measurements, printed as tables and written to
# bench/results/ (latest.json and latest.png are the ones docs/performance.md quotes). BENCH_ARGS="--only
# replicas,idle" runs some phases only (and leaves latest.* alone).
bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Replicas of the real service under faults (SIGKILL, SIGSTOP, database cuts, schedule changes,
# pauses, skips) for CHAOS_S seconds (300), CHAOS_REPLICAS replicas (3); CHAOS_SEED replays a run.
# A 60 s run is part of `make test` (tests/test_chaos.py).
chaos: $(VENV)/.installed-dev
	$(BIN)/python bench/chaos.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check bot jobs tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
