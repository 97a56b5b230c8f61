#!/usr/bin/env bash
# Start the two-node vLLM cluster from the HEAD (spark-1): head first, then the worker over SSH,
# then wait until the endpoint answers /health.
#
#   vllm/scripts/start-cluster.sh [--mode ray|replicas] [--drop-caches] [--no-wait] [--dry-run]
#
#   ray       docker-compose.spark-1.yml `head` (Ray head; waits for the worker's GPU, then
#             `vllm serve --distributed-executor-backend ray`), then spark-2 `worker` (Ray worker)
#   replicas  a `replica` (vllm serve) on each node and `lb` (nginx on the head) in front of both
# --drop-caches  `sync; echo 3 > /proc/sys/vm/drop_caches` on both nodes first (sudo): on unified
#                memory the page cache counts as used and vLLM may refuse to start (GB10)
# Settings: vllm/.env. Exit status 0 once the endpoint is healthy, 1 on timeout (START_TIMEOUT_S).
set -euo pipefail
# shellcheck source=vllm/scripts/common.sh
. "$(dirname "$0")/common.sh"

mode=""
drop_caches=0
wait=1
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode=$2; shift ;;
    --drop-caches) drop_caches=1 ;;
    --no-wait) wait=0 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 64 ;;
  esac
  shift
done
load_env
[ -n "$mode" ] && CLUSTER_MODE=$mode
case "$CLUSTER_MODE" in ray|replicas) ;; *) echo "error: --mode must be ray or replicas" >&2; exit 64 ;; esac

state_dir=${MONITOR_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/vllm-monitor}

if [ "$drop_caches" = 1 ]; then
  log "dropping the page cache on both nodes"
  run sudo sh -c 'sync; echo 3 > /proc/sys/vm/drop_caches'
  on_worker sudo sh -c 'sync; echo 3 > /proc/sys/vm/drop_caches'
fi

log "syncing the worker's files to $WORKER_SSH:$WORKER_DIR"
sync_worker

if [ "$CLUSTER_MODE" = ray ]; then
  log "starting the Ray head on $HEAD_IP"
  head_compose --profile ray up -d
  log "starting the Ray worker on $WORKER_IP"
  worker_compose --profile ray up -d
  endpoint="$(cluster_url)/health"
else
  log "starting the replica on $WORKER_IP"
  worker_compose --profile replicas up -d
  log "starting the replica and the load balancer on $HEAD_IP"
  head_compose --profile replicas up -d
  endpoint="http://$HEAD_IP:$REPLICA_PORT/health"
fi

if [ "$DRY_RUN" != 1 ]; then
  mkdir -p "$state_dir"
  date +%s > "$state_dir/started_at"  # monitor.sh leaves the cluster alone during its start-up grace
fi
if [ "$wait" = 0 ] || [ "$DRY_RUN" = 1 ]; then
  log "started ($CLUSTER_MODE); not waiting for health"
  exit 0
fi

log "waiting up to ${START_TIMEOUT_S}s for $endpoint"
if ! wait_healthy "$endpoint" "$START_TIMEOUT_S"; then
  log "the cluster did not become healthy: docker logs studio-vllm-head (or -replica) and, on the worker, docker logs studio-vllm-worker"
  exit 1
fi
if [ "$CLUSTER_MODE" = replicas ]; then
  wait_healthy "http://$WORKER_IP:$REPLICA_PORT/health" "$START_TIMEOUT_S" || { log "the worker's replica is not healthy"; exit 1; }
  wait_healthy "$(cluster_url)/lb-health" 60 || { log "the load balancer does not answer"; exit 1; }
else
  docker exec studio-vllm-head ray status || true
fi
log "cluster ($CLUSTER_MODE) is serving at $(cluster_url)"
