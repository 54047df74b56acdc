# Two commands do everything: `make run` brings a one-machine farm up, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint format man bpy blender chromium xvfb clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); \
	  else echo "creating .venv needs Debian's python3-venv: run 'sudo apt-get install python3-venv'"; exit 1; fi; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,blender]'
	touch $(STAMP)

# The official Blender as a Python module (the `blender` extra: bpy from PyPI, Python 3.11),
# checked in a child Python as the node does.
bpy: $(STAMP)
	@$(BIN)/python -P -c "import bpy" >/dev/null 2>&1 || { \
	  echo "the bpy module did not install (it needs Python 3.11: make PYTHON=python3.11 ...)"; exit 1; }

# Debian's blender package, installed when missing and we may (root); otherwise say what to do.
# `make test` keeps it for the end-to-end tests of an executable Blender.
blender:
	@command -v blender >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq blender >/dev/null; \
	  else echo "blendfarm needs Blender: run 'sudo apt-get install blender' (or pass --blender PATH)"; exit 1; fi; }

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the browser tests need Chromium: run 'sudo apt-get install chromium'"; exit 1; fi; }

# The add-on's panel test runs Blender's window under Xvfb (and takes docs/img/addon-panel.png).
xvfb:
	@command -v xvfb-run >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth >/dev/null; \
	  else echo "the add-on's panel test needs Xvfb: run 'sudo apt-get install xvfb xauth'"; exit 1; fi; }

# The local node renders with the bpy module (current Blender, with OpenImageDenoise).
run: $(STAMP) bpy
	BLENDFARM_BLENDER=bpy $(BIN)/blendfarm serve --local-nodes 1 --data ./data

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

man: $(STAMP)
	$(BIN)/python -m blendfarm.cli.manpages man docs/cli.md

test: $(STAMP) bpy blender chromium xvfb lint
	$(BIN)/pytest -q

# Every benchmark one after the other (~15 min on 2 cores; bench/README.md), then the tables of
# docs/PERFORMANCE.md from bench/results/*.json. BENCH_ARGS="--quick" or "--only scaling,tiles".
bench: $(STAMP) bpy blender
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
