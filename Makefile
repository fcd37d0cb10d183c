# Every target does its own set-up on a fresh clone: a .venv with pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: install run test lint format bench screenshots clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## make run: the server on an embedded SQLite database with the demo configuration.
## The first run asks for the password of the admin UI's first super-admin ($(ADMIN_EMAIL)).
ADMIN_EMAIL ?= admin@example.com
run: install
	$(BIN)/llm-manager init --admin-email $(ADMIN_EMAIL)
	$(BIN)/llm-manager serve

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

## make test: lint, types, then the suite (SQLite always; PostgreSQL when LLM_MANAGER_TEST_POSTGRES_URL is set;
## the browser tests in tests/e2e when /usr/bin/chromium exists).
test: lint
	$(BIN)/pytest --cov --cov-report=term

format: install
	$(BIN)/ruff check --fix src tests bench scripts
	$(BIN)/ruff format src tests bench scripts

## make screenshots: every admin page, with generated demo data, as PNGs in docs/screenshots/ (needs Chromium).
screenshots: install
	$(BIN)/python scripts/screenshots.py

bench: install
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage
