# Switchboard. `make run` serves the whole product on http://127.0.0.1:$(PORT); `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
export PORT

.PHONY: run test lint format install install-dev migrate demo clean bench-nlu

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Switchboard needs Python 3.11 or newer (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	DJANGO_SETTINGS_MODULE=contactcenter.settings.dev $(BIN)/python manage.py migrate --noinput

# One process: ASGI (HTTP + websockets), in-process Celery worker and beat, SQLite unless DATABASE_URL is set.
run: migrate
	DJANGO_SETTINGS_MODULE=contactcenter.settings.dev $(BIN)/python manage.py load_demo
	DJANGO_SETTINGS_MODULE=contactcenter.settings.dev $(BIN)/python manage.py serve --port $(PORT)

test: install-dev
	DJANGO_SETTINGS_MODULE=contactcenter.settings.test $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-nlu: install
	$(BIN)/python manage.py nlu_eval ../shared/data/clinc150/clinc150_dev.json --mode full

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles .pytest_cache
