#!/usr/bin/env bash
# Cron entry point: refresh the data, retrain when enough new data arrived, deploy a promotion.
#
#   crontab:  0 3 */3 * *  /path/to/movierec/cronjob.sh     (03:00 every 3 days)
#   by hand:  ./cronjob.sh
#
# Exit codes are the retrainer's (0 promoted and deployed, 3 nothing to do, 4 candidate
# rejected, 5 another run holds the lock, 1 error), or 6 when the promotion's deployment failed.
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")"
mkdir -p logs
exec >>logs/cron.log 2>&1
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) cronjob start (pid $$)"

if [ ! -x .venv/bin/movierec ]; then
  make setup || { echo "cronjob: environment setup failed"; exit 1; }
fi
PY=.venv/bin/python

.venv/bin/movierec retrain
code=$?
echo "cronjob: retrain exit code $code"
if [ "$code" -eq 0 ]; then
  $PY deploy_app.py ${MOVIEREC_DEPLOY_ARGS:-}
  dcode=$?
  echo "cronjob: deploy_app.py exit code $dcode"
  [ "$dcode" -eq 0 ] || code=6
fi
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) cronjob end (exit $code)"
exit "$code"
