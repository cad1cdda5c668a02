# Set-up happens on first use: each target creates .venv in the repo root and installs into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast app-env test-env clean peers-env

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The app alone: base install (PySide6, onnxruntime, numpy, ...), no torch.
$(VENV)/.app-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Everything: base + engine + test extras, torch pinned to the CPU build by a constraints file.
$(VENV)/.test-installed: pyproject.toml constraints-cpu.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints-cpu.txt -e '.[engine,test]'
	touch $@ $(VENV)/.app-installed

# The peers venv: reference tools (optimum's ORT pipelines, diffusers, the exporters) whose pins
# clash with ours; tests run them in a subprocess. CPU onnxruntime only, torch from local disk.
PEERS := .venv-peers
$(PEERS)/.installed: requirements-peers.txt
	rm -rf $(PEERS)
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q -r requirements-peers.txt
	$(PEERS)/bin/python -m pip install -q --no-deps open-clip-torch==3.3.0  # only for its CLIP BPE vocabulary
	touch $@

peers-env .venv-peers: $(PEERS)/.installed

run: $(VENV)/.app-installed
	$(BIN)/diffusion-studio

# The whole suite (what CI runs).
test: $(VENV)/.test-installed $(PEERS)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything except the tests marked slow (training, export, the UI, the shipped models): for the
# edit-test loop. `make test` before landing.
test-fast: $(VENV)/.test-installed
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(PEERS)
