#!/usr/bin/env bash
# `make run`: from nothing to a running service, step by step. Each step is idempotent:
# a second `make run` finds the data, the events and the model in place and only serves.
set -euo pipefail
cd "$(dirname "$0")/.."
MR=.venv/bin/movierec
DATASET="${MOVIEREC_DATASET:-ml-100k}"
EVENTS="${MOVIEREC_EVENT_SOURCE:-data/events.log}"

step() { printf '\n==> %s\n' "$*"; }

step "real MovieLens data ($DATASET)"
$MR data fetch --dataset "$DATASET"

if [ ! -s "$EVENTS" ] && [[ "$EVENTS" != kafka:* ]]; then
  step "replay the first 60% of the ratings as the site's event log ($EVENTS)"
  $MR replay --dataset "$DATASET" --out "$EVENTS" --end 0.6
fi

step "DataPipeline: ingest new events into data/lake"
$MR ingest

if [ ! -f models/routing.json ]; then
  step "train the first model and route all traffic to it"
  $MR train --serve-if-none
fi

step "serve on port ${MOVIEREC_PORT:-8080} (Ctrl-C stops; try: curl localhost:${MOVIEREC_PORT:-8080}/recommend/42)"
exec $MR serve
