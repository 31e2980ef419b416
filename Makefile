# Everyday verbs for tgjobs. `make` alone lists them; every verb builds .venv first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
comma := ,
# Extras for running, e.g. `make run EXTRAS=otel` (tracing); the test extra is make test's.
EXTRAS ?=
RUN_SPEC := .$(if $(EXTRAS),[$(EXTRAS)])
RUN_STAMP := $(VENV)/.installed-run$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS)))
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=
# queue-clean: which queue (default: every configured one), and how old finished jobs must be.
QUEUE ?=
GRACE ?= 24h
LIMIT ?= 10000

.DEFAULT_GOAL := help
.PHONY: help venv run-deps run test test-cluster ledger screenshot workers queue-status queue-clean redis-start redis-stop

help:
	@echo "make run           start Redis (embedded unless REDIS_URL is set) and the workers"
	@echo "make test          run the test suite, then its cluster part again on a Redis Cluster (PYTEST_ARGS='-k name')"
	@echo "make test-cluster  run the cluster part alone (TEST_REDIS=cluster)"
	@echo "make ledger        the long ledger test over faults (a few minutes)"
	@echo "make screenshot    run the dashboard's browser test and save its screenshot as docs/dashboard.png"
	@echo "make workers       run the workers against REDIS_URL"
	@echo "make queue-status  print queue depths, pending entries and dead letters"
	@echo "make queue-clean   delete completed and failed jobs finished over GRACE (24h) ago; QUEUE=name for one"
	@echo "make redis-start   run the embedded redis-server in the foreground"
	@echo "make redis-stop    stop the embedded redis-server (from another shell)"
	@echo "make venv          create .venv and install the project with its test extra"

# Each install runs again only when pyproject.toml is newer than its stamp. Running needs
# the package alone (plus EXTRAS); testing adds the test extra, which covers running too.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '$(RUN_SPEC)'
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(if $(EXTRAS),,$(RUN_STAMP))

venv: $(TEST_STAMP)
run-deps: $(RUN_STAMP)

run: run-deps
	$(BIN)/tgjobs up

# The engine, the workers and the API's job endpoints again, on a private 3-master Redis Cluster.
CLUSTER_TESTS := tests/test_traps.py tests/test_partitions.py tests/test_processes.py tests/test_admin.py \
	tests/test_fastpath.py tests/test_signals_sdk.py tests/test_api/test_api_seed.py \
	tests/test_api/test_api_stream_jobs.py tests/test_api/test_api_errors.py tests/test_api/test_api_signals.py
TEST_CLUSTER := TEST_REDIS=cluster $(BIN)/pytest -q $(PYTEST_ARGS) $(CLUSTER_TESTS)

test: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)
	$(TEST_CLUSTER)

test-cluster: venv
	$(TEST_CLUSTER)

ledger: venv
	$(BIN)/pytest -q -s -m ledger_long tests/test_ledger.py

screenshot: venv
	UPDATE_SCREENSHOT=1 $(BIN)/pytest -q tests/test_dashboard.py

workers: run-deps
	$(BIN)/tgjobs workers

queue-status: run-deps
	$(BIN)/tgjobs status

queue-clean: run-deps
	@set -e; queues="$(QUEUE)"; \
	if [ -z "$$queues" ]; then queues=$$($(BIN)/python -c 'from config import load_settings; print(" ".join(load_settings().queues))'); fi; \
	for q in $$queues; do \
		$(BIN)/tgjobs clean $$q --grace $(GRACE) --limit $(LIMIT) --type completed; \
		$(BIN)/tgjobs clean $$q --grace $(GRACE) --limit $(LIMIT) --type failed; \
	done

redis-start: run-deps
	$(BIN)/tgjobs redis

redis-stop: run-deps
	$(BIN)/tgjobs redis --stop
