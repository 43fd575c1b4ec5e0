# driftline: the commands a new user and CI run. `make demo` and `make test` are the two that matter.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.driftline-installed
BROKERS ?= 1

.PHONY: help venv bench-venv tools kafka-up kafka-down kafka-status test test-unit lint demo clean lock

help:
	@echo "make demo        run the whole loop on a bundled example (starts and stops Kafka)"
	@echo "make test        unit + integration tests against a real Kafka (starts and stops it)"
	@echo "make lint        ruff + mypy --strict on the four packages and the tests"
	@echo "make kafka-up    start Kafka on 127.0.0.1:9092 (BROKERS=3 for a 3-node cluster)"
	@echo "make kafka-down  stop the Kafka processes this checkout started"
	@echo "make clean       remove the venv and all local state under .driftline/"
	@echo "make bench-venv  create .venv-bench with the benchmark baselines (evidently, quixstreams)"

# Rust's cargo, for the native ingest lane (native/); rustup puts it in ~/.cargo/bin.
CARGO ?= $(shell command -v cargo 2>/dev/null || ls $(HOME)/.cargo/bin/cargo 2>/dev/null)
NATIVE_SOURCES := native/pyproject.toml native/Cargo.toml native/Cargo.lock native/driftline_native.pyi $(wildcard native/src/*.rs)

# The venv is rebuilt only when the project's dependency list, lock or native code changes.
# Without cargo the native lane is not built and the worker reads every message in Python
# (same results, slower); CI requires it (tests/test_ingest_native.py).
venv: $(STAMP)
$(STAMP): pyproject.toml constraints.txt $(NATIVE_SOURCES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@if [ -n "$(CARGO)" ]; then \
	  echo "building the native ingest lane (native/, Rust) ..."; \
	  PATH="$$(dirname $(CARGO)):$$PATH" $(BIN)/python -m pip install -q ./native; \
	else \
	  echo "driftline: cargo not found, so the native ingest lane is not built" \
	       "(install Rust with rustup and run make venv again for ~2x the envelope throughput)"; \
	fi
	@touch $(STAMP)

# The baselines of bench/ in their own venv: evidently's pins conflict with ours, so the bench
# scripts call it as a subprocess. The .gitignore inside keeps the venv out of git.
BENCH_VENV := .venv-bench
bench-venv: $(BENCH_VENV)/.bench-installed
$(BENCH_VENV)/.bench-installed: bench/requirements-baselines.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@echo '*' > $(BENCH_VENV)/.gitignore
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -r bench/requirements-baselines.txt
	@touch $@

# Debian tools the integration tests drive as a user would (kcat); root on CI, sudo elsewhere.
tools:
	@bash deploy/ensure-tools.sh

kafka-up:
	@bash deploy/kafka/kafka.sh up $(BROKERS)

kafka-down:
	@bash deploy/kafka/kafka.sh down

kafka-status:
	@bash deploy/kafka/kafka.sh status

test: venv tools
	@bash deploy/with-kafka.sh .venv/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/pytest -q -m "not kafka"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy streams detectors retrainer schemas tests

demo: venv
	@bash deploy/with-kafka.sh .venv/bin/driftline demo

# Regenerate the dependency lock from the current venv (after changing pyproject.toml).
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^driftline' > constraints.txt

clean:
	-@bash deploy/kafka/kafka.sh down >/dev/null 2>&1 || true
	rm -rf $(VENV) $(BENCH_VENV) .driftline .pytest_cache .mypy_cache .ruff_cache
