#!/usr/bin/env bash
# Start ONNX Embedding Studio on whatever this machine is, and open the app on http://localhost:8501.
#
#   ./scripts/startup.sh [--dry-run] [--local | --docker] [STREAMLIT ARGS...]
#
# It looks at the hardware (NVIDIA GPU, Apple Silicon, ARM64 + CUDA such as DGX Spark, plain CPU)
# and at Docker (engine answering, compose plugin, NVIDIA runtime), then either
#   - runs `docker compose --profile cpu|gpu up` (API on :8000, app on :8501), or
#   - runs locally: scripts/setup.sh (.venv, Tesseract, the default model converted offline), on an
#     NVIDIA machine also scripts/install-onnxruntime-gpu.sh (exactly one ONNX Runtime wheel, the
#     CUDA one), then `streamlit run app.py`.
# Without a usable Docker engine it runs locally, as it always did.
#   --dry-run   print the decision and the reasons, start nothing
#   --local     run locally whatever Docker offers
#   --docker    use Docker compose (fails if no engine answers)
# Other arguments go to `streamlit run` (local mode only).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/detect.sh
. scripts/lib/detect.sh

COMPOSE_FILE=docker/docker-compose.yml
dry_run=0
requested=auto
app_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --local) requested=local ;;
    --docker) requested=docker ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    --) shift; app_args+=("$@"); break ;;
    *) app_args+=("$1") ;;
  esac
  shift
done

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

decide() {
  local gpu=no docker_ok=no
  case "$HW_CLASS" in nvidia|arm64-cuda) gpu=yes ;; esac
  [ "$DOCKER_ENGINE" = yes ] && [ "$DOCKER_COMPOSE" = yes ] && docker_ok=yes
  MODE=local
  PROFILE=""
  REASON=""
  case "$requested" in
    local) REASON="--local was given" ;;
    docker)
      if [ "$docker_ok" = no ]; then
        echo "error: --docker was given, but $(docker_problem)." >&2
        exit 1
      fi
      MODE=docker
      REASON="--docker was given" ;;
    auto)
      if [ "$HW_CLASS" = apple-silicon ]; then
        REASON="Apple Silicon: containers cannot use the Apple GPU, and the native CPU provider is fastest here"
      elif [ "$docker_ok" = no ]; then
        REASON="$(docker_problem)"
      elif [ "$gpu" = yes ] && [ "$DOCKER_NVIDIA" = no ]; then
        REASON="NVIDIA GPU found, but Docker has no NVIDIA runtime (install nvidia-container-toolkit); a local run can use the GPU"
      else
        MODE=docker
        REASON="Docker engine and compose are usable"
      fi ;;
  esac
  if [ "$MODE" = docker ]; then
    if [ "$gpu" = yes ] && [ "$DOCKER_NVIDIA" = yes ]; then
      PROFILE=gpu
      REASON="$REASON; NVIDIA GPU with the NVIDIA container runtime: CUDA image"
    else
      PROFILE=cpu
      if [ "$gpu" = yes ]; then REASON="$REASON; no NVIDIA container runtime, so the CPU image"; fi
    fi
    ORT="(inside the image: onnxruntime)"
    if [ "$PROFILE" = gpu ]; then ORT="(inside the image: onnxruntime-gpu)"; fi
  elif [ "$gpu" = yes ]; then
    ORT=onnxruntime-gpu
    if [ "$HW_CLASS" = arm64-cuda ]; then ORT="onnxruntime-gpu (PyPI aarch64; CUDA 13 feed fallback)"; fi
  else
    ORT=onnxruntime
  fi
}

docker_problem() {
  if ! command -v docker >/dev/null 2>&1; then echo "Docker is not installed"
  elif [ "$DOCKER_ENGINE" = no ]; then echo "no Docker engine answers (docker info failed)"
  else echo "the docker compose plugin is missing"
  fi
}

plan_commands() {
  COMMANDS=()
  if [ "$MODE" = docker ]; then
    COMMANDS+=("docker compose -f $COMPOSE_FILE --profile $PROFILE up --build")
  else
    COMMANDS+=("scripts/setup.sh")
    case "$ORT" in onnxruntime-gpu*)
      COMMANDS+=("scripts/install-onnxruntime-gpu.sh --python .venv/bin/python --with-cuda-libs") ;;
    esac
    local streamlit=".venv/bin/python -m streamlit run app.py"
    if [ "${#app_args[@]}" -gt 0 ]; then streamlit="$streamlit $(show "${app_args[@]}")"; fi
    COMMANDS+=("$streamlit")
  fi
}

print_decision() {
  local title="startup decision"
  if [ "$dry_run" = 1 ]; then title="$title (dry run: nothing is started)"; fi
  printf '%s\n' "$title"
  printf '  hardware     %s\n' "$(describe_hardware)"
  printf '  docker       engine=%s compose=%s nvidia-runtime=%s\n' "$DOCKER_ENGINE" "$DOCKER_COMPOSE" "$DOCKER_NVIDIA"
  printf '  mode         %s\n' "$MODE"
  printf '  profile      %s\n' "${PROFILE:--}"
  printf '  onnxruntime  %s\n' "$ORT"
  printf '  reason       %s\n' "$REASON"
  local command
  for command in "${COMMANDS[@]}"; do printf '  command      %s\n' "$command"; done
}

detect_all
decide
plan_commands
print_decision
[ "$dry_run" = 1 ] && exit 0

if [ "$MODE" = docker ]; then
  [ "${#app_args[@]}" -eq 0 ] || echo "note: ignoring ${app_args[*]} (they are for a local streamlit run)" >&2
  say "docker compose --profile $PROFILE: API http://localhost:8000, app http://localhost:8501 (Ctrl-C stops)"
  exec docker compose -f "$COMPOSE_FILE" --profile "$PROFILE" up --build
fi

scripts/setup.sh
case "$ORT" in onnxruntime-gpu*)
  if ! scripts/install-onnxruntime-gpu.sh --python .venv/bin/python --with-cuda-libs; then
    echo "WARNING: the CUDA build of ONNX Runtime could not be installed or does not load; the app runs on the CPU." >&2
    echo "         see docker/README.md, 'ARM64 + CUDA (DGX Spark)' and 'NVIDIA, local run'." >&2
  fi ;;
esac
# ${a[@]+...}: an empty array under set -u is an error in the bash 3.2 that macOS ships
exec .venv/bin/python -m streamlit run app.py ${app_args[@]+"${app_args[@]}"}
