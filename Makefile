# The one place commands live. `make run` and `make test` bootstrap the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSPACES ?= agent_workspaces
CONFIG ?= config/orchestration.yml

.PHONY: install run install-service test lint bench soak clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo: healer watching $(WORKSPACES) beside a simulated swarm, demo thresholds.
run: $(STAMP)
	$(BIN)/python scripts/demo.py --config $(CONFIG) --workspaces $(WORKSPACES)

# Needs root (or DESTDIR=/stage, or INSTALL_FLAGS=--dry-run); see README "Running as a service".
install-service:
	scripts/install-service.sh $(INSTALL_FLAGS)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not soak" -q

lint: $(STAMP)
	$(BIN)/ruff check healer tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
