# The project's entry points. `make demo` and `make test` run `make setup` on their own.
ENGINE ?= cpu
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench

setup:
	@ENGINE=$(ENGINE) bash scripts/setup.sh

# The whole subnet on this machine (subnet localnet): a fresh devnet in .localnet/ each time; the
# tiny world is built once into the user cache. Ctrl-C stops every process it started.
demo: setup
	$(VENV)/bin/subnet localnet --fresh

# pytest exits 5 when it collected nothing (e.g. a filtered run): say so instead of failing.
test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 0; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	@for s in scripts/bench_*.py; do echo "== $$s"; $(PY) $$s || exit 1; done
