#!/usr/bin/env bash
# Watchdog for the two-node vLLM cluster, meant for cron on the HEAD (one run = one check):
#
#   * * * * * /path/to/vllm/scripts/monitor.sh >> /dev/null 2>&1
#
# Why: vLLM's /health catches a dead engine (503) but not a wedged one (requests waiting, none
# running, /health still 200), and Docker never restarts an `unhealthy` container. Each run checks
#   1. GET /health                          200, else failure (503: engine dead, 000: down)
#   2. a canary request with a hard timeout /v1/embeddings "ping" (pooling models) or
#                                           /v1/chat/completions max_tokens=1 (OCR / generative)
#   3. /metrics                             num_requests_waiting > 0 with num_requests_running == 0
#                                           in STALL_SAMPLES runs in a row is a stall
#   4. the cluster                          ray mode: `ray status` in the head shows >= 2 GPUs;
#                                           replicas mode: each node's replica answers /health
#   5. memory                               MemAvailable on both nodes >= MEM_FLOOR_GIB (unified
#                                           memory: the GPU shares it); NVRM/Xid lines in dmesg are logged
# After MAX_FAILS failing runs in a row it restarts the cluster (stop-cluster.sh: worker then head;
# start-cluster.sh: head then worker), at most MAX_RESTARTS_PER_HOUR times and not within
# COOLDOWN_S of the last restart; past that it only alerts (ALERT_CMD, if set, gets the message).
# Nothing is checked for GRACE_S after a start (start-cluster.sh records it): loading takes minutes.
# One status line per run goes to $MONITOR_STATE_DIR/monitor.log (rotate it with logrotate).
# Exit status: 0 healthy, 1 unhealthy, 2 skipped (another run holds the lock, or in the grace period).
set -uo pipefail
# shellcheck source=vllm/scripts/common.sh
. "$(dirname "$0")/common.sh"
load_env

STATE_DIR=${MONITOR_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/vllm-monitor}
URL=${VLLM_URL:-$(cluster_url)}
GRACE_S=${GRACE_S:-900}
MAX_FAILS=${MAX_FAILS:-3}
STALL_SAMPLES=${STALL_SAMPLES:-3}
COOLDOWN_S=${COOLDOWN_S:-900}
MAX_RESTARTS_PER_HOUR=${MAX_RESTARTS_PER_HOUR:-2}
MEM_FLOOR_GIB=${MEM_FLOOR_GIB:-8}
CANARY_TIMEOUT_S=${CANARY_TIMEOUT_S:-30}
RESTART_CMD=${RESTART_CMD:-"$VLLM_DIR/scripts/stop-cluster.sh && $VLLM_DIR/scripts/start-cluster.sh"}
case "${VLLM_ARGS:-}" in *pooling*|*embed*) default_canary=embeddings ;; *) default_canary=chat ;; esac
CANARY=${MONITOR_CANARY:-$default_canary}

mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/monitor.lock"
if ! flock -n 9; then
  echo "another monitor.sh run holds $STATE_DIR/monitor.lock" >&2
  exit 2
fi

now=$(date +%s)
read_state() { cat "$STATE_DIR/$1" 2>/dev/null || echo "${2:-0}"; }
write_state() { printf '%s\n' "$2" > "$STATE_DIR/$1"; }

record() {  # one status line, to the log and to stdout
  local line
  line="$(date -u +%FT%TZ) mode=$CLUSTER_MODE $*"
  printf '%s\n' "$line" >> "$STATE_DIR/monitor.log"
  printf '%s\n' "$line"
}

started_at=$(read_state started_at 0)
if [ $(( now - started_at )) -lt "$GRACE_S" ]; then
  record "action=skip reason=start-up-grace($(( GRACE_S - (now - started_at) ))s-left)"
  exit 2
fi

problems=()

# 1. liveness
health=$(http_code "$URL/health" 5)
[ "$health" = 200 ] || problems+=("health=$health")

# 2. canary: a real request with a hard timeout
model=$(curl -s --max-time 5 "$URL/v1/models" 2>/dev/null | grep -o '"id": *"[^"]*"' | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
if [ "$CANARY" = embeddings ]; then
  body=$(printf '{"model": "%s", "input": "ping"}' "$model")
  canary_path=/v1/embeddings
  expect='"embedding"'
else
  body=$(printf '{"model": "%s", "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}' "$model")
  canary_path=/v1/chat/completions
  expect='"choices"'
fi
canary_reply=$(curl -s --max-time "$CANARY_TIMEOUT_S" -H 'Content-Type: application/json' -d "$body" \
               -w '\n%{http_code}' "$URL$canary_path" 2>/dev/null || true)
canary_code=$(printf '%s' "$canary_reply" | tail -n 1)
if [ "$canary_code" = 200 ] && printf '%s' "$canary_reply" | grep -q "$expect"; then
  canary=ok
else
  canary="failed(${canary_code:-000})"
  problems+=("canary=$canary")
fi

# 3. stall: requests waiting while none runs, several runs in a row
metrics=$(curl -s --max-time 5 "$URL/metrics" 2>/dev/null || true)
metric_sum() { printf '%s\n' "$metrics" | awk -v name="$1" 'index($0, name) == 1 { sum += $NF } END { print sum + 0 }'; }
running=$(metric_sum "vllm:num_requests_running")
waiting=$(metric_sum "vllm:num_requests_waiting")
stalls=$(read_state stall_samples 0)
if awk -v w="$waiting" -v r="$running" 'BEGIN { exit !(w > 0 && r == 0) }'; then stalls=$(( stalls + 1 )); else stalls=0; fi
write_state stall_samples "$stalls"
[ "$stalls" -ge "$STALL_SAMPLES" ] && problems+=("stalled=${stalls}-samples")

# 4. the cluster itself
cluster=ok
if [ "$CLUSTER_MODE" = ray ]; then
  gpus=$(run docker exec studio-vllm-head ray status 2>/dev/null | sed -n 's#.*/\([0-9][0-9.]*\) GPU.*#\1#p' | head -n 1)
  cluster="gpus=${gpus:-0}"
  awk -v g="${gpus:-0}" 'BEGIN { exit !(g + 0 >= 2) }' || problems+=("ray-gpus=${gpus:-0}")
else
  for node in "$HEAD_IP" "$WORKER_IP"; do
    code=$(http_code "http://$node:$REPLICA_PORT/health" 5)
    [ "$code" = 200 ] || { cluster="replica-$node=$code"; problems+=("replica-$node=$code"); }
  done
fi

# 5. memory on both nodes (GiB available), driver errors
mem_gib() { awk '/^MemAvailable:/ { printf "%.1f", $2 / 1048576 }'; }
mem_head=$(mem_gib < /proc/meminfo)
mem_worker=$(on_worker cat /proc/meminfo 2>/dev/null | mem_gib)
for pair in "head:$mem_head" "worker:$mem_worker"; do
  value=${pair#*:}
  if [ -z "$value" ]; then problems+=("mem-${pair%%:*}=unknown"); continue; fi
  awk -v m="$value" -v f="$MEM_FLOOR_GIB" 'BEGIN { exit !(m < f) }' && problems+=("mem-${pair%%:*}=${value}GiB")
done
driver_errors=$(dmesg 2>/dev/null | grep -cE 'NVRM: .*(Out of memory|NV_ERR_NO_MEMORY)|NVRM: Xid' || true)

# decide
fails=$(read_state consecutive_failures 0)
status="health=$health canary=$canary running=$running waiting=$waiting $cluster mem_head=${mem_head:-?}GiB mem_worker=${mem_worker:-?}GiB nvrm_lines=${driver_errors:-0}"
if [ "${#problems[@]}" -eq 0 ]; then
  write_state consecutive_failures 0
  record "$status fails=0 action=none"
  exit 0
fi
fails=$(( fails + 1 ))
write_state consecutive_failures "$fails"
reason=$(IFS=,; printf '%s' "${problems[*]}")
if [ "$fails" -lt "$MAX_FAILS" ]; then
  record "$status fails=$fails action=wait problems=$reason"
  exit 1
fi

# restart, unless it restarted too recently or too often
: > "$STATE_DIR/restarts.tmp"
while read -r stamp; do
  [ -n "$stamp" ] && [ $(( now - stamp )) -lt 3600 ] && echo "$stamp" >> "$STATE_DIR/restarts.tmp"
done < <(cat "$STATE_DIR/restarts" 2>/dev/null)
mv "$STATE_DIR/restarts.tmp" "$STATE_DIR/restarts"
recent=$(wc -l < "$STATE_DIR/restarts" | tr -d ' ')
last=$(tail -n 1 "$STATE_DIR/restarts" 2>/dev/null || echo 0)
if [ "$recent" -ge "$MAX_RESTARTS_PER_HOUR" ] || [ $(( now - ${last:-0} )) -lt "$COOLDOWN_S" ]; then
  message="vLLM cluster unhealthy ($reason) after $fails checks; $recent restart(s) in the last hour: not restarting again"
  record "$status fails=$fails action=alert problems=$reason"
  if [ -n "${ALERT_CMD:-}" ]; then bash -c "$ALERT_CMD" _ "$message" || true; fi
  echo "$message" >&2
  exit 1
fi
record "$status fails=$fails action=restart problems=$reason"
echo "$now" >> "$STATE_DIR/restarts"
write_state consecutive_failures 0
write_state stall_samples 0
if bash -c "$RESTART_CMD" >> "$STATE_DIR/restart.log" 2>&1; then
  record "action=restarted"
else
  record "action=restart-failed (see $STATE_DIR/restart.log)"
fi
exit 1
