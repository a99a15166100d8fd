# RPS — the two commands of the Quick start, and the rest.
#   make demo   run the whole pipeline on the bundled real sample (or DATA=your.csv)
#   make test   install what tests need, start the real servers on loopback, run every test
# Everything installs itself on a fresh machine; caches outside the clone are optional:
#   CARGO_TARGET_DIR=~/.cache/rps-target VENV=~/.cache/rps-venv make test

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TARGET ?= x86_64-unknown-linux-musl
CARGO ?= cargo
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
BIN := $(CARGO_TARGET_DIR)/$(TARGET)/release
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
DEMO_HOME ?= .rps/demo
DATA ?=
STAGES := rps-extract rps-quality rps-transform rps-train rps-evaluate

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: setup-rust
setup-rust: ## the musl target and musl-tools for static stage binaries
	@rustup target list --installed 2>/dev/null | grep -qx '$(TARGET)' || rustup target add $(TARGET)
	@if [[ '$(TARGET)' == *musl* ]] && ! command -v musl-gcc >/dev/null; then \
	  echo 'installing musl-tools (Debian) for static builds'; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq musl-tools >/dev/null; fi

.PHONY: build
build: setup-rust ## build the stage binaries (static, release)
	$(CARGO) build --release --locked --target $(TARGET) --workspace --bins

.PHONY: demo
demo: build ## run extract → quality → transform → train → evaluate on the bundled sample (DATA=file.csv for yours)
	@bash scripts/demo.sh "$(BIN)" "$(DEMO_HOME)" "$(DATA)"

.PHONY: model-quality
model-quality: build ## walk-forward tables: ../shared Binance BTCUSDT (test blocks 2020-2021), Coinbase BTC, ETH
	@bash scripts/model-quality.sh "$(BIN)" .rps/model-quality ../shared/data

.PHONY: pooled
pooled: setup-rust ## #20: pooled vs per-symbol models on BTCUSDT and ETH over 2017-10 .. 2019-10 (walk-forward, docs/symbols.md)
	$(CARGO) build --release --locked --target $(TARGET) -p rps-extract -p rps-quality -p rps-transform -p rps-experiments
	@bash scripts/pooled.sh "$(BIN)" .rps/pooled ../shared/data

.PHONY: pooled-stages
pooled-stages: build ## #20: train.pooling: pooled on BTCUSDT and ETH (2017-10 .. 2019-10): the stages, the pooled walk-forward and its verdicts
	@bash scripts/pooled-stages.sh "$(BIN)" .rps/pooled-stages ../shared/data

.PHONY: scores-replay
scores-replay: build ## #19: train on Binance < 2021, replay it through rps stream (tansu + PostgreSQL), rolling QLIKE over 2021 (KEEP=1 keeps the servers)
	@bash scripts/scores-replay.sh $(if $(KEEP),--keep-servers) "$(BIN)" .rps/scores-replay ../shared/data

.PHONY: model-quality-dev
model-quality-dev: build ## the development walk-forward: Binance BTCUSDT before 2020-01-01 only (tune on this)
	@bash scripts/model-quality.sh --dev "$(BIN)" .rps/model-quality ../shared/data

.PHONY: dvc-repro
dvc-repro: build setup-python ## run the pipeline as a DVC pipeline (dvc.yaml; POOLED=1: pooled/dvc.yaml, for train.pooling: pooled): only what changed re-runs
	PATH="$(BIN):$(VENV)/bin:$$PATH" dvc repro $(if $(POOLED),pooled/dvc.yaml)

.PHONY: dvc-plots
dvc-plots: setup-python ## the charts of the last dvc repro → dvc_plots/index.html (offline: vega is inlined)
	PATH="$(VENV)/bin:$$PATH" dvc plots show

.PHONY: airflow-local
airflow-local: build setup-python ## the Airflow DAG in local mode on the bundled sample (airflow dags test)
	@VENV=$(VENV) RPS_BIN=$(BIN)/rps bash airflow/run-local.sh

.PHONY: docs
docs: ## build the reference book (docs/) with mdBook into target/book
	@bash scripts/docs.sh

.PHONY: setup-python
setup-python: ## the Python venv the tests use (uv, pinned requirements)
	@bash scripts/setup-python.sh "$(VENV)"

.PHONY: setup-tools
setup-tools: ## Debian tools the tests use: promtool (prometheus), prometheus-alertmanager, buildah (the image), chromium (dashboard), postgresql, strace
	@command -v promtool >/dev/null || { echo 'installing prometheus (promtool) from Debian'; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v prometheus-alertmanager >/dev/null || { echo 'installing prometheus-alertmanager (and amtool) from Debian (retraining loop test)'; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null; }
	@command -v buildah >/dev/null || { echo 'installing buildah from Debian'; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends buildah >/dev/null; }
	@command -v chromium >/dev/null || { echo 'installing chromium from Debian (headless dashboard test)'; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium >/dev/null; }
	@command -v strace >/dev/null || { echo 'installing strace from Debian (chaos suite: kills at commit points)'; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends strace >/dev/null; }
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo 'installing postgresql from Debian (stream and dashboard tests)'; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends postgresql >/dev/null; }

.PHONY: image
image: setup-rust setup-tools ## build the container image with buildah (FROM scratch) and check it; EXPORT=rps.tar keeps it
	@bash scripts/image.sh $(if $(EXPORT),--export $(EXPORT))

.PHONY: test
test: setup-rust setup-python setup-tools ## install, start servers on loopback, run every test, stop servers
	@bash scripts/test.sh "$(TARGET)" "$(BIN)" "$(VENV)"

.PHONY: chaos
chaos: build ## the fault-injection suite: kills at every commit point, random kills, full disks, serve fuzz and slowloris (needs strace, root for tmpfs)
	@command -v strace >/dev/null || { $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq strace >/dev/null; }
	RPS_CHAOS_FULL=1 RPS_BIN_DIR=$(BIN) $(CARGO) test --release --locked --target $(TARGET) -p rps-pipeline-tests --test chaos -- --include-ignored --nocapture
	RPS_BIN_DIR=$(BIN) $(CARGO) test --release --locked --target $(TARGET) -p rps-serve --test it -- --include-ignored --nocapture fuzz:: hardening::

.PHONY: lint
lint: ## rustfmt and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: bench
bench: build setup-python ## transform vs a pandas peer (whole processes), in-process transform throughput, train wall time, predict latency
	BIN=$(BIN) PY=$(PY) bash bench/transform/run.sh
	$(CARGO) run --release --locked --target $(TARGET) -p rps-bench

.PHONY: bench-transform
bench-transform: build setup-python ## rps transform vs a pandas peer on 5 years of one-minute bars: wall time, peak RSS, ratios
	BIN=$(BIN) PY=$(PY) bash bench/transform/run.sh

.PHONY: clean
clean: ## remove build output and the local store
	rm -rf target .rps reports

.PHONY: bench-stream
bench-stream: build setup-python ## rps stream through tansu + PostgreSQL on loopback: produce / consume bars/s (1,000 symbols x 1 year), reconcile time
	$(CARGO) build --release --locked --target $(TARGET) -p rps-stream --example load
	BIN=$(BIN) PY=$(PY) bash bench/stream/run.sh

.PHONY: bench-symbols
bench-symbols: build setup-python ## #20: pipeline wall time for 1 and 20 symbols, Airflow local mode and a plain loop, cost per symbol
	BIN=$(BIN) VENV=$(VENV) bash bench/symbols/run.sh

.PHONY: bench-stream-symbols
bench-stream-symbols: build setup-python ## #20: bench-stream with 100 symbols, consumed with 1 model and with each symbol's own model
	$(CARGO) build --release --locked --target $(TARGET) -p rps-stream --example load
	BIN=$(BIN) PY=$(PY) SYMBOLS=100 PER_SYMBOL=1 bash bench/stream/run.sh

.PHONY: bench-serve
bench-serve: setup-python ## rps-serve vs a FastAPI + xgboost app under wrk (apt-get install wrk)
	@command -v wrk >/dev/null || { $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq wrk >/dev/null; }
	@python3 -m uv pip install -q --python $(VENV)/bin/python -r bench/serve/requirements.txt
	VENV=$(VENV) bash bench/serve/run.sh
