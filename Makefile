# Two commands for a newcomer: `make run` and `make test`. Both build .venv from the lock.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.meshport-installed
OUT    ?= out

.PHONY: venv run test test-deps clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Meshport needs Python 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $(STAMP)

run: venv
	$(BIN)/meshport predict attention_mesh -o $(OUT)/sample_overlay.png --json $(OUT)/sample_landmarks.json
	$(BIN)/meshport release face_detector --version 1.0.0 --out $(OUT) --store $(OUT)/store
	$(BIN)/meshport release attention_mesh --version 1.0.0 --out $(OUT) --store $(OUT)/store

test: venv test-deps
	$(BIN)/python -m pytest -q

# The report test renders HTML in Debian's Chromium; install it when absent (root + apt only).
test-deps:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the report rendering test will be skipped"

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
