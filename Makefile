# `make run` serves the app on SQLite with a demo program; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint migrate seed serve clean bench-ledger bench-checkout bench-worker bench-reports

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.installed
	$(FLASK) db upgrade

seed: migrate
	$(FLASK) loyalty seed-demo

run: seed
	@echo "Serving on http://$(HOST):$(PORT)  (API docs: http://$(HOST):$(PORT)/docs)"
	$(FLASK) run --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Ledger figures on the machine's PostgreSQL: MEMBERS=100000 SECONDS=10 CLIENTS=8 by default.
bench-ledger: $(VENV)/.installed
	$(BIN)/python -m bench.ledger_bench --members $(or $(MEMBERS),100000) --seconds $(or $(SECONDS),10) \
		--clients $(or $(CLIENTS),8)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache

# Checkout over HTTP under gunicorn on PostgreSQL: MEMBERS=20000 SECONDS=10 CLIENTS=16 WORKERS=4 by default.
bench-checkout: $(VENV)/.installed
	$(BIN)/python -m bench.checkout_bench --members $(or $(MEMBERS),20000) --seconds $(or $(SECONDS),10) \
		--clients $(or $(CLIENTS),16) --workers $(or $(WORKERS),4)

# The worker on PostgreSQL: MEMBERS=100000 (10 lots each) SECONDS=30 EVENTS=2000 by default.
bench-worker: $(VENV)/.installed
	$(BIN)/python -m bench.worker_bench --members $(or $(MEMBERS),100000) --seconds $(or $(SECONDS),30) \
		--events $(or $(EVENTS),2000)

# Reports on PostgreSQL: summary (a month, a year) and liability at MEMBERS=1000000 (10 journal rows each).
bench-reports: $(VENV)/.installed
	$(BIN)/python -m bench.reports_bench --members $(or $(MEMBERS),1000000) --earns $(or $(EARNS),10)
