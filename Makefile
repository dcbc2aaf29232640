# Everything a newcomer needs: `make up` runs the system, `make test` proves it.
# Both create .venv from the lock file on first use; only Python 3.11+ (and Node 20
# for the JavaScript interop tests) must already be on the machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS := tests/interop/js
JS_STAMP := $(JS)/node_modules/.installed

.PHONY: up test check lint format bench lock clean

# The editable install builds the optional C accelerators (the codec's, the HTTP header fields'); a change rebuilds.
SPEEDUPS := src/eventaudit/events/_speedups.c src/eventaudit/_httpspeedups.c

$(STAMP): pyproject.toml requirements.lock setup.py $(SPEEDUPS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

up: $(STAMP)  ## set up and run the system: users :3000, audit :8080, the relay between them
	$(BIN)/eventaudit up

check: $(STAMP)  ## format, lint, types, import contracts
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check $(JS_STAMP)  ## everything CI runs
	# four workers, a file each at a time: the suite mostly waits (Kafka group joins, real servers, timeouts)
	$(BIN)/python -m pytest -n 4 --dist loadfile
	# the codec and the HTTP protocol again without their C accelerators: the pure-Python references must pass on their own
	EVENTAUDIT_PURE_PYTHON=1 $(BIN)/python -m pytest -q tests/unit/events tests/unit/test_httpheaders.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## benchmarks next to their baselines; see docs/benchmarks.md (bench.ingest and bench.users need wrk)
	$(BIN)/python -m bench.codec
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.users
	$(BIN)/python -m bench.kafka

lock:  ## re-pin requirements.lock from pyproject.toml (needs uv: pip install uv)
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes --universal -o requirements.lock

clean:
	rm -rf $(VENV) $(JS)/node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis .schemathesis build src/*.egg-info
	rm -f src/eventaudit/events/_speedups.*.so src/eventaudit/_httpspeedups.*.so
