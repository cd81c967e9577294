# One command each: `make demo` sets up and builds the demo; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

.PHONY: setup demo demo-all test test-fast test-unit golden clean wheel

# Where PYTHONDONTWRITEBYTECODE is set, as on CI machines, Python writes no .pyc, so every
# mlpack, bentoml and ansible process would compile all it imports each time it started (a
# demo build: 8.6 CPU seconds, 5.1 with them): there the venv is byte-compiled once here
# (uv's --compile-bytecode, and compileall for mlpack's own editable sources). Elsewhere
# Python writes the .pyc of what it imports on first use, and compiling all 15,000 files
# up front would only cost the set-up half a minute of CPU.
COMPILE := $(if $(PYTHONDONTWRITEBYTECODE),--compile-bytecode)
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml agent/pyproject.toml
	bash .ci/setup.sh python
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(PY) -m uv pip install --python $(PY) --quiet $(COMPILE) -e '.[test]' -e ./agent
	$(if $(COMPILE),$(PY) -m compileall -q packager/mlpack agent/mlpack_agent >/dev/null)
	touch $@

demo: setup
	$(VENV)/bin/mlpack build --target x86-cpu --out $(OUT) --force

# The demo for every target; `time make demo-all` is how the build time is measured.
demo-all: setup
	for target in x86-cpu cuda-gpu arm-edge aws-lambda; do \
	  $(VENV)/bin/mlpack build --target $$target --out $(OUT) --force --quiet || exit 1; \
	done

# Three workers on two cores, each taking whole test files (--dist loadfile keeps a file's
# fixtures in one process): much of the suite's time is spent waiting on servers, fleets and
# timeouts, so a third worker keeps the cores busy (fresh-clone runs here: 17:06 with two,
# 16:15 with three). Files go out in collection order (--no-loadscope-reorder), which is
# longest first by the last run's seconds (tests/schedule.py; a fresh clone:
# tests/file_seconds.json), so the workers end together. The tests of a file run in a random
# order (pytest-randomly prints "Using --randomly-seed=N" first): to run that order again,
# make test PYTEST_ARGS="--randomly-seed=N"; PYTEST_ARGS="-p no:randomly" runs in file order.
PYTEST_ARGS ?=
PYTEST := $(PY) -m pytest -ra -n 3 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The same set-up CI runs (.ci/setup.sh: idempotent, seconds when all is there), then every
# test, and the 25 slowest (setup and teardown included) at the end.
test: setup
	bash .ci/setup.sh tests
	$(PYTEST) --durations=25

# Without the tests marked slow (those using a build, image, fleet or server fixture, see
# tests/pyramid.py): under two minutes.
test-fast: setup
	$(PYTEST) -m "not slow"

# Only the tests that use no fixture starting a process or building anything.
test-unit: setup
	$(PYTEST) -m unit

# The wheel users install (`pip install dist/mlpack-*.whl`, see README.md).
wheel: setup
	$(PY) -m uv build --wheel --out-dir dist .

# Rewrites every golden file (rendered files, report.html); fails when one changed: review git diff.
golden: setup
	MLPACK_UPDATE_GOLDEN=1 $(PY) -m pytest tests/test_golden.py tests/test_report_html.py -k "golden or match"

clean:
	rm -rf $(OUT) dist build .pytest_cache
