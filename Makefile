# One entry point for people, CI (.ci/run) and the GitHub workflows.
#   make serve   set everything up, then start ratmemcached with the embedded defaults
#   make test    set everything up, then run every check and test (Rust and Python)
#   make bench   release build, then the miss-ratio benchmark and bench/run_all.py (one report)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export CARGO_TERM_COLOR ?= never

.PHONY: setup system-deps venv develop serve test lint test-rust test-python fuzz-smoke bench bench-server clean

# Debian packages the tests and benches need: memcached is the reference peer, memccapable and
# memcaslap come with libmemcached-tools, pylibmc builds against libmemcached-dev and zlib, and
# the admin status page is tested in a headless chromium.
DEB_PACKAGES := memcached libmemcached-tools libmemcached-dev zlib1g-dev chromium

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "warning: please install:$$missing" >&2; fi; \
	fi

$(VENV)/.deps: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "maturin>=1.7,<2" "pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100" \
	  "ruff>=0.6" "mypy>=1.11" "click>=8.1" "cachebox>=4" "cachetools>=5" "diskcache>=5.6" \
	  "tomlkit>=0.12" "anyio>=4.4" "uvloop>=0.19; sys_platform != 'win32'" "pymemcache>=4" \
	  "pylibmc>=1.6" "prometheus_client>=0.20"
	touch $@

venv: $(VENV)/.deps

# Builds the extension in the dev profile and installs the package into the venv, editable (into
# this venv even when another one is active).
develop: venv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/maturin develop -q --features extension-module

setup: system-deps develop

# The venv's pylibmc needs libmemcached-dev, so system packages come first.
venv: | system-deps

serve: setup
	$(VENV)/bin/ratmemcached

lint: venv
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --no-default-features -- -D warnings
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest ratmemcache._core --allowlist tests/stubtest-allowlist.txt

test-rust:
	cargo test --no-default-features
	cargo test --no-default-features --features native --lib net::

test-python: develop
	$(PY) -m pytest

# Each cargo-fuzz target for a few seconds from the committed seeds (fuzz/README.md has the long
# runs). Installs cargo-fuzz on first use.
FUZZ_SECONDS ?= 10
fuzz-smoke:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	fuzz/smoke.sh $(FUZZ_SECONDS)

test: setup lint test-rust test-python fuzz-smoke

# bench/run_all.py runs every Python benchmark, each with a timeout, and prints one report
# (about 3 minutes; BENCH_ALL_ARGS=--quick for less, --out FILE to keep it).
bench: venv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/maturin develop -q --release --features extension-module
	cargo run --release --no-default-features --example miss_ratio
	$(PY) bench/run_all.py --server-ratio $(SERVER_RATIO) $(BENCH_ALL_ARGS)

# Server throughput as a ratio to memcached (needs the project's shared bench script).
SERVER_RATIO ?= ../shared/bench/server_ratio.py
# The engine measured by bench-server: native or anyio (memcached runs with -t 2).
ENGINE ?= native
bench-server: setup
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/maturin develop -q --release --features extension-module
	$(PY) $(SERVER_RATIO) --server-cmd '$(CURDIR)/$(VENV)/bin/ratmemcached --engine $(ENGINE) -t 2 -l 127.0.0.1 -p {port}' $(BENCH_ARGS)

clean:
	rm -rf $(VENV) target
