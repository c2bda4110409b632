# The two commands a user needs are `make run` and `make test`; everything else
# here is what those two are made of.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_UP  := pg_isready -q -h 127.0.0.1 -p 5432

.PHONY: run test lint typecheck unit bench proto install postgres clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/otlpd serve

# The suite talks to the machine's PostgreSQL; start it when it is down.
postgres:
	@$(PG_UP) || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do $(PG_UP) && exit 0; sleep 1; done; echo "PostgreSQL did not come up"; exit 1

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy otlpd storage query alerting bench

unit: $(STAMP) postgres
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench

# Regenerates our own API stubs from proto/ into otlpd/_gen (never edited by hand).
proto: $(STAMP)
	@files=$$(find proto -name '*.proto'); \
	if [ -n "$$files" ]; then \
	  $(BIN)/python -m grpc_tools.protoc -Iproto --python_out=otlpd/_gen --pyi_out=otlpd/_gen \
	    --grpc_python_out=otlpd/_gen $$files; \
	else echo "no .proto files under proto/"; fi

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
