# Tocsin: `make dev` runs the embedded stack, `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test install lint bench clean browser prometheus

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/tocsin dev

# Debian's chromium for the dashboard test (a test tool's own browser download fails here).
browser:
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium not installed: the browser test will be skipped")

# Debian's Prometheus 2.x and Alertmanager 0.25 for the ingest tests with the real clients.
prometheus:
	@(command -v prometheus >/dev/null 2>&1 && command -v prometheus-alertmanager >/dev/null 2>&1) || \
		(command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null) || \
		echo "prometheus and prometheus-alertmanager not installed: the Prometheus and Alertmanager tests will be skipped")

# the linters first: CI runs this target, so the tree stays clean of what they find
test: $(STAMP) browser prometheus lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile --no-loadscope-reorder tests

lint: $(STAMP)
	$(BIN)/ruff check tocsin tests
	$(BIN)/mypy

bench: $(STAMP) prometheus
	$(BIN)/tocsin bench --quick --json bench.json

clean:
	rm -rf $(VENV) .tocsin
