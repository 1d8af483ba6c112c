# Two entry points: `make demo` (the main job against the embedded lab fleet) and `make test`.
# Both create or refresh .venv and install the project into it; system packages the build or the
# tests need are installed only when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# What building the oVirt SDK needs (the demo and everything else), and what only the tests use:
# an sshd for the SSH tests, git for the controller's git source, Chromium for the fleet map page,
# PostgreSQL for the store suite and the controller's failover tests (a throwaway server each).
BUILD_PACKAGES := libxml2-dev libcurl4-openssl-dev libssl-dev
TEST_PACKAGES  := openssh-server openssh-client git chromium postgresql

.PHONY: demo test test-fast bench system-deps build-deps test-deps venv clean lint

demo: venv
	$(BIN)/reconcile --log-level warning validate --each --offline specs/examples
	$(BIN)/reconcile --log-level warning demo specs/examples/lab.yaml

test: venv test-deps
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# The pure suite: no lab engine, no sshd, no PostgreSQL, no slow test (tests/support/markguard.py
# keeps it pure).
test-fast: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not lab and not ssh and not browser and not postgres and not slow" tests

bench: venv
	$(BIN)/python -m benchmarks

venv: $(STAMP)

$(STAMP): pyproject.toml | build-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,conformance,postgres]'
	touch $(STAMP)

# Install only what is missing (needs root or sudo). The oVirt SDK compiles against libxml2; pycurl
# wheels carry libcurl but a source build needs it.
define apt_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then echo "please install:$$missing" >&2; exit 0; fi; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "installing system packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

build-deps:
	$(call apt_missing,$(BUILD_PACKAGES))

test-deps:
	$(call apt_missing,$(TEST_PACKAGES))

system-deps: build-deps test-deps

clean:
	rm -rf $(VENV) .reconciler build *.egg-info
