#!/usr/bin/env bash
# Debian packages the integration tests and benchmarks use: a real Prometheus (promtool too),
# Alertmanager (amtool too), PostgreSQL (started by the tests as the postgres user), Redis (the
# shared rate limit, the online store), nginx (its config is checked with `nginx -t`), wrk, docker-compose and
# rsync. Installed only when missing and only when we can (root with apt-get);
# tests that need a missing tool skip with a message that names this script.
set -uo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# `docker-compose config` validates the compose file in the tests (no engine needed)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# gitlab-ci-local copies the checkout for each job with rsync
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system_deps: missing ${need[*]}; install them to run every integration test" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "system_deps: could not install ${need[*]}" >&2
# Debian's package may start nothing here (no systemd); we start the binaries ourselves.
exit 0
