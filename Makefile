# `make run` serves the app on SQLite with a demo program; `make test` runs the suite but its `slow` tests,
# `make test-all` all of it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test test-all lint fuzz migrate seed serve clean chromium bench bench-workers bench-scale bench-ledger bench-worker \
	bench-reports bench-profile bench-inactivity

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

# The console's browser tests drive Debian's Chromium (LOYALTY_CHROMIUM names another one).
CHROMIUM ?= $(or $(LOYALTY_CHROMIUM),/usr/bin/chromium)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

chromium:
	@test -x $(CHROMIUM) || { echo "Installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "No Chromium at $(CHROMIUM) for the browser tests: apt-get install chromium," \
		"or name one in LOYALTY_CHROMIUM" >&2; exit 1; }

# One pytest worker per core (pytest-xdist); each has a database of its own. PostgreSQL's tests use the
# machine's server (127.0.0.1:5432, user postgres) and skip, saying why, when none answers; `.ci/run` requires it.
PYTEST_ARGS ?= -n auto

# Every behaviour but the `slow` tests (the million-row report, the browser): a few minutes.
test: $(VENV)/.installed-dev chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Everything, the `slow` tests too.
test-all: $(VENV)/.installed-dev chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Ledger figures on the machine's PostgreSQL: MEMBERS=100000 SECONDS=10 CLIENTS=8 by default.
bench-ledger: $(VENV)/.installed
	$(BIN)/python -m bench.ledger_bench --members $(or $(MEMBERS),100000) --seconds $(or $(SECONDS),10) \
		--clients $(or $(CLIENTS),8)

# schemathesis against a live server on a scratch PostgreSQL database: 0 server errors and 0 responses the
# OpenAPI document does not describe, or it fails. FUZZ_SECONDS=240 FUZZ_EXAMPLES=100 by default.
fuzz: $(VENV)/.installed-dev
	BIN=$(BIN) tools/fuzz.sh

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache

# The API under gunicorn's production configuration on PostgreSQL, driven by wrk, each operation next to its
# ceiling (bench/raw_app.py, pgbench): MEMBERS=100000 SECONDS=15 CLIENTS=16; WORKERS=gunicorn.conf.py's.
# Exits 1 only when the database disagrees with what wrk counted or the ledger does not verify.
bench: $(VENV)/.installed
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.run --members $(or $(MEMBERS),100000) --seconds $(or $(SECONDS),15) \
		--clients $(or $(CLIENTS),16) $(if $(WORKERS),--workers $(WORKERS))

# Sync against gthread (--threads 4) workers, the same count: throughput, latency, CPU spread over workers;
# then sync workers at COUNTS=2,3,9.
bench-workers: $(VENV)/.installed
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.worker_model --members $(or $(MEMBERS),100000) --seconds $(or $(SECONDS),15) \
		--clients $(or $(CLIENTS),16) $(if $(WORKERS),--workers $(WORKERS)) $(if $(COUNTS),--counts $(COUNTS))

# Summary and hold cost against history size, 1 client and CLIENTS: SIZES=10000,100000,1000000 SECONDS=10.
SIZES ?= 10000,100000,1000000
bench-scale: $(VENV)/.installed
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.scale --sizes $(SIZES) --seconds $(or $(SECONDS),10) \
		--clients $(or $(CLIENTS),16) $(if $(WORKERS),--workers $(WORKERS))

# The worker on PostgreSQL: MEMBERS=100000 (10 lots each) SECONDS=30 EVENTS=2000 by default.
bench-worker: $(VENV)/.installed
	$(BIN)/python -m bench.worker_bench --members $(or $(MEMBERS),100000) --seconds $(or $(SECONDS),30) \
		--events $(or $(EVENTS),2000)

# Expiry after inactivity on PostgreSQL: MEMBERS=100000 (1,000,000 lots) idle 60 days, rules at 30; SECONDS=120.
bench-inactivity: $(VENV)/.installed
	$(BIN)/python -m bench.worker_bench --expiry inactivity --members $(or $(MEMBERS),100000) \
		--seconds $(or $(SECONDS),120)

# Reports on PostgreSQL: summary (a month, a year) and liability at MEMBERS=1000000 (10 journal rows each).
bench-reports: $(VENV)/.installed
	$(BIN)/python -m bench.reports_bench --members $(or $(MEMBERS),1000000) --earns $(or $(EARNS),10)

# Where one checkout request's time goes, in-process: CPU, Python calls, SQL statements per operation; PROFILE=1
# adds a pyinstrument profile of each. MEMBERS=5000 REQUESTS=300 OP=all by default.
bench-profile: $(VENV)/.installed-dev
	$(BIN)/python -m bench.profile_checkout --members $(or $(MEMBERS),5000) --requests $(or $(REQUESTS),300) \
		--op $(or $(OP),all) $(if $(PROFILE),--profile)
