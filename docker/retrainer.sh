#!/usr/bin/env bash
# The retrainer container's schedule: run cronjob.sh every MOVIEREC_RETRAIN_EVERY_SECONDS
# (default 259200: every 3 days, as docs/automation.md's crontab line), the first time one
# period after start, or at once with MOVIEREC_RETRAIN_AT_START=1. cronjob.sh writes
# logs/cron.log; its exit code (0 promoted, 3 nothing to do, 4 rejected, 5 locked, 6 deploy
# failed, 1 error) is printed here. A heartbeat file, touched every 30 s, is what the
# container's health check looks at.
set -u
cd /app
every="${MOVIEREC_RETRAIN_EVERY_SECONDS:-259200}"
heartbeat=/tmp/movierec-retrainer.heartbeat
trap 'echo "retrainer: stopping"; exit 0' TERM INT

next=$(($(date +%s) + every))
[ "${MOVIEREC_RETRAIN_AT_START:-0}" = 1 ] && next=0
echo "retrainer: cronjob.sh every ${every} s; next run at $(date -u -d "@$next" +%Y-%m-%dT%H:%M:%SZ)"
while :; do
  touch "$heartbeat"
  if [ "$(date +%s)" -ge "$next" ]; then
    ./cronjob.sh
    echo "retrainer: $(date -u +%Y-%m-%dT%H:%M:%SZ) cronjob.sh exit code $?"
    next=$(($(date +%s) + every))
  fi
  sleep 30 &
  wait $!
done
