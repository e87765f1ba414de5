#!/usr/bin/env bash
# The whole test suite. pytest exits 5 when it collects nothing; that is a failure here too.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/pytest -q "$@"
