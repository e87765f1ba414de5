#!/usr/bin/env bash
# The whole test suite (arguments are passed on to pytest: `scripts/test.sh -m "not slow"`).
# It runs on pytest-xdist workers, MOVIEREC_TEST_WORKERS of them (default: one per core; 0
# runs in this process), each test file on one worker (--dist loadfile), so that a module's
# server or trained model is made once; files are handed out in tests/conftest.py's order (the
# longest first), not re-sorted by xdist. pytest exits 5 when it collects nothing; that is a
# failure here too.
set -euo pipefail
cd "$(dirname "$0")/.."
workers="${MOVIEREC_TEST_WORKERS:-auto}"
if [ "$workers" = 0 ]; then
  exec .venv/bin/pytest -q "$@"
fi
exec .venv/bin/pytest -q -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
