# The project's entry points. `make demo` and `make test` run `make setup` on their own.
ENGINE ?= cpu
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint check lock bench

setup:
	@ENGINE=$(ENGINE) bash scripts/setup.sh

# The whole subnet on this machine (subnet localnet): a fresh devnet in .localnet/ each time; the
# tiny world is built once into the user cache; three validators with unequal stakes, one of
# them a weight copier. Ctrl-C stops every process it started.
demo: setup
	$(VENV)/bin/subnet localnet --fresh --validators validator,validator,validator-copier

# What CI runs (.ci/run): every static check, then the whole suite (unit, integration, slow,
# e2e) in a random order (pytest-randomly prints its seed; PYTEST_ARGS="--randomly-seed=N"
# replays one). pytest exits 5 when it collected nothing (a filtered run): say so instead.
test: setup check
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 0; fi; exit $$rc

# Static checks: lint, formatting, types (strict on scoring/, relaxed on tests/).
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

lint: check

# Regenerate requirements/cpu.lock and requirements/gpu.lock from pyproject.toml.
lock:
	@bash scripts/lock.sh

# Every benchmark that ships with the package (subnet bench NAME runs one).
bench: setup
	@for b in $$($(VENV)/bin/subnet bench | sed 's/^benchmarks: //; s/,//g'); do \
		echo "== subnet bench $$b"; $(VENV)/bin/subnet bench $$b || exit 1; done
