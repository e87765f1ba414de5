#!/usr/bin/env bash
# `make run`: from nothing to a running service, step by step. Each step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
MR=.venv/bin/movierec
$MR data fetch --dataset "${MOVIEREC_DATASET:-ml-100k}"
