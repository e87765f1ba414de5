# movierec: `make run` sets everything up from nothing and runs the service; `make test` tests it.
SHELL := /bin/bash
PYTHON ?= python3
PDM_HOME := .cache/pdm
PDM := $(PDM_HOME)/bin/pdm
VENV := .venv
BIN := $(VENV)/bin
MOVIEREC := $(BIN)/movierec
export PDM_CHECK_UPDATE := false

.PHONY: run test test-fast lint format setup data demo bench clean help lock

help:
	@echo "make run    - set up, fetch ml-100k, replay + ingest events, train a model, serve on :8080"
	@echo "make test   - set up and run the whole test suite"
	@echo "make lint   - ruff + mypy + import-linter + size limits + hadolint"
	@echo "make demo   - the whole life cycle on ml-100k: train, serve, simulate, retrain, canary ramp and abort"

$(PDM):
	$(PYTHON) -m venv $(PDM_HOME)
	$(PDM_HOME)/bin/pip install --quiet "pdm[locked]"

# The environment is rebuilt whenever the lock changes.
$(VENV)/.synced: pdm.lock pyproject.toml | $(PDM)
	$(PDM) config --local python.use_venv true
	$(PDM) config --local venv.with_pip true
	$(PDM) use --first -f $(PYTHON) >/dev/null
	$(PDM) sync --clean -G test -G lint
	touch $@

setup: $(VENV)/.synced

data: setup
	$(MOVIEREC) data fetch --dataset ml-100k

run: setup
	bash scripts/run.sh

test: setup
	bash scripts/system_deps.sh
	bash scripts/test.sh

test-fast: setup
	$(BIN)/pytest -m "not slow" -q

lint: setup
	$(BIN)/ruff check src tests evaluation scripts deploy_app.py evaluate_feedback_online.py
	$(BIN)/ruff format --check src tests evaluation scripts deploy_app.py evaluate_feedback_online.py
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_layout.py src/movierec
	$(BIN)/hadolint docker/Dockerfile

format: setup
	$(BIN)/ruff format src tests evaluation scripts deploy_app.py evaluate_feedback_online.py
	$(BIN)/ruff check --fix src tests evaluation scripts deploy_app.py evaluate_feedback_online.py

bench: setup
	$(PDM) sync -G test -G lint -G bench
	$(BIN)/python evaluation/bench_parse.py

demo: setup
	MOVIEREC_HOME=$${MOVIEREC_HOME:-.cache/demo} MOVIEREC_CACHE_DIR=$(CURDIR)/.cache $(MOVIEREC) demo

# Re-lock after changing pyproject.toml; the lock keeps no URLs (not even in summaries).
lock: | $(PDM)
	$(PDM) lock -G :all
	sed -i -E 's#\s*\(https?://[^)]*\)##' pdm.lock

clean:
	rm -rf $(VENV) .cache .pdm-python .pytest_cache .mypy_cache .ruff_cache
