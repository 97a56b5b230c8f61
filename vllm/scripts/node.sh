#!/usr/bin/env bash
# Entry point of the cluster containers (mounted at /opt/cluster/node.sh).
#
#   node.sh head      Ray head on HEAD_IP; waits until the worker's GPU has joined, then runs
#                     `vllm serve` across both nodes (--distributed-executor-backend ray)
#   node.sh worker    Ray worker joined to HEAD_IP:6379 (blocks)
#   node.sh replica   a plain single-node `vllm serve` on REPLICA_PORT (replicas mode)
#
# NGC vLLM 26.04/26.05 images ship without Ray, so it is pip-installed first (RAY_PIP_SPEC, the same
# on both nodes: Ray refuses mixed versions). This replaces vLLM's run_cluster.sh, whose EXIT trap
# stops the container when the launching SSH shell goes away; here compose restarts it instead.
set -euo pipefail

role=${1:?usage: node.sh head|worker|replica}
: "${VLLM_HOST_IP:?set VLLM_HOST_IP to the CX-7 address of this node}"
MODEL=${MODEL:?set MODEL}
PORT=${PORT:-8000}
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.70}
TENSOR_PARALLEL_SIZE=${TENSOR_PARALLEL_SIZE:-1}
PIPELINE_PARALLEL_SIZE=${PIPELINE_PARALLEL_SIZE:-2}
EXPECTED_GPUS=${EXPECTED_GPUS:-2}
RAY_WAIT_S=${RAY_WAIT_S:-600}
read -r -a extra_args <<<"${VLLM_ARGS:-}"

log() { printf '%s node.sh[%s]: %s\n' "$(date -u +%FT%TZ)" "$role" "$*" >&2; }

ensure_ray() {
  if command -v ray >/dev/null 2>&1; then return 0; fi
  log "installing ${RAY_PIP_SPEC:?set RAY_PIP_SPEC}"
  pip install -q --root-user-action=ignore "$RAY_PIP_SPEC"
}

ray_gpus() {
  # "0.0/2.0 GPU" in `ray status` -> 2
  ray status 2>/dev/null | sed -n 's#.*/\([0-9][0-9.]*\) GPU.*#\1#p' | head -n 1
}

case "$role" in
  head)
    ensure_ray
    ray start --head --node-ip-address="$VLLM_HOST_IP" --port=6379 \
      --include-dashboard=True --dashboard-host=0.0.0.0 --dashboard-port=8265
    log "waiting up to ${RAY_WAIT_S}s for ${EXPECTED_GPUS} GPUs in the Ray cluster"
    deadline=$(( $(date +%s) + RAY_WAIT_S ))
    until awk -v have="$(ray_gpus)" -v want="$EXPECTED_GPUS" 'BEGIN { exit !(have + 0 >= want) }'; do
      if [ "$(date +%s)" -ge "$deadline" ]; then
        log "only $(ray_gpus) GPU(s) joined; is the worker up (docker compose -f docker-compose.spark-2.yml)?"
        ray status || true
        exit 1
      fi
      sleep 5
    done
    ray status
    log "serving $MODEL with TP=$TENSOR_PARALLEL_SIZE PP=$PIPELINE_PARALLEL_SIZE on :$PORT"
    exec vllm serve "$MODEL" --host 0.0.0.0 --port "$PORT" \
      --tensor-parallel-size "$TENSOR_PARALLEL_SIZE" --pipeline-parallel-size "$PIPELINE_PARALLEL_SIZE" \
      --distributed-executor-backend ray --gpu-memory-utilization "$GPU_MEMORY_UTILIZATION" "${extra_args[@]}"
    ;;
  worker)
    ensure_ray
    : "${HEAD_IP:?set HEAD_IP}"
    log "joining the Ray head at $HEAD_IP:6379"
    exec ray start --block --address="$HEAD_IP:6379" --node-ip-address="$VLLM_HOST_IP"
    ;;
  replica)
    log "serving $MODEL on :${REPLICA_PORT:-8001} (this node only)"
    exec vllm serve "$MODEL" --host 0.0.0.0 --port "${REPLICA_PORT:-8001}" \
      --gpu-memory-utilization "$GPU_MEMORY_UTILIZATION" "${extra_args[@]}"
    ;;
  *) echo "unknown role: $role (head, worker or replica)" >&2; exit 64 ;;
esac
