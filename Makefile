# Everyday verbs for tgjobs. `make` alone lists them; every verb builds .venv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# queue-clean: which queue (default: every configured one), and how old finished jobs must be.
QUEUE ?=
GRACE ?= 24h
LIMIT ?= 10000

.DEFAULT_GOAL := help
.PHONY: help venv run test screenshot workers queue-status queue-clean redis-start redis-stop

help:
	@echo "make run           start Redis (embedded unless REDIS_URL is set) and the workers"
	@echo "make test          run the test suite (extra flags: PYTEST_ARGS='-k name')"
	@echo "make screenshot    run the dashboard's browser test and save its screenshot as docs/dashboard.png"
	@echo "make workers       run the workers against REDIS_URL"
	@echo "make queue-status  print queue depths, pending entries and dead letters"
	@echo "make queue-clean   delete completed and failed jobs finished over GRACE (24h) ago; QUEUE=name for one"
	@echo "make redis-start   run the embedded redis-server in the foreground"
	@echo "make redis-stop    stop the embedded redis-server (from another shell)"
	@echo "make venv          create .venv and install the project with its test extras"

venv: $(STAMP)

# Reinstall only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: venv
	$(BIN)/tgjobs up

test: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)

ledger: venv
	$(BIN)/pytest -q -s -m ledger_long tests/test_ledger.py

screenshot: venv
	UPDATE_SCREENSHOT=1 $(BIN)/pytest -q tests/test_dashboard.py

workers: venv
	$(BIN)/tgjobs workers

queue-status: venv
	$(BIN)/tgjobs status

queue-clean: venv
	@set -e; queues="$(QUEUE)"; \
	if [ -z "$$queues" ]; then queues=$$($(BIN)/python -c 'from config import load_settings; print(" ".join(load_settings().queues))'); fi; \
	for q in $$queues; do \
		$(BIN)/tgjobs clean $$q --grace $(GRACE) --limit $(LIMIT) --type completed; \
		$(BIN)/tgjobs clean $$q --grace $(GRACE) --limit $(LIMIT) --type failed; \
	done

redis-start: venv
	$(BIN)/tgjobs redis

redis-stop: venv
	$(BIN)/tgjobs redis --stop
