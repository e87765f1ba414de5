#!/usr/bin/env bash
# The container stack for real: engine, image, compose up, recommendations through nginx, a
# rolling restart under load with no failed request, teardown.
#
#   bash docker/smoke.sh
#
# Steps:
#  1. a Docker engine: the running one, else `dockerd --iptables=false` started here (Debian's
#     docker.io, installed with apt-get when missing; storage driver overlay2 where the kernel
#     has overlayfs, else or when that fails vfs) and stopped at the end;
#  2. base images: python:3.11-slim and nginx when present or pullable, else a local
#     movierec-base:bookworm made by debootstrap from the Debian mirror apt is configured with
#     (Debian 12: python3 is 3.11), used for both the service and nginx;
#  3. a wheelhouse of the locked dependencies (`pdm export` + `pip download`) in
#     .cache/wheelhouse, so the image builds without reaching the package index;
#  4. a model: ml-100k fetched, 60% replayed and ingested, trained and routed as stable, in a
#     temporary MOVIEREC_HOME whose models/, data/ and logs/ the containers mount;
#  5. `compose build` and `up`; 20 ids from /recommend/<id> through the load balancer;
#  6. `deploy_app.py --docker docker/docker-compose.yml --services app1 app2` while two loops send
#     requests through nginx: every request must answer 200, both replicas must be new;
#  7. teardown: compose down, the temporary home removed, dockerd stopped if started here.
#
# Exit codes: 0 passed; 77 skipped (no engine can run here; the reason is printed);
# anything else failed. Images are kept as a cache for the next run (MOVIEREC_SMOKE_PRUNE=1
# removes them). Settings: MOVIEREC_SMOKE_PORT (load balancer port on 127.0.0.1, default a free
# one), MOVIEREC_SMOKE_PULL=0 (never try to pull official images), MOVIEREC_BASE_IMAGE (use this
# base), MOVIEREC_DOCKER_STORAGE_DRIVER (for an engine started here: overlay2 or vfs).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"

T0=$SECONDS
say() { printf '[smoke %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
skip() {
  echo "docker smoke skipped: $*"
  exit 77
}
die() {
  echo "docker smoke FAILED: $*" >&2
  exit 1
}

WORK="$(mktemp -d /tmp/movierec-smoke.XXXXXX)"
DOCKERD_PID=""
STACK_UP=0
LOAD_PIDS=()
COMPOSE=()
export COMPOSE_PROJECT_NAME="movierec-smoke"
export COMPOSE_FILE="$REPO/docker/docker-compose.yml"

cleanup() {
  local code=$?
  set +e
  for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  if [ "$STACK_UP" = 1 ]; then
    if [ "$code" != 0 ]; then
      say "failure: the stack's last log lines"
      "${COMPOSE[@]}" ps
      "${COMPOSE[@]}" logs --no-color --tail 30
    fi
    say "teardown: compose down"
    "${COMPOSE[@]}" down --remove-orphans --volumes --timeout 20 >/dev/null 2>&1
  fi
  if [ "${MOVIEREC_SMOKE_PRUNE:-0}" = 1 ] && docker info >/dev/null 2>&1; then
    docker image rm -f movierec:smoke movierec-trainer:smoke movierec-base:bookworm >/dev/null 2>&1
  fi
  if [ -n "$DOCKERD_PID" ]; then
    say "teardown: stopping the dockerd started here (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID"
    [ "$code" = 0 ] || grep -E "level=(error|fatal)" "$WORK/dockerd.log" | tail -n 10 >&2
  fi
  rm -rf "$WORK"
  say "done (exit $code)"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
  can_apt || return 1
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive nice -n 10 apt-get install -y -qq --no-install-recommends "$@" \
    >"$WORK/apt.log" 2>&1
}

# ---- 1. the engine ----------------------------------------------------------------------------
run_dockerd() { # start dockerd with a storage driver; wait up to 60 s for it to answer
  say "engine: starting dockerd --iptables=false --storage-driver=$1"
  dockerd --iptables=false --storage-driver="$1" >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  say "engine: dockerd with $1 did not come up: $(grep -v '^\s*$' "$WORK/dockerd.log" | tail -n 1)"
  kill -TERM "$DOCKERD_PID" 2>/dev/null && wait "$DOCKERD_PID" 2>/dev/null
  DOCKERD_PID=""
  return 1
}

start_engine() {
  if docker info >/dev/null 2>&1; then
    say "engine: using the running Docker engine"
    return
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    say "engine: installing Debian's docker.io"
    apt_install docker.io || skip "no dockerd, and docker.io cannot be installed here"
  fi
  command -v docker >/dev/null 2>&1 || skip "no docker client"
  local driver="${MOVIEREC_DOCKER_STORAGE_DRIVER:-}"
  if [ -z "$driver" ]; then
    # overlay2 where the kernel has overlayfs and /var/lib is not itself an overlay (much faster:
    # vfs copies the whole file system for every layer and container); vfs everywhere else
    if grep -qw overlay /proc/filesystems && [ "$(stat -f -c %T /var/lib)" != overlayfs ]; then
      driver=overlay2
    else
      driver=vfs
    fi
  fi
  run_dockerd "$driver" || { [ "$driver" != vfs ] && run_dockerd vfs; } \
    || skip "dockerd did not start: $(grep -v '^\s*$' "$WORK/dockerd.log" | tail -n 1)"
  say "engine: dockerd $(docker version --format '{{.Server.Version}}') is up (pid $DOCKERD_PID)"
}

find_compose() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  else
    say "compose: installing Debian's docker-compose"
    apt_install docker-compose || skip "neither 'docker compose' nor docker-compose is available"
    COMPOSE=(docker-compose)
  fi
  say "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || true))"
}

# ---- 2. base images ---------------------------------------------------------------------------
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

official_image() {
  have_image "$1" && return 0
  [ "${MOVIEREC_SMOKE_PULL:-1}" = 1 ] || return 1
  timeout 60 docker pull -q "$1" >/dev/null 2>&1
}

# The mirror of Debian bookworm that apt on this machine uses (deb822 .sources or one-line).
debian_mirror() {
  local m=""
  m="$(awk 'BEGIN { RS = "" }
    /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t]|\n|$)/ && !/(^|\n)Enabled:[ \t]*no/ {
      n = split($0, line, "\n")
      for (i = 1; i <= n; i++) if (line[i] ~ /^URIs:/) { split(line[i], f, " "); print f[2]; exit }
    }' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
  if [ -z "$m" ]; then
    m="$(awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) == "bookworm") { print $i; exit } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)"
  fi
  printf '%s' "$m"
}

make_local_base() {
  if have_image movierec-base:bookworm; then
    say "base: movierec-base:bookworm is already here"
    return
  fi
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap \
    || die "debootstrap is missing and cannot be installed"
  local mirror rootfs
  mirror="$(debian_mirror)"
  [ -n "$mirror" ] || die "no Debian bookworm mirror in /etc/apt/sources.list(.d)"
  rootfs="$WORK/rootfs"
  say "base: debootstrap bookworm from the configured mirror (a few minutes)"
  nice -n 10 debootstrap --variant=minbase \
    --include=python3,python3-venv,libgomp1,curl,ca-certificates,nginx-light \
    bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' - movierec-base:bookworm >/dev/null
  rm -rf "$rootfs"
  say "base: imported movierec-base:bookworm ($(docker run --rm movierec-base:bookworm python3 -V))"
}

choose_bases() {
  if [ -n "${MOVIEREC_BASE_IMAGE:-}" ]; then
    BASE_IMAGE="$MOVIEREC_BASE_IMAGE"
    NGINX_IMAGE="${MOVIEREC_NGINX_IMAGE:-$MOVIEREC_BASE_IMAGE}"
  elif official_image python:3.11-slim && official_image nginx:1.27; then
    BASE_IMAGE=python:3.11-slim
    NGINX_IMAGE=nginx:1.27
  else
    say "base: the official images cannot be pulled here; making a local base"
    make_local_base
    BASE_IMAGE=movierec-base:bookworm
    NGINX_IMAGE=movierec-base:bookworm
  fi
  export BASE_IMAGE NGINX_IMAGE
  say "base: service on $BASE_IMAGE, load balancer on $NGINX_IMAGE"
}

image_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }

# ---- 3. wheelhouse ----------------------------------------------------------------------------
make_wheelhouse() {
  local wh="$REPO/.cache/wheelhouse" key pdm_bin pyver
  [ -x .venv/bin/python ] && [ -x .cache/pdm/bin/pdm ] || make setup >/dev/null
  pdm_bin="$REPO/.cache/pdm/bin/pdm"
  PDM_VERSION="$("$pdm_bin" --version | awk '{print $NF}')"
  export PDM_VERSION
  # markers are evaluated for the image's Python (Debian 12 has 3.11.2: redis then needs
  # async-timeout, which the host's newer 3.11 does not)
  pyver="$(docker run --rm "$BASE_IMAGE" python3 -c 'import platform; print(platform.python_version())')"
  key="$(cat pdm.lock pyproject.toml | sha256sum | cut -c1-16)-pdm$PDM_VERSION-py$pyver"
  if [ "$(cat "$wh/.key" 2>/dev/null)" = "$key" ]; then
    say "wheelhouse: .cache/wheelhouse matches pdm.lock ($(find "$wh" -name '*.whl' | wc -l) wheels)"
    return
  fi
  say "wheelhouse: pdm export + pip download into .cache/wheelhouse"
  rm -rf "$wh"
  mkdir -p "$wh"
  # the service's and the retrainer's dependencies (the retrainer adds the train and tracking
  # extras): one wheelhouse builds both images
  PDM_CHECK_UPDATE=false "$pdm_bin" export --prod -G train -G tracking -o "$WORK/requirements.txt" >/dev/null
  # pip evaluates markers for its own Python, not --python-version: decide them for the
  # image's Python here and drop them
  .venv/bin/python - "$WORK/requirements.txt" "$pyver" <<'PY'
import re, sys
from packaging.markers import Marker, default_environment
path, pyver = sys.argv[1], sys.argv[2]
env = default_environment() | {"python_full_version": pyver, "python_version": pyver.rsplit(".", 1)[0]}
out, keep = [], True
for line in open(path).read().splitlines():
    m = re.match(r"^([A-Za-z0-9_.\-\[\]]+==[^;\s]+)(?:;\s*(.*?))?(\s*\\)?$", line)
    if m:
        keep = m.group(2) is None or Marker(m.group(2)).evaluate(env)
        line = m.group(1) + (m.group(3) or "")
    if keep:
        out.append(line)
open(path, "w").write("\n".join(out) + "\n")
PY
  .venv/bin/python -m pip download -q --only-binary=:all: --python-version "$pyver" \
    -d "$wh" -r "$WORK/requirements.txt" \
    2>>"$WORK/pip.log" || { tail -n 20 "$WORK/pip.log" >&2; die "pip download failed"; }
  .venv/bin/python -m pip download -q --only-binary=:all: --python-version "$pyver" \
    -d "$wh" "pdm==$PDM_VERSION" pdm-backend \
    2>>"$WORK/pip.log" || { tail -n 20 "$WORK/pip.log" >&2; die "pip download failed"; }
  echo "$key" >"$wh/.key"
  say "wheelhouse: $(find "$wh" -name '*.whl' | wc -l) wheels"
}

# ---- 4. a model -------------------------------------------------------------------------------
train_model() {
  local home="$WORK/home"
  mkdir -p "$home/data" "$home/models" "$home/logs"
  say "model: ml-100k, 60% replayed, ingested, trained (no tuning) in $home"
  (
    export MOVIEREC_HOME="$home" MOVIEREC_CACHE_DIR="$REPO/.cache" MOVIEREC_GROUPLENS_URL=""
    export MOVIEREC_N_THREADS=2 OPENBLAS_NUM_THREADS=1
    mr=(nice -n 10 "$REPO/.venv/bin/movierec")
    "${mr[@]}" data fetch --dataset ml-100k
    "${mr[@]}" replay --dataset ml-100k --out "$home/data/events.log" --end 0.6
    "${mr[@]}" ingest
    "${mr[@]}" train --no-tune --serve-if-none
  ) >"$WORK/train.log" 2>&1 || { tail -n 30 "$WORK/train.log" >&2; die "training the model failed"; }
  [ -f "$home/models/routing.json" ] || die "no models/routing.json after training"
  say "model: $(tr -d '\n' <"$home/models/routing.json" | cut -c1-160)"
  # the image runs as uid 10001 (user movierec); the containers write logs, provenance, state
  chown -R 10001:10001 "$home/data" "$home/models" "$home/logs"
  export MOVIEREC_VOLUME_ROOT="$home"
}

# ---- 5. up and 20 ids -------------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

container_ids() { "${COMPOSE[@]}" ps -q app1 app2 | sort | tr '\n' ' '; }

stack_up() {
  export MOVIEREC_IMAGE=movierec:smoke MOVIEREC_TRAINER_IMAGE=movierec-trainer:smoke MOVIEREC_LB_BIND=127.0.0.1
  MOVIEREC_LB_PORT="${MOVIEREC_SMOKE_PORT:-$(free_port)}"
  export MOVIEREC_LB_PORT
  GIT_COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  GIT_BRANCH="$(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)"
  GIT_DIRTY="$([ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo 1 || echo 0)"
  export GIT_COMMIT GIT_BRANCH GIT_DIRTY WHEELHOUSE=.cache/wheelhouse
  "${COMPOSE[@]}" config -q || die "compose config is not valid"
  say "build: the image movierec:smoke from $BASE_IMAGE (commit ${GIT_COMMIT:0:8})"
  local t=$SECONDS
  nice -n 10 "${COMPOSE[@]}" build >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; die "compose build failed"; }
  say "build: done in $((SECONDS - t)) s (service image $(image_mb movierec:smoke), retrainer image with the train and tracking extras $(image_mb movierec-trainer:smoke))"
  STACK_UP=1
  "${COMPOSE[@]}" up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; die "compose up failed"; }
  LB="http://127.0.0.1:$MOVIEREC_LB_PORT"
  say "up: nginx on $LB; waiting for both replicas and the fold-in process to be healthy"
  wait_healthy app1 app2 nginx fold-in
  say "up: $(docker ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
    --format '{{.Names}} ({{.Status}})' | sort | paste -sd ' ')"
}

wait_healthy() {
  local svc id state deadline=$((SECONDS + 240))
  for svc in "$@"; do
    while :; do
      id="$("${COMPOSE[@]}" ps -q "$svc")"
      state="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing)"
      [ "$state" = healthy ] && break
      [ $SECONDS -lt $deadline ] || die "$svc is $state after 240 s"
      sleep 1
    done
  done
}

check_recommendations() {
  local body n u
  for u in 42 1 943 100000; do
    body="$(curl -fsS --max-time 5 "$LB/recommend/$u")" || die "GET /recommend/$u through nginx failed"
    n="$(tr ',' '\n' <<<"$body" | grep -c .)"
    say "recommend/$u through nginx -> $n ids: $(cut -c1-90 <<<"$body")..."
    [ "$n" = 20 ] || die "/recommend/$u answered $n ids, expected 20"
  done
}

# ---- 6. rolling restart under load ------------------------------------------------------------
load_loop() { # bounded: at most 20,000 requests or 15 minutes, or until the stop file appears
  local out="$1" i=0 end=$((SECONDS + 900))
  while [ ! -f "$WORK/stop" ] && [ $i -lt 20000 ] && [ $SECONDS -lt $end ]; do
    curl -s -o /dev/null --max-time 10 -w '%{http_code}\n' "$LB/recommend/$((RANDOM % 1000 + 1))" \
      >>"$out" || echo "curl-error" >>"$out"
    i=$((i + 1))
    sleep 0.02
  done
}

rolling_restart() {
  local before after t code total failed
  before="$(container_ids)"
  : >"$WORK/codes.1"
  : >"$WORK/codes.2"
  load_loop "$WORK/codes.1" &
  LOAD_PIDS+=($!)
  load_loop "$WORK/codes.2" &
  LOAD_PIDS+=($!)
  sleep 3
  say "deploy: deploy_app.py --docker docker/docker-compose.yml --services app1 app2 (under load)"
  t=$SECONDS
  set +e
  MOVIEREC_HOME="$MOVIEREC_VOLUME_ROOT" .venv/bin/python deploy_app.py \
    --docker docker/docker-compose.yml --services app1 app2 --url "$LB" --timeout 240 \
    >"$WORK/deploy.log" 2>&1
  code=$?
  set -e
  sleep 3
  touch "$WORK/stop"
  wait "${LOAD_PIDS[@]}" 2>/dev/null || true
  LOAD_PIDS=()
  grep -E '"(code|message)"' "$WORK/deploy.log" | sed 's/^ */    /'
  [ "$code" = 0 ] || { tail -n 40 "$WORK/deploy.log" >&2; die "deploy_app.py exited $code"; }
  after="$(container_ids)"
  total="$(cat "$WORK"/codes.* | wc -l)"
  failed="$(cat "$WORK"/codes.* | grep -vc '^200$' || true)"
  say "deploy: exit 0 in $((SECONDS - t)) s; replicas before: $before; after: $after"
  say "deploy under load: $total requests through nginx, $failed failed"
  [ "$failed" = 0 ] || { cat "$WORK"/codes.* | sort | uniq -c >&2; die "$failed requests failed during the rolling restart"; }
  [ "$total" -ge 50 ] || die "only $total requests were sent during the deploy"
  local b
  for b in $before; do
    grep -q "$b" <<<"$after" && die "replica container $b was not restarted"
  done
  check_recommendations
}

start_engine
find_compose
choose_bases
make_wheelhouse
train_model
stack_up
check_recommendations
rolling_restart
say "PASSED in $((SECONDS - T0)) s"
