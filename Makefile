# ChargeShed: `make run` sets up and serves the demo; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app chargeshed
CATALOGUES := $(wildcard chargeshed/translations/*/LC_MESSAGES/messages.po)
# The built-in SECRET_KEY and in-memory rate limits are refused unless this says demo (or test).
export CHARGESHED_ENV ?= demo

# `make run PORT=8080` serves elsewhere; QR codes follow (PUBLIC_BASE_URL defaults to the same port).
PORT ?= 5000

.PHONY: run test install translations migrate demo worker serve lint bench clean

# The simulated curve runs SIM_SPEED times faster (a whole charge ends by itself in about two minutes).
DEMO_SIM_SPEED ?= 240

run: install translations migrate demo
	SIM_SPEED=$${SIM_SPEED:-$(DEMO_SIM_SPEED)} WORKER_INTERVAL_SECONDS=$${WORKER_INTERVAL_SECONDS:-2} \
		PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://127.0.0.1:$(PORT)} \
		$(FLASK) serve --host 127.0.0.1 --port $(PORT) --with-worker

test: install translations
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

translations: install $(CATALOGUES:.po=.mo)

%.mo: %.po
	$(BIN)/pybabel compile --use-fuzzy -i $< -o $@

migrate: install
	$(FLASK) db upgrade

demo: install
	SIM_SPEED=$${SIM_SPEED:-$(DEMO_SIM_SPEED)} $(FLASK) demo

worker: install
	$(FLASK) worker

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Prints figures (see bench/README.md); pay_page.py needs wrk, settlement_month.py loads for ~2 minutes.
BENCHES := supervisor_tick occupancy webhook_to_start pay_page settlement_month

bench: install
	for name in $(BENCHES); do $(BIN)/python bench/$$name.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
