# The two commands a user needs: `make run` and `make test`. Both install what they need
# first (a pinned uv in .tools/, then the locked dependencies into .venv/), so either may be
# the first command run on a fresh clone. Only Python 3.11+ must already be on the machine.
# `make run` installs only what serving needs; test, lint, format and bench add the
# development tools (the `dev` group).

PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# The suite runs on two pytest-xdist workers per core (each worker has a database of its
# own); many tests wait on processes they start, so a core serves two. On two cores CI's
# embedded stage took 6 min 18 s with four workers, 8 min with two. TEST_WORKERS=0 runs
# it in this one process.
TEST_WORKERS ?= $(shell echo $$(( $$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1) * 2 )))
# An idle worker takes tests queued for a busy one: the slow tests (a replica, a served
# process) otherwise left the others idle at the end (embedded stage 309 -> 280 s).
DIST := $(if $(filter 0,$(TEST_WORKERS)),,--dist worksteal)
BENCH_ARGS ?=
UV_VERSION := 0.13.9

TOOLS := .tools
UV := $(TOOLS)/bin/uv
# Another interpreter gets an environment of its own: CI runs the suite once more on the
# newest Python of the machine, `make test PYTHON=python3.13 VENV=.venv-3.13`.
VENV ?= .venv
# One stamp per set installed. The serving set is synced with --inexact: it never removes
# the development tools a `make test` installed, so neither stamp undoes the other.
STAMP := $(VENV)/.installed-stamp
RUN_STAMP := $(VENV)/.run-installed-stamp

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Installed packages come with their bytecode. Where PYTHONDONTWRITEBYTECODE is set (as on
# CI machines and in many containers), Python never caches it, and every process compiled
# SQLAlchemy, FastAPI, Pydantic and Alembic again: `users-api migrate` spent 1.3 of its
# 2.1 CPU seconds compiling, and the test suite starts hundreds of such processes.
export UV_COMPILE_BYTECODE := 1

.PHONY: install run test lint format bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

$(RUN_STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --no-dev --inexact --python $(PYTHON)
	@touch $@

install: $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/users-api serve --host $(HOST) --port $(PORT)

# The suite starts hundreds of Python processes (workers, `serve`, the CLI): they share one
# bytecode cache inside .venv/, written even where PYTHONDONTWRITEBYTECODE is set (each
# pytest worker otherwise compiled and rewrote every module again: 9.5 s of CPU to
# collect, 5.0 s from the cache), and the source tree stays free of __pycache__.
test: install
	PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX="$(abspath $(VENV))/pycache" \
		$(VENV)/bin/pytest -n $(TEST_WORKERS) $(DIST) $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Load benchmark (issue 5): users-api vs a raw-asyncpg ceiling and a tutorial implementation.
# Needs wrk (installed with apt-get when run as root) and PostgreSQL at 127.0.0.1:5432;
# e.g. `make bench BENCH_ARGS=--quick`. See bench/README.md.
bench: install
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .coverage
