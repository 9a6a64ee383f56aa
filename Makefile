# kpbench — `make run` and `make test` work from a fresh clone with only Python 3.11 and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
TESTS  ?=
# TESTS selects test files/options, e.g. `make test TESTS=tests/test_config.py`
STAMP  := $(VENV)/.installed

.PHONY: help venv run test test-default test-slow bench bench-quick lint test-tools clean-results

help:
	@echo "make run    run experiments/quickstart.toml (creates .venv on first use)"
	@echo "make test   whole test suite: default tests, then slow-marked ones"
	@echo "make bench  benchmark suite + golden gate vs results/baseline (kpbench bench)"
	@echo "make bench-quick  what CI runs: quick speed gate (100%) + strict golden gate"
	@echo "make lint   ruff"

venv: $(STAMP)

# Re-install only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

run: venv
	$(BIN)/kpbench run experiments/quickstart.toml

# pytest exit code 5 means "no tests selected": a failure for the default step, but not for the
# slow step (a TESTS selection may hold no slow-marked case).
PYTEST_OK = status=$$?; if [ $$status -ne 0 ] && [ $$status -ne 5 ]; then exit $$status; fi

test: venv test-tools
	$(BIN)/python -m pytest -m "not slow" $(TESTS)
	$(BIN)/python -m pytest -m slow $(TESTS); $(PYTEST_OK)

test-default: venv
	$(BIN)/python -m pytest -m "not slow" $(TESTS)

test-slow: venv
	$(BIN)/python -m pytest -m slow $(TESTS); $(PYTEST_OK)

bench: venv
	$(BIN)/kpbench bench

bench-quick: venv
	bash .ci/bench

lint: venv
	$(BIN)/ruff check .

# Tests that exercise real netfilter need iptables/nft/ip, and the report.html test headless
# Chromium; as root on Debian, install them from Debian's packages. Failure is tolerated: those
# tests skip with the reason printed.
TEST_TOOLS = iptables nft ip chromium
test-tools:
	@if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && \
	   ! { for t in $(TEST_TOOLS); do command -v $$t || exit 1; done; } >/dev/null 2>&1; then \
	  echo "installing iptables nftables iproute2 chromium (for netfilter and browser tests)"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables nftables iproute2 \
	      chromium >/dev/null; } \
	    || echo "warning: could not install test tools; tests needing them will skip"; \
	fi

clean-results:
	rm -rf results/*/
