#!/usr/bin/env bash
# Stop the two-node vLLM cluster from the HEAD: the worker first, then the head (a tensor- or
# pipeline-parallel group does not survive one side going away, so the head goes last).
#
#   vllm/scripts/stop-cluster.sh [--dry-run]
#
# Stops both profiles (ray and replicas), whichever runs. Settings: vllm/.env.
set -euo pipefail
# shellcheck source=vllm/scripts/common.sh
. "$(dirname "$0")/common.sh"

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 64 ;;
  esac
  shift
done
load_env

status=0
log "stopping the worker on $WORKER_SSH"
worker_compose --profile ray --profile replicas down --timeout 60 || { status=1; log "could not stop the worker (unreachable?)"; }
log "stopping the head"
head_compose --profile ray --profile replicas down --timeout 60 || status=1
exit "$status"
