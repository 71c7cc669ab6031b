# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint lint-imports typecheck venv deps dev-deps worker clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.deps

deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

## Set up and serve the control plane (UI, API, websockets) with daphne on http://$(HOST):$(PORT)
run: export PUBLIC_URL ?= http://$(HOST):$(PORT)
run: deps
	$(BIN)/python manage.py migrate --no-input -v0
	$(BIN)/python manage.py collectstatic --no-input -v0
	$(BIN)/python manage.py bootstrap
	$(BIN)/daphne --websocket_timeout -1 -e tcp:port=$(PORT):interface=$(HOST):backlog=4096 controlplane.asgi:application

## Run the whole test suite (installs what it needs; Chromium from Debian if missing)
test: dev-deps
	./scripts/ensure-chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The layers of docs/architecture.md, held by import-linter (contracts in .importlinter).
lint-imports: dev-deps
	$(BIN)/lint-imports --no-cache

# Services, selectors and logic of every app, type-checked (mypy + django-stubs).
TYPECHECK_PATHS = $(wildcard */services.py */services */selectors.py */selectors */logic)
typecheck: dev-deps
	$(BIN)/mypy --config-file .ci/mypy.ini $(TYPECHECK_PATHS)

## Connector fleet benchmark, daphne vs uvicorn at N=1,000 and 10,000 (~5 min; docs/benchmarks.md). BENCH_ARGS=--quick
.PHONY: bench-connectors
bench-connectors: dev-deps
	$(BIN)/python -m bench.connectors $(BENCH_ARGS)

## The edge role alone (public hostnames + connector websockets) under uvicorn on $(EDGE_HOST):$(EDGE_PORT)
EDGE_HOST ?= 127.0.0.1
EDGE_PORT ?= 8080
.PHONY: edge
edge: deps
	$(BIN)/python scripts/edge --host $(EDGE_HOST) --port $(EDGE_PORT)

## A Celery worker (production topology: set REDIS_URL)
worker: deps
	$(BIN)/celery -A controlplane worker -B -l info

clean:
	rm -rf $(VENV) staticfiles

## Access benchmark: decide() per request, and "Send me a code" to the email through Celery on Redis and SMTP
## (~2 min; docs/benchmarks.md; Redis db 10 at 127.0.0.1:6379, BENCH_ARGS=--redis URL). BENCH_ARGS=--quick
.PHONY: bench-access
bench-access: dev-deps
	$(BIN)/python -m bench.access $(BENCH_ARGS)

## Edge benchmark: direct vs nginx proxy vs our edge (uvicorn, daphne) + one connector (~3 min; docs/benchmarks.md).
## Installs wrk and nginx from Debian when run as root. BENCH_ARGS=--quick for < 1 minute.
.PHONY: bench-edge
bench-edge: dev-deps
	@if ! command -v wrk >/dev/null || ! { command -v nginx >/dev/null || test -x /usr/sbin/nginx; }; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk nginx; \
		else echo "bench-edge needs wrk and nginx: run 'sudo apt-get install -y wrk nginx' (Debian), then again"; exit 2; fi; \
	fi
	$(BIN)/python -m bench.edge $(BENCH_ARGS)

## Origin CA benchmark: issuing jobs/s with one Celery worker and Create→PEM p95 (~3 min; needs Redis; flushes
## BENCH_REDIS_URL's database; docs/benchmarks.md).
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/12
.PHONY: bench-certificates
bench-certificates: dev-deps
	$(BIN)/python -m bench.certificates --redis-url $(BENCH_REDIS_URL) $(BENCH_ARGS)

## API benchmark: the API and the UI against a trivial Django view served alike, c=1 and c=20 (~4 min;
## docs/benchmarks.md). Needs wrk. BENCH_ARGS=--quick for < 2 minutes, --workers 2, --server daphne.
.PHONY: bench-api
bench-api: dev-deps
	@command -v wrk >/dev/null || { echo "bench-api needs wrk: run 'sudo apt-get install -y wrk' (Debian), then again"; exit 2; }
	$(BIN)/python -m bench.api $(BENCH_ARGS)

# The same endpoints in process, with instructions per request counted by valgrind (steady on a busy machine).
.PHONY: bench-api-step
bench-api-step: dev-deps
	@command -v valgrind >/dev/null || { echo "bench-api-step needs valgrind: run 'sudo apt-get install -y valgrind' (Debian), then again"; exit 2; }
	$(BIN)/python -m bench.api.step --callgrind $(BENCH_ARGS)
