# kpbench — `make run` and `make test` work from a fresh clone with only Python 3.11 and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
TESTS  ?=
# TESTS selects test files/options, e.g. `make test TESTS=tests/test_config.py`
STAMP  := $(VENV)/.installed

.PHONY: help venv run test test-default test-slow bench lint netfilter-tools clean-results

help:
	@echo "make run    run experiments/quickstart.toml (creates .venv on first use)"
	@echo "make test   whole test suite: default tests, then slow-marked ones"
	@echo "make bench  pytest-benchmark suites in benchmarks/"
	@echo "make lint   ruff"

venv: $(STAMP)

# Re-install only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

run: venv
	$(BIN)/kpbench run experiments/quickstart.toml

# pytest exit code 5 means "no tests selected" (e.g. no slow tests yet): not a failure.
PYTEST_OK = status=$$?; if [ $$status -ne 0 ] && [ $$status -ne 5 ]; then exit $$status; fi

test: venv netfilter-tools
	$(BIN)/python -m pytest -m "not slow" $(TESTS); $(PYTEST_OK)
	$(BIN)/python -m pytest -m slow $(TESTS); $(PYTEST_OK)

test-default: venv
	$(BIN)/python -m pytest -m "not slow" $(TESTS); $(PYTEST_OK)

test-slow: venv
	$(BIN)/python -m pytest -m slow $(TESTS); $(PYTEST_OK)

bench: venv
	@if [ -d benchmarks ]; then $(BIN)/python -m pytest benchmarks/; $(PYTEST_OK); \
	else echo "no benchmarks/ yet"; fi

lint: venv
	$(BIN)/ruff check .

# Tests that exercise real netfilter need iptables/nft/ip; as root on Debian, install them.
# Failure is tolerated: those tests skip with a reason.
netfilter-tools:
	@if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && \
	   ! { command -v iptables && command -v nft && command -v ip; } >/dev/null 2>&1; then \
	  echo "installing iptables nftables iproute2 (for netfilter tests)"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables nftables iproute2; } \
	    || echo "warning: could not install netfilter tools; tests needing them will skip"; \
	fi

clean-results:
	rm -rf results/*/
