# shellcheck shell=bash
# Shared by start-cluster.sh, stop-cluster.sh and monitor.sh (sourced, not run). Runs on the HEAD.
#
# Reads vllm/.env (VLLM_ENV_FILE to use another file), then offers:
#   head_compose ARGS...     docker compose for docker-compose.spark-1.yml here
#   worker_compose ARGS...   the same for docker-compose.spark-2.yml on the worker, over SSH
#   on_worker COMMAND...     run a command on the worker (over SSH; locally when WORKER_SSH=local)
#   sync_worker              copy the worker's compose file, node script and .env to WORKER_DIR
#   cluster_url              the cluster's endpoint: http://HEAD_IP:PORT
# DRY_RUN=1 prints the docker/ssh commands instead of running them.

VLLM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VLLM_ENV_FILE=${VLLM_ENV_FILE:-$VLLM_DIR/.env}
DRY_RUN=${DRY_RUN:-0}

load_env() {
  if [ ! -f "$VLLM_ENV_FILE" ]; then
    echo "error: $VLLM_ENV_FILE is missing: cp $VLLM_DIR/.env.example $VLLM_DIR/.env and edit it" >&2
    exit 1
  fi
  set -a
  # shellcheck source=/dev/null
  . "$VLLM_ENV_FILE"
  set +a
  : "${HEAD_IP:?HEAD_IP is not set in $VLLM_ENV_FILE}"
  : "${WORKER_IP:?WORKER_IP is not set in $VLLM_ENV_FILE}"
  CLUSTER_MODE=${CLUSTER_MODE:-ray}
  PORT=${PORT:-8000}
  REPLICA_PORT=${REPLICA_PORT:-8001}
  WORKER_SSH=${WORKER_SSH:-$WORKER_IP}
  WORKER_DIR=${WORKER_DIR:-$VLLM_DIR}
  START_TIMEOUT_S=${START_TIMEOUT_S:-900}
  case "$CLUSTER_MODE" in ray|replicas) ;; *) echo "error: CLUSTER_MODE must be ray or replicas" >&2; exit 64 ;; esac
}

log() { printf '%s %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

run() {
  if [ "$DRY_RUN" = 1 ]; then printf '  $ %s\n' "$*"; else "$@"; fi
}

head_compose() {
  run docker compose --env-file "$VLLM_ENV_FILE" -f "$VLLM_DIR/docker-compose.spark-1.yml" "$@"
}

on_worker() {
  if [ "$WORKER_SSH" = local ]; then run "$@"; return; fi
  local quoted
  quoted=$(printf '%q ' "$@")
  run ssh -o BatchMode=yes -o ConnectTimeout=10 "$WORKER_SSH" "$quoted"
}

worker_compose() {
  on_worker docker compose --env-file "$WORKER_DIR/.env" -f "$WORKER_DIR/docker-compose.spark-2.yml" "$@"
}

sync_worker() {
  [ "$WORKER_SSH" = local ] && return 0
  on_worker mkdir -p "$WORKER_DIR/scripts"
  run scp -q -o BatchMode=yes "$VLLM_DIR/docker-compose.spark-2.yml" "$WORKER_SSH:$WORKER_DIR/docker-compose.spark-2.yml"
  run scp -q -o BatchMode=yes "$VLLM_DIR/scripts/node.sh" "$WORKER_SSH:$WORKER_DIR/scripts/node.sh"
  run scp -q -o BatchMode=yes "$VLLM_ENV_FILE" "$WORKER_SSH:$WORKER_DIR/.env"
}

cluster_url() {
  printf 'http://%s:%s' "$HEAD_IP" "$PORT"
}

http_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-5}" "$1" || true
}

# wait until URL answers 200; returns 1 after TIMEOUT seconds
wait_healthy() {
  local url=$1 timeout=$2 started
  started=$(date +%s)
  while [ "$(http_code "$url")" != 200 ]; do
    if [ $(( $(date +%s) - started )) -ge "$timeout" ]; then return 1; fi
    sleep 10
  done
}
