# movierec: `make run` sets everything up from nothing and runs the service; `make test` tests it.
SHELL := /bin/bash
PYTHON ?= python3
PDM_HOME := .cache/pdm
PDM := $(PDM_HOME)/bin/pdm
VENV := .venv
BIN := $(VENV)/bin
MOVIEREC := $(BIN)/movierec
export PDM_CHECK_UPDATE := false

.PHONY: run test test-fast lint format setup data demo bench clean help lock pipeline

help:
	@echo "make run        - set up, fetch ml-100k, replay + ingest events, train a model, serve on :8080"
	@echo "make test       - set up, install missing test servers (apt, as root), run the whole test suite"
	@echo "make test-fast  - set up and run the tests not marked slow (the quick loop)"
	@echo "make lint       - ruff + mypy + import-linter + size limits + hadolint"
	@echo "make format     - ruff format and ruff check --fix"
	@echo "make setup      - PDM in .cache/pdm and the locked dependencies in .venv"
	@echo "make data       - set up and fetch ml-100k (movierec data fetch)"
	@echo "make demo       - the whole life cycle on ml-100k: train, serve, simulate, retrain, canary ramp and abort"
	@echo "make bench      - install the bench dependency group and run the parsing benchmark"
	@echo "make pipeline   - the GitLab pipeline's lint, test, train and evaluate jobs with gitlab-ci-local"
	@echo "make lock       - re-lock pdm.lock after changing pyproject.toml"
	@echo "make clean      - remove .venv, .cache and the tools' caches"
	@echo "make help       - this list"

$(PDM):
	$(PYTHON) -m venv $(PDM_HOME)
	$(PDM_HOME)/bin/pip install --quiet "pdm[locked]"

# The environment is rebuilt whenever the lock changes.
$(VENV)/.synced: pdm.lock pyproject.toml | $(PDM)
	$(PDM) config --local python.use_venv true
	$(PDM) config --local venv.with_pip true
	$(PDM) use --first -f $(PYTHON) >/dev/null
	$(PDM) sync --clean -G train -G report -G tracking -G test -G lint
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
	bash scripts/test.sh -m "not slow"

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
	$(PDM) sync -G train -G report -G tracking -G test -G lint -G bench
	$(BIN)/python evaluation/bench_parse.py

demo: setup
	MOVIEREC_HOME=$${MOVIEREC_HOME:-.cache/demo} MOVIEREC_CACHE_DIR=$(CURDIR)/.cache $(MOVIEREC) demo

# The GitLab pipeline for real: gitlab-ci-local runs .gitlab-ci.yml's jobs with its shell
# executor, each in its own copy of the checkout (4.72 is the newest that runs on Debian's
# Node.js 20; later releases need Node.js 22). The build job needs Docker-in-Docker and a
# registry: docker/smoke.sh builds and runs the same image instead.
GCL_VERSION := 4.72.0
GCL := .cache/gitlab-ci-local/node_modules/.bin/gitlab-ci-local
PIPELINE_JOBS ?= lint test train evaluate

$(GCL):
	npm install --silent --no-audit --no-fund --prefix .cache/gitlab-ci-local gitlab-ci-local@$(GCL_VERSION)

# One gitlab-ci-local run per job: a later job takes an earlier one's artifacts from
# .gitlab-ci-local/artifacts, and a job's copy of the checkout, with the .venv it made (about
# 1.2 GB), is removed once the job passes, so the pipeline holds one such copy at a time rather
# than four (stop 22's CI ran out of disk making the fourth). A failed job's copy is kept.
pipeline: $(GCL)
	bash scripts/system_deps.sh
	@for job in $(PIPELINE_JOBS); do \
	  echo "pipeline: $$job ($$(df -h --output=avail . | tail -n 1 | tr -d ' ') free on this disk)"; \
	  $(GCL) --force-shell-executor --shell-isolation $$job || exit 1; \
	  rm -rf .gitlab-ci-local/builds/$$job; \
	done

# Re-lock after changing pyproject.toml; the lock keeps no URLs (not even in summaries).
lock: | $(PDM)
	$(PDM) lock -G :all
	sed -i -E 's#\s*\(https?://[^)]*\)##' pdm.lock

clean:
	rm -rf $(VENV) .cache .pdm-python .pytest_cache .mypy_cache .ruff_cache
