#!/usr/bin/env bash
# Run the comparison benchmarks (ONNX Runtime per provider and variant vs the PyTorch baseline,
# optionally a vLLM / OpenAI-compatible server) and write a JSON + CSV report.
#
#   ./scripts/benchmark.sh [--dry-run] [--out DIR] [--vllm-url URL] [BENCH ARGS...]
#
# Defaults follow the hardware (scripts/lib/detect.sh):
#   CPU / Apple Silicon   --providers cpu       --variants fp32,int8        --batch-sizes 1,32
#   NVIDIA / ARM64+CUDA   --providers cuda,cpu  --variants fp32,fp16,int8   --batch-sizes 1,32,128
# always with --baseline (sentence-transformers, torch). When the GPU is there but this
# onnxruntime has no CUDA provider, it says so loudly and benchmarks the CPU only.
# The report (bench-<UTC time>.json and .csv) goes to <data dir>/reports/bench (data dir:
# STUDIO_DATA_DIR or ./data; --out DIR to change).
# --vllm-url (or VLLM_URL) adds an OpenAI-compatible embeddings server, e.g. http://spark-1:8000.
# Any other argument goes to `python -m engine bench` after the defaults, so it wins
# (e.g. --models all-minilm-l6-v2,bge-small-en-v1.5 --texts 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/detect.sh
. scripts/lib/detect.sh

python_bin=${STUDIO_PYTHON:-.venv/bin/python}
[ -x "$python_bin" ] || python_bin=python3
dry_run=0
out=""
vllm_url=${VLLM_URL:-}
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --out) out=$2; shift ;;
    --vllm-url) vllm_url=$2; shift ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    *) extra+=("$1") ;;
  esac
  shift
done

detect_platform
detect_nvidia
classify_hardware

cuda_in_onnxruntime() {
  "$python_bin" -c 'import onnxruntime as o; print(" ".join(o.get_available_providers()))' 2>/dev/null \
    | grep -q CUDAExecutionProvider
}

note=""
case "$HW_CLASS" in
  nvidia|arm64-cuda)
    if cuda_in_onnxruntime; then
      providers=cuda,cpu variants=fp32,fp16,int8 batch_sizes=1,32,128
    else
      providers=cpu variants=fp32,int8 batch_sizes=1,32
      note="WARNING: NVIDIA GPU ($HW_GPU_NAME) found, but this onnxruntime has no CUDA provider: benchmarking the CPU only. Fix: scripts/install-onnxruntime-gpu.sh"
    fi ;;
  *) providers=cpu variants=fp32,int8 batch_sizes=1,32 ;;
esac

data_dir=${STUDIO_DATA_DIR:-data}
[ -n "$out" ] || out="$data_dir/reports/bench"  # where the app's Benchmarks page and `engine bench` look
command=("$python_bin" -m engine bench --out "$out" --providers "$providers" --variants "$variants"
         --batch-sizes "$batch_sizes" --baseline)
[ -n "$vllm_url" ] && command+=(--vllm-url "$vllm_url")
command+=(${extra[@]+"${extra[@]}"})  # (an empty array under set -u fails in bash 3.2, macOS)

echo "benchmark plan"
printf '  hardware  %s\n' "$(describe_hardware)"
printf '  report    %s\n' "$out"
printf '  command   %s\n' "$(show "${command[@]}")"
[ -n "$note" ] && echo "$note" >&2
[ "$dry_run" = 1 ] && exit 0
exec "${command[@]}"
