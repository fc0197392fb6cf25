# Two entry points for a fresh machine: `make demo` (train the default CNN on MNIST) and `make test`.
# Both create or reuse .venv; the install step re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AXE_VERSION := 4.14.1
AXE := build/axe-core/axe.min.js

.PHONY: demo test install lab clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, by exact version, so pip takes the local CPU wheel and never the CUDA build.
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cnnlab train

test: $(STAMP)
	# The explorer's browser test drives Debian's Chromium (Playwright's own browser download is not used).
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	# ... and checks its accessibility with axe-core (MPL-2.0), fetched once from npm into build/ (not kept in git;
	# without npm or the registry, that one check skips, saying so).
	test -f $(AXE) || (mkdir -p build && cd build && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null \
		&& rm -rf axe-core && tar xzf axe-core-$(AXE_VERSION).tgz && mv package axe-core \
		&& rm axe-core-$(AXE_VERSION).tgz) || echo "axe-core not fetched: the accessibility check will skip"
	# One worker per core; the PyTensor tests that compile C share one worker (tests/test_engines.py); the 15
	# slowest tests are listed at the end, so that the next slowdown shows the day it lands.
	$(BIN)/python -m pytest -n auto --dist loadgroup -q --durations=15

# JupyterLab on labs/ from the project's environment (each notebook is paired with its `# %%` script by jupytext).
lab: $(STAMP)
	$(BIN)/jupyter lab labs/

bench: $(STAMP)
	$(BIN)/python benchmarks/mnist_time_to_accuracy.py

clean:
	rm -rf $(VENV) runs .pytest_cache
