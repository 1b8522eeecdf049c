# Zhike — `make help` lists the targets. `make run` and `make test` do their own set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PYTHON := $(VENV)/bin/python
GEN_STAMP := libs/contracts/src/zhike/py.typed
PROTOS := $(shell find proto -name '*.proto')
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help setup gen lint typecheck test test-unit test-integration run demo bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(UV):
	$(PYTHON_BOOT) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml)
	$(UV) sync --frozen --all-packages --python $(PYTHON_BOOT)
	touch $@

setup: $(VENV)/.synced $(GEN_STAMP) ## Create .venv from uv.lock and generate the contracts

$(GEN_STAMP): $(VENV)/.synced $(PROTOS) tools/gen_contracts.py
	$(PYTHON) tools/gen_contracts.py

gen: ## Generate Python code from proto/ (not committed)
	@rm -f $(GEN_STAMP)
	@$(MAKE) --no-print-directory $(GEN_STAMP)

lock: $(UV) ## Re-resolve the dependencies into uv.lock (and the image build's hashed uv pin)
	$(UV) lock
	$(UV) export --frozen --hashes --no-emit-project --only-group image-build \
	  -o deploy/image/build-requirements.txt

lint: setup ## ruff over all our code, and the services' layering (import-linter, pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: setup ## mypy --strict over all our code
	$(VENV)/bin/mypy libs/runtime/src services/*/src tools/gen_contracts.py tools/simulator/src tools/simulator/tests tools/identity-evaluation/src tools/identity-evaluation/tests tests benchmarks $(foreach s,identity profile offers notifications,services/$(s)/tests) libs/runtime/tests

test-unit: setup ## Unit, storage and transport tests (real SQLite, PostgreSQL, nats-server), and the chart's
	$(PYTHON) -m pytest libs services tools tests/deploy -q -n 2

test-integration: setup ## Cross-service journeys with the services as real processes
	$(PYTHON) -m pytest tests/integration -q

# The services' own tests and the chart's run on two workers (each with its own nats-server and
# PostgreSQL); the journeys, each running several services as processes, one at a time.
test: lint typecheck scan ## Everything CI runs: lint, types, chart scan, all tests
	$(PYTHON) -m pytest libs services tools tests/deploy -q -n 2 --durations=10
	$(PYTHON) -m pytest tests/integration -q --durations=10

run: setup ## Start NATS and the four services on embedded defaults (Ctrl-C stops all)
	$(PYTHON) -m zhike_runtime.devstack

# The stack `make run` started (same state directory and ports); DEMO_ARGS adds options, e.g.
# DEMO_ARGS="--customers 1000 --seed 7" (`zhike simulate --help` lists them).
demo: setup ## Fill the running `make run` stack with a simulated bank (200 customers, 90 days)
	$(VENV)/bin/zhike simulate --state-dir "$${ZHIKE_DEV_STATE_DIR:-.zhike}" --customers 200 \
	  --identity-target "127.0.0.1:$${ZHIKE_DEV_IDENTITY_PORT:-50051}" \
	  --profile-target "127.0.0.1:$${ZHIKE_DEV_PROFILE_PORT:-50052}" $(DEMO_ARGS)

bench: setup ## Benchmarks (figures, not pass/fail): platform, identity, profile, offers, notifications, outbox
	$(PYTHON) -m benchmarks
	$(PYTHON) -m benchmarks.identity.quality
	$(PYTHON) -m benchmarks.identity.throughput
	$(PYTHON) -m benchmarks.identity.online  # 1,000,000 records on PostgreSQL: about 12 minutes
	$(PYTHON) -m benchmarks.profile  # 1,000,000 parties on PostgreSQL
	$(PYTHON) -m benchmarks.offers  # 100,000 parties, 50 live offers on PostgreSQL
	$(PYTHON) -m benchmarks.notifications  # the FX journey and messages/s to the local gateways
	$(PYTHON) -m benchmarks.outbox  # a relay round's cost as sent events pile up, before and after autovacuum

include deploy/deploy.mk

clean: ## Remove the environment, generated code and local state
	rm -rf $(VENV) $(TOOLS) libs/contracts/src/zhike .zhike .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
