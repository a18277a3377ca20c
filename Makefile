# The one entry point: `make run` and `make test` work on a fresh machine with nothing else installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint format bench clean redis-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m poller.demo

# The Redis tests start their own redis-server (issue 12): installed from the OS packages when
# missing and we can (root or passwordless sudo), else one sentence says how; never skipped.
redis-server:
	@sh scripts/ensure-redis-server

test: install redis-server
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check poller tests bench
	$(BIN)/ruff format --check poller tests bench
	$(BIN)/mypy --strict poller tests bench

format: install
	$(BIN)/ruff format poller tests bench
	$(BIN)/ruff check --fix poller tests bench

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
