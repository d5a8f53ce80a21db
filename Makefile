# inferpool: every target installs what it needs (venv, sandbox binaries) on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# uv installs the venv from uv.lock, the one lock of every dependency (runtime, test, dev).
# This version must equal the one uv.lock pins for `uv` (a unit test checks).
UV_VERSION := 0.13.8
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: help venv lock test-latest lint test test-unit sandbox-bin sandbox-up sandbox-down crds demo image karpenter-bin \
        bench-engine bench-scaling bench-failover bench-elastic bench-operator bench-scale simulate clean

help:
	@echo "make demo        sandbox up, operator running, sample pools placed, load spike and pool failure"
	@echo "                 (DEMO_ARGS=--keep leaves it all running)"
	@echo "make test        lint, types, import contract, then every test (builds the sandbox once)"
	@echo "make test-unit   the fast tests only (no sandbox)"
	@echo "make lock        re-resolve uv.lock after editing pyproject.toml (LOCK_ARGS=--upgrade: newest allowed)"
	@echo "make test-latest the unit tests with the newest versions pyproject.toml allows (in .venv-latest)"
	@echo "make sandbox-bin build or find the sandbox binaries (cached in ~/.cache/inferpool)"
	@echo "make image       build the operator image (own dockerd, Debian-built base) and check it"
	@echo "make crds        regenerate crds/ from the pydantic models"

$(STAMP): pyproject.toml uv.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	# --locked: refuse a uv.lock that no longer matches pyproject.toml (run `make lock`)
	$(BIN)/uv sync -q --locked --all-extras --python $(BIN)/python
	touch $@

venv: $(STAMP)

lock: venv
	$(BIN)/uv lock $(LOCK_ARGS)

# Drift is seen here before users see it: a throwaway venv resolved to the newest allowed
# versions (uv pip install resolves highest by default), then the unit tests.
test-latest: venv
	rm -rf .venv-latest
	$(BIN)/uv venv -q --python $(BIN)/python .venv-latest
	$(BIN)/uv pip install -q --python .venv-latest/bin/python -e '.[dev]'
	.venv-latest/bin/pytest -m "not sandbox and not prometheus and not docker" -p no:cacheprovider

lint: venv
	$(BIN)/ruff check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

sandbox-bin: venv
	$(BIN)/inferpool sandbox build

# Karpenter's KWOK provider, for `sandbox up --autoscaler karpenter` (tests/sandbox/test_karpenter.py)
karpenter-bin: venv
	$(BIN)/inferpool sandbox build --autoscaler karpenter

test: lint sandbox-bin karpenter-bin prometheus
	$(BIN)/pytest

test-unit: venv
	$(BIN)/pytest -m "not sandbox and not prometheus and not docker"

sandbox-up: sandbox-bin
	$(BIN)/inferpool sandbox up

sandbox-down: venv
	$(BIN)/inferpool sandbox down

crds: venv
	$(BIN)/inferpool crds --output-dir crds
	cp crds/*.yaml charts/inferpool-operator/files/crds/
	$(BIN)/inferpool crds --allow-privileged-templates --output-dir charts/inferpool-operator/files/crds-privileged

demo: sandbox-bin prometheus
	$(BIN)/inferpool demo $(DEMO_ARGS)

# Debian's Prometheus for the demo and the load tests (our own process; the service is not used)
prometheus: venv
	$(BIN)/python -c 'from inferpool.sandbox.prometheus import ensure_prometheus; print(ensure_prometheus())'

# The operator image, built by our own dockerd (docker.io, started by us) on a Debian-built base
# where Docker Hub cannot be reached (IMAGE_ARGS=--base python:3.11.13-slim-bookworm where it can)
image: venv
	$(BIN)/inferpool sandbox image $(IMAGE_ARGS)

# BENCH_ENGINE_ARGS=--large: also 5,000 and 10,000 nodes (about 15 minutes on 2 cores)
bench-engine: venv
	$(BIN)/python -m bench.engine $(BENCH_ENGINE_ARGS)

bench-scaling: venv
	$(BIN)/python -m bench.scaling

bench-failover: sandbox-bin
	$(BIN)/python -m bench.failover

# scale from zero and a stockout on a sandbox with Karpenter, beside plain Deployments
bench-elastic: sandbox-bin karpenter-bin
	$(BIN)/python -m bench.elastic

bench-operator: sandbox-bin
	$(BIN)/python -m bench.operator

bench-scale: sandbox-bin
	$(BIN)/python -m bench.scale

simulate: venv
	$(BIN)/inferpool simulate examples/scenarios/week-two-outages.yaml --out out/simulate

clean:
	rm -rf $(VENV) .venv-latest .mypy_cache .ruff_cache .pytest_cache .hypothesis out
