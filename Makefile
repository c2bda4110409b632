# The two commands a user needs are `make run` and `make test`; everything else
# here is what those two are made of.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_UP  := pg_isready -q -h 127.0.0.1 -p 5432

.PHONY: run test lint typecheck unit bench bench-query bench-cold bench-http bench-alerts proto install postgres clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/otlpd serve

# The suite talks to a PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), or to the
# server OTLPD_TEST_PG names. When the local one is down, start the Debian cluster that
# listens on 5432, whichever version it is and however many clusters are installed.
postgres:
	@if [ -n "$$OTLPD_TEST_PG" ]; then exit 0; fi; \
	if command -v pg_isready >/dev/null && $(PG_UP); then exit 0; fi; \
	if ! command -v pg_lsclusters >/dev/null; then \
	  echo "make test needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), or"; \
	  echo "OTLPD_TEST_PG=postgresql://user@host:port naming one. On Debian or Ubuntu:"; \
	  echo "  apt-get install postgresql   (its cluster listens on 5432)"; exit 1; fi; \
	cluster=$$(pg_lsclusters -h | awk '$$3 == 5432 { print $$1, $$2; exit }'); \
	if [ -z "$$cluster" ]; then \
	  echo "no PostgreSQL cluster listens on port 5432 (see pg_lsclusters);"; \
	  echo "create one (pg_createcluster VERSION main --port 5432) or set OTLPD_TEST_PG"; exit 1; fi; \
	pg_ctlcluster --skip-systemctl-redirect $$cluster start || exit 1; \
	for i in $$(seq 1 30); do $(PG_UP) && exit 0; sleep 1; done; \
	echo "PostgreSQL cluster $$cluster did not come up on 127.0.0.1:5432"; exit 1

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy otlpd storage query alerting bench

# The suite waits on servers far more than it computes (8 min of wall clock for 75 s of
# CPU in one process), so four workers run it in about a third of the time; every test
# has its own database and ports. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4
unit: $(STAMP) postgres
	$(BIN)/pytest -q -n $(TEST_WORKERS)

test: lint typecheck unit

# BENCH_ARGS: e.g. `make bench BENCH_ARGS=--quick` or `BENCH_ARGS='--cases logs --workers 1'`.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# OTLP/HTTP (protobuf, JSON) against OTLP/gRPC on one otlpd. BENCH_HTTP_ARGS: --case logs.
bench-http: $(STAMP) postgres
	$(BIN)/python -m bench.http $(BENCH_HTTP_ARGS)

# The query benchmark: loads 10M spans and 10M log records, then times every RPC.
bench-query: $(STAMP) postgres
	$(BIN)/python -m bench.query $(BENCH_QUERY_ARGS)

# The cold tier's benchmark: the same day of telemetry, tiered to Parquet on moto's S3
# server, and every RPC that reads it timed. BENCH_COLD_ARGS: --quick, --store file.
bench-cold: $(STAMP) postgres
	$(BIN)/python -m bench.cold $(BENCH_COLD_ARGS)

# Regenerates our own API stubs from proto/ into otlpd/_gen (never edited by hand). protoc
# writes imports as `from otlpd.query.v1 import ...`, which would resolve against our own
# otlpd package: they are rewritten to the package the stubs live in.
proto: $(STAMP)
	@files=$$(find proto -name '*.proto'); \
	if [ -z "$$files" ]; then echo "no .proto files under proto/"; exit 0; fi; \
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=otlpd/_gen --pyi_out=otlpd/_gen \
	  --grpc_python_out=otlpd/_gen $$files || exit 1; \
	find otlpd/_gen/otlpd -type d -exec touch {}/__init__.py \; ; \
	find otlpd/_gen/otlpd -name '*.py*' -exec sed -i -E \
	  's/^from otlpd\.([a-z0-9_.]+) import/from otlpd._gen.otlpd.\1 import/' {} +

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

# The alerting benchmark: 1,000 rules over 10M metric points within one 30 s interval.
# BENCH_ALERTS_ARGS: e.g. --quick, --fresh, --concurrency 8.
bench-alerts: $(STAMP) postgres
	$(BIN)/python -m bench.alerts $(BENCH_ALERTS_ARGS)
