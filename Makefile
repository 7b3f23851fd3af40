# Two commands for a newcomer: `make run` and `make test`. Both build .venv from the lock.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.meshport-installed
OUT    ?= out

.PHONY: venv run test test-deps gpu-deps clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Meshport needs Python 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $(STAMP)

run: venv gpu-deps
	$(BIN)/meshport predict attention_mesh -o $(OUT)/sample_overlay.png -o $(OUT)/sample_landmarks.json
	$(BIN)/meshport release face_detector --version 1.0.0 --out $(OUT) --store $(OUT)/store
	$(BIN)/meshport release attention_mesh --version 1.0.0 --out $(OUT) --store $(OUT)/store

test: venv test-deps
	$(BIN)/python -m pytest -q

# Debian's Chromium (report rendering) and Mesa >= 25's Vulkan drivers (the GPU accelerator's
# adapter without a GPU), installed when absent (root + apt only).
test-deps:
	@bash scripts/install_test_deps.sh

gpu-deps:
	@bash scripts/install_test_deps.sh vulkan

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
