# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are read by the scripts that source this file
# Hardware and Docker detection shared by startup.sh and benchmark.sh (sourced, not run).
#
# After `detect_all`:
#   HW_OS, HW_ARCH      uname -s / uname -m (arm64 on macOS, aarch64 on Linux)
#   HW_GPU_NAME         first NVIDIA GPU's name ("" when nvidia-smi finds none)
#   HW_GPU_COUNT        number of NVIDIA GPUs
#   HW_CLASS            apple-silicon | arm64-cuda (e.g. DGX Spark, GB10) | nvidia | cpu
#   DOCKER_ENGINE       yes when `docker info` answers (a daemon we may talk to)
#   DOCKER_COMPOSE      yes when `docker compose version` works
#   DOCKER_NVIDIA       yes when the engine lists the nvidia runtime (NVIDIA Container Toolkit)
# Every probe has a timeout, so a hung daemon or driver cannot hang the start.

_with_timeout() {
  if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi
}

detect_platform() {
  HW_OS=$(uname -s 2>/dev/null || echo unknown)
  HW_ARCH=$(uname -m 2>/dev/null || echo unknown)
}

detect_nvidia() {
  HW_GPU_NAME=""
  HW_GPU_COUNT=0
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  local names
  # a driver that is installed but broken answers with an error: that is "no usable GPU"
  names=$(_with_timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null) || return 0
  names=$(printf '%s\n' "$names" | sed '/^[[:space:]]*$/d')
  [ -n "$names" ] || return 0
  HW_GPU_NAME=$(printf '%s\n' "$names" | head -n 1 | sed 's/^[[:space:]]*//;s/[[:space:]]*$//')
  HW_GPU_COUNT=$(printf '%s\n' "$names" | wc -l | tr -d ' ')
}

classify_hardware() {
  if [ "$HW_OS" = Darwin ] && [ "$HW_ARCH" = arm64 ]; then
    HW_CLASS=apple-silicon
  elif [ -n "$HW_GPU_NAME" ] && { [ "$HW_ARCH" = aarch64 ] || [ "$HW_ARCH" = arm64 ]; }; then
    HW_CLASS=arm64-cuda
  elif [ -n "$HW_GPU_NAME" ]; then
    HW_CLASS=nvidia
  else
    HW_CLASS=cpu
  fi
}

detect_docker() {
  DOCKER_ENGINE=no
  DOCKER_COMPOSE=no
  DOCKER_NVIDIA=no
  command -v docker >/dev/null 2>&1 || return 0
  _with_timeout 15 docker info >/dev/null 2>&1 || return 0
  DOCKER_ENGINE=yes
  if _with_timeout 15 docker compose version >/dev/null 2>&1; then DOCKER_COMPOSE=yes; fi
  local runtimes
  runtimes=$(_with_timeout 15 docker info --format '{{json .Runtimes}}' 2>/dev/null || true)
  case "$runtimes" in *nvidia*) DOCKER_NVIDIA=yes ;; esac
}

detect_all() {
  detect_platform
  detect_nvidia
  classify_hardware
  detect_docker
}

describe_hardware() {
  local gpu=""
  [ -n "$HW_GPU_NAME" ] && gpu="; GPU: $HW_GPU_NAME x$HW_GPU_COUNT"
  printf '%s (%s %s%s)' "$HW_CLASS" "$HW_OS" "$HW_ARCH" "$gpu"
}

# a command line for people: plain words as they are, anything else shell-quoted
show() {
  local arg words=()
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@+%-]+$ ]]; then words+=("$arg"); else words+=("$(printf '%q' "$arg")"); fi
  done
  printf "%s" "${words[*]}"
}
