# Set-up, the main job and the tests. `make demo` and `make test` each set up first.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup browser demo lint test test-fast clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

# Debian's Chromium for the browser tests of the analysis service's page (installed as root where missing;
# otherwise those tests skip and say why).
browser:
	@command -v chromium > /dev/null || command -v chromium-browser > /dev/null || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    echo "installing Debian's chromium for the page's browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	  else echo "note: no Chromium; the page's browser tests will skip (as root: apt-get install chromium)"; fi; }

# Train GiMeFive on the embedded synthetic faces, evaluate it and export a SavedModel to models/gimefive/<version>.
demo: setup
	$(BIN)/python -m fer_keras.train --epochs 12 --run-dir runs/demo $$(test -f runs/demo/state.json && echo --resume) --verbose 2

# The linter (ruff, configured in pyproject.toml) first, then every test, in two processes (pytest-xdist;
# each test file stays in one process, so its fixtures are built once). TEST_WORKERS=0 runs them in this one.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
lint: setup
	$(BIN)/ruff check .

test: lint browser
	$(BIN)/python -m pytest $(XDIST) --durations=15

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not realdata"

clean:
	rm -rf runs/demo
